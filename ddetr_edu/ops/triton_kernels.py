"""The attention core as two Triton kernels, forward and backward (needs ``triton``).

The arithmetic is the CUDA kernel's (``csrc/msda_math.h``) and the einops backend's, written as
block operations. One program owns BLOCK_H "heads" -- (n, q, m) triples, the rows of the
(N*Lq*M, D) output -- and all D channels of each, a (BLOCK_H, BLOCK_D) tile (BLOCK_D = D rounded
up to a power of two, the extra lanes masked). For every level l and point k it reads the point
(x, y), the weight a and the four corners of the bilinear read:

    u = x W_l - 1/2, v = y H_l - 1/2,  u0 = floor(u), v0 = floor(v), fu = u - u0, fv = v - v0
    corners (u0 + i, v0 + j), weights b_00 = (1-fu)(1-fv), b_10 = fu(1-fv), b_01 = (1-fu)fv, b_11 = fu fv
    out[h, :] += a * sum_c b_c * V[n, start_l + (v0+j) W_l + (u0+i), m, :]      (a corner outside reads 0)

The backward, with g = dLoss/dout[h, :] and dot_c = <V_c, g>:

    dLoss/dV_c += a b_c g         (scattered with atomic adds into a float32 buffer)
    dLoss/da    = sum_c b_c dot_c
    dLoss/dx    = a W sum_c (db_c/du) dot_c,   dLoss/dy = a H sum_c (db_c/dv) dot_c

The level geometry arrives as plain integer arguments (H_l, W_l, start_l for up to
``MAX_LEVELS`` levels, picked per level by scalar selects): no table to copy to the GPU before a
launch, nothing read back from it. The loops over levels and points stay loops; only the four
corners are unrolled (unrolling all L*K*4 corner reads made the forward alone about 35,000 lines
of PTX, minutes to compile on a busy CPU).

A point with a NaN or infinite coordinate, or one whose corners are all outside, fails the test
``-1 <= u < W and -1 <= v < H`` (NaN compares false), so it reads zeros and gets zero gradient.

``TRITON_INTERPRET=1`` in the environment when this module is first imported makes the kernels run
on CPU tensors under Triton's interpreter (NumPy): that is how the tests check them without a GPU.
For that to work after torch has imported Triton, the kernels call only Triton's builtins, not its
``@jit`` library functions (decorated for the GPU at that import): ``tl.full`` rather than
``tl.zeros``, and ``_row_sum`` rather than ``tl.sum``.
"""
from __future__ import annotations

import triton
import triton.language as tl

MAX_LEVELS = 8  # level geometry slots in the kernels' signatures


@triton.jit
def _pick(level, a0, a1, a2, a3, a4, a5, a6, a7):
    """The argument of index ``level``: seven scalar selects, once per level (not per point)."""
    picked = tl.where(level == 6, a6, a7)
    picked = tl.where(level == 5, a5, picked)
    picked = tl.where(level == 4, a4, picked)
    picked = tl.where(level == 3, a3, picked)
    picked = tl.where(level == 2, a2, picked)
    picked = tl.where(level == 1, a1, picked)
    return tl.where(level == 0, a0, picked)


@triton.jit
def _row_sum(tile):
    """(BLOCK_H, BLOCK_D) -> (BLOCK_H,): ``tl.sum(tile, axis=1)`` spelled as the reduction it is,
    with Triton's own sum combiner, which the interpreter maps to one NumPy sum."""
    return tl.reduce(tile, 1, tl.standard._sum_combine)


@triton.jit
def _locate(x, y, height, width):
    """(BLOCK_H,) normalised points -> top-left corner (u0, v0) (int32), fractions (fu, fv), and
    whether any corner is inside. Points with no corner inside (NaN and +-inf too) get
    u0 = v0 = 0 and fu = fv = 0, so nothing downstream sees a non-finite number."""
    u = x * width - 0.5
    v = y * height - 0.5
    ok = (u >= -1.0) & (u < width) & (v >= -1.0) & (v < height)
    u = tl.where(ok, u, 0.0)
    v = tl.where(ok, v, 0.0)
    u_floor = tl.floor(u)
    v_floor = tl.floor(v)
    return u_floor.to(tl.int32), v_floor.to(tl.int32), u - u_floor, v - v_floor, ok


@triton.jit
def _corner(ok, u0, v0, fu, fv, height, width, I: tl.constexpr, J: tl.constexpr):
    """Corner (u0 + I, v0 + J): (pixel index within the level, inside the map?, bilinear weight)."""
    col = u0 + I
    row = v0 + J
    inside = ok & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    wu = fu if I == 1 else 1.0 - fu
    wv = fv if J == 1 else 1.0 - fv
    return row * width + col, inside, tl.where(inside, wu * wv, 0.0)


@triton.jit
def msda_forward_kernel(
    value_ptr, loc_ptr, attn_ptr, out_ptr,
    total_heads, queries_heads, heads, tokens, channels,
    h0, h1, h2, h3, h4, h5, h6, h7,
    w0, w1, w2, w3, w4, w5, w6, w7,
    s0, s1, s2, s3, s4, s5, s6, s7,
    LEVELS: tl.constexpr, POINTS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """value (N, S, M, D), loc (N, Lq, M, L, K, 2), attn (N, Lq, M, L, K) -> out (N, Lq, M, D).
    total_heads = N*Lq*M, queries_heads = Lq*M; accumulates in loc's dtype."""
    head = tl.program_id(0).to(tl.int64) * BLOCK_H + tl.arange(0, BLOCK_H)  # (BLOCK_H,) index of (n, q, m)
    head_ok = head < total_heads
    d = tl.arange(0, BLOCK_D)
    d_ok = d < channels
    row = heads * channels  # stride of one token in value
    base = (head // queries_heads) * tokens * row + (head % heads) * channels  # value[n, 0, m, 0]
    acc = tl.full((BLOCK_H, BLOCK_D), 0, dtype=loc_ptr.dtype.element_ty)
    for level in range(LEVELS):
        height = _pick(level, h0, h1, h2, h3, h4, h5, h6, h7)
        width = _pick(level, w0, w1, w2, w3, w4, w5, w6, w7)
        start = _pick(level, s0, s1, s2, s3, s4, s5, s6, s7)
        for point in range(POINTS):
            sample = head * (LEVELS * POINTS) + level * POINTS + point  # (BLOCK_H,)
            x = tl.load(loc_ptr + 2 * sample, mask=head_ok, other=-2.0)
            y = tl.load(loc_ptr + 2 * sample + 1, mask=head_ok, other=-2.0)
            a = tl.load(attn_ptr + sample, mask=head_ok, other=0.0)
            u0, v0, fu, fv, ok = _locate(x, y, height, width)
            for c in tl.static_range(4):
                pixel, inside, b = _corner(ok, u0, v0, fu, fv, height, width, c % 2, c // 2)
                offset = base + (start + pixel) * row  # (BLOCK_H,)
                corner = tl.load(value_ptr + offset[:, None] + d[None, :],
                                 mask=inside[:, None] & d_ok[None, :], other=0.0)
                acc += (a * b)[:, None] * corner.to(acc.dtype)
    tl.store(out_ptr + head[:, None] * channels + d[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=head_ok[:, None] & d_ok[None, :])


@triton.jit
def msda_backward_kernel(
    value_ptr, loc_ptr, attn_ptr, grad_out_ptr, grad_value_ptr, grad_loc_ptr, grad_attn_ptr,
    total_heads, queries_heads, heads, tokens, channels,
    h0, h1, h2, h3, h4, h5, h6, h7,
    w0, w1, w2, w3, w4, w5, w6, w7,
    s0, s1, s2, s3, s4, s5, s6, s7,
    LEVELS: tl.constexpr, POINTS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """grad_out (N, Lq, M, D) -> grad_value (N, S, M, D) (atomic adds into a zeroed buffer of
    loc's dtype), grad_loc (N, Lq, M, L, K, 2) and grad_attn (N, Lq, M, L, K) (plain stores)."""
    head = tl.program_id(0).to(tl.int64) * BLOCK_H + tl.arange(0, BLOCK_H)
    head_ok = head < total_heads
    d = tl.arange(0, BLOCK_D)
    d_ok = d < channels
    row = heads * channels
    base = (head // queries_heads) * tokens * row + (head % heads) * channels
    tile_ok = head_ok[:, None] & d_ok[None, :]
    acc_type = loc_ptr.dtype.element_ty
    g = tl.load(grad_out_ptr + head[:, None] * channels + d[None, :], mask=tile_ok, other=0.0).to(acc_type)
    for level in range(LEVELS):
        height = _pick(level, h0, h1, h2, h3, h4, h5, h6, h7)
        width = _pick(level, w0, w1, w2, w3, w4, w5, w6, w7)
        start = _pick(level, s0, s1, s2, s3, s4, s5, s6, s7)
        for point in range(POINTS):
            sample = head * (LEVELS * POINTS) + level * POINTS + point
            x = tl.load(loc_ptr + 2 * sample, mask=head_ok, other=-2.0)
            y = tl.load(loc_ptr + 2 * sample + 1, mask=head_ok, other=-2.0)
            a = tl.load(attn_ptr + sample, mask=head_ok, other=0.0)
            u0, v0, fu, fv, ok = _locate(x, y, height, width)
            d_attn = tl.full((BLOCK_H,), 0, dtype=acc_type)
            d_u = tl.full((BLOCK_H,), 0, dtype=acc_type)
            d_v = tl.full((BLOCK_H,), 0, dtype=acc_type)
            for c in tl.static_range(4):
                pixel, inside, b = _corner(ok, u0, v0, fu, fv, height, width, c % 2, c // 2)
                offset = base + (start + pixel) * row
                corner_ok = inside[:, None] & d_ok[None, :]
                corner = tl.load(value_ptr + offset[:, None] + d[None, :], mask=corner_ok, other=0.0)
                dot = _row_sum(corner.to(acc_type) * g)  # (BLOCK_H,) <V_c, g>, 0 outside
                d_attn += b * dot
                # db/du and db/dv of corner (I, J) = (c % 2, c // 2)
                d_u += (fv if c // 2 == 1 else 1.0 - fv) * (1.0 if c % 2 == 1 else -1.0) * dot
                d_v += (fu if c % 2 == 1 else 1.0 - fu) * (1.0 if c // 2 == 1 else -1.0) * dot
                tl.atomic_add(grad_value_ptr + offset[:, None] + d[None, :], (a * b)[:, None] * g,
                              mask=corner_ok, sem="relaxed")
            tl.store(grad_attn_ptr + sample, d_attn, mask=head_ok)
            tl.store(grad_loc_ptr + 2 * sample, a * width * d_u, mask=head_ok)
            tl.store(grad_loc_ptr + 2 * sample + 1, a * height * d_v, mask=head_ok)


def block_sizes(channels: int, heads: int, interpreted: bool) -> tuple[int, int]:
    """(BLOCK_H, BLOCK_D) for ``heads`` = N*Lq*M rows of D channels: all D channels of a head in
    one tile. On a GPU about 2048 numbers per tile; under the interpreter, whose cost is per
    operation rather than per number, up to 1024 heads per program (usually one program)."""
    block_d = triton.next_power_of_2(max(channels, 1))
    if interpreted:
        return min(1024, triton.next_power_of_2(max(heads, 1))), block_d
    return max(1, min(64, 2048 // block_d)), block_d
