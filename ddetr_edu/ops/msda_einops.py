"""The default backend: multi-scale deformable attention core with einops, forward and backward.

    out[n, q, m] = sum_l sum_k A[n, q, m, l, k] * x^l_m(p[n, q, m, l, k])       (a D-vector)

where x^l_m(p) is the bilinear read of head m's values on level l (see ``bilinear.py``):

    x^l_m(p) = sum_c b_c(p) * V[n, start_l + idx_c(p), m]

Read as linear algebra, the whole core is one sparse matrix product. Put every level of V, with
a one-pixel ring of zeros, in a table with one row per (image, head, padded pixel); then

    out = P @ table,   P[(n, m, q), row of corner c of point (l, k)] = A[n, q, m, l, k] * b_c

P is a sparse "sampling matrix" with 4*L*K nonzeros per row (``torch.sparse_csr_tensor``). Autograd through a
gather would keep every gathered corner (N*Lq*M*L*K*4*D numbers) for the backward; instead the
backward below applies the gradient formulas directly, so the op keeps only its inputs and the
padded table (memory O(inputs + outputs)). The queries are processed in chunks so that the
temporaries stay small. With g = dLoss/d out[n, q, m]:

    dLoss/dA[n,q,m,l,k]       = < x^l_m(p), g >            = sum_c b_c <V_c, g>
    dLoss/dV[n, idx_c, m]    += A * b_c * g
    dLoss/dp_x[n,q,m,l,k]     = A * W_l * sum_c (d b_c / d u) <V_c, g>     (u = x W_l - 1/2)
    dLoss/dp_y[n,q,m,l,k]     = A * H_l * sum_c (d b_c / d v) <V_c, g>     (v = y H_l - 1/2)

The CUDA kernel (``kernels/``) implements exactly these formulas.
"""
from __future__ import annotations

import warnings

import torch
from einops import rearrange
from torch import Tensor
from torch.autograd.function import once_differentiable

from .bilinear import bilinear_corners, from_quads, level_starts, pad_levels, unpad_levels
from .levels import level_sizes

# Low-precision inputs are computed in float32 and the result is cast back.
_COMPUTE_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}

# Sample points per step. Working through the queries in chunks keeps the temporaries small
# (about 16 MiB at D = 32, float32) and reused, instead of one N*Lq*M*L*K*4*D buffer.
CHUNK_POINTS = 1 << 15


def _query_chunks(n: int, m: int, lq: int, l: int, k: int) -> list[slice]:
    step = max(1, CHUNK_POINTS // max(1, n * m * l * k))  # an empty batch still works
    return [slice(q0, min(q0 + step, lq)) for q0 in range(0, lq, step)]


class _Layout:
    """Where the levels live: the padded value table ((n m s'), d) read by the forward, and the
    quads ((n m s''), 4 d) that the value gradient is accumulated in."""

    def __init__(self, value: Tensor, spatial_shapes: Tensor):
        n, _, m, d = value.shape
        device = value.device
        self.sizes = level_sizes(spatial_shapes)
        self.table = pad_levels(value, self.sizes)
        self.height = spatial_shapes[:, :1].to(device)  # (L, 1), broadcasts over k
        self.width = spatial_shapes[:, 1:].to(device)
        blocks = torch.arange(n * m, device=device).view(n, m, 1, 1, 1)  # (N, M, 1, 1, 1) as (n m q l k)
        pixels_per_block = sum((h + 2) * (w + 2) for h, w in self.sizes)
        quads_per_block = sum((h + 1) * (w + 1) for h, w in self.sizes)
        self.first_pixel = blocks * pixels_per_block + torch.tensor(level_starts(self.sizes, 2), device=device).view(-1, 1)
        self.first_quad = blocks * quads_per_block + torch.tensor(level_starts(self.sizes, 1), device=device).view(-1, 1)
        self.num_quads = n * m * quads_per_block
        padded_width = self.width + 2  # (L, 1)
        self.corner_step = torch.cat([torch.zeros_like(padded_width), torch.ones_like(padded_width),
                                      padded_width, padded_width + 1], dim=-1)[:, None, :]  # (L, 1, 4)


class _Samples:
    """The sample points of a chunk of queries, all levels at once: (N, M, Qc, L, K) points and
    their corners (N, M, Qc, L, K, 4)."""

    def __init__(self, layout: _Layout, locations: Tensor, attention: Tensor,
                 with_derivatives: bool = False):
        x = rearrange(locations[..., 0], "n q m l k -> n m q l k")
        y = rearrange(locations[..., 1], "n q m l k -> n m q l k")
        self.corners = bilinear_corners(x, y, layout.height, layout.width, with_derivatives)
        self.attn = rearrange(attention, "n q m l k -> n m q l k")
        self.fold = self.corners.weight * self.attn[..., None]  # A * b_c
        top_left = self.corners.v0 * (layout.width + 2) + self.corners.u0  # in the padded level
        self.pixels = (layout.first_pixel + top_left)[..., None] + layout.corner_step
        self.quads = layout.first_quad + self.corners.v0 * (layout.width + 1) + self.corners.u0

    def matrix(self, num_columns: int) -> Tensor:
        """The chunk of the sampling matrix P: rows (n m q), columns the padded table's rows, and
        4 L K nonzeros A * b_c per row. Then out = P @ table."""
        n, m, qc = self.fold.shape[:3]
        per_row = self.fold.shape[3:].numel()  # 4 L K
        index_dtype = torch.int32 if num_columns < 2**31 and self.fold.numel() < 2**31 else torch.int64
        row_starts = torch.arange(0, n * m * qc * per_row + 1, per_row, device=self.fold.device, dtype=index_dtype)
        with warnings.catch_warnings():  # torch calls sparse CSR "beta"; the ops used here are stable
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
            return torch.sparse_csr_tensor(row_starts, self.pixels.flatten().to(index_dtype),
                                           self.fold.flatten(), size=(n * m * qc, num_columns),
                                           check_invariants=False)


class _MSDeformAttnEinops(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, spatial_shapes, sampling_locations, attention_weights):
        n, _, m, d = value.shape
        _, lq, _, l, k, _ = sampling_locations.shape
        layout = _Layout(value, spatial_shapes)
        out = value.new_empty(n, m, lq, d)
        for chunk in _query_chunks(n, m, lq, l, k):
            samples = _Samples(layout, sampling_locations[:, chunk], attention_weights[:, chunk])
            # out = sum over l, k, c of A b_c V_c = P @ table
            out[:, :, chunk] = (samples.matrix(layout.table.shape[0]) @ layout.table).view(n, m, chunk.stop - chunk.start, d)
        ctx.save_for_backward(sampling_locations, attention_weights)
        ctx.layout, ctx.value_shape = layout, value.shape  # the padded table, about value's size
        return rearrange(out, "n m q d -> n q (m d)")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        sampling_locations, attention_weights = ctx.saved_tensors
        layout = ctx.layout
        n, _, m, d = ctx.value_shape
        _, lq, _, l, k, _ = sampling_locations.shape
        need_value, _, need_loc, need_attn = ctx.needs_input_grad
        g_all = rearrange(grad_out, "n q (m d) -> n m q d", m=m)
        # The value gradient dV = P^T g is scattered one row per point into quads when the points
        # are many (the encoder: fewer, wider rows), else four rows per point into the padded maps.
        use_quads = n * m * lq * l * k >= layout.num_quads
        if need_value:
            grad_table = layout.table.new_zeros(layout.num_quads, 4 * d) if use_quads else torch.zeros_like(layout.table)
        grad_loc = torch.zeros_like(sampling_locations) if need_loc else None
        grad_attn = torch.zeros_like(attention_weights) if need_attn else None
        for chunk in _query_chunks(n, m, lq, l, k):
            g = rearrange(g_all[:, :, chunk], "n m q d -> (n m q) d")  # dLoss/d out
            samples = _Samples(layout, sampling_locations[:, chunk], attention_weights[:, chunk],
                               with_derivatives=need_loc)
            shape = samples.fold.shape  # (N, M, Qc, L, K, 4)
            if need_loc or need_attn:
                # <V_c, g> for every nonzero of P: g @ table^T sampled at P's pattern
                dot = torch.sparse.sampled_addmm(samples.matrix(layout.table.shape[0]), g, layout.table.t(), beta=0).values().view(shape)
                if need_attn:  # dA = sum_c b_c <V_c, g>
                    grad_a = (samples.corners.weight * dot).sum(-1)
                    grad_attn[:, chunk] = rearrange(grad_a, "n m q l k -> n q m l k")
                if need_loc:  # dx = A W_l sum_c (db_c/du) <V_c, g>, dy likewise with H_l
                    grad_u = samples.attn * (samples.corners.d_weight_du * dot).sum(-1) * layout.width
                    grad_v = samples.attn * (samples.corners.d_weight_dv * dot).sum(-1) * layout.height
                    grad_loc[:, chunk] = rearrange([grad_u, grad_v], "xy n m q l k -> n q m l k xy")
            if need_value:  # dV[corner c] += A b_c g
                fold = rearrange(samples.fold, "n m q l k c -> (n m q) (l k) c 1")
                contrib = fold * g[:, None, None, :]  # ((n m q), (l k), 4, d)
                if use_quads:
                    grad_table.index_add_(0, samples.quads.flatten(), contrib.view(-1, 4 * d))
                else:
                    grad_table.index_add_(0, samples.pixels.flatten(), contrib.view(-1, d))
        grad_value = None
        if need_value and use_quads:
            grad_value = from_quads(grad_table.view(-1, 4, d), n, m, layout.sizes)
        elif need_value:
            grad_value = unpad_levels(grad_table, n, m, layout.sizes)
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
