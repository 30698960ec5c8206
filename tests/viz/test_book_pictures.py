"""The figure functions behind the book's redrawn pictures (4.1, 4.5, 5.2, 6.2, chapter 10's legend):
they draw what their captions say."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ddetr_edu.viz.drawing import LEGEND_POINTS, faded, level_legend
from ddetr_edu.viz.feature_maps import plot_feature_rows, principal_colours
from ddetr_edu.viz.level_codes import same_place_cosine, same_place_pairs
from ddetr_edu.viz.proposal_figures import level_of_tokens, plot_proposals
from ddetr_edu.viz.sampling_star import plot_sampling_star, star_pixels


def _initial_star(h: int, w: int, strides=(8, 16, 32, 64), heads: int = 4, points: int = 2) -> torch.Tensor:
    """(M, L, K, 2) normalised locations of the initial star around the picture's centre."""
    locations = torch.zeros(heads, len(strides), points, 2)
    for m in range(heads):
        angle = 2 * math.pi * m / heads
        direction = torch.tensor([math.cos(angle), math.sin(angle)])
        direction = direction / direction.abs().max()
        for level, stride in enumerate(strides):
            for k in range(points):
                locations[m, level, k] = 0.5 + direction * (k + 1) * stride / torch.tensor([w, h])
    return locations


def test_sampling_star_shows_every_point_and_every_level():
    h, w = 100, 120  # small: the stride-64 points fall outside the picture
    locations = _initial_star(h, w)
    figure = plot_sampling_star(np.full((h, w, 3), 120, np.uint8), locations, torch.full((4, 4, 2), 1 / 8),
                                torch.tensor([0.5, 0.5]), [8, 16, 32, 64], zoom_px=40)
    whole, zoom = figure.axes[:2]
    pixels = star_pixels(locations, (h, w)).reshape(-1, 2)
    (x0, x1), (y1, y0) = whole.get_xlim(), whole.get_ylim()
    assert (pixels[:, 0] > x0).all() and (pixels[:, 0] < x1).all() and (pixels[:, 1] > y0).all() and (pixels[:, 1] < y1).all()
    assert (pixels[:, 0] > w).any(), "the test should have points outside the picture"
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert [l for l in labels if l.startswith("level")] == [f"level {l} (stride {8 * 2 ** l}): 4 heads x 2 points"
                                                           for l in range(4)]
    assert zoom.get_xlim()[1] - zoom.get_xlim()[0] == pytest.approx(40)
    # level 0 is drawn last (on top of the coarser levels and of the reference ring)
    level_zorders = {c.get_label(): c.get_zorder() for c in whole.collections if c.get_label().startswith("level")}
    assert max(level_zorders, key=level_zorders.get).startswith("level 0")


def test_proposal_levels_and_top_panels_in_score_order():
    shapes = [(4, 4), (2, 2), (1, 1)]
    starts = [0, 16, 20, 21]
    assert level_of_tokens(torch.tensor([0, 15, 16, 19, 20]), starts).tolist() == [0, 0, 1, 1, 2]
    anchors = torch.rand(21, 4) * 0.5 + 0.25
    scores = torch.linspace(0, 1, 21)  # the last tokens score highest
    figure = plot_proposals(np.zeros((32, 48, 3), np.uint8), anchors, torch.ones(21, dtype=torch.bool), shapes,
                            anchors, scores, top=4)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title().startswith("#")]
    assert titles == ["#1: level 2, score 1.000", "#2: level 1, score 0.950", "#3: level 1, score 0.900",
                      "#4: level 1, score 0.850"]


def test_principal_colours_of_a_rank_one_map_carry_all_its_variance():
    pattern = torch.linspace(-1, 1, 12).reshape(3, 4)  # (H, W)
    feature = torch.randn(8)[:, None, None] * pattern[None]  # (C, H, W): one direction only
    colours, share = principal_colours(feature[None])
    assert colours.shape == (3, 4, 3) and colours.min() >= 0 and colours.max() <= 1
    assert share == pytest.approx(1.0, abs=1e-9)
    first = colours[..., 0].flatten()
    assert abs(np.corrcoef(first, pattern.flatten().numpy())[0, 1]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="C >= 3"):
        principal_colours(torch.zeros(2, 4, 4))
    figure = plot_feature_rows(np.zeros((16, 16, 3), np.uint8), {"a": [feature[None]] * 2}, [8, 16])
    assert [ax.get_title() for ax in figure.axes[1:3]] == ["C3, stride 8: 3x4, 100%", "C4, stride 16: 3x4, 100%"]


def test_same_place_cosine_pairs_each_coarse_pixel_with_the_fine_pixel_at_its_centre():
    fine = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    under, coarse = same_place_pairs(fine, torch.zeros(2, 2, 2), 4)
    assert under[0].tolist() == [fine[0, 2, 2], fine[0, 2, 6], fine[0, 6, 2], fine[0, 6, 6]]
    assert coarse.shape == (2, 4)
    # a code that depends on the place only: same-place pixels of all levels agree
    def code(size):
        y, x = torch.meshgrid((torch.arange(size) + 0.5) / size, (torch.arange(size) + 0.5) / size, indexing="ij")
        return torch.stack([torch.sin(3 * x), torch.cos(2 * y), x * y + 1])  # (3, size, size)
    codes = [code(16), code(8), code(4)]
    assert torch.allclose(same_place_cosine(codes), torch.ones(3, 3), atol=0.02)
    embedded = same_place_cosine([c + 3 * torch.eye(3)[i][:, None, None] for i, c in enumerate(codes)])
    assert (embedded[~torch.eye(3, dtype=torch.bool)] < 0.9).all() and torch.allclose(embedded.diagonal(), torch.ones(3))


def test_faded_keeps_contrast_and_the_level_legend_is_readable():
    picture = np.zeros((2, 2, 3), np.uint8)
    picture[0, 0] = 255
    grey = faded(picture)
    assert grey.min() == 25 and grey.max() == 210 and (grey[..., 0] == grey[..., 2]).all()
    ax = Figure().subplots()
    level_legend(ax, [0, 1], torch.tensor([[16, 16], [8, 8]]))
    texts = ax.get_legend().get_texts()
    assert LEGEND_POINTS >= 9 and all(t.get_fontsize() == LEGEND_POINTS for t in texts)
    assert [t.get_text() for t in texts] == ["level 0 (16x16)", "level 1 (8x8)"]
