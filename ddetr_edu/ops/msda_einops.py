"""The readable backend: the attention core as gathers and one einsum per level, with einops.

    out[n, q, m] = sum_l sum_k A[n, q, m, l, k] * x^l_m(p[n, q, m, l, k])       (a D-vector)

where x^l_m(p) is the bilinear read of head m's values on level l at the point p:

    x^l_m(p) = sum_c b_c(p) * V^l[n, m, corner c of p]          (c: the 4 neighbouring pixels)

Per level the recipe is the one of chapter 2 (see ``bilinear.py``):

1. lay the level out as maps, one per (image, head), with a one-pixel ring of zeros:
   (N, M, (H+2)(W+2), D), so that every corner of every point is a valid index;
2. ``bilinear_corners``: for every point (N, Lq, M, K) the padded index of its top-left corner and
   the four weights b_c;
3. gather the four corners of every point: (N, M, Lq*K*4, D);
4. one einsum: sum over k and c of A * b_c * corner -> (N, Lq, M, D), added over the levels.

Autograd differentiates it (the weights b_c depend on the location through the fractions
f_u, f_v; the corner indices are integers). Memory: the gathered corners, N*Lq*M*K*4*D numbers
per level, are written in the forward and kept for the backward (the gather index is one int64
per corner, broadcast over D by ``expand``, not copied); fine on a laptop and for teaching, while
on a GPU the kernel and grid_sample backends are the fast ones. Half precision is computed in
float32 and the result cast back to value's dtype (see ``precision.py``).
"""
from __future__ import annotations

import torch.nn.functional as F
from einops import einsum, rearrange, unpack
from torch import Tensor

from .bilinear import CORNER_OFFSETS, bilinear_corners, non_finite_to_outside
from .levels import Levels
from .precision import compute_dtype


def ms_deform_attn_einops(value: Tensor, levels: Levels, sampling_locations: Tensor,
                          attention_weights: Tensor) -> Tensor:
    """value (N, S, M, D), levels, locations (N, Lq, M, L, K, 2), weights (N, Lq, M, L, K)
    -> (N, Lq, M*D) in value's dtype."""
    n, _, m, d = value.shape
    lq, k = sampling_locations.shape[1], sampling_locations.shape[4]
    compute = compute_dtype(sampling_locations)
    sampling_locations = non_finite_to_outside(sampling_locations.to(compute))  # NaN/inf: read zeros
    attention_weights = attention_weights.to(compute)
    per_level = unpack(value.to(compute), list(levels.sizes), "n * m d")  # L x (N, H_l, W_l, M, D)
    out = sampling_locations.new_zeros(n, lq, m, d)
    for level, ((h, w), maps) in enumerate(zip(levels.sizes, per_level)):
        # 1. maps with a ring of zeros, one row per padded pixel: (N, M, (H+2)(W+2), D)
        maps = rearrange(F.pad(maps, (0, 0, 0, 0, 1, 1, 1, 1)), "n h w m d -> n m (h w) d")
        # 2. corners and weights of every point: (N, Lq, M, K) and (N, Lq, M, K, 4)
        x, y = sampling_locations[:, :, :, level].unbind(-1)
        corners = bilinear_corners(x, y, h, w)
        top_left = corners.v0 * (w + 2) + corners.u0  # index in the padded map
        steps = [dv * (w + 2) + du for dv, du in CORNER_OFFSETS]  # the 4 corners, c = 2 j + i
        index = rearrange([top_left + step for step in steps], "c n q m k -> n m (q k c) 1")
        # 3. gather: (N, M, Lq*K*4, D)
        gathered = maps.gather(2, index.expand(-1, -1, -1, d))
        gathered = rearrange(gathered, "n m (q k c) d -> n q m k c d", k=k, c=4)
        # 4. weight A * b_c and sum over points and corners
        weight = attention_weights[:, :, :, level, :, None] * corners.weight  # (N, Lq, M, K, 4)
        out = out + einsum(weight, gathered, "n q m k c, n q m k c d -> n q m d")
    return rearrange(out, "n q m d -> n q (m d)").to(value.dtype)
