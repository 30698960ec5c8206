"""Checks of chapter 10's exercises (what the model looks at): a query's share of attention per
level, a sampling location in image pixels and the encoder token under a point, against the
weights' own normalisation and ``ddetr_edu.viz.coordinates``."""
from __future__ import annotations

import torch

from ddetr_edu.ops import level_start_index
from ddetr_edu.viz.coordinates import encoder_token, locations_to_pixels

from . import assert_close, assert_equal, correct, unanswered

M, L, K = 4, 3, 2                                     # heads, levels, points of exercise 10.1


def query_weights() -> torch.Tensor:
    """Exercise 10.1: one query's attention weights (M, L, K), a softmax over the L K points of each head."""
    logits = torch.randn(M, L * K, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    return (3 * logits).softmax(-1).view(M, L, K)


LOCATION = (0.30, 0.40)                  # exercise 10.2: a sampling location on a padded level map (x, y)
RATIO = (0.75, 0.80)                     # its level's valid ratio (w, h)
PICTURE = (96, 128)                      # (h, w) of the image drawn on
SHAPES = ((16, 24), (8, 12))             # exercise 10.3: (H_l, W_l) of two levels
RATIOS = ((0.75, 0.8125), (10 / 12, 0.875))   # their valid ratios (w, h)
POINT, LEVEL = (0.50, 0.25), 1           # a valid-normalised point (x, y) and the level asked about


def check_10_1(answer) -> None:
    """answer: the share (L,) of the query's attention on each level, averaged over its heads."""
    if unanswered("10.1", answer):
        return
    weights = query_weights()
    assert torch.allclose(weights.sum(dim=(1, 2)), torch.ones(M, dtype=torch.float64))  # a head sums to 1
    expected = weights.sum(dim=-1).mean(dim=0)                                           # (L,)
    assert_close("10.1", answer, expected, "the share per level", atol=1e-9)
    assert abs(float(torch.as_tensor(answer).sum()) - 1) < 1e-6, "Exercise 10.1: the shares should sum to 1"
    correct("10.1")


def check_10_2(answer) -> None:
    """answer: LOCATION in pixels (x, y) of the PICTURE image."""
    if unanswered("10.2", answer):
        return
    expected = locations_to_pixels(torch.tensor([[LOCATION]]), torch.tensor([RATIO]), PICTURE)   # (L, K, 2)
    assert_close("10.2", answer, expected.flatten(), "the location in image pixels (x, y)", atol=1e-4)
    correct("10.2")


def check_10_3(answer) -> None:
    """answer: the flattened token index (over both levels) of the LEVEL cell that holds POINT."""
    if unanswered("10.3", answer):
        return
    shapes = torch.tensor(SHAPES)
    expected = encoder_token(torch.tensor(POINT), LEVEL, shapes, level_start_index(shapes), torch.tensor(RATIOS))
    assert_equal("10.3", answer, expected, "the token index")
    correct("10.3")
