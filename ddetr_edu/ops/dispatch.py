"""``ms_deform_attn``: one entry point, several backends of the same operator."""
from __future__ import annotations

import warnings

from torch import Tensor

from .checks import check_core_inputs
from .msda_einops import ms_deform_attn_einops
from .msda_grid_sample import ms_deform_attn_grid_sample
from .msda_loop import ms_deform_attn_loop

BACKENDS = ("auto", "einops", "loop", "grid_sample", "cuda")
_warned_fallback = False


def cuda_kernel_status() -> tuple[bool, str]:
    """(usable, reason): whether the optional CUDA kernel can run, and why not."""
    try:
        from . import cuda_backend
    except ImportError as err:  # the kernel glue is optional
        return False, f"the CUDA backend module could not be imported ({err})"
    return cuda_backend.kernel_status()


def resolve_backend(backend: str, value: Tensor) -> str:
    """Turn "auto" into a concrete backend for tensors like ``value``.

    "auto" uses the kernel for CUDA tensors when it is built, else einops (with one warning per
    process when the tensors are on a GPU but the kernel cannot be used). "cuda" raises if the
    kernel cannot be used.
    """
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cuda":
        ok, reason = cuda_kernel_status()
        if not ok:
            raise RuntimeError(f"backend='cuda' is not available: {reason}")
        if not value.is_cuda:
            raise RuntimeError(f"backend='cuda' needs CUDA tensors, got tensors on {value.device}")
        return "cuda"
    if backend != "auto":
        return backend
    if not value.is_cuda:
        return "einops"
    ok, reason = cuda_kernel_status()
    if ok:
        return "cuda"
    if not _warned_fallback:
        warnings.warn(f"ddetr_edu: CUDA kernel not used, falling back to the einops backend: {reason}",
                      RuntimeWarning, stacklevel=3)
        _warned_fallback = True
    return "einops"


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor,
                   attention_weights: Tensor, backend: str = "auto") -> Tensor:
    """Multi-scale deformable attention core (no projections).

    MSDeformAttn = sum_m W_m [ sum_l sum_k A_mlqk * W'_m x^l(phi_l(p_q) + dp_mlqk) ]; this
    function is the bracket: the sampling and the weighted sum, for all heads at once.

    Args:
        value: (N, S, M, D) projected values of all levels, flattened level after level.
        spatial_shapes: int64 (L, 2), rows (H_l, W_l), S = sum_l H_l * W_l.
        sampling_locations: (N, Lq, M, L, K, 2) normalised (x, y), pixel-centre convention of
            ``grid_sample(align_corners=False)``; points outside the map read zeros.
        attention_weights: (N, Lq, M, L, K), usually softmaxed over (L, K) per head.
        backend: "auto" (kernel on GPU when built, else einops), "einops", "loop" (slow oracle),
            "grid_sample" (the original reference formulation) or "cuda".

    Returns:
        (N, Lq, M*D), channel m*D + d (head-major).
    """
    check_core_inputs(value, spatial_shapes, sampling_locations, attention_weights)
    chosen = resolve_backend(backend, value)
    if chosen == "einops":
        return ms_deform_attn_einops(value, spatial_shapes, sampling_locations, attention_weights)
    if chosen == "loop":
        return ms_deform_attn_loop(value, spatial_shapes, sampling_locations, attention_weights)
    if chosen == "grid_sample":
        return ms_deform_attn_grid_sample(value, spatial_shapes, sampling_locations, attention_weights)
    from .cuda_backend import ms_deform_attn_cuda
    from .levels import level_start_index
    spatial_shapes = spatial_shapes.to(value.device)
    return ms_deform_attn_cuda(value, spatial_shapes, level_start_index(spatial_shapes),
                               sampling_locations, attention_weights)
