"""What backend="auto" picks for CUDA tensors: the built C++ kernel, else the Triton kernels,
else grid_sample, with one sentence saying which and why. Checked with the two availability
answers replaced (no GPU is needed to choose); and ``ddetr_edu`` imports and explains itself
without Triton installed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddetr_edu.ops import BACKENDS, dispatch, triton_backend

ROOT = Path(__file__).resolve().parents[2]


def answers(monkeypatch, kernel: tuple[bool, str], triton: tuple[bool, str]) -> None:
    monkeypatch.setattr(dispatch, "kernel_status", lambda: kernel)
    monkeypatch.setattr(dispatch, "triton_cuda_status", lambda: triton)


def test_triton_is_a_backend():
    assert "triton" in BACKENDS


def test_the_built_kernel_comes_first(monkeypatch):
    answers(monkeypatch, (True, "ok"), (True, "ok"))
    assert dispatch.choose_for_cuda() == ("cuda", None)


def test_triton_when_the_kernel_is_not_built(monkeypatch):
    answers(monkeypatch, (False, "nvcc missing"), (True, "ok"))
    chosen, why = dispatch.choose_for_cuda()
    assert chosen == "triton" and "nvcc missing" in why and "Triton backend" in why


def test_grid_sample_when_neither_kernel_can_run(monkeypatch):
    answers(monkeypatch, (False, "nvcc missing"), (False, "triton not installed"))
    chosen, why = dispatch.choose_for_cuda()
    assert chosen == "grid_sample"
    assert "nvcc missing" in why and "triton not installed" in why and "grid_sample" in why


def test_a_gpu_too_old_for_triton_is_not_given_it(monkeypatch):
    monkeypatch.setattr(triton_backend, "triton_status", lambda: (True, "ok"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 0))
    usable, reason = triton_backend.triton_cuda_status()
    assert usable is False and "compute capability 6.0" in reason
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert triton_backend.triton_cuda_status() == (True, "ok")


@pytest.mark.slow
def test_the_package_imports_without_triton_and_says_why_the_backend_is_missing():
    """A subprocess where ``import triton`` fails: the package imports, the status says why, and
    backend="triton" is a RuntimeError with that reason."""
    script = "\n".join([
        "import sys; sys.modules['triton'] = None  # import triton now raises ImportError",
        "import torch",
        "from ddetr_edu.ops import ms_deform_attn, triton_status",
        "usable, reason = triton_status()",
        "assert usable is False and 'triton not installed' in reason, reason",
        "value, loc, weights = torch.zeros(1, 4, 1, 2), torch.zeros(1, 1, 1, 1, 1, 2), torch.ones(1, 1, 1, 1, 1)",
        "try:",
        "    ms_deform_attn(value, [(2, 2)], loc, weights, backend='triton')",
        "except RuntimeError as err:",
        "    assert 'not available: triton not installed' in str(err), err",
        "else:",
        "    raise AssertionError('no error')",
        "print('ok')",
    ])
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_the_choice_is_a_constant_to_torch_compile(monkeypatch):
    """``_auto_on_cuda`` answers a string; torch.compile(fullgraph=True) takes it as a constant
    (what happens inside ``resolve_backend`` when a compiled model runs on a GPU)."""
    answers(monkeypatch, (False, "nvcc missing"), (True, "ok"))

    def scaled(x):
        return x * (2.0 if dispatch._auto_on_cuda() == "triton" else 3.0)

    with pytest.warns(RuntimeWarning, match="using the Triton backend"):
        out = torch.compile(scaled, backend="eager", fullgraph=True)(torch.ones(2))
    assert torch.equal(out, torch.full((2,), 2.0))
