"""Bilinear interpolation with zero padding, in the pixel-centre convention of
``grid_sample(align_corners=False)``.

A normalised location (x, y) in [0, 1]^2 lands on a level of size H x W at the pixel coordinate

    u = x * W - 0.5,   v = y * H - 0.5          (pixel i covers [i, i + 1), centre i + 0.5)

and reads the four neighbouring pixels (u0 + i, v0 + j), i, j in {0, 1}, with u0 = floor(u),
v0 = floor(v), fu = u - u0, fv = v - v0, and the separable weights

    b_ji = wv_j * wu_i,   wu = (1 - fu, fu),   wv = (1 - fv, fv)

    x(u, v) = (1-fu)(1-fv) x[v0, u0] + fu (1-fv) x[v0, u0+1] + (1-fu) fv x[v0+1, u0] + fu fv x[v0+1, u0+1]

Zero padding, taken literally: every map gets a one-pixel ring of zeros, so it is (H+2) x (W+2)
with the real pixel (u, v) at (u + 1, v + 1). A point is first clamped to u in [-1, W],
v in [-1, H]: beyond that every corner is outside the map, and the clamped point reads the
zero ring with weight 1 (its value and its gradient are 0, as they should be). After the clamp
all four corners are inside the padded map: no masks, no special cases.

Derivatives, needed by the backward pass: d b_ji / du = wv_j * (-1, +1)_i and
d b_ji / dv = (-1, +1)_j * wu_i (zero where the clamp is active, for the point does not move).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Corners:
    """The four bilinear corners of a batch of points, on a trailing corner axis ``c`` of size 4.

    Corner c = 2 * j + i is the pixel (u0 + i, v0 + j): top-left, top-right, bottom-left,
    bottom-right. Every tensor has the points' shape plus that axis: (*P, 4).
    """
    index: Tensor        # int64 row-major index into the zero-padded (H+2) x (W+2) map
    weight: Tensor       # b_c
    d_weight_du: Tensor | None = None  # d b_c / d u (only when asked for)
    d_weight_dv: Tensor | None = None  # d b_c / d v


def padded_pixel(x: Tensor, size) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised coordinate on an axis of ``size`` pixels (an int, or a tensor broadcastable to
    x, e.g. one size per level) -> (first corner in the padded map (int64), fraction f in [0, 1],
    whether the clamp is inactive)."""
    size = torch.as_tensor(size, dtype=x.dtype, device=x.device)
    u = x * size - 0.5
    inside = (u > -1) & (u < size)
    u = torch.minimum(u.clamp(min=-1), size)
    u0 = torch.minimum(torch.floor(u), size - 1)  # u = size: corners (size-1, size), weights 0, 1
    return (u0 + 1).to(torch.int64), u - u0, inside


def bilinear_corners(x: Tensor, y: Tensor, height, width, with_derivatives: bool = False) -> Corners:
    """Normalised points x, y (any shape P) on H x W maps -> corners (*P, 4) in the padded maps.

    height, width: ints, or int64 tensors broadcastable to P (one size per level, say).
    """
    u0, fu, inside_u = padded_pixel(x, width)
    v0, fv, inside_v = padded_pixel(y, height)
    padded_width = torch.as_tensor(width, device=x.device) + 2
    steps = torch.stack(torch.broadcast_tensors(  # (..., 4) row offsets of corner c = 2 j + i
        torch.zeros_like(padded_width), torch.ones_like(padded_width), padded_width, padded_width + 1), -1)
    index = (v0 * padded_width + u0)[..., None] + steps
    wu = torch.stack([1 - fu, fu], dim=-1)  # (*P, 2) along i
    wv = torch.stack([1 - fv, fv], dim=-1)  # (*P, 2) along j
    weight = (wv[..., :, None] * wu[..., None, :]).flatten(-2)
    if not with_derivatives:
        return Corners(index, weight)
    sign = torch.tensor([-1.0, 1.0], dtype=x.dtype, device=x.device)
    d_du = (wv[..., :, None] * sign * inside_u[..., None, None]).flatten(-2)
    d_dv = (sign[:, None] * wu[..., None, :] * inside_v[..., None, None]).flatten(-2)
    return Corners(index, weight, d_du, d_dv)


def pad_levels(value: Tensor, sizes: list[tuple[int, int]]) -> tuple[Tensor, list[int]]:
    """(N, S, M, D) -> table ((n m s'), d) of the zero-padded maps, and each level's first row
    within one (n, m) block of S' = sum (H_l + 2)(W_l + 2) rows."""
    n, _, m, _ = value.shape
    padded, starts, start = [], [], 0
    for (h, w), level in zip(sizes, value.split([h * w for h, w in sizes], dim=1)):
        maps = level.unflatten(1, (h, w)).permute(0, 3, 1, 2, 4)  # (N, M, H, W, D)
        padded.append(torch.nn.functional.pad(maps, (0, 0, 1, 1, 1, 1)).flatten(2, 3))
        starts.append(start)
        start += (h + 2) * (w + 2)
    return torch.cat(padded, dim=2).flatten(0, 2), starts


def unpad_levels(table: Tensor, n: int, m: int, sizes: list[tuple[int, int]]) -> Tensor:
    """Inverse of ``pad_levels``: ((n m s'), d) -> (N, S, M, D), the zero ring dropped."""
    blocks = table.view(n, m, -1, table.shape[-1]).split([(h + 2) * (w + 2) for h, w in sizes], dim=2)
    levels = [b.unflatten(2, (h + 2, w + 2))[:, :, 1:-1, 1:-1].flatten(2, 3).permute(0, 2, 1, 3)
              for (h, w), b in zip(sizes, blocks)]
    return torch.cat(levels, dim=1)
