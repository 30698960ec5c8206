"""Checks of chapter 7's exercises (matching and losses): a Hungarian matching, a focal loss term
and a GIoU, against ``HungarianMatcher``, ``sigmoid_focal_loss`` and ``generalized_box_iou``."""
from __future__ import annotations

import torch

from ddetr_edu.boxes import generalized_box_iou
from ddetr_edu.training.focal import sigmoid_focal_loss
from ddetr_edu.training.matcher import HungarianMatcher

from . import assert_close, assert_equal, correct, unanswered


def matching_problem() -> tuple[dict, list[dict]]:
    """Exercise 7.1: one image, 3 predictions of 2 classes, 2 objects (boxes cxcywh normalised)."""
    outputs = {"pred_logits": torch.tensor([[[2.0, -1.0], [0.5, 0.5], [-1.0, 1.5]]]),      # (1, 3, 2)
               "pred_boxes": torch.tensor([[[0.30, 0.30, 0.20, 0.20],
                                            [0.32, 0.30, 0.22, 0.20],
                                            [0.70, 0.60, 0.30, 0.40]]])}                  # (1, 3, 4)
    targets = [{"labels": torch.tensor([0, 1]),
                "boxes": torch.tensor([[0.31, 0.30, 0.21, 0.20], [0.68, 0.62, 0.30, 0.35]])}]
    return outputs, targets


LOGIT, TARGET = 2.0, 0.0                   # exercise 7.2: one logit of a class the query does not hold
BOX_A, BOX_B = (0.0, 0.0, 2.0, 2.0), (1.0, 1.0, 4.0, 3.0)    # exercise 7.3: xyxy


def check_7_1(answer) -> None:
    """answer: for each object (in order), the index of the prediction matched to it, with the
    default costs (class 2, L1 5, GIoU 2)."""
    if unanswered("7.1", answer):
        return
    outputs, targets = matching_problem()
    predictions, objects = HungarianMatcher()(outputs, targets)[0]
    expected = [int(p) for _, p in sorted(zip(objects.tolist(), predictions.tolist()))]
    assert_equal("7.1", list(answer), expected, "the matched prediction of each object")
    correct("7.1")


def check_7_2(answer) -> None:
    """answer: the focal loss (alpha 0.25, gamma 2) of LOGIT with target TARGET."""
    if unanswered("7.2", answer):
        return
    expected = float(sigmoid_focal_loss(torch.tensor([LOGIT], dtype=torch.float64),
                                        torch.tensor([TARGET], dtype=torch.float64)))
    assert_close("7.2", answer, expected, "the focal loss", atol=1e-9)
    correct("7.2")


def check_7_3(answer) -> None:
    """answer: GIoU(BOX_A, BOX_B)."""
    if unanswered("7.3", answer):
        return
    expected = float(generalized_box_iou(torch.tensor([BOX_A]), torch.tensor([BOX_B]))[0, 0])
    assert_close("7.3", answer, expected, "the GIoU", atol=1e-6)
    correct("7.3")
