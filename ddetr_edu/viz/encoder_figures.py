"""The encoder's view: where one pixel of the feature maps looks, on every level.

Every encoder token (pixel (i, j) of level l) is a query whose reference is its own centre; it
samples K points per head on each of the L levels. We pick the token under a chosen image
point (default: the centres of the top detections) on level ``query_level`` and draw, one
panel per level, the points it samples there, coloured by weight.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import encoder_token, points_to_pixels, token_centre
from ddetr_edu.viz.drawing import (draw_reference, draw_sampling_points, level_legend, no_detection_figure,
                                   picture_array, show_picture, weight_colorbar, weight_norm)
from ddetr_edu.viz.sampling_points import encoder_points


def default_probe_points(attention: ImageAttention, top_k: int = 5, score_threshold: float = 0.0) -> Tensor:
    """(P, 2) valid-normalised centres of the top detections' boxes (P = 0 when none reaches
    ``score_threshold``)."""
    queries = attention.top_queries(top_k, score_threshold)
    return attention.layer_boxes[-1, queries, :2].clone()


def tokens_for_points(attention: ImageAttention, points: Tensor, query_level: int) -> list[int]:
    """Encoder token of level ``query_level`` under each valid-normalised point of (P, 2)."""
    attention.check_level(query_level)
    return [encoder_token(p, query_level, attention.spatial_shapes, attention.level_start_index,
                          attention.valid_ratios) for p in points]


def draw_encoder_token(ax: Axes, picture, attention: ImageAttention, token: int, layer: int = -1,
                       head: int | None = None, levels: Sequence[int] | None = None,
                       norm: Normalize | None = None) -> Normalize:
    """Draw token ``token``'s sampling points on ``levels`` (default all) over ``picture``."""
    h, w = show_picture(ax, picture)
    e = attention.layer_index(layer, encoder=True)
    levels = list(range(attention.num_levels)) if levels is None else list(levels)
    pixels, weights = encoder_points(attention, token, e, head, (h, w))  # (L, P, 2), (L, P)
    norm = norm or weight_norm(weights[levels])
    query_level, centre = token_centre(token, attention.spatial_shapes, attention.level_start_index,
                                       attention.valid_ratios)
    draw_reference(ax, points_to_pixels(centre, (h, w)))
    draw_sampling_points(ax, pixels, weights, norm, levels)
    shown = ", ".join(str(l) for l in levels)
    ax.set_title(f"encoder layer {e + 1}, token of level {query_level}; samples on level {shown}", fontsize=7)
    return norm


def plot_encoder_sampling(image, attention: ImageAttention, points: Tensor | None = None, layer: int = -1,
                          head: int | None = None, query_level: int = 0, top_k: int = 5,
                          score_threshold: float = 0.0) -> Figure:
    """Rows: the image points (P, 2) valid-normalised (default: detection centres; when none
    reaches ``score_threshold``, the picture says so); columns: levels."""
    picture = picture_array(image)
    e = attention.layer_index(layer, encoder=True)
    attention.check_head(head)
    if points is None:
        points = default_probe_points(attention, top_k, score_threshold)
        if len(points) == 0:
            return no_detection_figure(picture, score_threshold)
    tokens = tokens_for_points(attention, torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2),
                               query_level)
    levels = attention.num_levels
    figure = Figure(figsize=(2.9 * levels + 1.0, 2.9 * len(tokens)), layout="constrained")
    grid = figure.subplots(len(tokens), levels, squeeze=False)
    norm = weight_norm(*[encoder_points(attention, t, e, head, picture.shape[:2])[1] for t in tokens])
    for row, token in enumerate(tokens):
        for level in range(levels):
            ax = grid[row, level]
            draw_encoder_token(ax, picture, attention, token, e, head, [level], norm)
            shape = attention.spatial_shapes[level].tolist()
            ax.set_title(f"samples on level {level} ({shape[0]}x{shape[1]})" if row == 0 else "", fontsize=8)
        grid[row, 0].set_ylabel(f"token {token} (level {query_level})", fontsize=8)
    level_legend(grid[0, 0], range(levels), attention.spatial_shapes)
    weight_colorbar(figure, grid.ravel().tolist(), norm)
    heads = "all heads" if head is None else f"head {head}"
    figure.suptitle(f"encoder sampling points of the pixels under + (layer {e + 1}, {heads})", fontsize=9)
    return figure


__all__ = ["default_probe_points", "tokens_for_points", "draw_encoder_token", "plot_encoder_sampling"]
