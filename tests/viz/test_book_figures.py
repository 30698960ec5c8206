"""The book's figure functions moved out of the chapters (Figures 1.1, 3.1, 6.1, 12.2) draw what
their captions say: the right number of panels, of boxes, points, labels and guide lines, and the
numbers on them are the library's."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import Rectangle

from ddetr_edu.ops.bilinear import bilinear_corners
from ddetr_edu.viz.cost_figures import plot_cost_measurements
from ddetr_edu.viz.denoising_figure import plot_denoising_queries
from ddetr_edu.viz.layer_boxes_figure import plot_layer_boxes
from ddetr_edu.viz.padded_corners_figure import plot_padded_corners


def rectangles(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_padded_corners_labels_every_corner_with_its_bilinear_weight():
    picture = np.random.default_rng(0).random((5, 7, 3))
    locations = torch.tensor([[0.30, 0.40], [0.98, 0.10], [-0.40, 0.55]])   # inside, across the border, beyond the ring
    figure = plot_padded_corners(picture, locations, torch.tensor([0.5, 0.3, 0.2]), query=1, head=2)
    left, right = figure.axes
    labels = [float(t.get_text()) for t in right.texts]
    expected = bilinear_corners(locations[:, 0].double(), locations[:, 1].double(), 5, 7).weight   # (K, 4)
    assert labels == pytest.approx([round(float(w), 2) for w in expected.flatten()])
    assert len(right.lines) == 3 + 3 * 4                       # a dot per point, a line per corner
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "point k = 0:  A = 0.500", "point k = 1:  A = 0.300", "point k = 2:  A = 0.200"]
    ring = rectangles(left)[0]
    assert ring.get_hatch() == "//" and (ring.get_width(), ring.get_height()) == (7 + 2, 5 + 2)
    dashed = [line for line in left.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1                                    # only the point beyond the ring is clamped
    assert "query 1, head 2" in right.get_title()


def test_denoising_queries_draw_every_group_and_pair_over_the_ground_truth():
    gt = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])
    labels = torch.tensor([0, 1])
    groups = [(gt + 0.01, torch.tensor([0, 1])), (gt - 0.01, torch.tensor([1, 1]))]   # group 2 flips object 0
    figure = plot_denoising_queries(np.zeros((100, 120, 3)), gt, labels, groups, gt * 1.02, gt * 0.9,
                                    ["circle", "square"], 0.4, 0.2, 0.4, 0.8)
    left, right = figure.axes
    assert len(rectangles(left)) == 2 + 2 * 2 and len(rectangles(right)) == 2 + 2 + 2
    assert sorted(t.get_text() for t in left.texts) == ["circle", "square", "square", "square*"]
    cx, cy, w, h = gt[1].tolist()
    first = rectangles(left)[1]                                # the second ground-truth box, in pixels
    assert first.get_xy() == pytest.approx(((cx - w / 2) * 120, (cy - h / 2) * 100))
    assert first.get_width() == pytest.approx(w * 120) and first.get_height() == pytest.approx(h * 100)
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "ground truth", "positive: reconstruct the box", 'negative: "no object"']
    with pytest.raises(ValueError, match="groups"):
        plot_denoising_queries(np.zeros((10, 10, 3)), gt, labels, groups * 2, gt, gt, ["a", "b"], 0, 0, 0, 0)


def test_cost_measurements_plot_both_methods_and_the_slope_guides():
    tokens = [64, 256, 576, 1024]
    measured = {name: {"time": [1e-4 * (n / 64) ** p for n in tokens], "spread": [1e-6] * 4,
                       "memory": [1e3 * n ** p for n in tokens]} for name, p in (("dense", 2), ("deformable", 1))}
    flops = {"dense": [10.0 * n * n for n in tokens], "deformable": [100.0 * n for n in tokens]}
    figure = plot_cost_measurements(tokens, measured, flops, {"dense": 1e-5, "deformable": 1e-5},
                                    {"dense": [1, 2, 3]}, 5)
    time_ax, memory_ax, flops_ax, speed_ax = figure.axes
    assert sum(isinstance(c, ErrorbarContainer) for c in time_ax.containers) == 2
    circled = [line for line in time_ax.lines if line.get_markersize() == 11]
    assert len(circled) == 1 and list(circled[0].get_xdata()) == tokens[1:]   # only dense was fitted
    for ax in (memory_ax, flops_ax):
        guides = [line for line in ax.lines if line.get_label().startswith("slope")]
        for line, p in zip(guides, (1, 2)):
            x, y = line.get_xdata(), line.get_ydata()
            assert math.log(y[-1] / y[0]) / math.log(x[-1] / x[0]) == pytest.approx(p)
    speeds = [list(line.get_ydata()) for line in speed_ax.lines]
    assert speeds[0] == pytest.approx([f / t / 1e9 for f, t in zip(flops["dense"], measured["dense"]["time"])])


def test_layer_boxes_draw_a_box_per_layer_and_query_and_zoom_on_the_chosen():
    points = torch.tensor([[10.0, 10.0], [40.0, 30.0]])
    boxes = torch.tensor([[[5, 5, 15, 15], [30, 20, 50, 40]], [[6, 5, 16, 15], [31, 22, 52, 41]],
                          [[6, 6, 17, 15], [33, 22, 55, 44]]], dtype=torch.float32)       # (D=3, Q'=2, 4)
    figure = plot_layer_boxes(np.zeros((60, 80, 3)), points, boxes, queries=[4, 9], zoomed=[1])
    overview, zoom = figure.axes
    assert len(rectangles(overview)) == 3 * 2 and len(rectangles(zoom)) == 3
    assert [t.get_text() for t in overview.texts] == ["q4", "q9"]
    assert zoom.get_xlim()[0] < 30 and zoom.get_xlim()[1] > 55 and "q9" in zoom.get_title()
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["layer 1", "layer 2", "layer 3"]
