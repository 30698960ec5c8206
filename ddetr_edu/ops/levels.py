"""Bookkeeping of the flattened multi-level token axis ``s``.

The level sizes are Python ints wherever the library can have them: the detector reads them off
its feature maps (``map.shape``), so checking them, splitting ``value`` into levels and launching
the kernel never reads a tensor back from the GPU (a host-device synchronisation). The official
signature passes ``spatial_shapes`` as an int64 (L, 2) tensor; every function here accepts that
too, at the price of one read-back when the tensor lives on a GPU.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

LevelSizes = tuple[tuple[int, int], ...]  # ((H_0, W_0), (H_1, W_1), ...)
SpatialShapes = Tensor | Sequence[Sequence[int]]  # (L, 2) int64 tensor, or [(H, W), ...]


def level_sizes(spatial_shapes: SpatialShapes) -> LevelSizes:
    """(L, 2) tensor or [(H_l, W_l), ...] -> ((H_0, W_0), ...) as Python ints.

    Raises ValueError for a wrong layout, a non-integer tensor or a size < 1. A tensor is read
    once (a host sync if it is on a GPU); sequences of ints are only looked at.
    """
    if isinstance(spatial_shapes, Tensor):
        if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
            raise ValueError(f"spatial_shapes must have shape (L, 2) with rows (H, W), "
                             f"got {tuple(spatial_shapes.shape)}")
        if spatial_shapes.dtype.is_floating_point or spatial_shapes.dtype == torch.bool:
            raise ValueError(f"spatial_shapes must be an integer tensor (int64), got {spatial_shapes.dtype}")
        rows = spatial_shapes.tolist()
    else:
        rows = list(spatial_shapes)
        if not all(isinstance(r, Sequence) and len(r) == 2 for r in rows):
            raise ValueError(f"spatial_shapes must be (L, 2): a tensor or a list of (H, W) pairs, got {rows!r}")
    sizes = tuple((int(h), int(w)) for h, w in rows)
    if any(h < 1 or w < 1 for h, w in sizes):
        raise ValueError(f"spatial_shapes must be positive, got {[list(s) for s in sizes]}")
    return sizes


def level_starts(sizes: LevelSizes) -> tuple[int, ...]:
    """((H_l, W_l), ...) -> index of each level's first token in the ``s`` axis, as ints.

    start_l = sum_{j < l} H_j * W_j (an exclusive cumulative sum).
    """
    starts, start = [], 0
    for h, w in sizes:
        starts.append(start)
        start += h * w
    return tuple(starts)


def level_start_index(spatial_shapes: SpatialShapes) -> Tensor:
    """The official ``level_start_index``: (L,) int64 tensor of ``level_starts``, on the device
    of ``spatial_shapes`` (the CPU for a list)."""
    if isinstance(spatial_shapes, Tensor):
        sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]  # (L,), computed where the tensor is
        return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return torch.tensor(level_starts(level_sizes(spatial_shapes)), dtype=torch.int64)


def token_starts(level_start_index: Tensor | Sequence[int] | None, sizes: LevelSizes) -> tuple[int, ...]:
    """The level starts as ints: from the caller's ``level_start_index`` (a tensor or ints,
    checked against ``sizes``) or, when None, computed from ``sizes``."""
    expected = level_starts(sizes)
    if level_start_index is None:
        return expected
    given = level_start_index.tolist() if isinstance(level_start_index, Tensor) else list(level_start_index)
    if tuple(int(s) for s in given) != expected:
        raise ValueError(f"level_start_index {list(given)} does not match spatial_shapes "
                         f"{[list(s) for s in sizes]}: expected {list(expected)}")
    return expected


def small_tensor(values, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A few Python numbers as a tensor on ``device`` without a host-device synchronisation.

    ``torch.tensor(values, device=cuda)`` copies with ``non_blocking=False``, which waits for
    the GPU; a non-blocking copy from (pageable) host memory returns once the numbers are staged.
    """
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)
