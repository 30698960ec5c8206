"""Backbone feature maps as pictures: the three strongest directions of each map as colours.

A map of C channels has C numbers per pixel. :func:`principal_colours` finds the three directions
of channel space along which that map's pixels vary most (the first three principal components
over its pixels) and paints each pixel with its coordinates along them as red, green and blue
(each scaled to 0..1 over the map). Pixels the network describes alike get alike colours, so the
picture shows what the features tell apart: for a trained network the outlines and corners of
objects, for random weights mostly the input's colours. :func:`plot_feature_rows` draws one row per
network: the picture, then every level at its own resolution, with the share of the map's variance
the three colours carry in each title.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ddetr_edu.viz.drawing import picture_array


def principal_colours(feature: Tensor) -> tuple[np.ndarray, float]:
    """feature (1, C, H, W) or (C, H, W), C >= 3 -> ((H, W, 3) floats in [0, 1], the share of the
    map's variance along its first three principal components)."""
    if feature.dim() == 4 and feature.shape[0] == 1:
        feature = feature[0]
    if feature.dim() != 3 or feature.shape[0] < 3:
        raise ValueError(f"feature: expected (C, H, W) or (1, C, H, W) with C >= 3, got shape {tuple(feature.shape)}")
    c, h, w = feature.shape
    pixels = feature.detach().double().reshape(c, h * w).T  # (H W, C)
    pixels = pixels - pixels.mean(0)
    _, singular, directions = torch.linalg.svd(pixels, full_matrices=False)  # directions (C', C)
    coords = pixels @ directions[:3].T  # (H W, 3)
    low, high = coords.min(0).values, coords.max(0).values
    colours = (coords - low) / (high - low).clamp_min(1e-12)
    variance = singular ** 2
    share = float(variance[:3].sum() / variance.sum().clamp_min(1e-30))
    return colours.reshape(h, w, 3).float().numpy(), share


def plot_feature_rows(picture, rows: dict[str, Sequence[Tensor]], strides: Sequence[int]) -> Figure:
    """picture: anything :func:`~ddetr_edu.viz.drawing.picture_array` takes; rows: {row title:
    [feature (1, C_l, H_l, W_l) per level]}; strides: the levels' strides (column titles)."""
    array = picture_array(picture)
    levels = len(strides)
    figure = Figure(figsize=(3.0 * (levels + 1), 3.2 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), levels + 1, squeeze=False)
    for row, (name, features) in zip(axes, rows.items()):
        if len(features) != levels:
            raise ValueError(f"rows[{name!r}]: expected {levels} feature maps (one per stride), got {len(features)}")
        row[0].imshow(array)
        row[0].set_title(f"input {array.shape[0]}x{array.shape[1]}", fontsize=10)
        row[0].set_ylabel(name, fontsize=10)
        for ax, feature, stride in zip(row[1:], features, strides):
            colours, share = principal_colours(feature)
            ax.imshow(colours, interpolation="nearest")
            ax.set_title(f"C{int(stride).bit_length() - 1}, stride {stride}: {colours.shape[0]}x{colours.shape[1]}, "
                         f"{share:.0%}", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    return figure


__all__ = ["principal_colours", "plot_feature_rows"]
