"""The optional CUDA kernel as the torch custom op ``ddetr_edu::ms_deform_attn``.

    out[n, q, m*D + d] = sum_l sum_k A[n,q,m,l,k] * bilinear(V[n, level l, m, d], p[n,q,m,l,k])

The kernel's sources (``csrc/`` beside this module, shipped with the package) are described in
``kernels/README.md``. Public API (used by the dispatcher in ``dispatch.py`` for backend="cuda"
and "auto"):

- ``kernel_status() -> (available, reason)``: never raises; on a CPU-only machine it answers at
  once ("torch built without CUDA" / "no CUDA device"); with a GPU it loads the kernel, building
  it on first use from ``KERNEL_SOURCES`` (``torch.utils.cpp_extension.load``, cached in torch's
  extensions folder) unless ``pip install --no-build-isolation ./kernels`` already installed
  ``ddetr_edu_msda_cuda``.
- ``ms_deform_attn_cuda(value, spatial_shapes, level_start_index, sampling_locations,
  attention_weights) -> (N, Lq, M*D)``, differentiable in value, locations and weights.

The op is registered with ``torch.library`` for CUDA tensors, with a fake implementation for
``torch.compile`` and a registered autograd formula that calls
``ddetr_edu::ms_deform_attn_backward``. It takes the level geometry as Python ints, the sizes
flattened (H_0, W_0, H_1, W_1, ...) and the starts (start_0, start_1, ...): the binding hands them
to the kernel by value, so a call neither reads anything back from the GPU nor copies anything to
it first. Its CPU implementation, the same arithmetic compiled for the CPU, is registered by
``cpu_backend.py``; the autograd formula and the fake implementation here serve both devices.

Importing this module is cheap and never builds anything.
Dtypes: value float64 / float32 / float16 / bfloat16; locations and weights are float32 (float64 for
float64 values, see ``checks.check_dtypes``) and the sums accumulate in that type; the output has
value's dtype.
"""
from __future__ import annotations

import functools
import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from .checks import check_core_inputs
from .levels import Levels, SpatialShapes, StartIndex, as_levels
from .op_autograd import register_backward_op

KERNEL_SOURCES = Path(__file__).resolve().parent / "csrc"  # package data (pyproject.toml)
_PREBUILT_MODULE = "ddetr_edu_msda_cuda"  # what `pip install ./kernels` provides
_CUDA_SOURCES = ("msda_binding.cpp", "msda_kernel.cu")


def _nvcc_path() -> str | None:
    from torch.utils.cpp_extension import CUDA_HOME  # imported lazily: it is slow to import
    if CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        return os.path.join(CUDA_HOME, "bin", "nvcc")
    return shutil.which("nvcc")


@functools.cache
def _extension() -> tuple[ModuleType | None, str]:
    """(module, "ok") or (None, reason). Tried once per process: a failed build is not retried."""
    try:
        return importlib.import_module(_PREBUILT_MODULE), "ok"
    except ImportError:
        pass
    if not all((KERNEL_SOURCES / name).exists() for name in _CUDA_SOURCES):
        return None, f"kernel not installed and its sources are not at {KERNEL_SOURCES}"
    if _nvcc_path() is None:
        return None, "nvcc missing (install the CUDA toolkit or set CUDA_HOME) and the kernel is not installed"
    from torch.utils.cpp_extension import load
    try:
        module = load(name=_PREBUILT_MODULE, sources=[str(KERNEL_SOURCES / n) for n in _CUDA_SOURCES],
                      extra_include_paths=[str(KERNEL_SOURCES)], extra_cflags=["-O3"],
                      extra_cuda_cflags=["-O3"], verbose=os.environ.get("DDETR_EDU_VERBOSE_BUILD") == "1")
    except Exception as err:  # a compiler error can surface as several exception types
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        return None, f"build failed: {lines[-1][:300] if lines else type(err).__name__}"
    return module, "ok"


def kernel_status() -> tuple[bool, str]:
    """(available, reason): whether ``ms_deform_attn_cuda`` can run here, and if not, why."""
    if torch.version.cuda is None:
        return False, f"torch built without CUDA (torch {torch.__version__})"
    if not torch.cuda.is_available():
        return False, "no CUDA device (torch.cuda.is_available() is False)"
    module, reason = _extension()
    return module is not None, reason


@torch.compiler.assume_constant_result
def kernel_usable() -> bool:
    """``kernel_status()[0]``; a constant to torch.compile, which runs it while tracing (the
    build and import behind it cannot be traced)."""
    return kernel_status()[0]


# ---------------------------------------------------------------------------------------------
# The custom ops, implemented for CUDA tensors (the kernel).

def _loaded_extension() -> ModuleType:
    module, reason = _extension()
    if module is None:
        raise RuntimeError(f"ddetr_edu CUDA kernel not available: {reason}")
    return module


@torch.library.custom_op("ddetr_edu::ms_deform_attn", mutates_args=(), device_types="cuda")
def ms_deform_attn_op(value: Tensor, spatial_shapes: list[int], level_start_index: list[int],
                      sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """value (N, S, M, D), spatial_shapes [H_0, W_0, H_1, W_1, ...], level_start_index [start_l],
    sampling_locations (N, Lq, M, L, K, 2), attention_weights (N, Lq, M, L, K) -> (N, Lq, M*D)."""
    return _loaded_extension().forward(value, spatial_shapes, level_start_index, sampling_locations,
                                       attention_weights)


@ms_deform_attn_op.register_fake
def _ms_deform_attn_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    n, _, m, d = value.shape
    torch._check(sampling_locations.shape[0] == n and sampling_locations.shape[2] == m)
    return value.new_empty((n, sampling_locations.shape[1], m * d))


@torch.library.custom_op("ddetr_edu::ms_deform_attn_backward", mutates_args=(), device_types="cuda")
def ms_deform_attn_backward_op(value: Tensor, spatial_shapes: list[int], level_start_index: list[int],
                               sampling_locations: Tensor, attention_weights: Tensor,
                               grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """grad_out (N, Lq, M*D) -> (grad value (N, S, M, D), grad locations (N, Lq, M, L, K, 2),
    grad weights (N, Lq, M, L, K)), each in its input's dtype."""
    return tuple(_loaded_extension().backward(value, spatial_shapes, level_start_index, sampling_locations,
                                              attention_weights, grad_out))


@ms_deform_attn_backward_op.register_fake
def _ms_deform_attn_backward_fake(value, spatial_shapes, level_start_index, sampling_locations,
                                  attention_weights, grad_out):
    return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)


register_backward_op(ms_deform_attn_op, ms_deform_attn_backward_op)


def run_kernel_op(value: Tensor, levels: Levels, sampling_locations: Tensor,
                  attention_weights: Tensor) -> Tensor:
    """The op on checked inputs: the level geometry handed over as ints."""
    return ms_deform_attn_op(value, levels.flat_sizes, list(levels.starts), sampling_locations,
                             attention_weights)


def ms_deform_attn_cuda(value: Tensor, spatial_shapes: Levels | SpatialShapes,
                        level_start_index: StartIndex | None, sampling_locations: Tensor,
                        attention_weights: Tensor) -> Tensor:
    """The attention core on the GPU kernel (differentiable).

    value (N, S, M, D); spatial_shapes a ``Levels``, [(H, W), ...] ints or int64 (L, 2) rows
    (H, W); level_start_index (L,) ints, tensor or None (checked against the shapes);
    sampling_locations (N, Lq, M, L, K, 2) normalised (x, y), align_corners=False, zero padding;
    attention_weights (N, Lq, M, L, K) -> (N, Lq, M*D) head-major channels. Raises RuntimeError
    (with the reason) when the kernel cannot run here.
    """
    if not kernel_usable():
        raise RuntimeError(f"ddetr_edu CUDA kernel not available: {kernel_status()[1]}")
    levels = as_levels(spatial_shapes, level_start_index)
    check_core_inputs(value, levels, sampling_locations, attention_weights)
    if not value.is_cuda:
        raise ValueError(f"ms_deform_attn_cuda needs CUDA tensors, got value on {value.device}")
    return run_kernel_op(value, levels, sampling_locations, attention_weights)
