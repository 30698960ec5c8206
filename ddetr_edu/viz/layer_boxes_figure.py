"""Chapter 6's Figure 6.1: a query's box after every decoder layer (iterative refinement).

:func:`plot_layer_boxes` returns a matplotlib Figure (no pyplot state): the whole image with every
shown query's reference point and its box after each layer, then close-ups of a few queries.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

LAYER_STYLES = (dict(color="#00e5ff", ls="-"), dict(color="#ffd400", ls="--"), dict(color="#ff3df5", ls=":"))


def _draw_layers(ax: Axes, point: torch.Tensor, boxes: torch.Tensor, label: str | None) -> None:
    """point (2,) pixels; boxes (D, 4) xyxy pixels, one per layer."""
    ax.scatter([float(point[0])], [float(point[1])], s=40, color="white", edgecolor="black", zorder=5)
    for d, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2, **LAYER_STYLES[d % len(LAYER_STYLES)]))
    if label is not None:
        ax.text(float(boxes[0, 0]) + 1, float(boxes[0, 1]) + 1, label, color="white", fontsize=8, va="top",
                clip_on=True, bbox=dict(facecolor="black", alpha=0.7, pad=1, lw=0))


def plot_layer_boxes(picture: np.ndarray, points: torch.Tensor, boxes: torch.Tensor, queries: Sequence[int],
                     zoomed: Sequence[int]) -> Figure:
    """picture (H, W, 3); points (Q', 2) the shown queries' first reference points and boxes
    (D, Q', 4) their xyxy boxes after each of the D layers, both in pixels; queries (Q',) their
    numbers (labels); zoomed: indices into the shown queries that get a close-up each."""
    height, width = picture.shape[:2]
    layers = boxes.shape[0]
    moves = (boxes[1:] - boxes[:-1]).abs().amax(-1)                 # (D-1, Q') largest corner move, px
    figure = Figure(figsize=(15, 5), layout="constrained")
    axes = figure.subplots(1, 1 + len(zoomed), gridspec_kw=dict(width_ratios=[1.6] + [1] * len(zoomed)))
    overview = axes[0]
    overview.imshow(picture, extent=(0, width, height, 0))
    overview.set(xlim=(0, width), ylim=(height, 0))
    for i, q in enumerate(queries):
        _draw_layers(overview, points[i], boxes[:, i], f"q{q}")
    overview.set_title(f"{len(queries)} queries: reference point (white dot), box of each layer")
    for ax, i in zip(axes[1:], zoomed):
        ax.imshow(picture, extent=(0, width, height, 0))
        _draw_layers(ax, points[i], boxes[:, i], None)
        lo, hi = boxes[:, i, :2].amin(0), boxes[:, i, 2:].amax(0)
        pad = 0.15 * float((hi - lo).max())
        ax.set(xlim=(float(lo[0]) - pad, float(hi[0]) + pad), ylim=(float(hi[1]) + pad, float(lo[1]) - pad))
        ax.set_title(f"zoom on q{queries[i]}: moves {float(moves[:, i].sum()):.1f} px")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], lw=2, **LAYER_STYLES[d % len(LAYER_STYLES)], label=f"layer {d + 1}") for d in range(layers)]
    figure.legend(handles=handles, loc="outside lower center", ncol=layers, frameon=False, fontsize=10)
    return figure
