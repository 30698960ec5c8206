"""2-D sine positional encoding of a padded batch (Deformable DETR's version).

Attention is permutation invariant, so every feature pixel gets a code of where it is. The code
depends on the *valid* (unpadded) area only: with mask True on padding, the row and column
counters are cumulative sums of ``not mask``, normalised so the valid area spans (0, 2*pi):

    y = (cumsum_h(not mask) - 0.5) / (last valid y count + eps) * scale       eps 1e-6, scale 2*pi
    x = (cumsum_w(not mask) - 0.5) / (last valid x count + eps) * scale

(the -0.5 moves each count to the pixel centre; DETR has no such offset). Each coordinate is turned
into F = num_pos_feats = d_model / 2 channels with frequencies ``1 / T^(2*floor(i/2)/F)``
(T = temperature = 10000), sin on even channels i and cos on odd ones (interleaved):

    PE(p)_{2j}   = sin(p / T^(2j/F)),    PE(p)_{2j+1} = cos(p / T^(2j/F))

and the output is the y code followed by the x code: (N, 2F, H, W) = (N, d_model, H, W).

Positions in padding columns/rows get meaningless values (a padded column has a zero y count);
they are never attended to because the same mask removes them.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sine_position_encoding(mask: Tensor, num_pos_feats: int = 128, temperature: float = 10000.0,
                           normalize: bool = True, scale: float = 2 * math.pi,
                           eps: float = 1e-6) -> Tensor:
    """mask (N, H, W) bool True=padding -> positional code (N, 2 * num_pos_feats, H, W) float32."""
    if not isinstance(mask, Tensor) or mask.dim() != 3 or mask.dtype != torch.bool:
        got = (tuple(mask.shape), mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask: expected a bool tensor of shape (N, H, W), got {got}")
    if num_pos_feats <= 0 or num_pos_feats % 2:
        raise ValueError(f"num_pos_feats: expected a positive even number, got {num_pos_feats}")
    valid = ~mask
    y = valid.cumsum(1, dtype=torch.float32)  # (N, H, W): 1, 2, ... down each column
    x = valid.cumsum(2, dtype=torch.float32)  # (N, H, W): 1, 2, ... along each row
    if normalize:
        # (count - 0.5) / (valid height or width) * 2 pi: pixel centres of the valid area in (0, 2 pi)
        y = (y - 0.5) / (y[:, -1:, :] + eps) * scale
        x = (x - 0.5) / (x[:, :, -1:] + eps) * scale

    i = torch.arange(num_pos_feats, dtype=torch.float32, device=mask.device)  # (F,)
    dim_t = temperature ** (2 * (i // 2) / num_pos_feats)  # T^(2 floor(i/2) / F), pairs share it
    pos_x = x[..., None] / dim_t  # (N, H, W, F)
    pos_y = y[..., None] / dim_t  # (N, H, W, F)
    # sin on even channels, cos on odd ones, interleaved: (s0, c1, s2, c3, ...)
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # (N, 2F, H, W): y code, then x code


class PositionEmbeddingSine(nn.Module):
    """Module form of ``sine_position_encoding`` (no parameters): mask (N, H, W) -> (N, 2F, H, W)."""

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, normalize: bool = True,
                 scale: float = 2 * math.pi, eps: float = 1e-6) -> None:
        super().__init__()
        if num_pos_feats <= 0 or num_pos_feats % 2:
            raise ValueError(f"num_pos_feats: expected a positive even number, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps

    def forward(self, mask: Tensor) -> Tensor:
        return sine_position_encoding(mask, self.num_pos_feats, self.temperature, self.normalize,
                                      self.scale, self.eps)

    def extra_repr(self) -> str:
        return (f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
                f"normalize={self.normalize}, scale={self.scale:.4f}")


def build_position_encoding(d_model: int = 256) -> PositionEmbeddingSine:
    """The paper's encoding for model width d_model: F = d_model / 2 features per axis."""
    if d_model <= 0 or d_model % 4:
        raise ValueError(f"d_model: expected a positive multiple of 4 (two axes, sin/cos pairs), got {d_model}")
    return PositionEmbeddingSine(num_pos_feats=d_model // 2)
