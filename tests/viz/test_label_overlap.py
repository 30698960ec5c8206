"""Box labels never hide each other: overlapping detections get labels that do not intersect
in display pixels, inside the picture, in the summary and refinement figures."""
from __future__ import annotations

import itertools

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ddetr_edu.viz.drawing import BOX_LABEL_GID, draw_box, separate_labels, show_picture
from ddetr_edu.viz.refinement_figures import plot_refinement
from ddetr_edu.viz.summary import plot_summary
from test_readable_figures import PICTURE, _with_detections, attention  # noqa: F401 (fixture)

# cxcywh: four boxes whose top-left corners (where the labels go) nearly coincide
OVERLAPPING = [[0.30, 0.40, 0.30, 0.40], [0.31, 0.41, 0.30, 0.40], [0.32, 0.39, 0.28, 0.42], [0.70, 0.40, 0.5, 0.5]]


def _label_extents(figure: Figure):
    """Per axes: the labels' coloured patches in display pixels, and the axes' box."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    for ax in figure.axes:
        labels = [t for t in ax.texts if t.get_gid() == BOX_LABEL_GID]
        if labels:
            yield ax.get_window_extent(renderer), [t.get_bbox_patch().get_window_extent(renderer) for t in labels]


def _assert_apart_and_inside(figure: Figure, expected_labels: int) -> None:
    counted = 0
    for inside, patches in _label_extents(figure):
        counted = max(counted, len(patches))
        for a, b in itertools.combinations(patches, 2):
            assert not a.overlaps(b), (a, b)
        for patch in patches:
            assert inside.y0 - 1 <= patch.y0 and patch.y1 <= inside.y1 + 1, (patch, inside)
    assert counted == expected_labels


def test_labels_of_boxes_drawn_on_top_of_each_other_are_moved_apart():
    figure = Figure(figsize=(3.0, 2.0), dpi=110)
    ax = figure.add_subplot()
    show_picture(ax, PICTURE)
    for k, colour in enumerate(["tab:orange", "tab:cyan", "tab:green"]):
        draw_box(ax, torch.tensor([20.0 + k, 20.0 + k, 50.0, 50.0]), colour, label=f"star 0.{9 - k}3")
    overlapping = list(_label_extents(figure))[0][1]
    assert overlapping[0].overlaps(overlapping[1])  # where draw_box puts them
    first = ax.texts[0].get_position()
    separate_labels(figure)
    _assert_apart_and_inside(figure, 3)
    assert ax.texts[0].get_position() == first  # the first (strongest) label keeps its place


@pytest.mark.parametrize("plot", [plot_summary, plot_refinement])
def test_the_visualizers_labels_never_overlap(attention, plot):
    scene = _with_detections(attention, boxes=OVERLAPPING, scores=[0.59, 0.43, 0.41, 0.9], labels=[4, 3, 1, 0])
    figure = plot(PICTURE, scene, class_names=["circle", "square", "triangle", "star", "cross"])
    _assert_apart_and_inside(figure, 4)
