"""One query's sampling points on every level, drawn so that each level stays visible.

At initialisation a query samples a star around its reference point: head m along the angle
2*pi*m/M, point k at (k + 1) pixels *of each level*, so the star on the stride-64 level is eight
times the one on the stride-8 level, and points of different levels can coincide (point k = 1 of
level 0 sits where point k = 0 of level 1 does). :func:`plot_sampling_star` draws the whole star
on the picture (the axes widened to every point, the picture's edge outlined, so points that fall
outside it are shown where they are) and, beside it, a zoom on the reference where the fine levels
live. Every level has its own colour and marker; coarser levels are drawn larger and first, so
coinciding points of two levels show as concentric markers; a thin line joins each point to the
reference (the arms of the star) and the reference is a small ring drawn under the points.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ddetr_edu.viz.drawing import LEGEND_POINTS, LEVEL_MARKERS, picture_array

LEVEL_COLOURS = ("#e41a1c", "#ff7f00", "#4daf4a", "#377eb8", "#984ea3", "#a65628")  # level l: [l % 6]


def star_pixels(locations: Tensor, image_size: tuple[int, int]) -> Tensor:
    """locations (M, L, K, 2) normalised (x, y) on an unpadded picture of ``image_size`` (h, w)
    -> (M, L, K, 2) pixels."""
    h, w = image_size
    return locations * torch.tensor([float(w), float(h)])


def draw_star(ax: Axes, pixels: Tensor, weights: Tensor, reference_px: Tensor, strides: Sequence[int],
              size: float = 60.0) -> None:
    """The star of one query on ``ax``: pixels (M, L, K, 2), weights (M, L, K), reference_px (2,).
    Marker area ``size`` x weight / mean weight, larger for coarser levels (level l: x (1 + 0.6 l))."""
    m, levels, k = weights.shape
    relative = weights / weights.mean()  # 1 everywhere at initialisation
    x0, y0 = reference_px.tolist()
    for level in reversed(range(levels)):  # coarse first: fine levels end on top
        xy = pixels[:, level].reshape(-1, 2)  # (M K, 2)
        for x, y in xy.tolist():
            ax.plot([x0, x], [y0, y], color=LEVEL_COLOURS[level % len(LEVEL_COLOURS)], linewidth=0.6, alpha=0.5,
                    zorder=2)
        ax.scatter(xy[:, 0], xy[:, 1], s=(size * (1 + 0.6 * level) * relative[:, level].reshape(-1)).numpy(),
                   marker=LEVEL_MARKERS[level % len(LEVEL_MARKERS)], color=LEVEL_COLOURS[level % len(LEVEL_COLOURS)],
                   edgecolors="black", linewidths=0.6, zorder=3 + levels - level,
                   label=f"level {level} (stride {strides[level]}): {m} heads x {k} points")
    ax.scatter([x0], [y0], s=45, facecolors="none", edgecolors="white", linewidths=2.2, zorder=2)
    ax.scatter([x0], [y0], s=45, facecolors="none", edgecolors="black", linewidths=1.0, zorder=2,
               label="reference point")


def plot_sampling_star(picture, locations: Tensor, weights: Tensor, reference: Tensor, strides: Sequence[int],
                       zoom_px: float = 76.0, title: str = "") -> Figure:
    """Left: the picture and the query's points on every level; right: a square of side ``zoom_px``
    pixels around the reference.

    picture: anything :func:`~ddetr_edu.viz.drawing.picture_array` takes, (h, w) pixels, unpadded;
    locations (M, L, K, 2) and reference (2,) normalised (x, y) on it; weights (M, L, K);
    strides: the levels' strides in pixels, for the legend.
    """
    array = picture_array(picture)
    h, w = array.shape[:2]
    pixels, reference_px = star_pixels(locations, (h, w)), star_pixels(reference, (h, w))
    figure = Figure(figsize=(12, 5.2), layout="constrained")
    whole, zoom = figure.subplots(1, 2, width_ratios=(1.2, 1))
    for ax in (whole, zoom):
        ax.imshow(array, extent=(0, w, h, 0), interpolation="nearest")
        ax.add_patch(Rectangle((0, 0), w, h, fill=False, edgecolor="black", linewidth=1.2, linestyle="--"))
        draw_star(ax, pixels, weights, reference_px, strides, size=40.0 if ax is whole else 110.0)
        ax.set_aspect("equal")
        ax.set_xlabel("x (pixels)")
    xs = torch.cat([pixels[..., 0].flatten(), torch.tensor([0.0, float(w)])])
    ys = torch.cat([pixels[..., 1].flatten(), torch.tensor([0.0, float(h)])])
    pad = 0.04 * max(w, h)
    whole.set_xlim(float(xs.min()) - pad, float(xs.max()) + pad)
    whole.set_ylim(float(ys.max()) + pad, float(ys.min()) - pad)
    whole.set_ylabel("y (pixels)")
    whole.set_title("every level (dashed: the picture's edge)", fontsize=10)
    x0, y0 = reference_px.tolist()
    zoom.set_xlim(x0 - zoom_px / 2, x0 + zoom_px / 2)
    zoom.set_ylim(y0 + zoom_px / 2, y0 - zoom_px / 2)
    zoom.set_title(f"zoom: {zoom_px:.0f} x {zoom_px:.0f} pixels around the reference", fontsize=10)
    handles, labels = whole.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i])  # level 0 first, the reference last
    figure.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncol=3,
                  fontsize=LEGEND_POINTS)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


__all__ = ["LEVEL_COLOURS", "star_pixels", "draw_star", "plot_sampling_star"]
