"""Drawing primitives on a matplotlib Axes: the picture, sampling points, boxes, legends.

Conventions shared by every figure of ``ddetr_edu.viz``:

* the picture is drawn with ``extent=(0, w, h, 0)``, so axes coordinates are continuous pixels;
  under sampling points it is drawn in grey (:func:`faded`) so the colours read and the objects
  stay recognisable;
* sampling points: one ``scatter`` per feature level, the **marker** says the level
  (:data:`LEVEL_MARKERS`); the **colour**, the **size** and the **opacity** say the point's
  *relative* weight, A_mlqk divided by the largest weight among the points shown of the same
  query (or encoder token), so 1 is that query's strongest point and every figure uses one colour
  scale, 0..1 (:data:`WEIGHT_CMAP`). The raw weights of a query with M heads sum to M and are
  spread over M*L*K points, so on an absolute 0..1 scale they would all look alike. Each
  scatter has the gid ``"sampling-level-<l>"``: ``collection.get_offsets()`` are the pixels,
  ``collection.get_array()`` the relative weights, drawn in increasing order (strong on top);
* reference points: a white-edged cross; predicted boxes: solid; reference boxes: dashed; a
  box's label is placed so that it stays inside the picture (:func:`label_position`), and once a
  figure is complete :func:`separate_labels` moves labels apart so that none hides another.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image
import torch
from torch import Tensor

LEVEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # level l uses LEVEL_MARKERS[l % 8]
WEIGHT_CMAP = "plasma"
BOX_COLOURS = ("tab:cyan", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:pink",
               "tab:olive", "tab:blue", "tab:brown", "tab:gray")
SAMPLING_GID = "sampling-level-{level}"
BOX_LABEL_GID = "box-label"  # draw_box's labels, moved apart by separate_labels
RELATIVE_NORM = Normalize(vmin=0.0, vmax=1.0)  # relative weights: 1 = the strongest point shown
LEGEND_POINTS = 9  # the level legend's type size
QUERY_SCALE = "weight / max weight of its query (colour, size, opacity)"
TOKEN_SCALE = "weight / max weight of its token (colour, size, opacity)"


def picture_array(image) -> np.ndarray:
    """A PIL image, an (H, W, 3) array or a (3, H, W) / (H, W, 3) tensor in [0, 1] or 0..255 ->
    (H, W, 3) array for ``imshow``."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, Tensor):
        array = image.detach().cpu().float()
        if array.dim() == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
            array = array.permute(1, 2, 0)
        array = array.numpy()
    else:
        array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image: expected a PIL image or an (H, W, 3) array, got shape {array.shape}")
    if array.dtype != np.uint8:  # floats in [0, 1] or in 0..255
        scale = 255.0 if array.size and float(array.max()) <= 1.0 else 1.0
        array = np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    return array


def faded(picture: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8 grey version, 25 + 185 * luminance / 255: no colour, so the
    coloured sampling points stand out whatever the picture's own colours, and enough contrast
    (grey 25..210) that the objects stay easy to tell apart."""
    luminance = picture.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
    grey = np.rint(25.0 + 185.0 * luminance / 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def show_picture(ax: Axes, picture, fade: bool = False) -> tuple[int, int]:
    """Draw the picture (anything :func:`picture_array` takes) in continuous pixel coordinates,
    as a dark grey version (:func:`faded`) when ``fade``; returns (h, w)."""
    picture = picture_array(picture)
    h, w = picture.shape[:2]
    ax.imshow(faded(picture) if fade else picture, extent=(0, w, h, 0), interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return h, w


def draw_sampling_points(ax: Axes, pixels: Tensor, relative: Tensor, levels: Sequence[int],
                         size: float = 70.0) -> list[PathCollection]:
    """One scatter per level in ``levels``, the strongest points drawn last (on top).

    pixels (L, P, 2) (x, y) pixels; relative (L, P) weights / the largest weight shown, in [0, 1]
    (P: heads x points shown). Marker area runs from 0.15 * ``size`` to ``size`` and opacity from
    0.35 to 1 with the relative weight.
    """
    drawn = []
    for level in levels:
        order = torch.argsort(relative[level], stable=True)  # (P,) weakest first
        weight = relative[level, order].clamp(0, 1)
        collection = ax.scatter(pixels[level, order, 0].numpy(), pixels[level, order, 1].numpy(),
                                c=weight.numpy(), cmap=WEIGHT_CMAP, norm=RELATIVE_NORM,
                                s=(size * (0.15 + 0.85 * weight)).numpy(), alpha=(0.35 + 0.65 * weight).numpy(),
                                marker=LEVEL_MARKERS[level % len(LEVEL_MARKERS)],
                                edgecolors="black", linewidths=0.4, zorder=3)
        collection.set_gid(SAMPLING_GID.format(level=level))
        drawn.append(collection)
    return drawn


def draw_reference(ax: Axes, point_px: Tensor, size: float = 90.0) -> None:
    """The reference point (2,) pixels: a white-edged black cross."""
    x, y = point_px.tolist()
    ax.scatter([x], [y], marker="P", s=size, c="white", edgecolors="black", linewidths=1.0, zorder=4,
               gid="reference")


def label_position(box_xyxy: Tensor, image_size: tuple[int, int],
                   margin: float = 0.09) -> tuple[float, float, str, str]:
    """Where a box's label goes so that it stays inside the picture: (x, y, ha, va).

    box_xyxy (4,) pixels, image_size (h, w). Horizontally the label starts at the box's left edge
    (ha "left") when the box's centre is in the left half of the picture and ends at its right
    edge (ha "right") otherwise, the edge clipped to the picture; so it grows towards the
    middle. Vertically it sits on the box's top edge (va "bottom") unless that edge is within
    ``margin`` * h of the picture's top, then just inside the box (va "top"); y is clipped to the
    picture too.
    """
    h, w = image_size
    x0, y0, x1, y1 = box_xyxy.tolist()
    if (x0 + x1) / 2 <= w / 2:
        x, ha = min(max(x0, 0.0), w), "left"
    else:
        x, ha = min(max(x1, 0.0), w), "right"
    if y0 >= margin * h:
        y, va = min(y0, float(h)), "bottom"
    else:
        y, va = min(max(y0, 0.0), float(h)), "top"
    return x, y, ha, va


def draw_box(ax: Axes, box_xyxy: Tensor, colour: str, dashed: bool = False, width: float = 1.6,
             label: str | None = None, image_size: tuple[int, int] | None = None) -> None:
    """A box (4,) xyxy pixels, with an optional label kept inside the picture of ``image_size``
    (h, w) (default: the axes' limits) by :func:`label_position`."""
    x0, y0, x1, y1 = box_xyxy.tolist()
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=width,
                           linestyle="--" if dashed else "-", zorder=2))
    if label:
        if image_size is None:
            image_size = (abs(ax.get_ylim()[0] - ax.get_ylim()[1]), abs(ax.get_xlim()[1] - ax.get_xlim()[0]))
        x, y, ha, va = label_position(box_xyxy, image_size)
        ax.text(x, y, label, color="black", fontsize=7, ha=ha, va=va, zorder=5, clip_on=True, gid=BOX_LABEL_GID,
                bbox={"facecolor": colour, "alpha": 0.85, "pad": 1, "linewidth": 0})


def _label_extent(text: Text, renderer) -> Bbox:
    """The label's coloured patch in display pixels, as last drawn."""
    patch = text.get_bbox_patch()
    return patch.get_window_extent(renderer) if patch is not None else text.get_window_extent(renderer)


def _overlap(a: Bbox, b: Bbox) -> float:
    """Area (pixels^2) shared by two boxes."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def separate_labels(figure: Figure, max_shift: int = 12) -> None:
    """Move box labels (:func:`draw_box`'s, in every axes of ``figure``) so that none hides another.

    Call it once the figure is complete (its layout decides the pixels). In each axes the labels
    keep their drawing order (the strongest detection first keeps its place); each later one
    moves, by whole label heights up or down (the nearest first), to the first place inside the
    picture that meets no label already placed. When none is free, it takes the place with the
    least overlap.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = figure.canvas if hasattr(figure.canvas, "get_renderer") else FigureCanvasAgg(figure)
    figure.draw_without_rendering()  # lays the figure out: display pixels are final
    renderer = canvas.get_renderer()
    for ax in figure.axes:
        labels = [text for text in ax.texts if text.get_gid() == BOX_LABEL_GID]
        if len(labels) < 2:
            continue
        inside = ax.get_window_extent(renderer)
        placed: list[Bbox] = []
        for text in labels:
            extent = _label_extent(text, renderer)
            step = extent.height + 1.0
            best, best_cost = (0.0, 0.0), float("inf")
            for k in range(2 * max_shift + 1):  # 0, -1, +1, -2, +2, ... label heights (display y is up)
                dy = step * ((k + 1) // 2) * (-1 if k % 2 else 1)
                moved = extent.translated(0.0, dy)
                if moved.y0 < inside.y0 - 0.5 or moved.y1 > inside.y1 + 0.5:
                    continue
                cost = sum(_overlap(moved, other) for other in placed)
                if cost < best_cost:
                    best, best_cost = (0.0, dy), cost
                if cost == 0.0:
                    break
            if best != (0.0, 0.0):
                x, y = ax.transData.transform(text.get_position())
                text.set_position(ax.transData.inverted().transform((x + best[0], y + best[1])))
            placed.append(extent.translated(*best))


def level_legend(ax: Axes, levels: Sequence[int], spatial_shapes: Tensor) -> None:
    """Legend: one marker per level with its map size, in 9 pt type on a white box."""
    handles = [Line2D([], [], linestyle="", marker=LEVEL_MARKERS[l % len(LEVEL_MARKERS)], color="grey",
                      markeredgecolor="black", markersize=8,
                      label=f"level {l} ({int(spatial_shapes[l, 0])}x{int(spatial_shapes[l, 1])})")
               for l in levels]
    ax.legend(handles=handles, loc="lower right", fontsize=LEGEND_POINTS, framealpha=0.9)


def weight_colorbar(figure: Figure, axes, label: str = QUERY_SCALE, shrink: float = 0.8) -> None:
    """The colour bar of the relative weights (0..1) next to ``axes`` (an Axes or a list of them)."""
    from matplotlib.cm import ScalarMappable

    bar = figure.colorbar(ScalarMappable(norm=RELATIVE_NORM, cmap=WEIGHT_CMAP), ax=axes, shrink=shrink)
    bar.set_label(label, fontsize=8)


def no_detection_figure(picture, score_threshold: float, figsize: tuple[float, float] = (6.0, 4.5)) -> Figure:
    """One panel: the picture and, in its middle, "no detection with score >= <threshold>"
    (what every figure shows when no detection reaches the threshold)."""
    figure = Figure(figsize=figsize, layout="constrained")
    ax = figure.add_subplot()
    show_picture(ax, picture)
    text = f"no detection with score >= {score_threshold:g}"
    ax.set_title(text, fontsize=9)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="white", fontsize=11,
            bbox={"facecolor": "black", "alpha": 0.7, "pad": 4, "linewidth": 0})
    return figure


def class_text(label: int, score: float, class_names: Sequence[str] | None) -> str:
    name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else f"class {label}"
    return f"{name} {score:.2f}"


__all__ = ["LEVEL_MARKERS", "WEIGHT_CMAP", "BOX_COLOURS", "SAMPLING_GID", "RELATIVE_NORM", "QUERY_SCALE",
           "TOKEN_SCALE", "BOX_LABEL_GID", "picture_array", "faded", "show_picture", "draw_sampling_points",
           "draw_reference", "label_position", "draw_box", "separate_labels", "level_legend", "weight_colorbar",
           "no_detection_figure", "class_text"]
