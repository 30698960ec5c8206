"""The mixed-precision contract of the attention core.

Under ``torch.autocast`` the value projection gives float16/bfloat16 while the sampling
locations must stay float32: a location rounded to bf16 (8 significant bits) is off by up to
0.3 px on a 167-pixel-wide map. So the core takes half-precision values with float32 locations
and weights, samples and sums in float32, and returns value's dtype; it runs with autocast off,
its dtypes being this contract rather than autocast's op lists.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_dtypes(value: Tensor, sampling_locations: Tensor, attention_weights: Tensor) -> None:
    """The mixed-precision contract of the core.

    Locations and weights share one floating dtype. ``value`` has that dtype too, or, for mixed
    precision, float16/bfloat16 with float32 locations and weights. Any other mix (float64 with
    float32, say) is a ValueError naming both dtypes; so is a device mismatch.
    """
    for name, t in (("value", value), ("sampling_locations", sampling_locations),
                    ("attention_weights", attention_weights)):
        if not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating point tensor, got {t.dtype}")
    if attention_weights.dtype != sampling_locations.dtype:
        raise ValueError(f"attention_weights has dtype {attention_weights.dtype} but sampling_locations "
                         f"has {sampling_locations.dtype}; use one dtype for both")
    mixed_ok = value.dtype in HALF_DTYPES and sampling_locations.dtype == torch.float32
    if value.dtype != sampling_locations.dtype and not mixed_ok:
        raise ValueError(
            f"value has dtype {value.dtype} but sampling_locations {sampling_locations.dtype}; use one "
            "dtype, or float16/bfloat16 value with float32 locations and weights (mixed precision)")
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if t.device != value.device:
            raise ValueError(f"{name} is on {t.device} but value is on {value.device}; use one device")


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """A region where autocast does not touch dtypes (CPU and CUDA; other devices have none)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def compute_dtype(sampling_locations: Tensor) -> torch.dtype:
    """What the backends sample and sum in: float32 for half-precision locations (so that an
    all-bf16 call is as accurate as a mixed one), else the locations' own dtype."""
    return torch.float32 if sampling_locations.dtype in HALF_DTYPES else sampling_locations.dtype
