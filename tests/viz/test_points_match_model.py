"""The points the figures draw are the points the model sampled.

The expected pixels are recomputed here by hand from the attention module's own Linear layers
(``sampling_offsets``, ``attention_weights``) and the reference points it received (caught with
a forward hook), with the paper's formulas:

    points:  p = ref + dp / (W_l, H_l)           boxes:  p = ref_xy + dp / K * ref_wh / 2
    A = softmax over the L*K logits of each head

then converted to pixels of a picture of another size than the model input (normalised
coordinates do not change under resizing). The figure is read back: each level's scatter
(gid ``sampling-level-<l>``) holds the drawn pixels (offsets) and weights (colour array).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viz_models import tiny_detector
from ddetr_edu.viz.attention import compute_attention
from ddetr_edu.viz.coordinates import token_centre
from ddetr_edu.viz.decoder_figures import plot_decoder_sampling
from ddetr_edu.viz.encoder_figures import plot_encoder_sampling

IMAGE_HW = (64, 96)  # model input (h, w)
PICTURE_HW = (128, 192)  # the picture drawn on: the "original" image, twice the input size


def _capture(module):
    """Forward hook storing the query and reference points a deformable attention module received."""
    seen = {}

    def hook(_, args, kwargs, output):
        seen["query"], seen["reference"], seen["shapes"] = args[0].detach(), args[1].detach(), args[3]

    handle = module.register_forward_hook(hook, with_kwargs=True)
    return seen, handle


def _by_hand(module, seen):
    """Locations (N, Lq, M, L, K, 2) and weights (N, Lq, M, L, K), from the module's layers."""
    m, l, k = module.n_heads, module.n_levels, module.n_points
    query, ref = seen["query"], seen["reference"]
    n, lq = query.shape[:2]
    with torch.no_grad():
        offsets = module.sampling_offsets(query).view(n, lq, m, l, k, 2)
        weights = module.attention_weights(query).view(n, lq, m, l * k).softmax(-1).view(n, lq, m, l, k)
    ref = ref[:, :, None, :, None, :]  # (N, Lq, 1, L, 1, 2|4)
    if ref.shape[-1] == 2:
        size = torch.tensor([[w, h] for h, w in seen["shapes"]], dtype=torch.float32)  # (L, 2) (W, H); shapes: ((H, W), ...) ints
        locations = ref + offsets / size[None, None, None, :, None, :]
    else:
        locations = ref[..., :2] + offsets / k * ref[..., 2:] * 0.5
    return locations, weights


def _drawn(axes, levels):
    """Per level: (offsets (P, 2), relative weights (P,)) read back from the panel's scatters."""
    found = {c.get_gid(): c for c in axes.collections}
    return [(np.asarray(found[f"sampling-level-{l}"].get_offsets()), np.asarray(found[f"sampling-level-{l}"].get_array()))
            for l in levels]


def _same_points(offsets, drawn_weights, expected, expected_w):
    """The drawn points are the expected ones, in any order (they are drawn weakest first)."""
    drawn = np.column_stack([offsets, drawn_weights])
    wanted = np.column_stack([expected, expected_w])
    drawn, wanted = drawn[np.lexsort(drawn[:, :2].T)], wanted[np.lexsort(wanted[:, :2].T)]
    np.testing.assert_allclose(drawn[:, :2], wanted[:, :2], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(drawn[:, 2], wanted[:, 2], rtol=1e-5, atol=1e-6)


def _panels(figure):
    return [ax for ax in figure.axes if any((c.get_gid() or "").startswith("sampling-level-") for c in ax.collections)]


@pytest.mark.parametrize("two_stage", [False, True], ids=["point_refs", "box_refs"])
@pytest.mark.parametrize("head", [None, 1], ids=["all_heads", "head1"])
def test_decoder_points_drawn_are_the_models(two_stage, head):
    model = tiny_detector(two_stage)
    module = model.transformer.decoder.layers[-1].cross_attn
    seen, handle = _capture(module)
    image = torch.randn(1, 3, *IMAGE_HW)
    attention = compute_attention(model, image)[0]
    handle.remove()
    locations, weights = _by_hand(module, seen)  # (1, Q, M, L, K, 2), (1, Q, M, L, K)
    assert seen["reference"].shape[-1] == (4 if two_stage else 2)
    h, w = PICTURE_HW
    pixels = locations[0] * torch.tensor([w, h])  # one unpadded image: x * W, y * H

    queries = [3, 0]
    picture = np.zeros((h, w, 3), dtype=np.uint8)
    figure = plot_decoder_sampling(picture, attention, queries=queries, layer=-1, head=head)
    panels = _panels(figure)
    assert len(panels) == len(queries)
    heads = range(module.n_heads) if head is None else [head]
    for ax, q in zip(panels, queries):
        top = weights[0, q][list(heads)].max()  # colours: weight / the query's largest weight shown
        for level, (offsets, drawn_weights) in enumerate(_drawn(ax, range(module.n_levels))):
            expected = pixels[q][list(heads), level].reshape(-1, 2).numpy()  # (M' * K, 2) in (m, k) order
            expected_w = (weights[0, q][list(heads), level] / top).reshape(-1).numpy()
            _same_points(offsets, drawn_weights, expected, expected_w)
        # the points are not all the same place (the test would be weak otherwise)
        assert np.ptp(offsets, axis=0).max() > 1.0


def test_reference_marker_is_the_layers_reference():
    model = tiny_detector(two_stage=True)
    module = model.transformer.decoder.layers[-1].cross_attn
    seen, handle = _capture(module)
    attention = compute_attention(model, torch.randn(1, 3, *IMAGE_HW))[0]
    handle.remove()
    h, w = PICTURE_HW
    figure = plot_decoder_sampling(np.zeros((h, w, 3), dtype=np.uint8), attention, queries=[2])
    (ax,) = _panels(figure)
    (marker,) = [c for c in ax.collections if c.get_gid() == "reference"]
    # the last layer's box reference is the previous layer's box (iterative refinement)
    expected = seen["reference"][0, 2, 0, :2] * torch.tensor([w, h])  # single image: valid ratio 1
    np.testing.assert_allclose(np.asarray(marker.get_offsets())[0], expected.numpy(), atol=1e-4)


def test_encoder_points_drawn_are_the_models():
    model = tiny_detector(two_stage=False, seed=1)
    module = model.transformer.encoder.layers[-1].self_attn
    seen, handle = _capture(module)
    attention = compute_attention(model, torch.randn(1, 3, *IMAGE_HW))[0]
    handle.remove()
    locations, weights = _by_hand(module, seen)  # (1, S, M, L, K, 2)
    h, w = PICTURE_HW
    pixels = locations[0] * torch.tensor([w, h])
    token = int(attention.level_start_index[1]) + 5  # a pixel of level 1
    _, centre = token_centre(token, attention.spatial_shapes, attention.level_start_index, attention.valid_ratios)
    figure = plot_encoder_sampling(np.zeros((h, w, 3), dtype=np.uint8), attention, points=centre[None],
                                   query_level=1)
    panels = _panels(figure)
    assert len(panels) == module.n_levels  # one row (one pixel), one panel per level
    top = weights[0, token].max()  # colours: weight / the token's largest weight (all levels)
    for level, ax in enumerate(panels):
        ((offsets, drawn_weights),) = _drawn(ax, [level])
        _same_points(offsets, drawn_weights, pixels[token, :, level].reshape(-1, 2).numpy(),
                     (weights[0, token, :, level] / top).reshape(-1).numpy())
    # the + marks the token's own reference point, the centre of its cell
    ref_px = seen["reference"][0, token, 0] * torch.tensor([w, h])
    (marker,) = [c for c in panels[0].collections if c.get_gid() == "reference"]
    np.testing.assert_allclose(np.asarray(marker.get_offsets())[0], ref_px.numpy(), atol=1e-4)
