"""Pixels from normalised locations, in a padded batch."""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.models import pad_images
from ddetr_edu.viz.attention import compute_attention
from ddetr_edu.viz.coordinates import encoder_token, locations_to_pixels, token_centre
from viz_models import tiny_detector


@pytest.fixture(scope="module")
def padded_batch_attention():
    """A point-reference model with zero sampling offsets, on a batch of two sizes (second padded)."""
    torch.set_num_threads(2)
    model = tiny_detector(two_stage=False)
    with torch.no_grad():
        for layer in model.transformer.decoder.layers:
            layer.cross_attn.sampling_offsets.weight.zero_()
            layer.cross_attn.sampling_offsets.bias.zero_()
    images, masks = pad_images([torch.randn(3, 64, 96), torch.randn(3, 40, 56)])
    return compute_attention(model, images, masks), images.shape[-2:]


def test_zero_offsets_land_on_the_reference_in_every_level_also_when_padded(padded_batch_attention):
    attentions, padded_hw = padded_batch_attention
    second = attentions[1]
    assert (second.valid_ratios[0] < 1).all()  # the second image is padded (finest level)
    h, w = 80, 112  # its picture at twice the input size (40 x 56)
    pixels = locations_to_pixels(second.decoder_locations[-1], second.valid_ratios, (h, w))  # (Q, M, L, K, 2)
    expected = second.decoder_references[-1] * torch.tensor([w, h])  # (Q, 2)
    assert torch.allclose(pixels, expected[:, None, None, None, :].expand_as(pixels), atol=1e-3)
    # the naive x * W_padded would misplace the points of a padded image
    naive = second.decoder_locations[-1] * torch.tensor([padded_hw[1], padded_hw[0]]) * 2
    assert not torch.allclose(naive, expected[:, None, None, None, :].expand_as(naive), atol=1.0)


def test_unpadded_image_is_x_times_w(padded_batch_attention):
    first = padded_batch_attention[0][0]
    assert torch.equal(first.valid_ratios, torch.ones_like(first.valid_ratios))
    loc = first.decoder_locations[-1]
    assert torch.allclose(locations_to_pixels(loc, first.valid_ratios, (64, 96)), loc * torch.tensor([96.0, 64.0]))


def test_encoder_token_and_centre_are_inverse(padded_batch_attention):
    second = padded_batch_attention[0][1]
    shapes, starts, ratios = second.spatial_shapes, second.level_start_index, second.valid_ratios
    for level in range(len(shapes)):
        valid_h = round(float(ratios[level, 1]) * int(shapes[level, 0]))
        valid_w = round(float(ratios[level, 0]) * int(shapes[level, 1]))
        for row in range(valid_h):
            for col in range(valid_w):
                token = int(starts[level]) + row * int(shapes[level, 1]) + col
                found_level, centre = token_centre(token, shapes, starts, ratios)
                assert found_level == level
                assert encoder_token(centre, level, shapes, starts, ratios) == token
    # a point outside the image snaps to the nearest valid cell
    assert encoder_token(torch.tensor([1.5, -0.2]), 0, shapes, starts, ratios) == int(starts[0]) + (
        round(float(ratios[0, 0]) * int(shapes[0, 1])) - 1)


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="valid_ratios"):
        locations_to_pixels(torch.zeros(2, 4, 3, 2), torch.ones(3, 2), (10, 10))
    with pytest.raises(ValueError, match="locations"):
        locations_to_pixels(torch.zeros(4, 3), torch.ones(4, 2), (10, 10))
