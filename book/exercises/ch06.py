"""Checks of chapter 6's exercises (the decoder): one refinement step, a sampling location with a
box reference and the number of valid two-stage proposals, against ``refine_boxes``,
``MSDeformAttn`` and ``encoder_proposals``."""
from __future__ import annotations

import torch

from ddetr_edu.models.heads import refine_boxes
from ddetr_edu.models.two_stage import encoder_proposals
from ddetr_edu.ops import Levels, MSDeformAttn

from . import assert_close, assert_equal, correct, unanswered

REFERENCE_BOX = (0.50, 0.50, 0.20, 0.40)   # exercise 6.1: (cx, cy, w, h)
HEAD_OUTPUT = (0.10, -0.20, 0.30, 0.00)    # exercise 6.1: the box head's offset
BOX = (0.40, 0.60, 0.20, 0.30)             # exercise 6.2: the reference box (cx, cy, w, h)
OFFSET = (2.0, -1.0)                       # exercise 6.2: the point's offset dp (x, y)
K = 4                                      # exercise 6.2: points per head and level
LEVELS = [(100, 134), (50, 67), (25, 34), (13, 17)]   # exercise 6.3: an 800 x 1066 image


def check_6_1(answer) -> None:
    """answer: the refined box (cx, cy, w, h) of REFERENCE_BOX and HEAD_OUTPUT."""
    if unanswered("6.1", answer):
        return
    expected = refine_boxes(torch.tensor(HEAD_OUTPUT).view(1, 1, 4), torch.tensor(REFERENCE_BOX).view(1, 1, 4))
    assert_close("6.1", answer, expected.flatten(), "the refined box (cx, cy, w, h)", atol=1e-5)
    correct("6.1")


def check_6_2(answer) -> None:
    """answer: the location (x, y) of a point with offset OFFSET around the box reference BOX (K points)."""
    if unanswered("6.2", answer):
        return
    attn = MSDeformAttn(d_model=8, n_levels=1, n_heads=1, n_points=K).double()
    with torch.no_grad():
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.copy_(torch.tensor(OFFSET * K))            # every point: OFFSET
        box = torch.tensor(BOX, dtype=torch.float64).view(1, 1, 1, 4)         # (N, Q, L, 4)
        _, locations, _ = attn(torch.zeros(1, 1, 8, dtype=torch.float64), box,
                               torch.zeros(1, 25, 8, dtype=torch.float64), [(5, 5)], return_sampling=True)
    assert_close("6.2", answer, locations[0, 0, 0, 0, 0], "the sampling location (x, y)", atol=1e-9)
    correct("6.2")


def check_6_3(answer) -> None:
    """answer: how many of the S proposals of one unpadded image of LEVELS are valid (kept)."""
    if unanswered("6.3", answer):
        return
    tokens = sum(h * w for h, w in LEVELS)
    _, proposals = encoder_proposals(torch.zeros(1, tokens, 1), torch.zeros(1, tokens, dtype=torch.bool),
                                     Levels(LEVELS))                            # (1, S, 4), inf = invalid
    expected = int(proposals.isfinite().all(-1).sum())
    assert_equal("6.3", answer, expected, "the number of valid proposals")
    correct("6.3")
