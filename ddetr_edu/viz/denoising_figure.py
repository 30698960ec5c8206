"""Chapter 12's Figure 12.2: the denoising queries of DN-DETR and DINO drawn on an image.

:func:`plot_denoising_queries` returns a matplotlib Figure (no pyplot state) with two panels: left,
DN-DETR's groups of noised boxes and labels; right, DINO's contrastive pairs (a positive with small
noise, a negative with larger noise), both over the ground truth. Boxes are cxcywh normalised to
the (square or not) image.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

GROUP_STYLES = (dict(ec="#00e5ff", ls="--"), dict(ec="#ffd400", ls=":"), dict(ec="#ff9f1c", ls="-."))
POSITIVE = dict(ec="#00ff66", lw=2, ls="--")
NEGATIVE = dict(ec="#ff3355", lw=2, ls=":")


def _draw(ax: Axes, box: torch.Tensor, size_wh: torch.Tensor, **style) -> None:
    cx, cy, w, h = (box * size_wh.repeat(2)).tolist()
    ax.add_patch(Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, **style))


def plot_denoising_queries(image: np.ndarray, gt: torch.Tensor, labels: torch.Tensor,
                           groups: Sequence[tuple[torch.Tensor, torch.Tensor]], positives: torch.Tensor,
                           negatives: torch.Tensor, class_names: Sequence[str], box_noise: float,
                           label_noise: float, positive_noise: float, negative_noise: float) -> Figure:
    """image (H, W, 3); gt (G, 4) cxcywh normalised and labels (G,) the ground truth; groups: per
    DN-DETR group its noised boxes (G, 4) and labels (G,) (a flipped label is marked ``*``);
    positives, negatives (G, 4): DINO's pair per object. The noise levels only title the panels
    (box_noise lambda, label_noise gamma, positive_noise lambda_1, negative_noise lambda_2)."""
    height, width = image.shape[:2]
    size_wh = torch.tensor([width, height], dtype=torch.float32)
    if len(groups) > len(GROUP_STYLES):
        raise ValueError(f"groups: at most {len(GROUP_STYLES)} can be told apart, got {len(groups)}")
    figure = Figure(figsize=(10, 5.2), layout="constrained")
    axes = figure.subplots(1, 2)
    titles = (f"DN-DETR: {len(groups)} groups, box noise $\\lambda$ = {box_noise}, label flips $\\gamma$ = {label_noise}",
              f"DINO: positives ($\\lambda_1$ = {positive_noise}) and negatives (up to $\\lambda_2$ = {negative_noise})")
    for ax, title in zip(axes, titles):
        ax.imshow(image)
        ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))   # boxes are clipped to the image
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        for box in gt:
            _draw(ax, box, size_wh, ec="white", lw=2.5)
        ax.plot([], [], color="white", lw=2.5, label="ground truth")
    for g, (boxes, noisy_labels) in enumerate(groups):
        for k, (box, label) in enumerate(zip(boxes, noisy_labels)):
            _draw(axes[0], box, size_wh, lw=2, **GROUP_STYLES[g], label=f"group {g + 1}" if k == 0 else None)
            x0, y0 = ((box[:2] - box[2:] / 2).clamp(0, 1) * size_wh).tolist()
            changed = "*" if label != labels[k] else ""
            axes[0].text(x0 + 1, y0 + 6 + 9 * g, class_names[int(label)] + changed, fontsize=7, zorder=5,
                         color="black", bbox=dict(fc=GROUP_STYLES[g]["ec"], ec="none", pad=1))
    for box in positives:
        _draw(axes[1], box, size_wh, **POSITIVE)
    for box in negatives:
        _draw(axes[1], box, size_wh, **NEGATIVE)
    axes[1].plot([], [], color=POSITIVE["ec"], ls=POSITIVE["ls"], lw=2, label="positive: reconstruct the box")
    axes[1].plot([], [], color=NEGATIVE["ec"], ls=NEGATIVE["ls"], lw=2, label='negative: "no object"')
    for ax in axes:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=8, facecolor="0.35",
                  labelcolor="white", framealpha=1)
    return figure
