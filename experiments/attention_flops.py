"""The attention's cost per image, counted from the config and the level sizes (no profiler).

Counted: the two attention modules the ``attention`` switch changes, the encoder's self-attention
(every one of the S tokens is a query) and the decoder's cross-attention (Q queries read the S
tokens), over all layers. Not counted: backbone, FFNs, the decoder's self-attention, heads (the
same in every configuration). One multiply-add is 2 FLOPs. With C channels, M heads, L levels,
K points, Lq queries reading S tokens:

    dense (DETR):      4 Lq C^2 + 4 S C^2          query, key, value, output projections
                     + 4 Lq S C                    Q K^T and the weighted sum of V, all heads

    deformable:        2 S C^2 + 2 Lq C^2          value and output projections
                     + 6 Lq C M L' K               offsets (2 M L' K) and weights (M L' K) from the query
                     + 10 Lq M L' K (C / M)        per sample and channel: bilinear (4 multiply-adds)
                                                   and the weighted sum (1)

where L' = L, or 1 with ``cross_level_attention=False`` in the encoder (each token samples its
own level: the method's cost; this implementation still samples the other levels with weight 0).
The dense cost grows with Lq S (quadratic in the pixels for the encoder), the deformable one
linearly in Lq and S: the paper's complexity argument (its Section 4.1), here in numbers.
"""
from __future__ import annotations

from collections.abc import Sequence

from ddetr_edu.config import ModelConfig


def dense_flops(queries: int, tokens: int, channels: int) -> int:
    """FLOPs of one dense multi-head attention: ``queries`` reading ``tokens``, C = ``channels``."""
    c = channels
    return 4 * queries * c * c + 4 * tokens * c * c + 4 * queries * tokens * c


def sampling_flops(queries: int, channels: int, heads: int, levels: int, points: int) -> int:
    """FLOPs of reading the samples: bilinear (4 multiply-adds) and weighted sum (1) per sample and channel.

    Elementwise work, not matrix products: torch's FlopCounterMode does not count it.
    """
    return 10 * queries * heads * levels * points * (channels // heads)


def deformable_flops(queries: int, tokens: int, channels: int, heads: int, levels: int, points: int) -> int:
    """FLOPs of one deformable attention: ``levels`` levels sampled, ``points`` points per head and level."""
    c, samples = channels, heads * levels * points
    projections = 2 * tokens * c * c + 2 * queries * c * c
    offsets_and_weights = 6 * queries * c * samples
    return projections + offsets_and_weights + sampling_flops(queries, channels, heads, levels, points)


def attention_flops(cfg: ModelConfig, level_sizes: Sequence[Sequence[int]]) -> dict[str, int]:
    """{"encoder", "decoder", "total"} FLOPs per image for ``cfg`` on levels of sizes ((H_l, W_l), ...).

    The decoder's query count is ``cfg.num_queries`` (for two-stage: the proposals kept).
    """
    t = cfg.transformer
    if len(level_sizes) != t.num_feature_levels:
        raise ValueError(f"level_sizes: expected {t.num_feature_levels} levels, got {len(level_sizes)}")
    s, c, q = sum(h * w for h, w in level_sizes), t.d_model, cfg.num_queries
    if t.attention == "dense":
        encoder, decoder = dense_flops(s, s, c), dense_flops(q, s, c)
    else:
        encoder_levels = t.num_feature_levels if t.cross_level_attention else 1
        encoder = deformable_flops(s, s, c, t.n_heads, encoder_levels, t.enc_n_points)
        decoder = deformable_flops(q, s, c, t.n_heads, t.num_feature_levels, t.dec_n_points)
    encoder, decoder = encoder * t.enc_layers, decoder * t.dec_layers
    return {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}
