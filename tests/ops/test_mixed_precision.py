"""The mixed-precision contract: float16/bfloat16 values with float32 locations and weights, in
every backend and in ``MSDeformAttn`` under ``torch.autocast`` (bf16 on the CPU is how the suite
checks what a GPU run under autocast does)."""
from __future__ import annotations

import pytest
import torch

import kernel_on_cpu  # kernels/, on the path through pyproject.toml
from ddetr_edu.ops import Levels, MSDeformAttn, ms_deform_attn
from ddetr_edu.ops.cuda_backend import run_kernel_op

HALF = [torch.bfloat16, torch.float16]
UNIT = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}  # relative rounding of one number


def run_core(backend, value, shapes, loc, weights):
    if backend == "kernel_on_cpu":  # the CUDA op, with the kernel's code as its CPU implementation
        kernel_on_cpu.register_as_cpu_implementation()
        return run_kernel_op(value, Levels.from_official(shapes), loc, weights)
    return ms_deform_attn(value, shapes, loc, weights, backend=backend)


BACKENDS = ["einops", "loop", "grid_sample",
            pytest.param("kernel_on_cpu", marks=pytest.mark.skipif(
                not kernel_on_cpu.kernel_on_cpu_status()[0], reason="CPU build of the kernel unavailable")),
            pytest.param("cpu", marks=pytest.mark.skipif(
                not kernel_on_cpu.kernel_on_cpu_status()[0], reason="CPU build of the kernel unavailable"))]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("backend", BACKENDS)
def test_half_value_with_float32_locations(core_inputs, backend, dtype):
    inputs = core_inputs(n=2, lq=6, m=2, d=4, k=2, dtype=torch.float32, seed=3)
    value = inputs.value.to(dtype).requires_grad_()
    loc = inputs.sampling_locations.clone().requires_grad_()
    weights = inputs.attention_weights.clone().requires_grad_()
    out = run_core(backend, value, inputs.spatial_shapes, loc, weights)
    assert out.dtype == dtype and out.shape == (2, 6, 8)
    # float32 on the same (rounded) values: the half result differs by its final rounding only
    reference = ms_deform_attn(value.detach().float(), inputs.spatial_shapes, loc.detach(), weights.detach(),
                               backend="einops")
    error = (out.detach().float() - reference).abs()
    assert bool((error <= UNIT[dtype] * reference.abs() + 1e-6).all()), float(error.max())
    out.float().square().sum().backward()
    assert value.grad.dtype == dtype and loc.grad.dtype == torch.float32 and weights.grad.dtype == torch.float32
    assert all(bool(torch.isfinite(t.grad.float()).all()) for t in (value, loc, weights))


def test_locations_never_go_below_float32_under_autocast():
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    shapes = [(4, 6), (3, 2)]
    query, value = torch.randn(2, 5, 16), torch.randn(2, 30, 16)
    reference = torch.rand(2, 5, 2, 2)
    with torch.no_grad():
        want, want_loc, want_weights = module(query, reference, value, shapes, return_sampling=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, loc, weights = module(query, reference, value, shapes, return_sampling=True)
    assert loc.dtype == torch.float32 and weights.dtype == torch.float32
    assert out.dtype == torch.bfloat16  # output_proj runs in bf16 under autocast
    # the sampling is float32 arithmetic on float32 inputs: equal to the run without autocast
    torch.testing.assert_close(loc, want_loc, rtol=0, atol=0)
    torch.testing.assert_close(weights, want_weights, rtol=0, atol=0)
    # the output went through two bf16 projections: a few bf16 roundings of its scale
    assert float((out.float() - want).abs().max()) <= 8 * UNIT[torch.bfloat16] * float(want.abs().max())


@pytest.mark.parametrize("backend", ["einops", "grid_sample", "loop"])
def test_module_forward_and_backward_under_autocast(backend):
    torch.manual_seed(1)
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2, backend=backend)
    query = torch.randn(2, 5, 16, requires_grad=True)
    value = torch.randn(2, 30, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(query, torch.rand(2, 5, 2, 4), value, [(4, 6), (3, 2)])
    out.float().sum().backward()
    for t in (query, value, module.sampling_offsets.weight, module.value_proj.weight):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    assert module.sampling_offsets.weight.grad.abs().sum() > 0  # gradients reach the offsets
