"""The kernel's per-thread code (ddetr_edu/ops/csrc/msda_math.h), built for the CPU with g++ by the
harness ``kernels/kernel_on_cpu.py``, equals the einops backend: forward and all three gradients,
for every launch configuration the GPU can pick.
"""
from __future__ import annotations

import pytest
import torch

import kernel_on_cpu  # kernels/, on the path through pyproject.toml
from ddetr_edu.ops import level_start_index, ms_deform_attn

available, reason = kernel_on_cpu.kernel_on_cpu_status()
pytestmark = pytest.mark.skipif(not available, reason=f"CPU build of the kernel unavailable: {reason}")

SHAPES = ((4, 6), (3, 3), (1, 5))  # (H, W) per level, including a 1-pixel-high level


def make_inputs(dtype, n=2, lq=5, m=3, d=5, shapes=SHAPES, k=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    s = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    value = torch.randn(n, s, m, d, dtype=dtype, generator=gen)
    # Locations from -0.3 to 1.3: about a third of the corners fall outside their map.
    loc = torch.rand(n, lq, m, len(shapes), k, 2, dtype=dtype, generator=gen) * 1.6 - 0.3
    loc[0, 0, 0, 0, 0] = torch.tensor([-5.0, 0.5])   # far outside: reads zero
    loc[-1, -1, -1, -1, -1] = torch.tensor([0.5, 40.0])
    loc[0, -1, 0, -1, 0] = torch.tensor([0.01, 0.99])  # within half a pixel of the border
    weights = torch.rand(n, lq, m, len(shapes), k, dtype=dtype, generator=gen)
    grad_out = torch.randn(n, lq, m * d, dtype=dtype, generator=gen)
    return value, spatial_shapes, loc, weights, grad_out


def einops_reference(value, spatial_shapes, loc, weights, grad_out):
    leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    out = ms_deform_attn(leaves[0], spatial_shapes, leaves[1], leaves[2], backend="einops")
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out.detach(), *grads


def kernel_results(value, spatial_shapes, loc, weights, grad_out, group=None, tph=None):
    starts = level_start_index(spatial_shapes)
    out = kernel_on_cpu.ms_deform_attn_kernel_on_cpu(value, spatial_shapes, starts, loc, weights, group, tph)
    grads = kernel_on_cpu.ms_deform_attn_kernel_on_cpu_backward(value, spatial_shapes, starts, loc, weights,
                                                                grad_out, group, tph)
    return out, *grads


def assert_close_to_einops(dtype, atol, rtol, group=None, tph=None, **sizes):
    inputs = make_inputs(dtype, **sizes)
    names = ("out", "grad value", "grad locations", "grad weights")
    for name, got, want in zip(names, kernel_results(*inputs, group, tph), einops_reference(*inputs)):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert want.abs().max() > 0.1, f"{name} is trivially small"
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("d", [5, 8, 12])
def test_float64_matches_einops(d):
    assert_close_to_einops(torch.float64, atol=1e-12, rtol=1e-12, d=d)


@pytest.mark.parametrize("d", [5, 12, 32])
def test_float32_matches_einops(d):
    assert_close_to_einops(torch.float32, atol=2e-5, rtol=1e-5, d=d)


@pytest.mark.parametrize("group,tph", [(1, 1), (1, 32), (2, 4), (4, 2), (8, 1), (8, 8)])
def test_every_launch_configuration_matches(group, tph):
    """Lanes that loop over several channel groups, idle lanes, and one lane per head."""
    assert_close_to_einops(torch.float64, atol=1e-12, rtol=1e-12, group=group, tph=tph, d=40, lq=3, m=2)


def test_single_level_single_point_and_batch_one():
    assert_close_to_einops(torch.float64, atol=1e-12, rtol=1e-12, n=1, lq=4, m=1, d=3, shapes=((5, 7),), k=1)


def test_points_outside_every_map_give_zero_output_and_gradients():
    value, shapes, loc, weights, grad_out = make_inputs(torch.float64)
    loc = torch.full_like(loc, 1.5)  # u = 1.5 W - 0.5 >= W: no corner inside
    out, grad_value, grad_loc, grad_weights = kernel_results(value, shapes, loc, weights, grad_out)
    for t in (out, grad_value, grad_loc, grad_weights):
        assert t.abs().max() == 0


def test_launch_configuration_choice():
    """G = 16 bytes / element (a vector load) when D allows it; lanes = D / G rounded up to 2^k <= 32."""
    assert kernel_on_cpu.launch_config(torch.float32, 32) == (4, 8)
    assert kernel_on_cpu.launch_config(torch.bfloat16, 32) == (8, 4)
    assert kernel_on_cpu.launch_config(torch.float16, 32) == (8, 4)
    assert kernel_on_cpu.launch_config(torch.float64, 32) == (2, 16)
    assert kernel_on_cpu.launch_config(torch.float32, 5) == (1, 8)      # odd D: scalar loads
    assert kernel_on_cpu.launch_config(torch.float32, 12) == (4, 4)     # 3 groups, one idle lane
    assert kernel_on_cpu.launch_config(torch.float32, 256) == (4, 32)   # 64 groups: 2 per lane
    assert kernel_on_cpu.launch_config(torch.float32, 32, alignment=8) == (2, 16)  # unaligned view


def test_bad_configuration_is_a_value_error():
    inputs = make_inputs(torch.float64, d=6)
    with pytest.raises(ValueError, match="group=4"):
        kernel_results(*inputs, group=4, tph=2)  # 4 does not divide D = 6
    with pytest.raises(ValueError, match="threads_per_head=3"):
        kernel_results(*inputs, group=2, tph=3)
