"""Which attention the encoder and the decoder's cross-attention use: ``TransformerConfig.attention``.

Three kinds, one call (:func:`attend`), so that the layers around them are the same code:

* ``"deformable"`` (the paper): ``MSDeformAttn``; each query reads M x L x K bilinear samples
  around its reference point, with weights softmaxed over the L x K samples of each head.
* deformable with ``cross_level_attention=False`` (Table 2's "multi-scale inputs without
  multi-scale attention"): :class:`OwnLevelMSDeformAttn` in the encoder; a token of level l
  samples level l only. The paper's Section 5.2 credits multi-scale attention with letting the
  scale levels exchange information; without it the levels pass through the encoder side by
  side, each token seeing its own level. The decoder's cross-attention keeps every level: a
  decoder query belongs to no level, and it must read all of them for the multi-scale inputs to
  be used at all; so the encoder's cross-level exchange is the only difference between the two
  Table 2 rows.
* ``"dense"`` (DETR's baseline): ``nn.MultiheadAttention``; every query attends to all S tokens
  of the single-scale map, with the sine position added to queries and keys, not to values:

      encoder:  q = k = x + pos,           v = x          (S x S weights per head)
      decoder:  q = t + query_pos,  k = memory + pos,  v = memory   (Q x S weights per head)

  (pos is the deformable model's: the sine code plus the level embedding of the one level.)
  It ignores the reference points: the detector keeps them only for its box parametrisation
  (b = sigmoid(MLP(t) + sigmoid^-1(ref))), so that the attention is the one difference from the
  single-scale deformable model. DETR's own recipe differs beyond the attention: no reference
  points (boxes straight from the MLP), softmax classification with a "no object" class and
  cross-entropy instead of the focal loss, 100 queries, lr 1e-4, 500 epochs on COCO.
  ``return_attention=True`` is refused for it (a ValueError): the visualisers read sampling
  locations, and dense attention has none.

The padding of a batch: deformable attention zeroes padded values, dense attention gives padded
keys the weight 0 (``key_padding_mask``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ddetr_edu.ops import Levels, MSDeformAttn


class OwnLevelMSDeformAttn(MSDeformAttn):
    """``MSDeformAttn`` for the encoder whose token of level l samples level l only.

    The same parameters (and names) as ``MSDeformAttn``; the other levels' weights are 0. Setting
    their logits to -inf before the softmax and renormalising the full softmax over the own
    level's K samples give the same weights (the softmax's common factor cancels); the second is
    what ``sampling`` does, around the unchanged parent. The other levels are still sampled (with
    weight 0, so no gradient reaches their offsets): the cost is that of the full module.
    """

    def sampling(self, query: Tensor, reference_points: Tensor, levels: Levels):
        """query (N, S, C) one query per token, levels in token order -> locations (N, S, M, L, K, 2),
        weights (N, S, M, L, K) that sum to 1 over the K samples of each token's own level."""
        if query.shape[1] != sum(h * w for h, w in levels.sizes):
            raise ValueError(f"query: own-level attention needs one query per token ({levels.sizes} "
                             f"-> {sum(h * w for h, w in levels.sizes)}), got {query.shape[1]}")
        locations, weights = super().sampling(query, reference_points, levels)
        own = own_level_mask(levels, weights.device)  # (S, L)
        weights = weights * own[None, :, None, :, None].to(weights.dtype)
        return locations, weights / weights.sum(dim=(-2, -1), keepdim=True)


def own_level_mask(levels: Levels, device: torch.device) -> Tensor:
    """(S, L) bool: True where token s lies on level l (tokens are level after level)."""
    eye = torch.eye(len(levels), dtype=torch.bool, device=device)  # (L, L)
    return torch.cat([eye[level].expand(h * w, -1) for level, (h, w) in enumerate(levels.sizes)])


def make_attention(kind: str, *, d_model: int, n_heads: int, n_levels: int, n_points: int,
                   backend: str, dropout: float, own_level: bool = False) -> nn.Module:
    """The attention module of one layer: ``kind`` "deformable" or "dense"; ``own_level`` (deformable,
    encoder only) restricts every token to its own level."""
    if kind == "dense":
        return nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
    if kind != "deformable":
        raise ValueError(f"attention: expected 'deformable' or 'dense', got {kind!r}")
    module = OwnLevelMSDeformAttn if own_level else MSDeformAttn
    return module(d_model, n_levels, n_heads, n_points, backend=backend)


def attend(attention: nn.Module, query: Tensor, value: Tensor, value_pos: Tensor | None,
           reference_points: Tensor, levels: Levels, padding_mask: Tensor | None,
           return_sampling: bool = False) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Run a module of :func:`make_attention`.

    query (N, Lq, C) content + position; value (N, S, C) the tokens read; value_pos (N, S, C)
    their positions (dense attention adds them to the keys; deformable attention reads positions
    through its reference points and ignores it); reference_points (N, Lq, L, 2|4);
    padding_mask (N, S) True = padding.
    -> (N, Lq, C), and {"locations" (N, Lq, M, L, K, 2), "weights" (N, Lq, M, L, K)} when
    ``return_sampling`` (else None).
    """
    if isinstance(attention, nn.MultiheadAttention):
        if return_sampling:
            raise ValueError("return_attention=True: the dense (DETR) model has no sampling locations "
                             "to return; use attention='deformable' to visualise attention")
        if value_pos is None:
            raise ValueError("value_pos: dense attention adds the positions to its keys, got None")
        attended, _ = attention(query, value + value_pos, value, key_padding_mask=padding_mask,
                                need_weights=False)
        return attended, None
    out = attention(query, reference_points, value, levels, padding_mask=padding_mask,
                    return_sampling=return_sampling)
    if not return_sampling:
        return out, None
    attended, locations, weights = out
    return attended, {"locations": locations, "weights": weights}
