"""The original reference formulation: one ``F.grid_sample`` call per level.

This is how the official pure-PyTorch path computes the core, written here with einops. It
keeps every sampled value (N*M*D*Lq*L*K numbers) for the backward. It is the baseline of
``benchmarks/msda.py`` and the stand-in for the official CPU path in ``benchmarks/detector.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, unpack
from torch import Tensor

from .bilinear import non_finite_to_outside
from .levels import Levels
from .precision import compute_dtype


def ms_deform_attn_grid_sample(value: Tensor, levels: Levels, sampling_locations: Tensor,
                               attention_weights: Tensor) -> Tensor:
    """value (N, S, M, D), levels, locations (N, Lq, M, L, K, 2), weights (N, Lq, M, L, K)
    -> (N, Lq, M*D) in value's dtype.

    grid_sample wants the map and the grid in one dtype; the locations never go below float32,
    so half precision is sampled in float32 and the result cast back.
    """
    n, _, m, _ = value.shape
    compute = compute_dtype(sampling_locations)
    sampling_locations = non_finite_to_outside(sampling_locations.to(compute))  # NaN/inf: read zeros
    attention_weights = attention_weights.to(compute)
    per_level = unpack(value.to(compute), list(levels.sizes), "n * m d")  # L x (N, H_l, W_l, M, D)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for level, maps in enumerate(per_level):
        maps = rearrange(maps, "n h w m d -> (n m) d h w")
        grid = rearrange(grids[:, :, :, level], "n q m k xy -> (n m) q k xy")
        sampled.append(F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # ((n m), d, q, k)
    stacked = torch.stack(sampled, dim=-2).flatten(-2)  # ((n m), d, q, (l k))
    weights = rearrange(attention_weights, "n q m l k -> (n m) 1 q (l k)")
    out = (stacked * weights).sum(-1)  # ((n m), d, q)
    return rearrange(out, "(n m) d q -> n q (m d)", n=n, m=m).to(value.dtype)
