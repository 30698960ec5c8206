"""The default backend: multi-scale deformable attention core with einops, forward and backward.

    out[n, q, m] = sum_l sum_k A[n, q, m, l, k] * x^l_m(p[n, q, m, l, k])       (a D-vector)

where x^l_m(p) is the bilinear read of head m's values on level l (see ``bilinear.py``):

    x^l_m(p) = sum_c b_c(p) * V[n, start_l + idx_c(p), m]

The forward gathers the four corners of every sample point level by level and folds them with
their weights b_c * A. Autograd would keep every gathered corner (N*Lq*M*L*K*4*D numbers) for the
backward; instead the backward below recomputes the gathers and applies the gradient formulas,
so the op keeps only its inputs (memory O(inputs + outputs)). With g = dLoss/d out[n, q, m]:

    dLoss/dA[n,q,m,l,k]       = < x^l_m(p), g >            = sum_c b_c <V_c, g>
    dLoss/dV[n, idx_c, m]    += A * b_c * g
    dLoss/dp_x[n,q,m,l,k]     = A * W_l * sum_c (d b_c / d u) <V_c, g>     (u = x W_l - 1/2)
    dLoss/dp_y[n,q,m,l,k]     = A * H_l * sum_c (d b_c / d v) <V_c, g>     (v = y H_l - 1/2)

The CUDA kernel (``kernels/``) implements exactly these formulas.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bilinear import bilinear_corners, pad_levels, unpad_levels
from .levels import level_sizes

# Low-precision inputs are computed in float32 and the result is cast back.
_COMPUTE_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}

# Gathered corner rows per step. Working through the queries in chunks keeps the temporaries
# small (about 32 MiB at D = 32, float32) and reused, instead of one N*Lq*M*L*K*4*D buffer.
CHUNK_ROWS = 1 << 18


def _query_chunks(n: int, m: int, lq: int, l: int, k: int) -> list[slice]:
    step = max(1, CHUNK_ROWS // (n * m * l * k * 4))
    return [slice(q0, min(q0 + step, lq)) for q0 in range(0, lq, step)]


class _Layout:
    """Where the levels live in the ((n m s'), d) table of zero-padded maps."""

    def __init__(self, value: Tensor, spatial_shapes: Tensor):
        n, _, m, _ = value.shape
        self.sizes = level_sizes(spatial_shapes)
        self.table, starts = pad_levels(value, self.sizes)  # one row per (n, m, padded pixel)
        rows_per_block = self.table.shape[0] // (n * m)
        block = torch.arange(n * m, device=value.device).view(n, m, 1, 1, 1, 1) * rows_per_block
        level = torch.tensor(starts, device=value.device).view(-1, 1, 1)  # (L, 1, 1)
        self.first_row = block + level  # (N, M, 1, L, 1, 1)
        self.height = spatial_shapes[:, :1].to(value.device)  # (L, 1), broadcasts over k
        self.width = spatial_shapes[:, 1:].to(value.device)


class _Samples:
    """The sample points of a chunk of queries, all levels at once.
    Tensors are (N, M, Qc, L, K, 4) unless noted."""

    def __init__(self, layout: _Layout, locations: Tensor, attention: Tensor,
                 with_derivatives: bool = False):
        x = rearrange(locations[..., 0], "n q m l k -> n m q l k")
        y = rearrange(locations[..., 1], "n q m l k -> n m q l k")
        self.corners = bilinear_corners(x, y, layout.height, layout.width, with_derivatives)
        self.rows = (layout.first_row + self.corners.index).flatten()  # (N*M*Qc*L*K*4,)
        self.attn = rearrange(attention, "n q m l k -> n m q l k")
        self.fold = self.corners.weight * self.attn[..., None]  # A * b_c

    def gather(self, table: Tensor) -> Tensor:
        """-> ((n m q), (l k c), d): the value rows of every corner."""
        n, m, qc = self.fold.shape[:3]
        return table.index_select(0, self.rows).view(n * m * qc, -1, table.shape[-1])


class _MSDeformAttnEinops(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, spatial_shapes, sampling_locations, attention_weights):
        n, _, m, d = value.shape
        _, lq, _, l, k, _ = sampling_locations.shape
        layout = _Layout(value, spatial_shapes)
        out = value.new_empty(n, m, lq, d)
        for chunk in _query_chunks(n, m, lq, l, k):
            samples = _Samples(layout, sampling_locations[:, chunk], attention_weights[:, chunk])
            fold = rearrange(samples.fold, "n m q l k c -> (n m q) 1 (l k c)")
            # sum over l, k, c of A b_c V_c, as one batched matrix product
            out[:, :, chunk] = torch.bmm(fold, samples.gather(layout.table)).view(n, m, -1, d)
        ctx.save_for_backward(value, spatial_shapes, sampling_locations, attention_weights)
        return rearrange(out, "n m q d -> n q (m d)")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        value, spatial_shapes, sampling_locations, attention_weights = ctx.saved_tensors
        n, _, m, d = value.shape
        _, lq, _, l, k, _ = sampling_locations.shape
        need_value, _, need_loc, need_attn = ctx.needs_input_grad
        layout = _Layout(value, spatial_shapes)
        g_all = rearrange(grad_out, "n q (m d) -> n m q d", m=m)
        grad_table = torch.zeros_like(layout.table) if need_value else None
        grad_loc = torch.zeros_like(sampling_locations) if need_loc else None
        grad_attn = torch.zeros_like(attention_weights) if need_attn else None
        for chunk in _query_chunks(n, m, lq, l, k):
            g = rearrange(g_all[:, :, chunk], "n m q d -> (n m q) d 1")  # dLoss/d out
            samples = _Samples(layout, sampling_locations[:, chunk], attention_weights[:, chunk],
                               with_derivatives=need_loc)
            shape = samples.fold.shape  # (N, M, Qc, L, K, 4)
            if need_loc or need_attn:
                dot = torch.bmm(samples.gather(layout.table), g).view(shape)  # <V_c, g>
                if need_attn:  # dA = sum_c b_c <V_c, g>
                    grad_a = (samples.corners.weight * dot).sum(-1)
                    grad_attn[:, chunk] = rearrange(grad_a, "n m q l k -> n q m l k")
                if need_loc:  # dx = A W_l sum_c (db_c/du) <V_c, g>, dy likewise with H_l
                    grad_u = samples.attn * (samples.corners.d_weight_du * dot).sum(-1) * layout.width
                    grad_v = samples.attn * (samples.corners.d_weight_dv * dot).sum(-1) * layout.height
                    grad_loc[:, chunk] = rearrange([grad_u, grad_v], "xy n m q l k -> n q m l k xy")
            if need_value:  # dV[idx_c] += A b_c g
                fold = rearrange(samples.fold, "n m q l k c -> (n m q) (l k c) 1")
                contrib = torch.bmm(fold, g.transpose(1, 2))  # ((n m q), (l k c), d)
                grad_table.index_add_(0, samples.rows, contrib.view(-1, d))
        grad_value = unpad_levels(grad_table, n, m, layout.sizes) if need_value else None
        return grad_value, None, grad_loc, grad_attn


def ms_deform_attn_einops(value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor,
                          attention_weights: Tensor) -> Tensor:
    """value (N, S, M, D), spatial_shapes (L, 2), locations (N, Lq, M, L, K, 2),
    weights (N, Lq, M, L, K) -> (N, Lq, M*D). Half precision is computed in float32."""
    dtype = value.dtype
    compute = _COMPUTE_DTYPE.get(dtype, dtype)
    out = _MSDeformAttnEinops.apply(value.to(compute), spatial_shapes,
                                    sampling_locations.to(compute), attention_weights.to(compute))
    return out.to(dtype)
