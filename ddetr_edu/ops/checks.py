"""Input checks for the attention core: every mistake gets a ValueError that names the
argument, the expected shape and the actual one."""
from __future__ import annotations

import torch
from torch import Tensor


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


def check_spatial_shapes(spatial_shapes: Tensor, num_tokens: int | None = None) -> None:
    """spatial_shapes: int64 (L, 2), rows (H_l, W_l); optionally sum H_l*W_l == num_tokens."""
    expect_rank("spatial_shapes", spatial_shapes, 2, "(L, 2)")
    if spatial_shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes must have shape (L, 2) with rows (H, W), got {_shape(spatial_shapes)}")
    if spatial_shapes.dtype.is_floating_point or spatial_shapes.dtype == torch.bool:
        raise ValueError(f"spatial_shapes must be an integer tensor (int64), got {spatial_shapes.dtype}")
    if bool((spatial_shapes <= 0).any()):
        raise ValueError(f"spatial_shapes must be positive, got {spatial_shapes.tolist()}")
    if num_tokens is not None:
        total = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
        if total != num_tokens:
            raise ValueError(
                f"sum of H*W over spatial_shapes {spatial_shapes.tolist()} is {total}, "
                f"but value has S = {num_tokens} tokens"
            )


def check_same_float(**tensors: Tensor) -> None:
    """All tensors floating point, one dtype and one device."""
    names = list(tensors)
    first = tensors[names[0]]
    for name, t in tensors.items():
        if not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating point tensor, got {t.dtype}")
        if t.dtype != first.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but {names[0]} has {first.dtype}; use one dtype")
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {names[0]} is on {first.device}; use one device")


def check_core_inputs(value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor,
                      attention_weights: Tensor) -> None:
    """The contract of ``ms_deform_attn``:

    value (N, S, M, D); spatial_shapes (L, 2); sampling_locations (N, Lq, M, L, K, 2);
    attention_weights (N, Lq, M, L, K).
    """
    expect_rank("value", value, 4, "(N, S, M, D)")
    expect_rank("sampling_locations", sampling_locations, 6, "(N, Lq, M, L, K, 2)")
    expect_rank("attention_weights", attention_weights, 5, "(N, Lq, M, L, K)")
    check_spatial_shapes(spatial_shapes, value.shape[1])
    if spatial_shapes.device != value.device and spatial_shapes.device.type != "cpu":
        raise ValueError(f"spatial_shapes is on {spatial_shapes.device} but value is on {value.device}")
    n, _, m, _ = value.shape
    loc_layout = "(N, Lq, M, L, K, 2)"
    expect_size("sampling_locations", sampling_locations, 0, n, loc_layout, "N of value")
    expect_size("sampling_locations", sampling_locations, 2, m, loc_layout, "M of value")
    expect_size("sampling_locations", sampling_locations, 3, spatial_shapes.shape[0], loc_layout,
                "L = rows of spatial_shapes")
    expect_size("sampling_locations", sampling_locations, 5, 2, loc_layout, "(x, y)")
    expected = tuple(sampling_locations.shape[:5])
    if tuple(attention_weights.shape) != expected:
        raise ValueError(
            f"attention_weights must have shape (N, Lq, M, L, K) = {expected} to match "
            f"sampling_locations {_shape(sampling_locations)}, got {_shape(attention_weights)}"
        )
    check_same_float(value=value, sampling_locations=sampling_locations, attention_weights=attention_weights)
