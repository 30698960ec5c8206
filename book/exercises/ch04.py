"""Checks of chapter 4's exercises (backbone, masks, positions): a downsampled mask, a value of the
sine code and the size of the extra level, against the library's functions."""
from __future__ import annotations

import math

import torch

from ddetr_edu.config import get_preset
from ddetr_edu.models.backbone import downsample_mask
from ddetr_edu.models.position import build_position_encoding
from ddetr_edu.viz.architecture_shapes import level_sizes

from . import assert_close, assert_equal, correct, unanswered

VALID = (100, 150)        # exercise 4.1: (h, w) of the image
PADDED = (128, 192)       # exercise 4.1: (H, W) of the batch it is padded into
CODE_MAP = (10, 16)       # exercise 4.2: an unpadded map of H x W
CODE_PIXEL = (2, 5)       # exercise 4.2: (row, column)
CODE_CHANNEL = 2          # exercise 4.2: channel of the code, d_model = 64
IMAGE_4_3 = (800, 1066)   # exercise 4.3: (H, W) of the image


def check_4_1(answer) -> None:
    """answer: (valid rows, valid columns) of the stride-32 mask of a VALID image padded to PADDED."""
    if unanswered("4.1", answer):
        return
    mask = torch.ones(1, *PADDED, dtype=torch.bool)
    mask[0, :VALID[0], :VALID[1]] = False
    small = downsample_mask(mask, (math.ceil(PADDED[0] / 32), math.ceil(PADDED[1] / 32)))[0]
    expected = (int((~small).any(1).sum()), int((~small).any(0).sum()))
    assert_equal("4.1", tuple(answer), expected, "(valid rows, valid columns) at stride 32")
    correct("4.1")


def check_4_2(answer) -> None:
    """answer: channel CODE_CHANNEL of the sine code (d_model = 64) at CODE_PIXEL of a CODE_MAP map."""
    if unanswered("4.2", answer):
        return
    code = build_position_encoding(64)(torch.zeros(1, *CODE_MAP, dtype=torch.bool))   # (1, 64, H, W)
    expected = float(code[0, CODE_CHANNEL, CODE_PIXEL[0], CODE_PIXEL[1]])
    assert_close("4.2", answer, expected, f"channel {CODE_CHANNEL} of the code", atol=1e-5)
    correct("4.2")


def check_4_3(answer) -> None:
    """answer: (H, W) of the extra level (3x3 stride-2 conv on C5) of an IMAGE_4_3 image."""
    if unanswered("4.3", answer):
        return
    expected = level_sizes(get_preset("multiscale"), *IMAGE_4_3)[3]
    assert_equal("4.3", tuple(answer), tuple(expected), "the extra level's (H, W)")
    correct("4.3")
