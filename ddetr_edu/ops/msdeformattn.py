"""``MSDeformAttn``: the multi-scale deformable attention module of the paper.

    MSDeformAttn(z_q, p_q, {x^l}) = sum_m W_m [ sum_l sum_k A_mlqk * W'_m x^l(phi_l(p_q) + dp_mlqk) ]

From each query's content z_q one linear layer predicts the offsets dp (2*M*L*K numbers) and
another the attention logits (M*L*K numbers, softmaxed over the L*K samples of each head).
W'_m is ``value_proj`` (all heads at once), W_m is ``output_proj``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .checks import expect_rank, expect_size
from .dispatch import check_backend, ms_deform_attn_on_levels
from .levels import Levels, SpatialShapes, StartIndex, as_levels, small_tensor
from .precision import autocast_off


def star_offsets(n_heads: int, n_levels: int, n_points: int) -> Tensor:
    """The paper's initial offsets, (M, L, K, 2) in pixels of each level.

    Head m points along the angle 2*pi*m/M, scaled so its largest coordinate is 1; point k sits
    k+1 steps along it; every level starts with the same pattern: a star around the reference.
    """
    angles = torch.arange(n_heads, dtype=torch.float32) * (2.0 * math.pi / n_heads)
    directions = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (M, 2)
    directions = directions / directions.abs().max(dim=-1, keepdim=True).values
    steps = torch.arange(1, n_points + 1, dtype=torch.float32)  # (K,)
    star = directions[:, None, None, :] * steps[None, None, :, None]  # (M, 1, K, 2)
    return star.expand(n_heads, n_levels, n_points, 2).clone()


def check_module_arguments(d_model: int, n_levels: int, n_heads: int, n_points: int, backend: str) -> None:
    """ValueError naming the first constructor argument of ``MSDeformAttn`` that is unusable."""
    for name, size in (("d_model", d_model), ("n_levels", n_levels), ("n_heads", n_heads),
                       ("n_points", n_points)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive int, got {size!r}")
    if d_model % n_heads != 0:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    check_backend(backend)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention.

    Args:
        d_model: C, model channels; must be divisible by n_heads (D = C / M, any D works).
        n_levels: L, feature levels.
        n_heads: M, attention heads.
        n_points: K, sampling points per head and level.
        backend: attention core backend, see ``ms_deform_attn``.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 backend: str = "auto"):
        super().__init__()
        check_module_arguments(d_model, n_levels, n_heads, n_points, backend)
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.backend = backend
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: offsets start as a star, attention starts uniform."""
        nn.init.zeros_(self.sampling_offsets.weight)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(
                star_offsets(self.n_heads, self.n_levels, self.n_points).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def sampling(self, query: Tensor, reference_points: Tensor, levels: Levels):
        """Where and how much each query looks.

        query (N, Lq, C), reference_points (N, Lq, L, 2 or 4), levels ->
        locations (N, Lq, M, L, K, 2) normalised (x, y), weights (N, Lq, M, L, K).

        Computed in the dtype of the layers' weights with autocast off: under mixed precision the
        locations and weights stay float32 (see ``precision.py``); the two small linear layers
        cost little next to the value projection.
        """
        m, l, k = self.n_heads, self.n_levels, self.n_points
        with autocast_off(query.device):
            query = query.to(self.sampling_offsets.weight.dtype)
            offsets = rearrange(self.sampling_offsets(query), "n q (m l k xy) -> n q m l k xy",
                                m=m, l=l, k=k, xy=2)
            logits = rearrange(self.attention_weights(query), "n q (m lk) -> n q m lk", m=m)
            weights = rearrange(F.softmax(logits, dim=-1), "n q m (l k) -> n q m l k", l=l, k=k)
            ref = reference_points.to(offsets.dtype)[:, :, None, :, None, :]  # (N, Lq, 1, L, 1, 2 or 4)
            if reference_points.shape[-1] == 2:
                # offsets are in pixels of level l: divide by (W_l, H_l)
                size_wh = small_tensor([[w, h] for h, w in levels.sizes], offsets.dtype, offsets.device)  # (L, 2)
                locations = ref + offsets / size_wh[None, None, None, :, None, :]
            else:
                # box reference: p = centre + dp / K * (w, h) / 2
                locations = ref[..., :2] + offsets / k * ref[..., 2:] * 0.5
        return locations, weights

    def _check(self, query, reference_points, value, levels: Levels, padding_mask):
        c, l = self.d_model, self.n_levels
        expect_rank("query", query, 3, "(N, Lq, C)")
        expect_size("query", query, 2, c, "(N, Lq, C)", "d_model")
        expect_rank("value", value, 3, "(N, S, C)")
        expect_size("value", value, 2, c, "(N, S, C)", "d_model")
        expect_size("value", value, 0, query.shape[0], "(N, S, C)", "N of query")
        expect_rank("reference_points", reference_points, 4, "(N, Lq, L, 2 or 4)")
        expect_size("reference_points", reference_points, 0, query.shape[0], "(N, Lq, L, 2|4)", "N of query")
        expect_size("reference_points", reference_points, 1, query.shape[1], "(N, Lq, L, 2|4)", "Lq of query")
        expect_size("reference_points", reference_points, 2, l, "(N, Lq, L, 2|4)", "n_levels")
        if reference_points.shape[-1] not in (2, 4):
            raise ValueError("reference_points must end in 2 (points x, y) or 4 (boxes cx, cy, w, h), "
                             f"got shape {tuple(reference_points.shape)}")
        if len(levels) != l:
            raise ValueError(f"spatial_shapes has {len(levels)} levels {[list(s) for s in levels.sizes]} "
                             f"but the module has n_levels = {l}")
        if padding_mask is not None:
            expect_rank("padding_mask", padding_mask, 2, "(N, S)")
            if tuple(padding_mask.shape) != tuple(value.shape[:2]):
                raise ValueError(f"padding_mask must have shape (N, S) = {tuple(value.shape[:2])}, "
                                 f"got {tuple(padding_mask.shape)}")
            if padding_mask.dtype != torch.bool:
                raise ValueError(f"padding_mask must be bool (True = padding), got {padding_mask.dtype}")

    def forward(self, query: Tensor, reference_points: Tensor, value: Tensor,
                spatial_shapes: Levels | SpatialShapes, level_start_index: StartIndex | None = None,
                padding_mask: Tensor | None = None, return_sampling: bool = False):
        """
        Args:
            query: (N, Lq, C) query content z_q (plus positional embedding).
            reference_points: (N, Lq, L, 2) normalised points or (N, Lq, L, 4) boxes cxcywh.
            value: (N, S, C) flattened multi-level features x^l.
            spatial_shapes: a ``Levels`` (what the detector passes) or [(H_l, W_l), ...] Python
                ints (no host sync), or the official int64 (L, 2) tensor (read once: a host sync
                when it lives on a GPU).
            level_start_index: (L,) first token of each level, ints or tensor, checked against
                the shapes; or None.
            padding_mask: (N, S) bool, True where value is padding (those values are zeroed).
            return_sampling: also return the locations and weights used.

        Returns:
            (N, Lq, C), or (out, locations (N, Lq, M, L, K, 2), weights (N, Lq, M, L, K)).
        """
        levels = as_levels(spatial_shapes, level_start_index)
        self._check(query, reference_points, value, levels, padding_mask)
        v = self.value_proj(value)  # under autocast: float16/bfloat16
        if padding_mask is not None:
            v = v.masked_fill(padding_mask[..., None], 0.0)
        v = rearrange(v, "n s (m d) -> n s m d", m=self.n_heads)
        locations, weights = self.sampling(query, reference_points, levels)  # float32 under autocast
        out = self.output_proj(ms_deform_attn_on_levels(v, levels, locations, weights, self.backend))
        if return_sampling:
            return out, locations, weights
        return out
