"""Checks of chapter 3's exercises (multi-scale deformable attention): parameter counts, the
initial star, a sampling location and the number of points, against ``MSDeformAttn`` itself."""
from __future__ import annotations

import torch

from ddetr_edu.ops import MSDeformAttn

from . import assert_close, assert_equal, correct, unanswered

PAPER = dict(d_model=256, n_levels=4, n_heads=8, n_points=4)   # the paper's module
LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]           # an 800 x 1333 image, strides 8 to 64
REFERENCE = (0.50, 0.30)         # exercise 3.3: the reference point (x, y), normalised
OFFSET = (2.0, -1.0)             # exercise 3.3: the offset in pixels (x, y)
LEVEL_SIZE = (25, 42)            # exercise 3.3: (H, W) of the level it reads


def check_3_1(answer) -> None:
    """answer: the number of parameters of MSDeformAttn(**PAPER)."""
    if unanswered("3.1", answer):
        return
    expected = sum(p.numel() for p in MSDeformAttn(**PAPER).parameters())
    assert_equal("3.1", answer, expected, "the parameter count (value, offsets, weights, output: weight + bias each)")
    correct("3.1")


def check_3_2(answer) -> None:
    """answer: the initial offsets (K, 2) in pixels (x, y) of head 1 of 8 with K = 4 points."""
    if unanswered("3.2", answer):
        return
    fresh = MSDeformAttn(d_model=64, n_levels=1, n_heads=8, n_points=4)
    expected = fresh.sampling_offsets.bias.detach().view(8, 1, 4, 2)[1, 0]   # (m l k xy): head 1, level 0
    assert_close("3.2", answer, expected, "head 1's initial offsets (K, 2)", atol=1e-6)
    correct("3.2")


def check_3_3(answer) -> None:
    """answer: the normalised location (x, y) read by a point with offset OFFSET (pixels) from
    REFERENCE on a level of LEVEL_SIZE."""
    if unanswered("3.3", answer):
        return
    one = MSDeformAttn(d_model=8, n_levels=1, n_heads=1, n_points=1).double()
    with torch.no_grad():
        one.sampling_offsets.weight.zero_()
        one.sampling_offsets.bias.copy_(torch.tensor(OFFSET))
        reference = torch.tensor(REFERENCE, dtype=torch.float64).view(1, 1, 1, 2)   # (N, Lq, L, 2)
        value = torch.zeros(1, LEVEL_SIZE[0] * LEVEL_SIZE[1], 8, dtype=torch.float64)
        _, locations, _ = one(torch.zeros(1, 1, 8, dtype=torch.float64), reference, value, [LEVEL_SIZE],
                              return_sampling=True)                                # (1, 1, 1, 1, 1, 2)
    assert_close("3.3", answer, locations.flatten(), "the sampling location (x, y)", atol=1e-9)
    correct("3.3")


def check_3_4(answer) -> None:
    """answer: how many sampling points one layer of the paper's encoder reads for one image of
    LEVELS (every token is a query)."""
    if unanswered("3.4", answer):
        return
    tokens = sum(h * w for h, w in LEVELS)
    module = MSDeformAttn(**PAPER)
    with torch.no_grad():   # one query on tiny maps: the module's weights per query, (1, 1, M, L, K)
        _, _, weights = module(torch.zeros(1, 1, 256), torch.full((1, 1, 4, 2), 0.5), torch.zeros(1, 4, 256),
                               [(1, 1)] * 4, return_sampling=True)
    expected = tokens * weights.numel()
    assert_equal("3.4", answer, expected, "the number of sampling points (tokens x M L K)")
    correct("3.4")
