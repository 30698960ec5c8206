"""The sampling points of one query (decoder) or one token (encoder), in pixels, per level.

Axis glossary: ``m`` heads, ``l`` levels, ``k`` points per head and level, ``p`` points shown.

A deformable attention query samples M x L x K points; a picture shows, per level, the
P = M' x K points of the chosen heads (M' = M for all heads, 1 for one head), coloured by their
attention weight A_mlqk (softmax over the L*K points of each head) relative to the largest
weight among the query's points shown (:func:`relative_weights`).
"""
from __future__ import annotations

from einops import rearrange
from torch import Tensor

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import locations_to_pixels


def _per_level(locations: Tensor, weights: Tensor, valid_ratios: Tensor, head: int | None,
               image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """locations (M, L, K, 2), weights (M, L, K) -> pixels (L, P, 2), weights (L, P)."""
    if head is not None:
        locations, weights = locations[head:head + 1], weights[head:head + 1]
    pixels = locations_to_pixels(locations, valid_ratios, image_size)  # (M', L, K, 2)
    return (rearrange(pixels, "m l k xy -> l (m k) xy"),
            rearrange(weights, "m l k -> l (m k)"))


def decoder_points(attention: ImageAttention, query: int, layer: int, head: int | None,
                   image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Decoder layer ``layer``, query ``query`` -> pixels (L, P, 2), weights (L, P)."""
    d = attention.layer_index(layer)
    attention.check_head(head)
    if not 0 <= query < attention.num_queries:
        raise ValueError(f"query: expected 0..{attention.num_queries - 1}, got {query}")
    return _per_level(attention.decoder_locations[d, query], attention.decoder_weights[d, query],
                      attention.valid_ratios, head, image_size)


def encoder_points(attention: ImageAttention, token: int, layer: int, head: int | None,
                   image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Encoder layer ``layer``, token ``token`` (flattened index) -> pixels (L, P, 2), weights (L, P)."""
    e = attention.layer_index(layer, encoder=True)
    attention.check_head(head)
    row = attention.encoder_row(token)
    return _per_level(attention.encoder_locations[e, row], attention.encoder_weights[e, row],
                      attention.valid_ratios, head, image_size)


def relative_weights(weights: Tensor) -> Tensor:
    """weights (L, P) of one query or token -> (L, P) divided by their largest value (1 = the
    strongest point; all zeros stay zeros)."""
    return weights / weights.max().clamp(min=1e-12)


__all__ = ["decoder_points", "encoder_points", "relative_weights"]
