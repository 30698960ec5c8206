"""``ms_deform_attn``: one entry point, several backends of the same operator."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from . import cpu_backend  # registers the op's CPU implementation (builds nothing on import)
from .checks import check_core_inputs
from .cuda_backend import kernel_status, kernel_usable, run_kernel_op
from .levels import Levels, SpatialShapes, StartIndex, as_levels
from .msda_einops import ms_deform_attn_einops
from .msda_grid_sample import ms_deform_attn_grid_sample
from .msda_loop import ms_deform_attn_loop
from .precision import autocast_off
from .triton_backend import run_triton_op, triton_cuda_status, triton_status, triton_usable

BACKENDS = ("auto", "einops", "loop", "grid_sample", "cuda", "cpu", "triton")


def choose_for_cuda() -> tuple[str, str | None]:
    """What "auto" runs on CUDA tensors: the built C++ kernel, else the Triton kernels, else
    grid_sample; and, unless it is the C++ kernel, one sentence saying why."""
    usable, reason = kernel_status()
    if usable:
        return "cuda", None
    triton_ok, triton_reason = triton_cuda_status()
    if triton_ok:
        return "triton", f"CUDA kernel not used ({reason}); using the Triton backend"
    return "grid_sample", (f"CUDA kernel not used ({reason}) and Triton not usable ({triton_reason}); "
                           "falling back to the grid_sample backend")


@torch.compiler.assume_constant_result
def _auto_on_cuda() -> str:
    """"auto" on CUDA tensors, warning (once) why when it is not the C++ kernel. Answered once per
    process and a constant to torch.compile, like ``kernel_usable``."""
    chosen, why = choose_for_cuda()
    if why is not None:
        warnings.warn(f"ddetr_edu: {why}", RuntimeWarning, stacklevel=2)
    return chosen


@torch.compiler.assume_constant_result
def _auto_uses_cpu_kernel() -> bool:
    """"auto" on CPU tensors: True when the CPU build of the kernel runs (building it on first
    use); else warns (once) why not. A constant to torch.compile."""
    usable, reason = cpu_backend.kernel_status()
    if not usable and reason != "disabled by DDETR_EDU_CPU_KERNEL=0":
        warnings.warn(f"ddetr_edu: CPU kernel not used, falling back to the grid_sample backend: {reason}",
                      RuntimeWarning, stacklevel=2)
    return usable


def check_backend(backend: str) -> None:
    """ValueError unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def resolve_backend(backend: str, value: Tensor) -> str:
    """Turn "auto" into a concrete backend for tensors like ``value``.

    "auto" on CUDA tensors: the C++ kernel when it is built, else the Triton kernels when Triton
    imports, else grid_sample (with one warning saying which and why); on CPU tensors the kernel's
    CPU build when it is built (or builds on first use), else grid_sample (with one warning saying
    why). "cuda", "cpu" and "triton" raise if their kernels cannot be used.
    """
    check_backend(backend)
    if backend == "cpu":
        if not cpu_backend.kernel_usable():
            raise RuntimeError(f"backend='cpu' is not available: {cpu_backend.kernel_status()[1]}")
        if value.device.type != "cpu":
            raise RuntimeError(f"backend='cpu' needs CPU tensors, got tensors on {value.device}")
        return "cpu"
    if backend == "cuda":
        if not kernel_usable():
            raise RuntimeError(f"backend='cuda' is not available: {kernel_status()[1]}")
        if not value.is_cuda:
            raise RuntimeError(f"backend='cuda' needs CUDA tensors, got tensors on {value.device}")
        return "cuda"
    if backend == "triton":
        if not triton_usable():
            raise RuntimeError(f"backend='triton' is not available: {triton_status()[1]}")
        return "triton"
    if backend != "auto":
        return backend
    if value.device.type == "cpu":
        return "cpu" if _auto_uses_cpu_kernel() else "grid_sample"
    if not value.is_cuda:
        return "grid_sample"
    return _auto_on_cuda()


def ms_deform_attn(value: Tensor, spatial_shapes: Levels | SpatialShapes, sampling_locations: Tensor,
                   attention_weights: Tensor, backend: str = "auto",
                   level_start_index: StartIndex | None = None) -> Tensor:
    """Multi-scale deformable attention core (no projections).

    MSDeformAttn = sum_m W_m [ sum_l sum_k A_mlqk * W'_m x^l(phi_l(p_q) + dp_mlqk) ]; this
    function is the bracket: the sampling and the weighted sum, for all heads at once.

    Args:
        value: (N, S, M, D) projected values of all levels, flattened level after level;
            float64, float32, or float16/bfloat16 (mixed precision, see below).
        spatial_shapes: a ``Levels`` or [(H_l, W_l), ...] Python ints (no host sync), or the
            official int64 (L, 2) tensor (read once, a sync if it is on a GPU);
            S = sum_l H_l * W_l.
        sampling_locations: (N, Lq, M, L, K, 2) normalised (x, y), pixel-centre convention of
            ``grid_sample(align_corners=False)``; points outside the map read zeros.
        attention_weights: (N, Lq, M, L, K), usually softmaxed over (L, K) per head.
        backend: "auto" (on a GPU the C++ kernel when it is built, else Triton, else
            grid_sample; on the CPU the kernel's CPU build when it is built, else grid_sample),
            "einops" (the readable one), "loop" (slow oracle), "grid_sample" (the original
            reference formulation), "cuda" (the C++ kernel, CUDA tensors), "cpu" (the same kernel
            arithmetic compiled for the CPU, CPU tensors; built with the machine's C++ compiler on
            first use, cached: ``cpu_backend.py``) or "triton" (the Triton kernels: CUDA tensors,
            or CPU tensors under ``TRITON_INTERPRET=1``).
        level_start_index: (L,) first token of each level (tensor or ints), checked against
            ``spatial_shapes``; None computes it.

    Mixed precision: locations and weights share one dtype; ``value`` has it too or is
    float16/bfloat16 with float32 locations and weights (what ``MSDeformAttn`` gives under
    ``torch.autocast``). Every backend samples and sums in float32 (float64 for float64
    inputs) and returns value's dtype. The core runs outside autocast: its dtypes are this
    contract.

    Degenerate inputs, the same in every backend, forward and backward: N = 0 or Lq = 0 gives
    an empty output and zero gradients of the inputs' shapes; a NaN or +-inf location reads
    zeros and gets zero gradient (location and weight), like a point far outside the maps (the
    Python backends replace it elementwise, the kernel tests for it: no host read either way).

    Returns:
        (N, Lq, M*D) in value's dtype, channel m*D + d (head-major).
    """
    levels = as_levels(spatial_shapes, level_start_index)
    return ms_deform_attn_on_levels(value, levels, sampling_locations, attention_weights, backend)


def ms_deform_attn_on_levels(value: Tensor, levels: Levels, sampling_locations: Tensor,
                             attention_weights: Tensor, backend: str = "auto") -> Tensor:
    """``ms_deform_attn`` with the level geometry already a ``Levels``, as ``MSDeformAttn`` has
    it: checks the tensors and runs the backend."""
    check_core_inputs(value, levels, sampling_locations, attention_weights)
    chosen = resolve_backend(backend, value)
    with autocast_off(value.device):
        if chosen == "einops":
            return ms_deform_attn_einops(value, levels, sampling_locations, attention_weights)
        if chosen == "loop":
            return ms_deform_attn_loop(value, levels, sampling_locations, attention_weights)
        if chosen == "grid_sample":
            return ms_deform_attn_grid_sample(value, levels, sampling_locations, attention_weights)
        if chosen == "triton":
            return run_triton_op(value, levels, sampling_locations, attention_weights)
        return run_kernel_op(value, levels, sampling_locations, attention_weights)  # "cuda" or "cpu"
