"""Bilinear interpolation with zero padding, in the pixel-centre convention of
``grid_sample(align_corners=False)``.

A normalised location (x, y) in [0, 1]^2 lands on a level of size H x W at the pixel coordinate

    u = x * W - 0.5,   v = y * H - 0.5          (pixel i covers [i, i + 1), centre i + 0.5)

and reads the four neighbouring pixels (u0 + i, v0 + j), i, j in {0, 1}, with u0 = floor(u),
v0 = floor(v), fu = u - u0, fv = v - v0, and the separable weights

    b_ji = wv_j * wu_i,   wu = (1 - fu, fu),   wv = (1 - fv, fv)

    x(u, v) = (1-fu)(1-fv) x[v0, u0] + fu (1-fv) x[v0, u0+1] + (1-fu) fv x[v0+1, u0] + fu fv x[v0+1, u0+1]

Two layout tricks make this a single in-bounds read per point:

1. Zero padding, taken literally: every map gets a one-pixel ring of zeros, (H+2) x (W+2), the
   real pixel (u, v) sitting at (u + 1, v + 1). A point is first clamped to u in [-1, W],
   v in [-1, H]: beyond that all its corners are outside, and the clamped point reads the zero
   ring (value and gradient 0, as they should be). After the clamp every corner is in bounds.
2. Quads, for the backward: the gradient of the padded map is accumulated as (H+1) x (W+1)
   "quads", quad (j, i) holding the pixels (i, j), (i+1, j), (i, j+1), (i+1, j+1), so that a
   point adds its four corners in one row (corner c = 2 j + i); ``from_quads`` folds them back.

Derivatives, needed by the backward pass: d b_ji / du = wv_j * (-1, +1)_i and
d b_ji / dv = (-1, +1)_j * wu_i (zero where the clamp is active: the point does not move).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Corners:
    """Bilinear reads of a batch of points P. ``u0``, ``v0`` are (*P,); the rest are (*P, 4)
    over the corners c = 2 j + i: top-left, top-right, bottom-left, bottom-right."""
    u0: Tensor           # int64 column of the top-left corner in the padded map, in [0, W]
    v0: Tensor           # int64 row of the top-left corner in the padded map, in [0, H]
    weight: Tensor       # b_c
    d_weight_du: Tensor | None = None  # d b_c / d u (only when asked for)
    d_weight_dv: Tensor | None = None  # d b_c / d v


def padded_pixel(x: Tensor, size) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised coordinate on an axis of ``size`` pixels (an int, or a tensor broadcastable to
    x, e.g. one size per level) -> (top-left corner in the padded map, in [0, size] (int64),
    fraction f in [0, 1], whether the clamp is inactive)."""
    size = torch.as_tensor(size, dtype=x.dtype, device=x.device)
    u = x * size - 0.5
    inside = (u > -1) & (u < size)
    u = torch.minimum(u.clamp(min=-1), size)
    u0 = torch.minimum(torch.floor(u), size - 1)  # u = size: corners (size-1, size), weights 0, 1
    return (u0 + 1).to(torch.int64), u - u0, inside


def bilinear_corners(x: Tensor, y: Tensor, height, width, with_derivatives: bool = False) -> Corners:
    """Normalised points x, y (any shape P) on H x W maps -> their quads and corner weights.

    height, width: ints, or int64 tensors broadcastable to P (one size per level, say).
    """
    u0, fu, inside_u = padded_pixel(x, width)
    v0, fv, inside_v = padded_pixel(y, height)
    wu = torch.stack([1 - fu, fu], dim=-1)  # (*P, 2) along i
    wv = torch.stack([1 - fv, fv], dim=-1)  # (*P, 2) along j
    weight = (wv[..., :, None] * wu[..., None, :]).flatten(-2)
    if not with_derivatives:
        return Corners(u0, v0, weight)
    sign = torch.tensor([-1.0, 1.0], dtype=x.dtype, device=x.device)
    d_du = (wv[..., :, None] * sign * inside_u[..., None, None]).flatten(-2)
    d_dv = (sign[:, None] * wu[..., None, :] * inside_v[..., None, None]).flatten(-2)
    return Corners(u0, v0, weight, d_du, d_dv)


def pad_levels(value: Tensor, sizes: list[tuple[int, int]]) -> Tensor:
    """(N, S, M, D) -> ((n m s'), d): every level with a one-pixel ring of zeros, one row per
    (image, head, padded pixel); S' = sum_l (H_l + 2)(W_l + 2), levels in order."""
    levels = []
    for (h, w), level in zip(sizes, value.split([h * w for h, w in sizes], dim=1)):
        maps = level.unflatten(1, (h, w)).permute(0, 3, 1, 2, 4)  # (N, M, H, W, D)
        levels.append(torch.nn.functional.pad(maps, (0, 0, 1, 1, 1, 1)).flatten(2, 3))
    return torch.cat(levels, dim=2).flatten(0, 2)


def from_quads(grad_quads: Tensor, n: int, m: int, sizes: list[tuple[int, int]]) -> Tensor:
    """Adjoint of ``to_quads``: ((n m s'), 4, d) -> (N, S, M, D); each quad slot adds back into
    the pixel it was copied from, and the zero ring is dropped."""
    d = grad_quads.shape[-1]
    blocks = grad_quads.view(n, m, -1, 4, d).split([(h + 1) * (w + 1) for h, w in sizes], dim=2)
    levels = []
    for (h, w), block in zip(sizes, blocks):
        block = block.unflatten(2, (h + 1, w + 1))  # (N, M, H+1, W+1, 4, D)
        padded = block.new_zeros(n, m, h + 2, w + 2, d)
        for c, (j, i) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            padded[:, :, j:j + h + 1, i:i + w + 1] += block[..., c, :]
        levels.append(padded[:, :, 1:-1, 1:-1].flatten(2, 3).permute(0, 2, 1, 3))  # (N, H*W, M, D)
    return torch.cat(levels, dim=1)


def level_starts(sizes: list[tuple[int, int]], extra: int) -> list[int]:
    """First row of each level within one (n, m) block of maps grown by ``extra`` pixels per
    side: 2 for padded maps, 1 for quads."""
    starts, start = [], 0
    for h, w in sizes:
        starts.append(start)
        start += (h + extra) * (w + extra)
    return starts


def unpad_levels(grad_table: Tensor, n: int, m: int, sizes: list[tuple[int, int]]) -> Tensor:
    """Adjoint of ``pad_levels``: ((n m s'), d) -> (N, S, M, D), the zero ring dropped."""
    blocks = grad_table.view(n, m, -1, grad_table.shape[-1]).split([(h + 2) * (w + 2) for h, w in sizes], dim=2)
    levels = [b.unflatten(2, (h + 2, w + 2))[:, :, 1:-1, 1:-1].flatten(2, 3).permute(0, 2, 1, 3)
              for (h, w), b in zip(sizes, blocks)]
    return torch.cat(levels, dim=1)
