"""The decoder's view of a detection, as the paper's Figure 6.

For a detection (query q) and a decoder layer: the predicted box, the reference the layer used
(its point, and for box references the dashed box), and every sampling point

    p_mlqk = phi_l(p_q) + dp_mlqk          (weight A_mlqk, softmax over the L*K points of head m)

coloured by its weight, one marker per level. ``head=None`` shows all M heads together.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import boxes_to_pixels, points_to_pixels, reference_point
from ddetr_edu.viz.drawing import (BOX_COLOURS, class_text, draw_box, draw_reference, draw_sampling_points,
                                   level_legend, no_detection_figure, picture_array, show_picture,
                                   weight_colorbar, weight_norm)
from ddetr_edu.viz.sampling_points import decoder_points


def draw_decoder_query(ax: Axes, picture, attention: ImageAttention, query: int, layer: int = -1,
                       head: int | None = None, levels: Sequence[int] | None = None,
                       norm: Normalize | None = None, class_names: Sequence[str] | None = None,
                       colour: str = BOX_COLOURS[0]) -> Normalize:
    """Draw one query's sampling on ``ax`` over ``picture`` (H, W, 3); returns the colour scale used."""
    h, w = show_picture(ax, picture)
    d = attention.layer_index(layer)
    levels = list(range(attention.num_levels)) if levels is None else list(levels)
    for level in levels:
        attention.check_level(level)
    pixels, weights = decoder_points(attention, query, d, head, (h, w))  # (L, P, 2), (L, P)
    norm = norm or weight_norm(weights[levels])
    score, label = float(attention.scores[query]), int(attention.labels[query])
    draw_box(ax, boxes_to_pixels(attention.layer_boxes[-1, query], (h, w)), colour,
             label=class_text(label, score, class_names))
    reference = attention.decoder_references[d, query]  # (2,) or (4,)
    if reference.shape[-1] == 4:
        draw_box(ax, boxes_to_pixels(reference, (h, w)), "white", dashed=True, width=1.0)
    draw_reference(ax, points_to_pixels(reference_point(reference), (h, w)))
    draw_sampling_points(ax, pixels, weights, norm, levels)
    heads = "all heads" if head is None else f"head {head}"
    ax.set_title(f"query {query}, decoder layer {d + 1}/{attention.num_decoder_layers}, {heads}", fontsize=8)
    return norm


def plot_decoder_sampling(image, attention: ImageAttention, queries: Tensor | Sequence[int] | None = None,
                          layer: int = -1, head: int | None = None, top_k: int = 5,
                          score_threshold: float = 0.0, class_names: Sequence[str] | None = None,
                          columns: int = 3) -> Figure:
    """One panel per query (default: the ``top_k`` detections scoring >= ``score_threshold``).

    image: the picture (PIL, (H, W, 3) array); attention: from ``attention_from_outputs``.
    """
    picture = picture_array(image)
    if queries is None:
        queries = attention.top_queries(top_k, score_threshold)
    queries = [int(q) for q in queries]
    d = attention.layer_index(layer)
    attention.check_head(head)
    if not queries:
        return no_detection_figure(picture, score_threshold)
    columns = min(columns, len(queries))
    rows = math.ceil(len(queries) / columns)
    figure = Figure(figsize=(3.6 * columns + 1.0, 3.6 * rows), layout="constrained")
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(len(queries))]
    # one colour scale for the whole figure
    shown = [decoder_points(attention, q, d, head, picture.shape[:2])[1] for q in queries]
    norm = weight_norm(*shown)
    for i, (ax, q) in enumerate(zip(axes, queries)):
        draw_decoder_query(ax, picture, attention, q, d, head, norm=norm, class_names=class_names,
                           colour=BOX_COLOURS[i % len(BOX_COLOURS)])
    level_legend(axes[0], range(attention.num_levels), attention.spatial_shapes)
    weight_colorbar(figure, axes, norm)
    figure.suptitle("decoder sampling points (marker = level, colour = weight, + = reference)", fontsize=9)
    return figure


__all__ = ["draw_decoder_query", "plot_decoder_sampling"]
