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
