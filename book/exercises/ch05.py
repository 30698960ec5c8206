"""Checks of chapter 5's exercises (the encoder): valid ratios, a reference point mapped onto
another level, the share of padded tokens, against ``valid_ratios``, ``encoder_reference_points``
and ``downsample_mask``."""
from __future__ import annotations

import torch

from ddetr_edu.models.backbone import downsample_mask
from ddetr_edu.models.encoder import encoder_reference_points, valid_ratios
from ddetr_edu.ops import Levels

from . import assert_close, correct, unanswered

VALID = (100, 150)                                 # (h, w) of the image
PADDED = (128, 192)                                # (H, W) of the padded batch
LEVELS = [(16, 24), (8, 12), (4, 6), (2, 3)]       # strides 8, 16, 32, 64 of PADDED
PIXEL = (3, 5)                                     # exercise 5.2: (row, column) of a level-0 pixel


def level_masks() -> list[torch.Tensor]:
    """The image's padding mask brought to every level, [(1, H_l, W_l)] True = padding."""
    mask = torch.ones(1, *PADDED, dtype=torch.bool)
    mask[0, :VALID[0], :VALID[1]] = False
    return [downsample_mask(mask, size) for size in LEVELS]


def ratios() -> torch.Tensor:
    return torch.stack([valid_ratios(m) for m in level_masks()], dim=1)   # (1, L, 2) (w, h)


def check_5_1(answer) -> None:
    """answer: the valid ratio (w, h) of level 0."""
    if unanswered("5.1", answer):
        return
    assert_close("5.1", answer, ratios()[0, 0], "level 0's valid ratio (w, h)", atol=1e-6)
    correct("5.1")


def check_5_2(answer) -> None:
    """answer: the reference point (x, y) of level-0 pixel PIXEL, mapped onto level 1's padded map."""
    if unanswered("5.2", answer):
        return
    reference = encoder_reference_points(Levels(LEVELS), ratios())       # (1, S, L, 2)
    expected = reference[0, PIXEL[0] * LEVELS[0][1] + PIXEL[1], 1]
    assert_close("5.2", answer, expected, "the reference point on level 1 (x, y)", atol=1e-6)
    correct("5.2")


def check_5_3(answer) -> None:
    """answer: the fraction of the S tokens (all four levels) that are padding."""
    if unanswered("5.3", answer):
        return
    masks = level_masks()
    expected = sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert_close("5.3", answer, expected, "the padded fraction of the tokens", atol=1e-6)
    correct("5.3")
