"""Checks of chapter 12's exercises (what came next): DN-DETR's attention mask, the sine code of an
anchor box and the proposals mixed query selection keeps, against ``denoising_attention_mask``,
``proposal_position_embedding`` and ``top_proposals``."""
from __future__ import annotations

import torch

from ddetr_edu.boxes import inverse_sigmoid
from ddetr_edu.models.denoising import denoising_attention_mask
from ddetr_edu.models.two_stage import proposal_position_embedding, top_proposals

from . import assert_close, assert_equal, correct, unanswered

MATCHING, GROUPS, GROUP_SIZE = 16, 3, 6          # exercise 12.1
ANCHOR = (0.30, 0.60, 0.20, 0.10)                # exercise 12.2: (cx, cy, w, h)
NUM_FEATS, CHANNEL = 64, 66                      # F channels per coordinate; the channel asked about
SCORES = (0.3, -1.2, 2.5, 0.9, 2.4, -0.1, 1.7, 0.0)   # exercise 12.3: class-0 logits of 8 tokens
KEEP = 3


def check_12_1(answer) -> None:
    """answer: the number of blocked (True) entries of denoising_attention_mask(MATCHING, GROUPS, GROUP_SIZE)."""
    if unanswered("12.1", answer):
        return
    expected = int(denoising_attention_mask(MATCHING, GROUPS, GROUP_SIZE).sum())
    assert_equal("12.1", answer, expected, "the number of blocked pairs")
    correct("12.1")


def check_12_2(answer) -> None:
    """answer: channel CHANNEL of the sine code of ANCHOR with NUM_FEATS channels per coordinate."""
    if unanswered("12.2", answer):
        return
    code = proposal_position_embedding(inverse_sigmoid(torch.tensor(ANCHOR).view(1, 1, 4)), NUM_FEATS)
    assert_close("12.2", answer, float(code[0, 0, CHANNEL]), f"channel {CHANNEL} of the code", atol=1e-5)
    correct("12.2")


def check_12_3(answer) -> None:
    """answer: the token indices of the KEEP proposals kept, highest score first."""
    if unanswered("12.3", answer):
        return
    boxes = torch.zeros(1, len(SCORES), 4)
    indices, _ = top_proposals(torch.tensor([SCORES]), boxes, KEEP)
    assert_equal("12.3", list(answer), indices[0].tolist(), "the kept tokens")
    correct("12.3")
