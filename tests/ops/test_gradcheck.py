"""Numerical gradients (torch.autograd.gradcheck, float64) of the einops backend's hand-written
backward and of the loop backend (autograd through plain loops).

Bilinear interpolation is piecewise linear: its derivative jumps where a point crosses a pixel
centre (u or v an integer) or the edge of the zero ring (u = -1 or W). Finite differences across
such a kink are meaningless, so the points are placed at pixel coordinates integer + f with
f in [0.1, 0.9]: inside, across the border (-1 < u < 0, W-1 < u < W), just outside and far
outside (|u| ~ 50 pixels).
"""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from ddetr_edu.ops import ms_deform_attn


def points_off_the_kinks(n, lq, m, k, shapes, seed):
    """(N, Lq, M, L, K, 2) normalised (x, y) whose pixel coordinates u = x W - 1/2 and
    v = y H - 1/2 stay >= 0.1 pixel away from every integer."""
    gen = torch.Generator().manual_seed(seed)
    levels = []
    for h, w in shapes:
        coords = []
        for size in (w, h):
            # integer parts: far left, across the left border, inside, across the right border, far right
            choices = torch.tensor([-50, -2, -1, *range(size), size, 50], dtype=torch.float64)
            pick = torch.randint(len(choices), (n, lq, m, k), generator=gen)
            frac = 0.1 + 0.8 * torch.rand(n, lq, m, k, generator=gen, dtype=torch.float64)
            u = choices[pick] + frac
            coords.append((u + 0.5) / size)
        levels.append(torch.stack(coords, dim=-1))  # (N, Lq, M, K, 2)
    return torch.stack(levels, dim=3)


def gradcheck_inputs(n, lq, m, d, k, shapes, seed=0):
    gen = torch.Generator().manual_seed(seed + 1)
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    s = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    value = torch.randn(n, s, m, d, dtype=torch.float64, generator=gen).requires_grad_()
    loc = points_off_the_kinks(n, lq, m, k, shapes, seed).requires_grad_()
    weights = torch.rand(n, lq, m, len(shapes), k, dtype=torch.float64, generator=gen).requires_grad_()
    return value, spatial_shapes, loc, weights


def core_gradcheck(args, backend, fast_mode=False):
    """gradcheck of the core in value, locations and weights (spatial_shapes held fixed)."""
    value, shapes, loc, weights = args

    def core(value, loc, weights):
        return ms_deform_attn(value, shapes, loc, weights, backend=backend)

    return gradcheck(core, (value, loc, weights), eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=fast_mode)


def test_points_cover_inside_border_and_far_outside():
    shapes = [(3, 4), (2, 3)]
    loc = points_off_the_kinks(2, 6, 2, 3, shapes, seed=0)
    u = loc[..., 0, :, 0] * 4 - 0.5  # level 0, x
    assert bool(((u > 0) & (u < 3)).any()), "no point inside"
    assert bool(((u > -1) & (u < 0)).any()), "no point across the left border"
    assert bool((u < -10).any()) and bool((u > 10).any()), "no point far outside"


@pytest.mark.parametrize("d", [3, 5])
def test_einops_backward_matches_finite_differences(d):
    """fast_mode: gradcheck compares v^T J u for random u, v (a few forward calls instead of
    one per input number), so the case can be large enough to cover every kind of point."""
    args = gradcheck_inputs(n=2, lq=3, m=2, d=d, k=3, shapes=[(3, 4), (2, 3)], seed=d)
    assert core_gradcheck(args, "einops", fast_mode=True)


def test_einops_backward_matches_finite_differences_entry_by_entry():
    """The full Jacobian, every entry, on a small case (one head, D = 3)."""
    args = gradcheck_inputs(n=1, lq=2, m=1, d=3, k=2, shapes=[(3, 4), (2, 3)], seed=11)
    assert core_gradcheck(args, "einops")


def test_einops_backward_with_one_input_requiring_grad_at_a_time():
    """The backward skips what is not needed; each gradient alone equals the full backward's."""
    value, shapes, loc, weights = gradcheck_inputs(n=1, lq=4, m=2, d=3, k=2, shapes=[(3, 4), (2, 3)], seed=7)
    upstream = torch.randn(1, 4, 6, dtype=torch.float64)
    out = ms_deform_attn(value, shapes, loc, weights, backend="einops")
    full = torch.autograd.grad((out * upstream).sum(), (value, loc, weights))
    for i, name in enumerate(["value", "sampling_locations", "attention_weights"]):
        leaves = [t.detach().requires_grad_(j == i) for j, t in enumerate((value, loc, weights))]
        out = ms_deform_attn(leaves[0], shapes, leaves[1], leaves[2], backend="einops")
        (alone,) = torch.autograd.grad((out * upstream).sum(), leaves[i])
        torch.testing.assert_close(alone, full[i], rtol=0, atol=1e-14, msg=name)


def test_loop_backend_matches_finite_differences():
    args = gradcheck_inputs(n=1, lq=2, m=1, d=3, k=2, shapes=[(2, 3), (1, 2)], seed=3)
    assert core_gradcheck(args, "loop")


def test_far_outside_points_have_zero_output_and_location_gradient():
    value, shapes, loc, weights = gradcheck_inputs(n=1, lq=2, m=1, d=3, k=2, shapes=[(3, 4)], seed=5)
    far = torch.tensor([[-30.0, 0.5], [0.5, 40.0]], dtype=torch.float64)  # left of, and below, the map
    loc = far.view(1, 2, 1, 1, 1, 2).expand(1, 2, 1, 1, 2, 2).clone().requires_grad_()
    out = ms_deform_attn(value, shapes, loc, weights, backend="einops")
    out.sum().backward()
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(loc.grad, torch.zeros_like(loc))
    assert torch.equal(value.grad, torch.zeros_like(value))
