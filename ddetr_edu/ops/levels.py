"""The level geometry of the flattened token axis ``s``: one ``Levels`` value.

L feature maps (N, C, H_l, W_l) are flattened and concatenated, level after level, into one axis
of S = sum_l H_l W_l tokens; level l occupies the tokens start_l .. start_l + H_l W_l - 1 with

    start_l = sum_{j < l} H_j W_j                                (an exclusive cumulative sum)

``Levels`` holds the sizes and the starts as Python ints (``torch.SymInt`` expressions of the
image's height and width while ``torch.export`` traces with symbolic sizes, as the dynamic ONNX
export does). The detector builds it once per forward
from its feature maps (``map.shape``), so checking sizes, splitting ``value`` into levels and
launching the kernel never read a tensor back from the GPU (a host-device synchronisation). The
official signature passes ``spatial_shapes`` as an int64 (L, 2) tensor and ``level_start_index``
as an (L,) tensor; ``Levels.from_official`` reads those (one read-back each when they live on a
GPU) and checks them against each other.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

SpatialShapes = Tensor | Sequence[Sequence[int]]  # (L, 2) int64 tensor, or [(H, W), ...]
StartIndex = Tensor | Sequence[int]  # (L,) int64 tensor, or [start_l, ...]


@dataclass(frozen=True)
class Levels:
    """The L levels along the token axis, in Python ints.

    sizes ((H_0, W_0), (H_1, W_1), ...); starts (start_0, start_1, ...), computed from the sizes.
    ``len(levels)`` is L and iterating gives the sizes.
    """

    sizes: tuple[tuple[int, int], ...]
    starts: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        sizes = tuple((_size(h), _size(w)) for h, w in self.sizes)
        if not sizes or any(h < 1 or w < 1 for h, w in sizes):
            raise ValueError(f"spatial_shapes must be positive (H, W) pairs, at least one level, "
                             f"got {[list(s) for s in sizes]}")
        starts, start = [], 0
        for h, w in sizes:
            starts.append(start)
            start += h * w
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "starts", tuple(starts))

    @classmethod
    def from_maps(cls, maps: Sequence[Tensor]) -> Levels:
        """L maps (..., H_l, W_l) -> their levels, read off ``map.shape`` (no host sync)."""
        return cls(tuple((m.shape[-2], m.shape[-1]) for m in maps))

    @classmethod
    def from_official(cls, spatial_shapes: SpatialShapes, level_start_index: StartIndex | None = None) -> Levels:
        """The official arguments -> levels: ``spatial_shapes`` an (L, 2) integer tensor of rows
        (H, W) or a list of pairs; ``level_start_index`` (L,) tensor or ints, checked against
        the shapes, or None. Raises ValueError for a wrong layout, dtype, size or start."""
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
        levels = cls(tuple(rows))
        if level_start_index is not None:
            levels.check_start_index(level_start_index)
        return levels

    def check_start_index(self, level_start_index: StartIndex) -> None:
        """ValueError unless ``level_start_index`` (tensor or ints) equals ``starts``."""
        given = level_start_index.tolist() if isinstance(level_start_index, Tensor) else list(level_start_index)
        if tuple(int(s) for s in given) != self.starts:
            raise ValueError(f"level_start_index {list(given)} does not match spatial_shapes "
                             f"{[list(s) for s in self.sizes]}: expected {list(self.starts)}")

    def __len__(self) -> int:
        return len(self.sizes)  # L

    def __iter__(self):
        """The sizes (H_l, W_l), level after level, as a plain tuple of pairs would give them."""
        return iter(self.sizes)

    @property
    def num_tokens(self) -> int:
        """S = sum_l H_l W_l."""
        return sum(h * w for h, w in self.sizes)

    @property
    def flat_sizes(self) -> list[int]:
        """[H_0, W_0, H_1, W_1, ...], as the kernel's op takes them."""
        return [x for hw in self.sizes for x in hw]

    def official(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(spatial_shapes (L, 2), level_start_index (L,)) int64 tensors on ``device``."""
        return small_tensor(self.sizes, torch.int64, device), small_tensor(self.starts, torch.int64, device)


def _size(value) -> int:
    """A level side as an int; a symbolic size (``torch.SymInt``, met while ``torch.export``
    traces with dynamic height and width) stays symbolic, since ``int()`` would fix it to the
    example's value."""
    return value if isinstance(value, torch.SymInt) else int(value)


def as_levels(spatial_shapes: Levels | SpatialShapes, level_start_index: StartIndex | None = None) -> Levels:
    """What the public entry points take in the ``spatial_shapes`` position: a ``Levels`` (its
    starts checked against ``level_start_index`` when one is given) or the official arguments."""
    if not isinstance(spatial_shapes, Levels):
        return Levels.from_official(spatial_shapes, level_start_index)
    if level_start_index is not None:
        spatial_shapes.check_start_index(level_start_index)
    return spatial_shapes


def level_start_index(spatial_shapes: SpatialShapes) -> Tensor:
    """The official ``level_start_index``: an (L,) int64 tensor of the starts, on the device of
    ``spatial_shapes`` (computed there: no host sync) or on the CPU for a list."""
    if isinstance(spatial_shapes, Tensor):
        sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]  # (L,), computed where the tensor is
        return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return torch.tensor(Levels.from_official(spatial_shapes).starts, dtype=torch.int64)


def small_tensor(values, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A few Python numbers as a tensor on ``device`` without a host-device synchronisation.

    ``torch.tensor(values, device=cuda)`` copies with ``non_blocking=False``, which waits for
    the GPU; a non-blocking copy from (pageable) host memory returns once the numbers are staged.
    """
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)
