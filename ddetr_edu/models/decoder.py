"""The deformable decoder: object queries look at a few points around their reference.

Axis glossary: ``n`` batch, ``q`` queries, ``s`` tokens, ``l`` levels, ``c`` model channels.

Each query has a content vector (``tgt``), a positional embedding (``query_pos``) and a
reference: a point (cx, cy) or, with box refinement / two-stage, a box (cx, cy, w, h), in
coordinates of the valid (unpadded) image. Each layer, post-norm:

    t = LayerNorm(t + Dropout(SelfAttention(q = k = t + pos, v = t)))       queries talk to each other
    t = LayerNorm(t + Dropout(MSDeformAttn(t + pos, ref * r, memory)))      queries read the image
    t = LayerNorm(t + Dropout(W_2 Dropout(ReLU(W_1 t))))

With ``attention="dense"`` (DETR) the second line is ``MultiheadAttention(q = t + pos,
k = memory + memory_pos, v = memory)`` over every token (``attention_choice.py``).
(r: the valid ratios, mapping the reference onto each level's padded map.) After each layer the
heads predict a class and a box b = sigmoid(MLP(t) + sigmoid^-1(ref)). With iterative box
refinement the next layer's reference is that box, detached: every layer refines the previous
layer's box, but gradients flow through each layer's own prediction only.

Look-forward-twice (DINO, Zhang et al. 2023; ``ModelConfig.look_forward_twice``): layer i's box
offset is applied twice, to the detached reference b_{i-1} (giving b'_i, which becomes the next
reference, detached again) and to b'_{i-1}, the previous layer's box before its detach (giving the
box the loss sees). The numbers are the same; the loss of layer i now also reaches layer i-1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ddetr_edu.models.attention_choice import attend, make_attention
from ddetr_edu.models.heads import LayerHeads
from ddetr_edu.ops import Levels


class DecoderLayer(nn.Module):
    """Self-attention, deformable (or dense) cross-attention, FFN. Names as the official layer: note that
    ``norm2`` follows self-attention and ``norm1`` cross-attention (in execution order:
    norm2, norm1, norm3)."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float, n_levels: int,
                 n_heads: int, n_points: int, backend: str = "auto", attention: str = "deformable") -> None:
        super().__init__()
        # queries <-> queries (dense: Q is small)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        # queries -> image (sparse, multi-scale; or dense, over every token)
        self.cross_attn = make_attention(attention, d_model=d_model, n_heads=n_heads, n_levels=n_levels,
                                         n_points=n_points, backend=backend, dropout=dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        # feed-forward
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_points: Tensor, memory: Tensor,
                levels: Levels, padding_mask: Tensor | None, return_sampling: bool = False,
                memory_pos: Tensor | None = None):
        """tgt, query_pos (N, Q, C); reference_points (N, Q, L, 2|4) on the padded maps;
        memory (N, S, C); padding_mask (N, S); memory_pos (N, S, C) the tokens' positions (read by
        dense attention only) -> (N, Q, C) (and the sampling dict if asked)."""
        q = k = tgt + query_pos
        attended, _ = self.self_attn(q, k, tgt, need_weights=False)
        tgt = self.norm2(tgt + self.dropout2(attended))

        attended, sampling = attend(self.cross_attn, tgt + query_pos, memory, memory_pos, reference_points,
                                    levels, padding_mask, return_sampling)
        tgt = self.norm1(tgt + self.dropout1(attended))

        tgt = self.norm3(tgt + self.dropout4(self.linear2(self.dropout3(F.relu(self.linear1(tgt))))))
        return (tgt, sampling) if return_sampling else tgt


@dataclass
class LayerPrediction:
    """What one decoder layer produced.

    hidden (N, Q, C) the layer's output; reference (N, Q, 2|4) the reference it used (valid-image
    coordinates); logits (N, Q, num_classes); boxes (N, Q, 4) cxcywh in [0, 1];
    sampling {"locations" (N, Q, M, L, K, 2), "weights" (N, Q, M, L, K)} or None.
    """

    hidden: Tensor
    reference: Tensor
    logits: Tensor
    boxes: Tensor
    sampling: dict[str, Tensor] | None = None


class DeformableDecoder(nn.Module):
    """A stack of ``DecoderLayer``; the loop over layers (and the refinement) is in ``forward``."""

    def __init__(self, num_layers: int, look_forward_twice: bool = False, **layer_kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(**layer_kwargs) for _ in range(num_layers))
        self.look_forward_twice = look_forward_twice  # DINO; needs heads.refine (see module doc)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference: Tensor, memory: Tensor, levels: Levels,
                ratios: Tensor, padding_mask: Tensor | None, heads: LayerHeads,
                return_attention: bool = False, memory_pos: Tensor | None = None) -> list[LayerPrediction]:
        """
        Args:
            tgt, query_pos: (N, Q, C) query content and positional embedding.
            reference: (N, Q, 2) points or (N, Q, 4) boxes, valid-image coordinates in [0, 1].
            memory: (N, S, C) encoder output; padding_mask (N, S) True = padding; memory_pos
                (N, S, C) its positions (dense cross-attention adds them to the keys).
            levels: the level geometry of ``memory``; ratios (N, L, 2) valid ratios (w, h).
            heads: the detector's heads; with ``heads.refine`` (iterative box refinement) the next
                reference is this layer's box, detached.
        Returns:
            one ``LayerPrediction`` per layer (with look-forward-twice its ``boxes`` are the
            supervised ones, whose gradient also reaches the previous layer).
        """
        predictions = []
        undetached = reference  # look-forward-twice: b'_{i-1}, the previous box before its detach
        for i, layer in enumerate(self.layers):
            # map the reference onto every level's padded map: (N, Q, 1, 2|4) * (N, 1, L, 2|4)
            scale = ratios if reference.shape[-1] == 2 else torch.cat([ratios, ratios], dim=-1)
            reference_on_levels = reference[:, :, None] * scale[:, None]  # (N, Q, L, 2|4)
            out = layer(tgt, query_pos, reference_on_levels, memory, levels, padding_mask,
                        return_sampling=return_attention, memory_pos=memory_pos)
            tgt, sampling = out if return_attention else (out, None)
            if self.look_forward_twice:  # boxes: b'_i; supervised: the same numbers from b'_{i-1}
                logits, boxes, supervised = heads.predict_looking_twice(i, tgt, reference, undetached)
            else:
                logits, boxes = heads.predict(i, tgt, reference)  # (N, Q, num_classes), (N, Q, 4)
                supervised = boxes
            predictions.append(LayerPrediction(tgt, reference, logits, supervised, sampling))
            if heads.refine:
                undetached = boxes  # (N, Q, 4) b'_i: its gradient skips the earlier layers' boxes
                reference = boxes.detach()  # the next layer refines this box
        return predictions
