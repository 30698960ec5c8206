"""Bookkeeping of the flattened multi-level token axis ``s``."""
from __future__ import annotations

import torch
from torch import Tensor


def level_start_index(spatial_shapes: Tensor) -> Tensor:
    """(L, 2) rows (H_l, W_l) -> (L,) index of each level's first token in the ``s`` axis.

    start_l = sum_{j < l} H_j * W_j (an exclusive cumulative sum).
    """
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]  # (L,)
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def level_sizes(spatial_shapes: Tensor) -> list[tuple[int, int]]:
    """(L, 2) tensor -> [(H_0, W_0), ...] as Python ints (one host sync, done once)."""
    return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
