"""Checks of chapter 9's exercises (inside the kernel): the backward's sums over channels for one
sample point, against autograd through the einops backend, and the number of atomic adds the
backward makes, from the library's padded corner indices."""
from __future__ import annotations

import torch

from ddetr_edu.ops import ms_deform_attn
from ddetr_edu.ops.bilinear import padded_pixel

from . import assert_close, assert_equal, correct, unanswered

# exercises 9.1 and 9.2: one level of 2 x 3 pixels, one head of D = 2 channels, one sample point
VALUE = ((1.0, 0.5), (2.0, -1.0), (0.0, 3.0),     # V[pixel, d], pixels row by row
         (-2.0, 1.0), (4.0, 0.0), (1.0, 1.0))
SIZE = (2, 3)                                      # (H, W)
POINT = (0.40, 0.60)                               # (x, y) normalised
A = 0.7                                            # its attention weight
GRAD_OUT = (1.0, -2.0)                             # g = dL/dout, (D,)


def gradients() -> dict[str, torch.Tensor]:
    """{"A": dL/dA, "xy": dL/d(x, y)} by autograd through ms_deform_attn, L = <out, g>."""
    value = torch.tensor(VALUE, dtype=torch.float64).view(1, 6, 1, 2)                  # (N, S, M, D)
    location = torch.tensor(POINT, dtype=torch.float64).view(1, 1, 1, 1, 1, 2).requires_grad_()
    weight = torch.tensor([A], dtype=torch.float64).view(1, 1, 1, 1, 1).requires_grad_()
    out = ms_deform_attn(value, [SIZE], location, weight, backend="einops")             # (1, 1, 2)
    d_location, d_weight = torch.autograd.grad((out.flatten() * torch.tensor(GRAD_OUT, dtype=torch.float64)).sum(),
                                               (location, weight))
    return {"A": d_weight.flatten()[0], "xy": d_location.flatten()}


# exercise 9.3: a small problem, as in the chapter
PROBLEM = dict(n=1, queries=6, heads=2, channels=8, points=2, shapes=((6, 9), (3, 5)), seed=0)


def problem_locations() -> torch.Tensor:
    """The sampling locations of PROBLEM, (N, Lq, M, L, K, 2), some outside the maps."""
    p = PROBLEM
    generator = torch.Generator().manual_seed(p["seed"])
    shape = (p["n"], p["queries"], p["heads"], len(p["shapes"]), p["points"], 2)
    return torch.rand(shape, generator=generator, dtype=torch.float64) * 1.4 - 0.2


def check_9_1(answer) -> None:
    """answer: dL/dA of the point, sum_c b_c <V_c, g>."""
    if unanswered("9.1", answer):
        return
    assert_close("9.1", answer, gradients()["A"], "dL/dA", atol=1e-9)
    correct("9.1")


def check_9_2(answer) -> None:
    """answer: dL/d(x, y) of the point (normalised coordinates)."""
    if unanswered("9.2", answer):
        return
    assert_close("9.2", answer, gradients()["xy"], "dL/d(x, y)", atol=1e-9)
    correct("9.2")


def check_9_3(answer) -> None:
    """answer: the scalar atomic adds of the backward of PROBLEM: one per channel for every corner
    that lies inside its map (corners outside are skipped)."""
    if unanswered("9.3", answer):
        return
    locations = problem_locations()
    inside = 0
    for level, (h, w) in enumerate(PROBLEM["shapes"]):
        # top-left corner in the padded map (real pixel + 1) and whether the point lies within the
        # ring (beyond it all four corners are outside the map: padded_pixel clamps it onto the ring)
        col0, _, near_x = padded_pixel(locations[..., level, :, 0], w)
        row0, _, near_y = padded_pixel(locations[..., level, :, 1], h)
        for j, i in ((0, 0), (0, 1), (1, 0), (1, 1)):
            row, col = row0 + j, col0 + i
            inside += int((near_x & near_y & (row >= 1) & (row <= h) & (col >= 1) & (col <= w)).sum())
    assert_equal("9.3", answer, inside * PROBLEM["channels"], "the number of scalar atomic adds")
    correct("9.3")
