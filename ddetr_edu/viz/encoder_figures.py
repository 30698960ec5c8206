"""The encoder's view: where one pixel of the feature maps looks, on every level.

Every encoder token (pixel (i, j) of level l) is a query whose reference is its own centre; it
samples K points per head on each of the L levels. We pick the token under a chosen image
point (default: the centres of the shown detections, smallest box first) on level
``query_level``, keep each token once, and draw, one panel per level, the points it samples
there; colour, size and opacity say A / max A of that token (over all levels).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import encoder_token, points_to_pixels, token_centre
from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD, DUPLICATE_IOU, select_detections
from ddetr_edu.viz.drawing import (TOKEN_SCALE, class_text, draw_reference, draw_sampling_points, level_legend,
                                   no_detection_figure, picture_array, show_picture, weight_colorbar)
from ddetr_edu.viz.sampling_points import encoder_points, relative_weights


def tokens_for_points(attention: ImageAttention, points: Tensor, query_level: int) -> list[int]:
    """Encoder token of level ``query_level`` under each valid-normalised point of (P, 2)."""
    attention.check_level(query_level)
    return [encoder_token(p, query_level, attention.spatial_shapes, attention.level_start_index,
                          attention.valid_ratios) for p in points]


def distinct_tokens(tokens: Sequence[int]) -> list[int]:
    """``tokens`` with repeats removed, first occurrence kept, order otherwise unchanged."""
    return list(dict.fromkeys(int(t) for t in tokens))


def detection_probes(attention: ImageAttention, query_level: int = 0, top_k: int = 5,
                     score_threshold: float = DEFAULT_SCORE_THRESHOLD, duplicate_iou: float = DUPLICATE_IOU,
                     ) -> list[tuple[int, int]]:
    """(token, query) pairs: the token of level ``query_level`` under the centre of each shown
    detection (:func:`select_detections`), smallest box first; a token under two detections'
    centres appears once (with the smaller detection)."""
    queries = select_detections(attention, top_k, score_threshold, duplicate_iou)
    boxes = attention.layer_boxes[-1, queries]  # (k, 4) cxcywh
    queries = queries[torch.argsort(boxes[:, 2] * boxes[:, 3], stable=True)]  # smallest area first
    tokens = tokens_for_points(attention, attention.layer_boxes[-1, queries, :2], query_level)
    pairs = {}
    for token, query in zip(tokens, queries.tolist()):
        pairs.setdefault(token, query)
    return list(pairs.items())


def draw_encoder_token(ax: Axes, picture, attention: ImageAttention, token: int, layer: int = -1,
                       head: int | None = None, levels: Sequence[int] | None = None) -> None:
    """Draw token ``token``'s sampling points on ``levels`` (default all) over ``picture``; the
    weights are divided by the token's largest weight over all levels (of the heads shown)."""
    h, w = show_picture(ax, picture, fade=True)
    e = attention.layer_index(layer, encoder=True)
    levels = list(range(attention.num_levels)) if levels is None else list(levels)
    pixels, weights = encoder_points(attention, token, e, head, (h, w))  # (L, P, 2), (L, P)
    query_level, centre = token_centre(token, attention.spatial_shapes, attention.level_start_index,
                                       attention.valid_ratios)
    draw_reference(ax, points_to_pixels(centre, (h, w)))
    draw_sampling_points(ax, pixels, relative_weights(weights), levels)
    shown = ", ".join(str(l) for l in levels)
    ax.set_title(f"encoder layer {e + 1}, token {token} of level {query_level}; samples on level {shown}",
                 fontsize=7)


def plot_encoder_sampling(image, attention: ImageAttention, points: Tensor | None = None, layer: int = -1,
                          head: int | None = None, query_level: int = 0, top_k: int = 5,
                          score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                          class_names: Sequence[str] | None = None, duplicate_iou: float = DUPLICATE_IOU) -> Figure:
    """Rows: distinct tokens under the image points (P, 2) valid-normalised (default: the shown
    detections' centres, smallest first; when no detection is left, the picture says so);
    columns: levels."""
    picture = picture_array(image)
    e = attention.layer_index(layer, encoder=True)
    attention.check_head(head)
    if points is None:
        probes = detection_probes(attention, query_level, top_k, score_threshold, duplicate_iou)
        if not probes:
            return no_detection_figure(picture, score_threshold)
        rows = [(token, f"under {class_text(int(attention.labels[q]), float(attention.scores[q]), class_names)}")
                for token, q in probes]
    else:
        points = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
        rows = [(token, "") for token in distinct_tokens(tokens_for_points(attention, points, query_level))]
    levels = attention.num_levels
    aspect = picture.shape[0] / picture.shape[1]
    figure = Figure(figsize=(2.9 * levels + 1.4, 2.9 * aspect * len(rows) + 0.5), layout="constrained")
    grid = figure.subplots(len(rows), levels, squeeze=False)
    for row, (token, caption) in enumerate(rows):
        for level in range(levels):
            ax = grid[row, level]
            draw_encoder_token(ax, picture, attention, token, e, head, [level])
            shape = attention.spatial_shapes[level].tolist()
            ax.set_title(f"samples on level {level} ({shape[0]}x{shape[1]})" if row == 0 else "", fontsize=8)
        grid[row, 0].set_ylabel(f"token {token} (level {query_level})\n{caption}".strip(), fontsize=8)
    level_legend(grid[0, 0], range(levels), attention.spatial_shapes)
    weight_colorbar(figure, grid.ravel().tolist(), TOKEN_SCALE)
    heads = "all heads" if head is None else f"head {head}"
    figure.suptitle(f"encoder sampling points of the feature-map pixels under + (layer {e + 1}, {heads})",
                    fontsize=9)
    return figure


__all__ = ["tokens_for_points", "distinct_tokens", "detection_probes", "draw_encoder_token",
           "plot_encoder_sampling"]
