"""The decoder's view of a detection, as the paper's Figure 6.

For a detection (query q) and a decoder layer: the predicted box, the reference the layer used
(its point, and for box references the dashed box), and every sampling point

    p_mlqk = phi_l(p_q) + dp_mlqk          (weight A_mlqk, softmax over the L*K points of head m)

one marker per level; colour, size and opacity say A_mlqk / max A of this query (over the
points shown), so each panel spans the whole colour scale. ``head=None`` shows all M heads.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import boxes_to_pixels, points_to_pixels, reference_point
from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD, DUPLICATE_IOU, select_detections
from ddetr_edu.viz.drawing import (BOX_COLOURS, QUERY_SCALE, class_text, draw_box, draw_reference,
                                   draw_sampling_points, level_legend, no_detection_figure, picture_array,
                                   show_picture, weight_colorbar)
from ddetr_edu.viz.sampling_points import decoder_points, relative_weights


def draw_decoder_query(ax: Axes, picture, attention: ImageAttention, query: int, layer: int = -1,
                       head: int | None = None, levels: Sequence[int] | None = None,
                       class_names: Sequence[str] | None = None, colour: str = BOX_COLOURS[0]) -> None:
    """Draw one query's sampling points on ``levels`` (default all) over ``picture`` (H, W, 3).

    The weights are divided by the largest weight of the query's points on *all* levels (of the
    heads shown), so panels of one query on different levels compare.
    """
    h, w = show_picture(ax, picture, fade=True)
    d = attention.layer_index(layer)
    levels = list(range(attention.num_levels)) if levels is None else list(levels)
    for level in levels:
        attention.check_level(level)
    pixels, weights = decoder_points(attention, query, d, head, (h, w))  # (L, P, 2), (L, P)
    score, label = float(attention.scores[query]), int(attention.labels[query])
    draw_box(ax, boxes_to_pixels(attention.layer_boxes[-1, query], (h, w)), colour,
             label=class_text(label, score, class_names), image_size=(h, w))
    reference = attention.decoder_references[d, query]  # (2,) or (4,)
    if reference.shape[-1] == 4:
        draw_box(ax, boxes_to_pixels(reference, (h, w)), "white", dashed=True, width=1.0)
    draw_reference(ax, points_to_pixels(reference_point(reference), (h, w)))
    draw_sampling_points(ax, pixels, relative_weights(weights), levels)
    heads = "all heads" if head is None else f"head {head}"
    ax.set_title(f"query {query}, decoder layer {d + 1}/{attention.num_decoder_layers}, {heads}", fontsize=8)


def _chosen_queries(attention: ImageAttention, queries, top_k: int, score_threshold: float,
                    duplicate_iou: float) -> list[int]:
    if queries is None:
        queries = select_detections(attention, top_k, score_threshold, duplicate_iou)
    return [int(q) for q in queries]


def plot_decoder_sampling(image, attention: ImageAttention, queries: Tensor | Sequence[int] | None = None,
                          layer: int = -1, head: int | None = None, top_k: int = 5,
                          score_threshold: float = DEFAULT_SCORE_THRESHOLD, class_names: Sequence[str] | None = None,
                          columns: int = 3, duplicate_iou: float = DUPLICATE_IOU) -> Figure:
    """One panel per query (default: :func:`select_detections`; when none is left, the picture
    says so).

    image: the picture (PIL, (H, W, 3) array); attention: from ``attention_from_outputs``.
    """
    picture = picture_array(image)
    shown = "each query shown" if queries is not None else f"each detection with score >= {score_threshold:g}"
    queries = _chosen_queries(attention, queries, top_k, score_threshold, duplicate_iou)
    d = attention.layer_index(layer)
    attention.check_head(head)
    if not queries:
        return no_detection_figure(picture, score_threshold)
    columns = min(columns, len(queries))
    rows = math.ceil(len(queries) / columns)
    aspect = picture.shape[0] / picture.shape[1]
    figure = Figure(figsize=(3.6 * columns + 1.2, 3.6 * aspect * rows + 0.5), layout="constrained")
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(len(queries))]
    for i, (ax, q) in enumerate(zip(axes, queries)):
        draw_decoder_query(ax, picture, attention, q, d, head, class_names=class_names,
                           colour=BOX_COLOURS[i % len(BOX_COLOURS)])
    level_legend(axes[0], range(attention.num_levels), attention.spatial_shapes)
    weight_colorbar(figure, axes, QUERY_SCALE)
    figure.suptitle(f"decoder sampling points of {shown}\n(marker = level, + = reference point)", fontsize=9)
    return figure


def plot_decoder_levels(image, attention: ImageAttention, queries: Tensor | Sequence[int] | None = None,
                        layer: int = -1, head: int | None = None, top_k: int = 2,
                        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                        class_names: Sequence[str] | None = None, duplicate_iou: float = DUPLICATE_IOU) -> Figure:
    """Rows: queries (default: :func:`select_detections`); columns: the levels, each panel the
    points sampled on that level. One scale per query, across its levels."""
    picture = picture_array(image)
    queries = _chosen_queries(attention, queries, top_k, score_threshold, duplicate_iou)
    d = attention.layer_index(layer)
    attention.check_head(head)
    if not queries:
        return no_detection_figure(picture, score_threshold)
    levels = attention.num_levels
    aspect = picture.shape[0] / picture.shape[1]
    figure = Figure(figsize=(2.9 * levels + 1.2, 2.9 * aspect * len(queries) + 0.5), layout="constrained")
    grid = figure.subplots(len(queries), levels, squeeze=False)
    for row, q in enumerate(queries):
        for level in range(levels):
            ax = grid[row, level]
            draw_decoder_query(ax, picture, attention, q, d, head, [level], class_names,
                               BOX_COLOURS[row % len(BOX_COLOURS)])
            shape = attention.spatial_shapes[level].tolist()
            ax.set_title(f"query {q}: level {level} ({shape[0]}x{shape[1]})", fontsize=8)
    level_legend(grid[0, 0], range(levels), attention.spatial_shapes)
    weight_colorbar(figure, grid.ravel().tolist(), QUERY_SCALE)
    heads = "all heads" if head is None else f"head {head}"
    figure.suptitle(f"decoder layer {d + 1}/{attention.num_decoder_layers}, {heads}: "
                    "the points each detection samples on each level", fontsize=9)
    return figure


__all__ = ["draw_decoder_query", "plot_decoder_levels", "plot_decoder_sampling"]
