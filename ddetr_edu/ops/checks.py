"""Input checks for the attention core: every mistake gets a ValueError that names the
argument, the expected shape and the actual one.

The checks read only what the host already knows (shapes, dtypes, devices and the level sizes
as Python ints), never a tensor's contents: checking costs no host-device synchronisation and
``torch.compile`` traces it without a graph break.
"""
from __future__ import annotations

from torch import Tensor

from .levels import Levels
from .precision import check_dtypes


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def expect_rank(name: str, t: Tensor, rank: int, layout: str) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(t).__name__}")
    if t.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions {layout}, got shape {_shape(t)}")


def expect_size(name: str, t: Tensor, dim: int, size: int, layout: str, why: str) -> None:
    if t.shape[dim] != size:
        raise ValueError(
            f"{name} has shape {_shape(t)} but its axis {dim} of {layout} must be {size} ({why})"
        )


def check_core_inputs(value: Tensor, levels: Levels, sampling_locations: Tensor,
                      attention_weights: Tensor) -> None:
    """The contract of ``ms_deform_attn``:

    value (N, S, M, D) with S = ``levels.num_tokens``;
    sampling_locations (N, Lq, M, L, K, 2); attention_weights (N, Lq, M, L, K).
    """
    expect_rank("value", value, 4, "(N, S, M, D)")
    expect_rank("sampling_locations", sampling_locations, 6, "(N, Lq, M, L, K, 2)")
    expect_rank("attention_weights", attention_weights, 5, "(N, Lq, M, L, K)")
    total = levels.num_tokens
    if total != value.shape[1]:
        raise ValueError(f"sum of H*W over spatial_shapes {[list(s) for s in levels.sizes]} is {total}, "
                         f"but value has S = {value.shape[1]} tokens")
    n, _, m, _ = value.shape
    loc_layout = "(N, Lq, M, L, K, 2)"
    expect_size("sampling_locations", sampling_locations, 0, n, loc_layout, "N of value")
    expect_size("sampling_locations", sampling_locations, 2, m, loc_layout, "M of value")
    expect_size("sampling_locations", sampling_locations, 3, len(levels), loc_layout,
                "L = rows of spatial_shapes")
    expect_size("sampling_locations", sampling_locations, 5, 2, loc_layout, "(x, y)")
    expected = tuple(sampling_locations.shape[:5])
    if tuple(attention_weights.shape) != expected:
        raise ValueError(
            f"attention_weights must have shape (N, Lq, M, L, K) = {expected} to match "
            f"sampling_locations {_shape(sampling_locations)}, got {_shape(attention_weights)}"
        )
    check_dtypes(value, sampling_locations, attention_weights)
