"""Drawing primitives on a matplotlib Axes: the picture, sampling points, boxes, legends.

Conventions shared by every figure of ``ddetr_edu.viz``:

* the picture is drawn with ``extent=(0, w, h, 0)``, so axes coordinates are continuous pixels;
* sampling points: one ``scatter`` per feature level, the **marker** says the level
  (:data:`LEVEL_MARKERS`), the **colour** the attention weight (colour map :data:`WEIGHT_CMAP`,
  one normalisation per figure); each scatter has the gid ``"sampling-level-<l>"`` so that tests
  (and readers) can find the drawn points again: ``collection.get_offsets()`` are the pixels,
  ``collection.get_array()`` the weights;
* reference points: a white-edged cross; predicted boxes: solid; reference boxes: dashed.
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
from PIL import Image
from torch import Tensor

LEVEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # level l uses LEVEL_MARKERS[l % 8]
WEIGHT_CMAP = "plasma"
BOX_COLOURS = ("tab:cyan", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:pink",
               "tab:olive", "tab:blue", "tab:brown", "tab:gray")
SAMPLING_GID = "sampling-level-{level}"


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


def show_picture(ax: Axes, picture) -> tuple[int, int]:
    """Draw the picture (anything :func:`picture_array` takes) in continuous pixel coordinates;
    returns (h, w)."""
    picture = picture_array(picture)
    h, w = picture.shape[:2]
    ax.imshow(picture, extent=(0, w, h, 0), interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return h, w


def draw_sampling_points(ax: Axes, pixels: Tensor, weights: Tensor, norm: Normalize,
                         levels: Sequence[int], size: float = 28.0) -> list[PathCollection]:
    """One scatter per level in ``levels``.

    pixels (L, P, 2) (x, y) pixels; weights (L, P) attention weights (P: heads x points shown).
    """
    drawn = []
    for level in levels:
        collection = ax.scatter(pixels[level, :, 0].numpy(), pixels[level, :, 1].numpy(),
                                c=weights[level].numpy(), cmap=WEIGHT_CMAP, norm=norm,
                                marker=LEVEL_MARKERS[level % len(LEVEL_MARKERS)], s=size,
                                edgecolors="black", linewidths=0.4, zorder=3)
        collection.set_gid(SAMPLING_GID.format(level=level))
        drawn.append(collection)
    return drawn


def draw_reference(ax: Axes, point_px: Tensor, size: float = 90.0) -> None:
    """The reference point (2,) pixels: a white-edged black cross."""
    x, y = point_px.tolist()
    ax.scatter([x], [y], marker="P", s=size, c="white", edgecolors="black", linewidths=1.0, zorder=4,
               gid="reference")


def draw_box(ax: Axes, box_xyxy: Tensor, colour: str, dashed: bool = False, width: float = 1.6,
             label: str | None = None) -> None:
    """A box (4,) xyxy pixels, with an optional label above its top-left corner."""
    x0, y0, x1, y1 = box_xyxy.tolist()
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=width,
                           linestyle="--" if dashed else "-", zorder=2))
    if label:
        ax.text(x0, y0, label, color="white", fontsize=7, va="bottom", zorder=5, clip_on=True,
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "linewidth": 0})


def level_legend(ax: Axes, levels: Sequence[int], spatial_shapes: Tensor) -> None:
    """Legend: one marker per level with its map size."""
    handles = [Line2D([], [], linestyle="", marker=LEVEL_MARKERS[l % len(LEVEL_MARKERS)], color="grey",
                      markeredgecolor="black",
                      label=f"level {l} ({int(spatial_shapes[l, 0])}x{int(spatial_shapes[l, 1])})")
               for l in levels]
    ax.legend(handles=handles, loc="lower right", fontsize=6, framealpha=0.7)


def weight_colorbar(figure: Figure, axes, norm: Normalize, label: str = "attention weight") -> None:
    """A colour bar of the attention weights next to ``axes`` (an Axes or a list of them)."""
    from matplotlib.cm import ScalarMappable

    figure.colorbar(ScalarMappable(norm=norm, cmap=WEIGHT_CMAP), ax=axes, shrink=0.8, label=label)


def weight_norm(*weights: Tensor) -> Normalize:
    """Colour scale from 0 to the largest weight shown."""
    top = max((float(w.max()) for w in weights if w.numel()), default=1.0)
    return Normalize(vmin=0.0, vmax=max(top, 1e-6))


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


__all__ = ["LEVEL_MARKERS", "WEIGHT_CMAP", "BOX_COLOURS", "SAMPLING_GID", "picture_array", "show_picture",
           "draw_sampling_points", "draw_reference", "draw_box", "level_legend", "weight_colorbar",
           "weight_norm", "no_detection_figure", "class_text"]
