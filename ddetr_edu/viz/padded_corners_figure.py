"""Chapter 3's Figure 3.1: one head's sampling points on one level, in the map padded with its
ring of zeros, and the four corners each point reads with their bilinear weights.

:func:`plot_padded_corners` returns a matplotlib Figure (no pyplot state). Coordinates: the padded
map has (H + 2) x (W + 2) pixels, real pixel (u, v) at padded (u + 1, v + 1); a point beyond the
ring is clamped onto it (``ddetr_edu.ops.bilinear``), and drawn dashed to where it reads.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ddetr_edu.ops.bilinear import CORNER_OFFSETS, bilinear_corners

RING = dict(facecolor="0.85", edgecolor="0.4", hatch="//")   # the zero ring's look


def plot_padded_corners(level_picture: np.ndarray, locations: torch.Tensor, weights: torch.Tensor,
                        query: int, head: int) -> Figure:
    """Left: the padded level (hatched ring), the K points (dashed from where a point beyond the ring
    lies to where it is clamped) and a yellow frame around the close-up. Right: the close-up, every
    point joined to its four corners, line width and label = the bilinear weight b_c (the label of
    point k in quadrant k of the corner's pixel, so labels never overlap); the legend gives the
    attention weights.

    level_picture (H, W, 3) the level as a picture in [0, 1]; locations (K, 2) normalised (x, y) of
    one head on this level; weights (K,) their attention weights A.
    """
    h, w = level_picture.shape[:2]
    x, y = locations[:, 0].double(), locations[:, 1].double()
    corners = bilinear_corners(x, y, h, w)                              # top-left in the padded map, b (K, 4)
    rows = torch.stack([corners.v0 + j for j, _ in CORNER_OFFSETS], dim=-1)   # (K, 4) padded rows
    cols = torch.stack([corners.u0 + i for _, i in CORNER_OFFSETS], dim=-1)   # (K, 4) padded columns
    b = corners.weight                                                   # (K, 4)
    px, py = (x * w - 0.5 + 1).numpy(), (y * h - 0.5 + 1).numpy()       # the points, padded pixel coordinates
    cx, cy = px.clip(0, w + 1), py.clip(0, h + 1)                       # where they read: clamped onto the ring
    k_points = len(px)
    colours = [f"C{k}" for k in range(k_points)]
    c0, c1 = max(int(cols.min()) - 1, 0), min(int(cols.max()) + 1, w + 1)   # the close-up: the corners and
    r0, r1 = max(int(rows.min()) - 1, 0), min(int(rows.max()) + 1, h + 1)   # one more pixel around them

    figure = Figure(figsize=(13, 6.5), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    for ax in (left, right):
        ax.add_patch(Rectangle((-0.5, -0.5), w + 2, h + 2, zorder=0, **RING))
        ax.imshow(level_picture, extent=(0.5, w + 0.5, h + 0.5, 0.5), zorder=1)
        ax.set_xlabel("column in the padded map")
        ax.set_ylabel("row in the padded map")
        for k in range(k_points):
            ax.plot(cx[k], cy[k], "o", color=colours[k], markeredgecolor="white", ms=9, zorder=5,
                    label=f"point k = {k}:  A = {float(weights[k]):.3f}")
    for k in range(k_points):                                           # a point beyond the ring: dashed to its clamp
        if (px[k], py[k]) != (cx[k], cy[k]):
            left.plot([px[k], cx[k]], [py[k], cy[k]], "--", color=colours[k], zorder=4)
            left.plot(px[k], py[k], "o", mfc="none", mec=colours[k], ms=9, zorder=4)
    left.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, edgecolor="yellow", lw=2,
                             zorder=6))
    left.set_xlim(min(-1, px.min() - 1), max(w + 2, px.max() + 1))
    left.set_ylim(max(h + 2, py.max() + 1), min(-1, py.min() - 1))
    left.set_title(f"{h} x {w} level, padded to {h + 2} x {w + 2} (hatched: the zero ring)", fontsize=10)

    for k in range(k_points):
        for c in range(4):
            r, s, weight = int(rows[k, c]), int(cols[k, c]), float(b[k, c])
            right.add_patch(Rectangle((s - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="white", lw=1, zorder=2))
            right.plot([cx[k], s], [cy[k], r], color=colours[k], lw=0.5 + 5 * weight, zorder=3,
                       ls="-" if weight > 0.005 else ":")
            right.text(s - 0.25 + 0.5 * (k % 2), r - 0.25 + 0.5 * (k // 2), f"{weight:.2f}", fontsize=8,
                       color=colours[k], ha="center", va="center", zorder=6,
                       bbox=dict(boxstyle="round,pad=0.1", facecolor="white", lw=0))
    right.set_xlim(c0 - 0.5, c1 + 0.5)
    right.set_ylim(r1 + 0.5, r0 - 0.5)
    right.set_xticks(range(c0, c1 + 1))
    right.set_yticks(range(r0, r1 + 1))
    right.set_title(f"query {query}, head {head}: each point's four corners, labelled b_c\n"
                    "(the label of point k in quadrant k of the pixel)", fontsize=10)
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, fontsize=9)
    return figure
