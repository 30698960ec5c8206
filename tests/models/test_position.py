"""2-D sine positional encoding: shape, hand-computed values, padding invariance."""
from __future__ import annotations

import math

import pytest
import torch

from ddetr_edu.models.position import PositionEmbeddingSine, build_position_encoding, sine_position_encoding


def test_shape_and_dtype():
    pos = build_position_encoding(256)(torch.zeros(2, 5, 7, dtype=torch.bool))
    assert tuple(pos.shape) == (2, 256, 5, 7) and pos.dtype == torch.float32


def test_hand_computed_values():
    # 2 x 3 valid image, F = 4 features per axis: frequencies T^(2 floor(i/2)/4) = 1, 1, 100, 100
    pos = sine_position_encoding(torch.zeros(1, 2, 3, dtype=torch.bool), num_pos_feats=4)
    # pixel (row 0, column 1): y = (1 - 0.5) / 2 * 2pi = pi/2,  x = (2 - 0.5) / 3 * 2pi = pi
    y, x = math.pi / 2, math.pi
    expected = [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100),   # y code first
                math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)]   # then x code
    torch.testing.assert_close(pos[0, :, 0, 1], torch.tensor(expected), atol=2e-6, rtol=0)
    # the last column sits at x = (3 - 0.5) / 3 * 2pi = 5pi/3: sin channel 4 = sin(5pi/3)
    assert pos[0, 4, 1, 2].item() == pytest.approx(math.sin(5 * math.pi / 3), abs=2e-6)


def test_depends_only_on_the_valid_area():
    small = torch.zeros(1, 4, 6, dtype=torch.bool)
    padded = torch.ones(1, 6, 8, dtype=torch.bool)
    padded[:, :4, :6] = False  # the same 4 x 6 image inside a padded 6 x 8 batch tensor
    full = torch.zeros(1, 6, 8, dtype=torch.bool)
    pe = PositionEmbeddingSine(num_pos_feats=16)
    p_small, p_padded, p_full = pe(small), pe(padded), pe(full)
    # normalisation by the valid height/width: the valid part equals the unpadded image's code ...
    torch.testing.assert_close(p_padded[..., :4, :6], p_small, atol=1e-6, rtol=0)
    # ... and differs from the top-left of an unpadded 6 x 8 image
    assert (p_padded[..., :4, :6] - p_full[..., :4, :6]).abs().max() > 0.1


def test_unnormalised_counts_and_values_in_range():
    pos = sine_position_encoding(torch.zeros(1, 3, 3, dtype=torch.bool), num_pos_feats=2, normalize=False)
    # one frequency (1): channel 0 = sin(row count), channel 2 = sin(column count), counts 1..3
    torch.testing.assert_close(pos[0, 0, :, 0], torch.sin(torch.tensor([1.0, 2.0, 3.0])))
    torch.testing.assert_close(pos[0, 3, 0, :], torch.cos(torch.tensor([1.0, 2.0, 3.0])))
    assert pos.abs().max() <= 1


def test_bad_input():
    with pytest.raises(ValueError, match="mask: expected a bool tensor of shape"):
        sine_position_encoding(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="mask: expected a bool tensor of shape"):
        sine_position_encoding(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_pos_feats"):
        PositionEmbeddingSine(num_pos_feats=3)
    with pytest.raises(ValueError, match="d_model"):
        build_position_encoding(30)
