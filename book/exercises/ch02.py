"""Checks of chapter 2's exercises (bilinear sampling): reads, slopes and corner weights computed by
hand, compared with ``grid_sample``, autograd through ``bilinear_read`` and ``bilinear_corners``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ddetr_edu.ops import bilinear_corners
from ddetr_edu.ops.msda_loop import bilinear_read

from . import assert_close, correct, unanswered


def ramp() -> torch.Tensor:
    """The chapter's 3 x 4 map, one channel: X[r, c] = (4 r + c) ** 1.5, (H, W, D) = (3, 4, 1), float64."""
    return torch.arange(12, dtype=torch.float64).view(3, 4, 1) ** 1.5


ROW = (0.2, 1.0, 0.4, 0.7)          # the chapter's one-row map of Figure 2.1
POINT_2_1 = (0.70, 0.55)            # (x, y) normalised
POINT_2_2 = 0.45                    # x on ROW (y = 0.5)
POINT_2_3 = (1.05, 0.30)            # (x, y), across the right border of the 3 x 4 map
POINT_2_4 = (0.45, 0.30)


def grid_read(x: float, y: float, align_corners: bool) -> float:
    """grid_sample's bilinear read of ramp() at normalised (x, y), zero padding."""
    grid = torch.tensor([[[[2 * x - 1, 2 * y - 1]]]], dtype=torch.float64)
    image = ramp().permute(2, 0, 1)[None]                                   # (1, D, H, W)
    return float(F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners))


def check_2_1(answer) -> None:
    """answer: the bilinear read of ramp() at POINT_2_1 (pixel centres at (i + 1/2) / W)."""
    if unanswered("2.1", answer):
        return
    assert_close("2.1", answer, grid_read(*POINT_2_1, align_corners=False), "the read", atol=1e-9)
    correct("2.1")


def check_2_2(answer) -> None:
    """answer: d read / d x of ROW at x = POINT_2_2, in normalised units."""
    if unanswered("2.2", answer):
        return
    row = torch.tensor(ROW, dtype=torch.float64).view(1, 4, 1)
    x = torch.tensor(POINT_2_2, dtype=torch.float64, requires_grad=True)
    read = bilinear_read(row, x, torch.tensor(0.5, dtype=torch.float64))
    expected = float(torch.autograd.grad(read.sum(), x)[0])
    assert_close("2.2", answer, expected, "the slope d read / d x (remember d/dx = W d/du)", atol=1e-9)
    correct("2.2")


def check_2_3(answer) -> None:
    """answer: the four weights b_c (c = 2 j + i: top-left, top-right, bottom-left, bottom-right)
    of POINT_2_3 on the 3 x 4 map, corners in the zero ring included."""
    if unanswered("2.3", answer):
        return
    x, y = (torch.tensor([v], dtype=torch.float64) for v in POINT_2_3)
    expected = bilinear_corners(x, y, 3, 4).weight[0]
    assert_close("2.3", answer, expected, "the four corner weights", atol=1e-9)
    correct("2.3")


def check_2_4(answer) -> None:
    """answer: the read of ramp() at POINT_2_4 with align_corners=True (pixel centres at i / (W - 1))."""
    if unanswered("2.4", answer):
        return
    assert_close("2.4", answer, grid_read(*POINT_2_4, align_corners=True), "the align_corners=True read", atol=1e-9)
    correct("2.4")
