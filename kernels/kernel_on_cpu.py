"""The CUDA kernel's schedule replayed on the CPU: a check of the kernel without a GPU.

A thin test and teaching layer over the library's CPU backend (``ddetr_edu/ops/cpu_backend.py``,
built from ``ddetr_edu/ops/csrc/msda_cpu.cpp``), not a second build. That backend runs the GPU
kernel's per-thread bodies (``msda_math.h``) on the CPU; by default with its own schedule (one
lane per head), and here with the launch configuration the GPU would pick, ``(G channels per
lane, tph lanes per head)``, or any other the caller names: the lanes of a head then run one after
the other and their partial sums of dA, dx, dy are added as the GPU's warp shuffle adds them. So
the tests check, on the CPU, every lane split the GPU can use.

Import it with ``kernels/`` on ``sys.path`` (pytest does that, see ``pyproject.toml``).

Shapes: value (N, S, M, D); spatial_shapes (L, 2) int64 rows (H, W); level_start_index (L,);
sampling_locations (N, Lq, M, L, K, 2); attention_weights (N, Lq, M, L, K); out (N, Lq, M*D).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ddetr_edu.ops import cpu_backend


def library_path() -> Path | None:
    """Where the CPU backend's cached library is (or would be); None without a compiler."""
    return cpu_backend.library_path()


def is_built() -> bool:
    """True when the CPU backend's library is already in the cache (no build needed)."""
    return cpu_backend.is_built()


def load_library(timeout_s: float | None = None) -> None:
    """Build (once, cached) and load the CPU backend. Raises RuntimeError saying why not.
    ``timeout_s`` is accepted for older callers; the build has its own limit."""
    usable, reason = cpu_backend.kernel_status()
    if not usable:
        raise RuntimeError(reason)


def kernel_on_cpu_status() -> tuple[bool, str]:
    """(usable, reason): whether the CPU build of the kernel's arithmetic can be loaded."""
    return cpu_backend.kernel_status()


def launch_config(dtype: torch.dtype, channels: int, alignment: int = 16) -> tuple[int, int]:
    """The GPU launcher's (G channels per thread, threads per head) for value dtype and D."""
    return cpu_backend.launch_config(dtype, channels, alignment)


def _pointer_alignment(*tensors: Tensor, limit: int = 16) -> int:
    """Largest power of two <= limit dividing every tensor's address."""
    alignment = limit
    for t in tensors:
        while alignment > 1 and t.data_ptr() % alignment:
            alignment //= 2
    return alignment


def _arguments(value, spatial_shapes, level_start_index, group, threads_per_head):
    if value.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"value must be float32 or float64 for the CPU build, got {value.dtype}")
    shapes = [int(x) for x in torch.as_tensor(spatial_shapes).flatten().tolist()]
    starts = [int(x) for x in torch.as_tensor(level_start_index).flatten().tolist()]
    if group is None:  # what the GPU would choose for these buffers
        auto_group, auto_tph = launch_config(value.dtype, value.shape[-1], _pointer_alignment(value.contiguous()))
        return shapes, starts, auto_group, threads_per_head or auto_tph
    return shapes, starts, group, threads_per_head or 1


def ms_deform_attn_kernel_on_cpu(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                                 sampling_locations: Tensor, attention_weights: Tensor,
                                 group: int | None = None, threads_per_head: int | None = None) -> Tensor:
    """Forward with a GPU launch configuration -> (N, Lq, M*D). ``group``/``threads_per_head``
    override the configuration the GPU would choose (G a power of 2 <= 32; tph a power of 2 <= 32)."""
    shapes, starts, group, tph = _arguments(value, spatial_shapes, level_start_index, group, threads_per_head)
    return cpu_backend.forward(value, shapes, starts, sampling_locations.to(value.dtype),
                               attention_weights.to(value.dtype), group, tph)


def ms_deform_attn_kernel_on_cpu_backward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                                          sampling_locations: Tensor, attention_weights: Tensor,
                                          grad_out: Tensor, group: int | None = None,
                                          threads_per_head: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Backward with a GPU launch configuration: grad_out (N, Lq, M*D) -> (dLoss/d value (N, S, M, D),
    dLoss/d sampling_locations (N, Lq, M, L, K, 2), dLoss/d attention_weights (N, Lq, M, L, K))."""
    shapes, starts, group, tph = _arguments(value, spatial_shapes, level_start_index, group, threads_per_head)
    return cpu_backend.backward(value, shapes, starts, sampling_locations.to(value.dtype),
                                attention_weights.to(value.dtype), grad_out, group, tph)


def register_as_cpu_implementation() -> None:
    """Kept for the tests and the book: the library registers its CPU build as the op's CPU
    implementation itself. Raises RuntimeError when that build cannot be loaded."""
    load_library()
