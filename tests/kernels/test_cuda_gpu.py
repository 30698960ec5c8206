"""The CUDA kernel on a GPU: gradcheck, equality with einops, half precision, torch.compile.

Skipped without a CUDA device (and with the reason when the kernel cannot be built there).
"""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.ops import Levels, cuda_backend, ms_deform_attn

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
_available, _reason = cuda_backend.kernel_status()
if not _available:
    pytest.skip(f"CUDA kernel not available: {_reason}", allow_module_level=True)

DEVICE = torch.device("cuda")
SHAPES = ((13, 17), (7, 9), (4, 5), (1, 3))


def make_inputs(dtype, n=2, lq=37, m=4, d=32, shapes=SHAPES, k=4, seed=0):
    """[value, locations, weights, grad_out] on the GPU, and the level sizes as ints. Half
    precision follows the mixed-precision contract: value and grad_out in dtype, locations and
    weights in float32."""
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
    """(kernel out and grads, einops out and grads); einops runs in reference_dtype if given."""
    results = []
    for backend, dtype in (("cuda", None), ("einops", reference_dtype)):
        leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in (value, loc, weights)]
        out = ms_deform_attn(leaves[0], shapes, leaves[1], leaves[2], backend=backend)
        grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype))
        results.append((out, *grads))
    return results


def test_gradcheck_float64():
    (value, loc, weights, _), shapes = make_inputs(torch.float64, n=1, lq=3, m=2, d=5, k=2)
    starts = Levels(shapes).starts
    leaves = [t.requires_grad_() for t in (value, loc, weights)]
    assert torch.autograd.gradcheck(
        lambda v, p, a: cuda_backend.ms_deform_attn_cuda(v, shapes, starts, p, a), leaves, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("d", [32, 5, 12, 256])
def test_float32_equals_einops(d):
    (value, loc, weights, grad_out), shapes = make_inputs(torch.float32, d=d)
    kernel, einops = run_both(value, loc, weights, grad_out, shapes)
    names = ("out", "grad value", "grad locations", "grad weights")
    for name, got, want in zip(names, kernel, einops):
        scale = want.abs().max().clamp_min(1.0)
        assert (got - want).abs().max() <= 1e-5 * scale, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_rounding(dtype):
    """Mixed precision (value in dtype, float32 locations and weights); einops in float32 on the
    same (rounded) values is the reference. The kernel accumulates in float32, so the output
    differs by the final rounding (about 2^-8 for bf16)."""
    (value, loc, weights, grad_out), shapes = make_inputs(dtype)
    kernel, einops = run_both(value, loc, weights, grad_out, shapes, reference_dtype=torch.float32)
    eps = torch.finfo(dtype).eps
    for name, got, want in zip(("out", "grad value", "grad locations", "grad weights"), kernel, einops):
        assert got.dtype == (dtype if name in ("out", "grad value") else torch.float32), name
        tol = 2 * eps * want.abs().max().clamp_min(1.0)
        assert (got.float() - want).abs().max() <= tol, name


def test_torch_compile_of_a_module_using_the_op():
    (value, loc, weights, grad_out), shapes = make_inputs(torch.float32)
    starts = Levels(shapes).starts
    proj = torch.nn.Linear(value.shape[2] * value.shape[3], 8).to(DEVICE)

    def block(v, p, a):
        return proj(cuda_backend.ms_deform_attn_cuda(v, shapes, starts, p, a))

    compiled = torch.compile(block, fullgraph=True)
    eager_leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    compiled_leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    eager, got = block(*eager_leaves), compiled(*compiled_leaves)
    torch.testing.assert_close(got, eager)
    eager.sum().backward()
    got.sum().backward()
    for a, b in zip(compiled_leaves, eager_leaves):
        torch.testing.assert_close(a.grad, b.grad)


def test_auto_backend_uses_the_kernel_on_gpu():
    (value, loc, weights, _), shapes = make_inputs(torch.float32)
    auto = ms_deform_attn(value, shapes, loc, weights, backend="auto")
    kernel = ms_deform_attn(value, shapes, loc, weights, backend="cuda")
    assert torch.equal(auto, kernel)


@pytest.mark.parametrize("backend", ["cuda", "einops", "grid_sample"])
def test_degenerate_inputs_follow_the_rule_without_a_host_sync(backend):
    """N = 0 and Lq = 0 give empty outputs and gradients; a NaN or inf location reads zero with
    zero gradient (tests/ops/test_degenerate_inputs.py states the rule); none of it synchronises
    with the host (CUDA's sync debug mode raises on a synchronising call)."""
    (value, loc, weights, grad_out), shapes = make_inputs(torch.float32, lq=5)
    loc[0, 0, 0, 0, 0, 0], loc[1, 4, 3, 2, 1, 1], loc[0, 2, 1, 3, 3] = float("nan"), float("inf"), float("-inf")
    empty_batch = [t[:0] for t in (value, loc, weights, grad_out)]
    no_queries = [value, loc[:, :0], weights[:, :0], grad_out[:, :0]]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        results = []
        for v, p, a, g in ((value, loc, weights, grad_out), empty_batch, no_queries):
            leaves = [t.detach().requires_grad_() for t in (v, p, a)]
            out = ms_deform_attn(leaves[0], shapes, leaves[1], leaves[2], backend=backend)
            results.append((out, *torch.autograd.grad(out, leaves, g)))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    (out, grad_value, grad_loc, grad_weights), empty, none = results
    assert all(bool(t.isfinite().all()) for t in (out, grad_value, grad_loc, grad_weights))
    assert grad_loc[0, 0, 0, 0, 0].abs().sum() == 0 and grad_weights[0, 0, 0, 0, 0] == 0
    assert grad_weights[0, 2, 1, 3, 3] == 0 and grad_weights[0, 0, 0, 0, 1] != 0
    assert empty[0].shape == (0, 5, value.shape[2] * value.shape[3]) and empty[1].shape == (0, *value.shape[1:])
    assert none[0].shape == (2, 0, value.shape[2] * value.shape[3]) and not none[1].any()
