"""Iterative refinement: the reference box after each decoder layer.

Layer d predicts b^d = sigma(MLP_d(t^d) + sigma^-1(r^d)); with refinement the next reference is
r^(d+1) = b^d (detached). The picture shows, per detection, the first reference (a cross, and a
dashed box for two-stage box references) and the box of every layer, thicker for later layers.
"""
from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import boxes_to_pixels, points_to_pixels, reference_point
from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD, DUPLICATE_IOU, select_detections
from ddetr_edu.viz.drawing import (BOX_COLOURS, class_text, draw_box, draw_reference, no_detection_figure,
                                   picture_array, separate_labels, show_picture)


def draw_refinement(ax: Axes, picture, attention: ImageAttention, queries: Sequence[int],
                    class_names: Sequence[str] | None = None) -> None:
    """Per query: first reference, then the box after each decoder layer (thin -> thick)."""
    h, w = show_picture(ax, picture)
    layers = attention.num_decoder_layers
    for i, q in enumerate(queries):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        first = attention.decoder_references[0, q]  # (2,) or (4,)
        if first.shape[-1] == 4:
            draw_box(ax, boxes_to_pixels(first, (h, w)), colour, dashed=True, width=0.8)
        draw_reference(ax, points_to_pixels(reference_point(first), (h, w)), size=50)
        for d in range(layers):
            last = d == layers - 1
            label = class_text(int(attention.labels[q]), float(attention.scores[q]), class_names) if last else None
            draw_box(ax, boxes_to_pixels(attention.layer_boxes[d, q], (h, w)), colour,
                     width=0.6 + 1.8 * (d + 1) / layers, label=label, image_size=(h, w))
    ax.set_title(f"reference (+, dashed) and boxes after layers 1..{layers} (thicker = later)", fontsize=8)


def plot_refinement(image, attention: ImageAttention, queries: Tensor | Sequence[int] | None = None,
                    top_k: int = 5, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                    class_names: Sequence[str] | None = None, duplicate_iou: float = DUPLICATE_IOU) -> Figure:
    """One panel: the refinement of ``queries`` (default: :func:`select_detections`; when none is
    left, the picture says so)."""
    picture = picture_array(image)
    if queries is None:
        queries = select_detections(attention, top_k, score_threshold, duplicate_iou)
        if len(queries) == 0:
            return no_detection_figure(picture, score_threshold)
    figure = Figure(figsize=(6, 6 * picture.shape[0] / picture.shape[1] + 0.5), layout="constrained")
    draw_refinement(figure.add_subplot(), picture, attention, [int(q) for q in queries], class_names)
    separate_labels(figure)
    return figure


__all__ = ["draw_refinement", "plot_refinement"]
