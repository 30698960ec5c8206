"""Two-stage proposals as a picture: the fixed proposal grid of every level, and the top-scoring ones.

Every encoder token proposes a box centred on its pixel with side 0.05 * 2^l of the image (level
l); tokens too near the border (outside (0.01, 0.99)) never propose. :func:`plot_proposals`
draws, on the left, one small panel per level with every centre (a dot, a black x for a centre that
may not propose) and the box of the valid centre nearest the image centre; on the right, one
thumbnail per top-scoring proposal (rank, level and score in its title), so that proposals that
overlap, as the big boxes of the coarse levels do, stay distinguishable.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ddetr_edu.boxes import cxcywh_to_xyxy
from ddetr_edu.viz.drawing import picture_array

PROPOSAL_LEVEL_COLOURS = ("#00e5ff", "#ffd400", "#39ff14", "#ff3df5")  # level 0..3, bright on a photo


def _picture_panel(ax: Axes, array, alpha: float = 1.0) -> tuple[int, int]:
    h, w = array.shape[:2]
    ax.imshow(array, extent=(0, w, h, 0), alpha=alpha)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return h, w


def _box(ax: Axes, box_cxcywh: Tensor, size_wh: Tensor, colour: str, width: float = 2.5) -> None:
    x0, y0, x1, y1 = (cxcywh_to_xyxy(box_cxcywh) * size_wh.repeat(2)).tolist()
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=width, edgecolor=colour))


def level_of_tokens(tokens: Tensor, level_starts: Sequence[int]) -> Tensor:
    """tokens (T,) flat token indices -> (T,) their level, given each level's first token."""
    return torch.bucketize(tokens, torch.tensor(list(level_starts[1:])), right=True)


def plot_proposals(picture, anchors: Tensor, valid: Tensor, spatial_shapes: Sequence[tuple[int, int]],
                   boxes: Tensor, scores: Tensor, top: int = 10) -> Figure:
    """The proposal grid per level (left) and the ``top`` best-scoring proposals (right).

    picture: (h, w) pixels, unpadded; anchors (S, 4) the fixed proposals, cxcywh in [0, 1];
    valid (S,) bool, may propose; spatial_shapes: (H_l, W_l) per level; boxes (S, 4) the proposals
    after the proposal head, cxcywh in [0, 1]; scores (S,) their scores (any monotone scale).
    """
    array = picture_array(picture)
    h, w = array.shape[:2]
    size_wh = torch.tensor([float(w), float(h)])
    starts = [0]
    for h_l, w_l in spatial_shapes:
        starts.append(starts[-1] + h_l * w_l)
    columns = (top + 1) // 2
    figure = Figure(figsize=(4.2 + 1.9 * columns, 5.6), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=(2.1, 0.95 * columns))
    level_axes = left.subplots(2, 2).flatten()
    for level, ax in enumerate(level_axes[:len(spatial_shapes)]):
        _picture_panel(ax, array, alpha=0.6)
        tokens = torch.arange(starts[level], starts[level + 1])
        ok = valid[tokens]
        centres = anchors[tokens, :2] * size_wh  # (H_l W_l, 2) pixels
        dot = min(12.0, 120.0 / spatial_shapes[level][1])  # smaller dots on dense levels
        colour = PROPOSAL_LEVEL_COLOURS[level % len(PROPOSAL_LEVEL_COLOURS)]
        ax.scatter(*centres[ok].T, s=dot, color=colour, edgecolor="black", linewidth=0.5 if dot > 6 else 0.2)
        ax.scatter(*centres[~ok].T, s=14, marker="x", color="black", linewidth=1)
        nearest = tokens[ok][(anchors[tokens[ok], :2] - 0.5).abs().sum(-1).argmin()]
        _box(ax, anchors[nearest], size_wh, colour)
        h_l, w_l = spatial_shapes[level]
        ax.set_title(f"level {level}: {h_l}x{w_l}, side {0.05 * 2 ** level:.2f}", fontsize=9)
    for ax in level_axes[len(spatial_shapes):]:
        ax.axis("off")
    left.suptitle("the fixed proposals, one per pixel of every level", fontsize=10)
    order = scores.argsort(descending=True)[:top]
    levels = level_of_tokens(order, starts)
    thumbs = right.subplots(2, columns).flatten()
    for rank, (token, level, ax) in enumerate(zip(order.tolist(), levels.tolist(), thumbs)):
        _picture_panel(ax, array)
        _box(ax, boxes[token], size_wh, PROPOSAL_LEVEL_COLOURS[level % len(PROPOSAL_LEVEL_COLOURS)], width=2.0)
        cx, cy = (boxes[token, :2] * size_wh).tolist()
        ax.scatter([cx], [cy], s=18, color="white", edgecolor="black", linewidth=0.8)
        ax.set_title(f"#{rank + 1}: level {level}, score {float(scores[token]):.3f}", fontsize=8)
    for ax in thumbs[len(order):]:
        ax.axis("off")
    right.suptitle(f"the top {len(order)} proposals by score, one per panel", fontsize=10)
    return figure


__all__ = ["PROPOSAL_LEVEL_COLOURS", "level_of_tokens", "plot_proposals"]
