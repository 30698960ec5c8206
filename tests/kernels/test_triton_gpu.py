"""The Triton kernels on a GPU: gradcheck, equality with einops, half precision, torch.compile
(Inductor, and CUDA graphs), the degenerate rule without a host sync, and "auto" falling back to
Triton when the C++ kernel is not built.

Skipped without a CUDA device or without Triton, and when this process imported the kernels under
Triton's interpreter (tests/ops/triton/ does that for the CPU tests; ``make gpu-check`` runs this
file in a process of its own).
"""
from __future__ import annotations

import warnings

import pytest
import torch

from ddetr_edu.ops import dispatch, ms_deform_attn, triton_backend

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

DEVICE = torch.device("cuda")
SHAPES = ((13, 17), (7, 9), (4, 5), (1, 3))
NAMES = ("out", "grad value", "grad locations", "grad weights")


@pytest.fixture(autouse=True)
def compiled_kernels():
    usable, reason = triton_backend.triton_status()
    if not usable:
        pytest.skip(f"Triton not available: {reason}")
    if triton_backend.interpreted():
        pytest.skip("this process imported the Triton kernels under TRITON_INTERPRET=1; run this file alone")


def make_inputs(dtype, n=2, lq=37, m=4, d=32, shapes=SHAPES, k=4, seed=0):
    """[value, locations, weights, grad_out] on the GPU (half: value and grad_out in dtype,
    locations and weights in float32), and the level sizes as ints."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=gen, dtype=torch.float64)
    loc = torch.rand(n, lq, m, len(shapes), k, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(n, lq, m, len(shapes), k, generator=gen, dtype=torch.float64).softmax(-1)
    grad_out = torch.randn(n, lq, m * d, generator=gen, dtype=torch.float64)
    coord = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    return [value.to(DEVICE, dtype), loc.to(DEVICE, coord), weights.to(DEVICE, coord),
            grad_out.to(DEVICE, dtype)], shapes


def run_both(value, loc, weights, grad_out, shapes, reference_dtype=None):
    """(triton out and grads, einops out and grads); einops runs in reference_dtype if given."""
    results = []
    for backend, dtype in (("triton", None), ("einops", reference_dtype)):
        leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in (value, loc, weights)]
        out = ms_deform_attn(leaves[0], shapes, leaves[1], leaves[2], backend=backend)
        grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype))
        results.append((out, *grads))
    return results


def test_gradcheck_float64():
    (value, loc, weights, _), shapes = make_inputs(torch.float64, n=1, lq=3, m=2, d=5, k=2)
    leaves = [t.requires_grad_() for t in (value, loc, weights)]
    assert torch.autograd.gradcheck(lambda v, p, a: ms_deform_attn(v, shapes, p, a, backend="triton"), leaves,
                                    eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("d", [32, 5, 12, 256])
def test_float32_equals_einops(d):
    (value, loc, weights, grad_out), shapes = make_inputs(torch.float32, d=d)
    for name, got, want in zip(NAMES, *run_both(value, loc, weights, grad_out, shapes)):
        scale = want.abs().max().clamp_min(1.0)
        assert (got - want).abs().max() <= 1e-5 * scale, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_rounding(dtype):
    """Mixed precision; einops in float32 on the same rounded values is the reference. The
    kernels sum in float32 and round once at the end (to nearest on a GPU)."""
    (value, loc, weights, grad_out), shapes = make_inputs(dtype)
    triton, einops = run_both(value, loc, weights, grad_out, shapes, reference_dtype=torch.float32)
    eps = torch.finfo(dtype).eps
    for name, got, want in zip(NAMES, triton, einops):
        assert got.dtype == (dtype if name in ("out", "grad value") else torch.float32), name
        tol = 2 * eps * want.abs().max().clamp_min(1.0)
        assert (got.float() - want).abs().max() <= tol, name


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile_fullgraph_with_inductor(mode):
    """Inductor around the op, and CUDA graphs ("reduce-overhead"): the launch takes the level
    sizes as integer arguments, so nothing is copied to the GPU inside the graph."""
    (value, loc, weights, _), shapes = make_inputs(torch.float32)
    proj = torch.nn.Linear(value.shape[2] * value.shape[3], 8).to(DEVICE)

    def block(v, p, a):
        return proj(ms_deform_attn(v, shapes, p, a, backend="triton"))

    compiled = torch.compile(block, fullgraph=True, mode=mode)
    for _ in range(3):  # reduce-overhead records the graph after warm-up calls
        eager_leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
        compiled_leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
        eager, got = block(*eager_leaves), compiled(*compiled_leaves)
        torch.testing.assert_close(got, eager)
        eager.sum().backward()
        got.sum().backward()
        for a, b in zip(compiled_leaves, eager_leaves):
            torch.testing.assert_close(a.grad, b.grad)


def test_degenerate_inputs_follow_the_rule_without_a_host_sync():
    (value, loc, weights, grad_out), shapes = make_inputs(torch.float32, lq=5)
    loc[0, 0, 0, 0, 0, 0], loc[1, 4, 3, 2, 1, 1], loc[0, 2, 1, 3, 3] = float("nan"), float("inf"), float("-inf")
    ms_deform_attn(value, shapes, loc, weights, backend="triton")  # compile outside the sync check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        results = []
        for v, p, a, g in ((value, loc, weights, grad_out), [t[:0] for t in (value, loc, weights, grad_out)],
                           (value, loc[:, :0], weights[:, :0], grad_out[:, :0])):
            leaves = [t.detach().requires_grad_() for t in (v, p, a)]
            out = ms_deform_attn(leaves[0], shapes, leaves[1], leaves[2], backend="triton")
            results.append((out, *torch.autograd.grad(out, leaves, g)))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    (out, grad_value, grad_loc, grad_weights), empty, none = results
    assert all(bool(t.isfinite().all()) for t in (out, grad_value, grad_loc, grad_weights))
    assert grad_loc[0, 0, 0, 0, 0].abs().sum() == 0 and grad_weights[0, 0, 0, 0, 0] == 0
    assert grad_weights[0, 2, 1, 3, 3] == 0 and grad_weights[0, 0, 0, 0, 1] != 0
    assert empty[0].shape == (0, 5, value.shape[2] * value.shape[3]) and empty[1].shape == (0, *value.shape[1:])
    assert none[0].shape == (2, 0, value.shape[2] * value.shape[3]) and not none[1].any()


def test_auto_uses_triton_when_the_kernel_is_not_built(monkeypatch):
    (value, loc, weights, _), shapes = make_inputs(torch.float32)
    monkeypatch.setattr(dispatch, "kernel_status", lambda: (False, "nvcc missing (test)"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto = ms_deform_attn(value, shapes, loc, weights, backend="auto")
    assert torch.equal(auto, ms_deform_attn(value, shapes, loc, weights, backend="triton"))
    assert any("Triton backend" in str(w.message) and "nvcc missing" in str(w.message) for w in caught)
