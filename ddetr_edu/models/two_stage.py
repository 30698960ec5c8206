"""Two-stage Deformable DETR: the encoder proposes the decoder's reference boxes.

Stage one. Every memory token (pixel (i, j) of level l) proposes a box centred on its pixel with
a fixed size growing with the level:

    p = ((j + 0.5) / valid_W_l, (i + 0.5) / valid_H_l, 0.05 * 2^l, 0.05 * 2^l)

(valid-image coordinates). A proposal is kept only where it is clearly inside the image
(all four numbers in (0.01, 0.99)) and the token is not padding; elsewhere its unactivated
value is +inf (so its box is sigmoid(+inf) = 1 exactly) and its memory is zeroed. The memory is
passed through Linear + LayerNorm, then the extra class head (index ``dec_layers``) scores it
and the extra box head refines it in inverse-sigmoid space: b = sigmoid(MLP(m) + sigmoid^-1(p)).

Stage two. The top-``num_queries`` tokens by the score of class 0 (two-stage training labels
every proposal target as one foreground class, so class 0 is "objectness") give the decoder's
initial reference boxes (detached). Each box is turned into the decoder queries: a sine code of
its four unactivated coordinates -> Linear -> LayerNorm, split into positional part and content.
"""
from __future__ import annotations

import math

import torch
from einops import unpack
from torch import Tensor

from ddetr_edu.ops import Levels

PROPOSAL_BASE_SIZE = 0.05  # box side of a level-0 proposal; level l has 0.05 * 2^l


def encoder_proposals(memory: Tensor, padding_mask: Tensor, levels: Levels) -> tuple[Tensor, Tensor]:
    """One proposal per memory token.

    memory (N, S, C); padding_mask (N, S) True = padding; levels: their level geometry
    -> (memory with invalid tokens zeroed (N, S, C), proposals unactivated (N, S, 4), +inf where
    invalid).
    """
    n = memory.shape[0]
    proposals = []
    masks = unpack(padding_mask, list(levels.sizes), "n *")  # L x (N, H_l, W_l)
    for level, ((h, w), mask) in enumerate(zip(levels.sizes, masks)):
        valid_h = (~mask[:, :, 0]).sum(1)  # (N,)
        valid_w = (~mask[:, 0, :]).sum(1)  # (N,)
        grid_y, grid_x = torch.meshgrid(  # arange: symbolic sizes stay symbolic under torch.export
            torch.arange(h, dtype=torch.float32, device=memory.device),
            torch.arange(w, dtype=torch.float32, device=memory.device),
            indexing="ij")  # (H, W) pixel indices
        grid = torch.stack([grid_x, grid_y], dim=-1)  # (H, W, 2) as (x, y)
        valid_size = torch.stack([valid_w, valid_h], dim=-1).view(n, 1, 1, 2)
        centres = (grid[None].expand(n, -1, -1, -1) + 0.5) / valid_size  # (N, H, W, 2)
        sizes = torch.full_like(centres, PROPOSAL_BASE_SIZE * (2.0 ** level))  # (N, H, W, 2)
        proposals.append(torch.cat([centres, sizes], dim=-1).view(n, -1, 4))
    proposals = torch.cat(proposals, dim=1)  # (N, S, 4) in [0, 1] for valid tokens
    inside = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)  # (N, S, 1)
    unactivated = torch.log(proposals / (1 - proposals))  # sigmoid^-1
    invalid = padding_mask[..., None] | ~inside  # (N, S, 1)
    unactivated = unactivated.masked_fill(invalid, float("inf"))
    memory = memory.masked_fill(invalid, 0.0)
    return memory, unactivated


def proposal_position_embedding(boxes_unactivated: Tensor, num_feats: int,
                                temperature: float = 10000.0, scale: float = 2 * math.pi) -> Tensor:
    """Sine code of a box: (N, Q, 4) unactivated coordinates -> (N, Q, 4 * num_feats).

    Each coordinate u of the box sigmoid(u) * 2 pi gets ``num_feats`` channels, interleaved
    sin(p / T^(2j/F)), cos(p / T^(2j/F)) (as the image's positional encoding), in the order
    cx, cy, w, h. The official model uses F = 128 with d_model = 256, i.e. F = d_model / 2, so
    that the code has 2 * d_model channels (position part + content part of a query).
    """
    i = torch.arange(num_feats, dtype=torch.float32, device=boxes_unactivated.device)
    dim_t = temperature ** (2 * (i // 2) / num_feats)  # (F,)
    position = boxes_unactivated.sigmoid() * scale  # (N, Q, 4)
    angles = position[..., None] / dim_t  # (N, Q, 4, F)
    code = torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], dim=-1)  # (N, Q, 4, F/2, 2)
    return code.flatten(2)  # (N, Q, 4 * F)


def top_proposals(scores: Tensor, boxes_unactivated: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k highest-scoring proposals.

    scores (N, S) class-0 logits; boxes_unactivated (N, S, 4)
    -> (indices (N, k), their unactivated boxes (N, k, 4), detached).
    """
    if k > scores.shape[1]:
        raise ValueError(f"num_queries ({k}) exceeds the number of encoder proposals "
                         f"({scores.shape[1]} tokens); use larger images or fewer queries")
    indices = torch.topk(scores, k, dim=1).indices  # (N, k)
    chosen = torch.gather(boxes_unactivated, 1, indices[..., None].expand(-1, -1, 4))
    return indices, chosen.detach()
