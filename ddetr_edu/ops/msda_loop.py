"""The teaching backend: the attention core as plain loops, one sample point at a time.

Slow (Python loops) and meant for tiny inputs: it is the oracle that every other backend is
tested against, and the arithmetic that chapter 2 of the book walks through. Autograd
differentiates it (the weights are tensors; the corner indices are integers).
"""
from __future__ import annotations

import math

import torch
from einops import unpack
from torch import Tensor

from .bilinear import non_finite_to_outside
from .levels import Levels
from .precision import compute_dtype


def bilinear_read(level_values: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Read one point from one head's map.

    level_values: (H, W, D); x, y: 0-d tensors, normalised (align_corners=False) -> (D,).
    """
    height, width, depth = level_values.shape
    u = x * width - 0.5  # pixel coordinates: pixel i has its centre at i + 0.5 - 0.5 = i
    v = y * height - 0.5
    u0, v0 = math.floor(float(u.detach())), math.floor(float(v.detach()))
    fu, fv = u - u0, v - v0  # fractional parts, still tensors so gradients reach x and y
    out = level_values.new_zeros(depth)
    for cu, cv, weight in ((u0, v0, (1 - fu) * (1 - fv)), (u0 + 1, v0, fu * (1 - fv)),
                           (u0, v0 + 1, (1 - fu) * fv), (u0 + 1, v0 + 1, fu * fv)):
        if 0 <= cu < width and 0 <= cv < height:  # outside the map reads zero
            out = out + weight * level_values[cv, cu]
    return out


def ms_deform_attn_loop(value: Tensor, levels: Levels, sampling_locations: Tensor,
                        attention_weights: Tensor) -> Tensor:
    """value (N, S, M, D), levels, locations (N, Lq, M, L, K, 2), weights (N, Lq, M, L, K)
    -> (N, Lq, M*D) in value's dtype (half precision is computed in float32)."""
    out_dtype = value.dtype
    compute = compute_dtype(sampling_locations)
    value, sampling_locations, attention_weights = (
        t.to(compute) for t in (value, sampling_locations, attention_weights))
    sampling_locations = non_finite_to_outside(sampling_locations)  # NaN/inf: read zeros
    n_batch, _, n_heads, depth = value.shape
    _, n_queries, _, _, n_points, _ = sampling_locations.shape
    per_level = unpack(value, list(levels.sizes), "n * m d")  # L x (N, H_l, W_l, M, D)
    rows = []
    for n in range(n_batch):
        for q in range(n_queries):
            heads = []
            for m in range(n_heads):
                acc = value.new_zeros(depth)
                for l, level in enumerate(per_level):
                    level_values = level[n, :, :, m]  # (H, W, D)
                    for k in range(n_points):
                        x, y = sampling_locations[n, q, m, l, k]
                        acc = acc + attention_weights[n, q, m, l, k] * bilinear_read(level_values, x, y)
                heads.append(acc)
            rows.append(torch.cat(heads))  # head-major: channel m * D + d
    if not rows:  # N = 0 or Lq = 0: nothing is read, yet backward must still reach the inputs
        return (value.new_zeros(n_batch, n_queries, n_heads * depth) + _zero_tied_to(
            value, sampling_locations, attention_weights)).to(out_dtype)
    return torch.stack(rows).reshape(n_batch, n_queries, n_heads * depth).to(out_dtype)


def _zero_tied_to(*tensors: Tensor) -> Tensor:
    """A 0-d zero whose gradient reaches every tensor (as zeros), for an empty output."""
    return sum(t.sum() for t in tensors) * 0
