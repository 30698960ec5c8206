"""Bilinear interpolation with zero padding, in the pixel-centre convention of
``grid_sample(align_corners=False)``.

A normalised location (x, y) in [0, 1]^2 lands on a level of size H x W at the pixel coordinate

    u = x * W - 0.5,   v = y * H - 0.5          (pixel i covers [i, i + 1), centre i + 0.5)

and reads the four neighbouring pixels (u0 + i, v0 + j), i, j in {0, 1}, with u0 = floor(u),
v0 = floor(v), fu = u - u0, fv = v - v0, and the separable weights

    b_ji = wv_j * wu_i,   wu = (1 - fu, fu),   wv = (1 - fv, fv)

    x(u, v) = (1-fu)(1-fv) x[v0, u0] + fu (1-fv) x[v0, u0+1] + (1-fu) fv x[v0+1, u0] + fu fv x[v0+1, u0+1]

The zero padding, taken literally: every map gets a one-pixel ring of zeros, (H+2) x (W+2), the
real pixel (u, v) sitting at (u + 1, v + 1). A point is first clamped to u in [-1, W],
v in [-1, H]: beyond that all its corners are outside, and the clamped point reads the zero ring
(value and gradient 0, as they should be). After the clamp every corner is in bounds, so a read
is a gather and a weighted sum with no "is this corner inside?" test (``msda_einops.py``).

A non-finite coordinate (NaN, +-inf) has no pixel at all: ``non_finite_to_outside`` moves it to
x = -1 (or y = -1), which lies beyond the zero ring of every map (u = -W - 1/2 < -1), so the
point reads zeros and gets zero gradient, as the CUDA kernel treats it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


# The corners c = 2 j + i as (row step j, column step i): top-left, top-right, bottom-left,
# bottom-right.
CORNER_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


# A normalised coordinate whose four corners are outside every map: u = -W - 1/2 < -1 for W >= 1.
FAR_OUTSIDE = -1.0


def non_finite_to_outside(sampling_locations: Tensor) -> Tensor:
    """Locations (..., 2) with every NaN or +-inf coordinate replaced by ``FAR_OUTSIDE``.

    Elementwise (no host read of the values, no synchronisation); ``torch.where`` sends no
    gradient to the replaced entries, so they get zero gradient.
    """
    return torch.where(sampling_locations.isfinite(), sampling_locations, FAR_OUTSIDE)


@dataclass
class Corners:
    """Bilinear reads of a batch of points P. ``u0``, ``v0`` are (*P,); ``weight`` is (*P, 4)
    over the corners c = 2 j + i (``CORNER_OFFSETS``)."""
    u0: Tensor      # int64 column of the top-left corner in the padded map, in [0, W]
    v0: Tensor      # int64 row of the top-left corner in the padded map, in [0, H]
    weight: Tensor  # b_c


def padded_pixel(x: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised coordinate on an axis of ``size`` pixels -> (top-left corner in the padded
    map, in [0, size] (int64), fraction f in [0, 1], whether the clamp is inactive)."""
    u = x * size - 0.5
    inside = (u > -1) & (u < size)
    u = u.clamp(min=-1, max=size)
    u0 = torch.floor(u).clamp(max=size - 1)  # u = size: corners (size-1, size), weights 0, 1
    return (u0 + 1).to(torch.int64), u - u0, inside


def bilinear_corners(x: Tensor, y: Tensor, height: int, width: int) -> Corners:
    """Normalised points x, y (any shape P) on H x W maps -> their top-left corners in the padded
    maps and the four corner weights."""
    u0, fu, _ = padded_pixel(x, width)
    v0, fv, _ = padded_pixel(y, height)
    wu = torch.stack([1 - fu, fu], dim=-1)  # (*P, 2) along i
    wv = torch.stack([1 - fv, fv], dim=-1)  # (*P, 2) along j
    weight = (wv[..., :, None] * wu[..., None, :]).flatten(-2)  # (*P, 4), c = 2 j + i
    return Corners(u0, v0, weight)
