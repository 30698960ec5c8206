"""The sampling pattern over training: frames and an animated GIF from a sampling history.

Each frame (one recorded epoch) has two panels on a probe image:

* decoder: the best-scoring query's sampling points in the chosen layer (all heads by default);
* encoder: the sampling points of the probe tokens (last encoder layer, every level).

At epoch 0 both show the initial star (head m along angle 2*pi*m/M, point k at k+1 steps, the
same on every level); as training goes on the points move onto the objects. Colour, size and
opacity say each point's weight relative to the largest weight of its query (or probe token) in
that frame: at epoch 0 the weights are uniform, so every point is drawn alike; later a few
points carry most of the weight. Labels use the history's ``class_names`` (recorded from the
dataset) or the ``class_names`` argument.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.figure import Figure

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import points_to_pixels, token_centre
from ddetr_edu.viz.decoder_figures import draw_decoder_query
from ddetr_edu.viz.drawing import (draw_reference, draw_sampling_points, level_legend, show_picture,
                                   weight_colorbar)
from ddetr_edu.viz.sampling_points import encoder_points, relative_weights


def _frame_attention(history: dict, frame: int, image_index: int) -> ImageAttention:
    records = history["records"]
    if not 0 <= frame < len(records):
        raise ValueError(f"frame: expected 0..{len(records) - 1}, got {frame}")
    images = records[frame]["images"]
    if not 0 <= image_index < len(images):
        raise ValueError(f"image_index: expected 0..{len(images) - 1}, got {image_index}")
    return ImageAttention.from_dict(images[image_index])


def draw_evolution_frame(figure: Figure, history: dict, frame: int, image_index: int = 0, layer: int = -1,
                         head: int | None = None, class_names: Sequence[str] | None = None) -> None:
    """Clear ``figure`` and draw frame ``frame`` (record index) of probe image ``image_index``."""
    attention = _frame_attention(history, frame, image_index)
    picture = history["pictures"][image_index].numpy()
    size = picture.shape[:2]
    names = class_names if class_names is not None else history.get("class_names")
    figure.clear()
    left, right = figure.subplots(1, 2)
    best = int(torch.argmax(attention.scores))
    draw_decoder_query(left, picture, attention, best, layer, head, class_names=names)
    left.set_title(f"decoder: best query ({best}), layer {attention.layer_index(layer) + 1}", fontsize=8)
    show_picture(right, picture, fade=True)
    levels = range(attention.num_levels)
    for token in attention.encoder_tokens.tolist():
        pixels, weights = encoder_points(attention, token, -1, head, size)
        _, centre = token_centre(token, attention.spatial_shapes, attention.level_start_index,
                                 attention.valid_ratios)
        draw_sampling_points(right, pixels, relative_weights(weights), levels, size=40)
        draw_reference(right, points_to_pixels(centre, size))
    right.set_title("encoder: probe pixels (+), last layer, all levels", fontsize=8)
    level_legend(right, levels, attention.spatial_shapes)
    weight_colorbar(figure, [left, right], "weight / max weight of its query or token")
    done = history["records"][frame]["epoch"]  # epochs trained, from 1 as in every message
    figure.suptitle(f"after epoch {done}" if done else "untrained (epoch 0)", fontsize=11)


def plot_evolution_frames(history: dict, image_index: int = 0, layer: int = -1,
                          head: int | None = None, class_names: Sequence[str] | None = None) -> list[Figure]:
    """One Figure per recorded epoch."""
    frames = []
    for frame in range(len(history["records"])):
        figure = Figure(figsize=(9, 4.6), layout="constrained")
        draw_evolution_frame(figure, history, frame, image_index, layer, head, class_names)
        frames.append(figure)
    return frames


def save_evolution_gif(history: dict, path: str | os.PathLike, image_index: int = 0, layer: int = -1,
                       head: int | None = None, fps: float = 2.0, dpi: int = 80,
                       class_names: Sequence[str] | None = None) -> Path:
    """Write the frames as an animated GIF (``PillowWriter``), atomically; returns ``path``."""
    if not history["records"]:
        raise ValueError("history: no records to animate")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(9, 4.6), layout="constrained")

    def update(frame: int):
        draw_evolution_frame(figure, history, frame, image_index, layer, head, class_names)
        return []

    animation = FuncAnimation(figure, update, frames=len(history["records"]), blit=False, repeat=False)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".gif", dir=path.parent)
    os.close(handle)
    try:
        animation.save(tmp_name, writer=PillowWriter(fps=fps), dpi=dpi)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


__all__ = ["draw_evolution_frame", "plot_evolution_frames", "save_evolution_gif"]
