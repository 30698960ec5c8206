"""Valid ratios, encoder reference points and two-stage proposals on hand-made masks."""
from __future__ import annotations

import math

import torch

from ddetr_edu.models.encoder import encoder_reference_points, valid_ratios
from ddetr_edu.models.two_stage import encoder_proposals, proposal_position_embedding, top_proposals
from ddetr_edu.ops import Levels


def _mask(h, w, valid_h, valid_w):
    mask = torch.ones(1, h, w, dtype=torch.bool)
    mask[:, :valid_h, :valid_w] = False
    return mask


def test_valid_ratios_are_w_then_h():
    ratios = valid_ratios(torch.cat([_mask(4, 8, 4, 8), _mask(4, 8, 2, 6)]))
    assert ratios.tolist() == [[1.0, 1.0], [0.75, 0.5]]


def test_reference_points_are_pixel_centres_without_padding():
    ratios = torch.ones(1, 2, 2)
    ref = encoder_reference_points(Levels([(2, 4), (1, 2)]), ratios)  # (1, S=10, L=2, 2)
    assert ref.shape == (1, 10, 2, 2)
    # level 0, pixel (row 1, col 2): centre ((2 + 0.5) / 4, (1 + 0.5) / 2)
    assert torch.allclose(ref[0, 6, 0], torch.tensor([0.625, 0.75]))
    # the same point is used on every level
    assert torch.equal(ref[..., 0, :], ref[..., 1, :])


def test_reference_points_with_padding_map_valid_area_to_each_level():
    # image valid on the left half of level 0 (4 of 8 columns) and on 1 of 2 columns of level 1
    ratios = torch.tensor([[[0.5, 1.0], [0.5, 1.0]]])
    ref = encoder_reference_points(Levels([(1, 8), (1, 2)]), ratios)
    # level-0 pixel 1: centre 1.5 of the 4 valid columns -> 0.375 of the valid area,
    # -> 0.1875 of the padded map of every level
    assert torch.allclose(ref[0, 1, :, 0], torch.tensor([0.1875, 0.1875]))


def test_proposals_are_inf_on_padding_and_sized_by_level():
    mask = torch.cat([_mask(4, 4, 4, 2).flatten(1), _mask(2, 2, 2, 1).flatten(1)], dim=1)  # (1, 20)
    memory = torch.randn(1, 20, 8)
    zeroed, unact = encoder_proposals(memory, mask, Levels([(4, 4), (2, 2)]))
    invalid = torch.isinf(unact).all(-1)
    assert invalid[0, mask[0]].all()  # every padded token is invalid
    assert (zeroed[invalid] == 0).all() and torch.equal(zeroed[~invalid], memory[~invalid])
    boxes = unact.sigmoid()
    # level 0, row 0, col 0: centre (0.5 / 2 valid columns, 0.5 / 4 rows), size 0.05
    assert torch.allclose(boxes[0, 0], torch.tensor([0.25, 0.125, 0.05, 0.05]), atol=1e-6)
    # level 1 token (0, 0): size 0.1, centre x 0.5 / 1 = 0.5
    assert torch.allclose(boxes[0, 16], torch.tensor([0.5, 0.25, 0.1, 0.1]), atol=1e-6)


def test_proposal_code_interleaves_sin_cos_per_coordinate():
    boxes = torch.zeros(1, 1, 4)  # sigmoid(0) = 0.5 -> angle pi for every coordinate
    code = proposal_position_embedding(boxes, num_feats=8)
    assert code.shape == (1, 1, 32)
    first = code[0, 0, :8]  # cx: sin(pi / 1), cos(pi / 1), sin(pi / T^(1/4)), ...
    assert abs(first[0].item()) < 1e-6 and math.isclose(first[1].item(), -1.0, abs_tol=1e-6)
    assert torch.equal(code[0, 0, :8], code[0, 0, 8:16])  # same value, same code


def test_top_proposals_pick_highest_scores():
    scores = torch.tensor([[0.1, 5.0, -1.0, 3.0]])
    boxes = torch.arange(16.0).view(1, 4, 4)
    idx, chosen = top_proposals(scores, boxes, 2)
    assert idx.tolist() == [[1, 3]] and torch.equal(chosen[0, 1], boxes[0, 3])
