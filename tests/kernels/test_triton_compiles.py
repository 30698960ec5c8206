"""The Triton kernels compile for a GPU without one: Triton's ahead-of-time path (``triton.compile``
for an sm_90 target, its bundled ptxas) on the forward in float32 and the backward in bfloat16.

The interpreter tests (tests/ops/triton/) run the kernels' Python; they never lower them to GPU
code, where a type mismatch or an unsupported construct would only show on a GPU. The integer
arguments get the divisibility a launch at the paper's sizes specialises (D = 32, M = 8: the
sizes and pointers divisible by 16), and the PTX is checked for what the design relies on:
128-bit loads of the corners and vector (float4) atomic adds for the value gradient, as in the
C++ kernel. Run in a subprocess: the test process may hold the kernels as interpreted functions.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import inspect, sys
import triton
from triton.backends.compiler import GPUTarget
from ddetr_edu.ops import triton_kernels as K

CONSTANTS = dict(LEVELS=4, POINTS=4, BLOCK_H=64, BLOCK_D=32)
SIZES = dict(total_heads=4800, queries_heads=2400, heads=8, tokens=22223, channels=32)  # N=2, Lq=300, M=8, D=32

def compile_for_sm90(fn, pointers):
    names = list(inspect.signature(fn.fn).parameters)
    signature = {n: "constexpr" if n in CONSTANTS else pointers.get(n, "i32") for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if n in pointers or SIZES.get(n, 1) % 16 == 0}
    try:
        source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=CONSTANTS, attrs=attrs)
    except TypeError as err:  # an older Triton spells ASTSource's arguments differently
        print(f"ASTSource API differs: {err}")
        sys.exit(3)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm["ptx"]

forward = compile_for_sm90(K.msda_forward_kernel, dict(value_ptr="*fp32", loc_ptr="*fp32", attn_ptr="*fp32",
                                                       out_ptr="*fp32"))
assert "ld.global.v4.b32" in forward, "forward: no 128-bit loads of the corners"
print("msda_forward_kernel ok", forward.count("\n"), "lines of PTX")
backward = compile_for_sm90(K.msda_backward_kernel, dict(
    value_ptr="*bf16", loc_ptr="*fp32", attn_ptr="*fp32", grad_out_ptr="*bf16", grad_value_ptr="*fp32",
    grad_loc_ptr="*fp32", grad_attn_ptr="*fp32"))
assert "red.global.gpu.relaxed.add.v4.f32" in backward, "backward: no float4 atomic adds of the value gradient"
print("msda_backward_kernel ok", backward.count("\n"), "lines of PTX")
'''


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_forward_and_backward_compile_for_sm90_with_vector_loads_and_atomics():
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=540,
                          env=env)
    if done.returncode == 3:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "msda_forward_kernel ok" in done.stdout and "msda_backward_kernel ok" in done.stdout
