"""The deformable encoder: every pixel of every level attends to a few points on all levels.

Axis glossary: ``n`` batch, ``s`` flattened tokens (sum of H_l * W_l over the levels), ``l``
levels, ``m`` heads, ``k`` sampling points, ``c`` model channels.

The L projected maps are flattened and concatenated into one token axis ``s``; each token is a
query whose reference point is its own pixel centre. In a padded batch coordinates are
normalised to the *valid* (unpadded) area of each image: the valid ratio of level l is

    r_l = (valid width / W_l, valid height / H_l)                   (per image, (w, h) order)

A pixel (i, j) of level l has centre ((j + 0.5) / (r_l,x W_l), (i + 0.5) / (r_l,y H_l)) in valid-
area coordinates. To sample level l' it is mapped back to the padded map of that level by
multiplying with r_l'. The same point of the image thus lands on the same place of every level
even when padding differs from level to level.

Each layer is post-norm:

    x = LayerNorm(x + Dropout(MSDeformAttn(x + pos, ref, x)))
    x = LayerNorm(x + Dropout(W_2 Dropout(ReLU(W_1 x))))

With ``attention="dense"`` (DETR) the first line is ``MultiheadAttention(q = k = x + pos, v = x)``,
and with ``own_level=True`` each token samples its own level only (``attention_choice.py``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ddetr_edu.models.attention_choice import attend, make_attention
from ddetr_edu.ops import Levels


def valid_ratios(mask: Tensor) -> Tensor:
    """Padding mask (N, H, W) of one level -> (N, 2) valid fraction (w, h).

    The valid height is counted down the first column, the valid width along the first row
    (padding is bottom/right, so these are the image's extent on this level).
    """
    _, height, width = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1)  # (N,)
    valid_w = (~mask[:, 0, :]).sum(1)  # (N,)
    return torch.stack([valid_w.float() / width, valid_h.float() / height], dim=-1)


def encoder_reference_points(levels: Levels, ratios: Tensor) -> Tensor:
    """Pixel centres of every level, mapped onto every level's padded map.

    levels: the level geometry; ratios (N, L, 2) valid ratios (w, h)
    -> (N, S, L, 2) normalised (x, y) reference points, ready for MSDeformAttn.
    """
    per_level = []
    for level, (h, w) in enumerate(levels.sizes):
        # arange + 0.5 rather than linspace(0.5, h - 0.5, h): the same (exact) numbers, and the
        # sizes may stay symbolic under torch.export (linspace would fix them to the example's)
        centre_y, centre_x = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=ratios.device) + 0.5,
            torch.arange(w, dtype=torch.float32, device=ratios.device) + 0.5,
            indexing="ij")  # (H, W) each: pixel centres in pixels
        # normalise to the valid area of each image: divide by r * size
        x = centre_x.reshape(-1)[None] / (ratios[:, None, level, 0] * w)  # (N, H*W)
        y = centre_y.reshape(-1)[None] / (ratios[:, None, level, 1] * h)  # (N, H*W)
        per_level.append(torch.stack([x, y], dim=-1))  # (N, H*W, 2)
    points = torch.cat(per_level, dim=1)  # (N, S, 2) in valid-area coordinates
    # back onto each level's padded map: multiply by that level's ratios
    return points[:, :, None] * ratios[:, None]  # (N, S, L, 2)


class EncoderLayer(nn.Module):
    """Deformable (or dense) self-attention + FFN, post-norm. Names as the official layer."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float, n_levels: int,
                 n_heads: int, n_points: int, backend: str = "auto", attention: str = "deformable",
                 own_level: bool = False) -> None:
        super().__init__()
        self.self_attn = make_attention(attention, d_model=d_model, n_heads=n_heads, n_levels=n_levels,
                                        n_points=n_points, backend=backend, dropout=dropout,
                                        own_level=own_level)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, pos: Tensor, reference_points: Tensor, levels: Levels,
                padding_mask: Tensor | None, return_sampling: bool = False):
        """x, pos (N, S, C); reference_points (N, S, L, 2); padding_mask (N, S) -> (N, S, C)
        (and the attention's locations (N, S, M, L, K, 2), weights (N, S, M, L, K) if asked)."""
        attended, sampling = attend(self.self_attn, x + pos, x, pos, reference_points, levels, padding_mask,
                                    return_sampling)
        x = self.norm1(x + self.dropout1(attended))
        x = self.norm2(x + self.dropout3(self.linear2(self.dropout2(F.relu(self.linear1(x))))))
        return (x, sampling) if return_sampling else x


class DeformableEncoder(nn.Module):
    """A stack of ``EncoderLayer`` sharing one set of reference points."""

    def __init__(self, num_layers: int, **layer_kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(**layer_kwargs) for _ in range(num_layers))

    def forward(self, tokens: Tensor, pos: Tensor, levels: Levels, ratios: Tensor,
                padding_mask: Tensor | None, return_attention: bool = False):
        """tokens, pos (N, S, C); levels: their level geometry; ratios (N, L, 2); padding_mask
        (N, S) -> memory (N, S, C), and a list per layer of {"locations", "weights"} (or None)."""
        reference_points = encoder_reference_points(levels, ratios)  # (N, S, L, 2)
        attention = [] if return_attention else None
        x = tokens
        for layer in self.layers:
            if return_attention:
                x, sampling = layer(x, pos, reference_points, levels, padding_mask, return_sampling=True)
                attention.append(sampling)
            else:
                x = layer(x, pos, reference_points, levels, padding_mask)
        return x, attention
