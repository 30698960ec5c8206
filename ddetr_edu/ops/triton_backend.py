"""backend="triton": the attention core as the torch custom op ``ddetr_edu::ms_deform_attn_triton``.

The kernels are in ``triton_kernels.py``; this module registers them with ``torch.library`` and
never imports Triton itself until a call needs it, so ``import ddetr_edu`` works without Triton.

- ``triton_status() -> (usable, reason)``: never raises; whether the kernels can be imported.
- ``run_triton_op(value, levels, locations, weights) -> (N, Lq, M*D)``: differentiable in value,
  locations and weights; for CUDA tensors, or for CPU tensors when the kernels were imported
  under ``TRITON_INTERPRET=1`` (Triton's interpreter, how the tests run them without a GPU).

Registration: a ``torch.library.custom_op`` (torch >= 2.4) with a fake implementation and a
registered autograd formula that calls ``ddetr_edu::ms_deform_attn_triton_backward``, so
``torch.compile(fullgraph=True)`` traces a call as one opaque node, forward and backward. (A
``torch.library.triton_op`` would let Inductor see the kernels, but it uses the body as its fake
implementation, which under the interpreter launches the kernel on fake tensors; one
registration that runs the same way on the CPU proxy and on a GPU is what the tests can check.)

Dtypes: value float64 / float32 / float16 / bfloat16; locations and weights float32 (float64 for
float64 values). The sums accumulate in the locations' dtype; the value gradient is summed with
atomic adds in that dtype (its order, and so its last bits, may vary from run to run on a GPU) and
cast to value's dtype at the end. Degenerate inputs follow the rule of every backend: N = 0 or
Lq = 0 gives an empty output and zero gradients; a NaN or +-inf location reads zeros and gets
zero gradient (the kernels test for it, no host read).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
from types import ModuleType

import torch
from torch import Tensor

from .levels import Levels
from .op_autograd import register_backward_op

_KERNELS = "ddetr_edu.ops.triton_kernels"
MAX_LEVELS = 8  # = triton_kernels.MAX_LEVELS (that module is not imported here)


@functools.cache
def _kernels() -> tuple[ModuleType | None, str]:
    """(module, "ok") or (None, reason). Imported once per process: TRITON_INTERPRET is read then."""
    if importlib.util.find_spec("triton") is None:
        return None, "triton not installed (pip install 'ddetr-edu[triton]'; Linux CUDA builds of torch ship it)"
    try:
        module = importlib.import_module(_KERNELS)
    except Exception as err:  # an old or broken triton fails in several ways
        return None, f"triton kernels failed to import: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return module, "ok"


def triton_status() -> tuple[bool, str]:
    """(usable, reason): whether the Triton kernels can be imported here, and if not, why."""
    module, reason = _kernels()
    return module is not None, reason


def triton_cuda_status() -> tuple[bool, str]:
    """``triton_status()`` for the current CUDA device: also whether the GPU is new enough for
    Triton (compute capability 7.0 or more, the minimum torch's Inductor asks of Triton too)."""
    usable, reason = triton_status()
    if not usable:
        return usable, reason
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (7, 0):
        return False, f"GPU compute capability {major}.{minor} is below Triton's minimum 7.0"
    return True, reason


def interpreted() -> bool:
    """True when the kernels run under Triton's interpreter (on CPU tensors)."""
    module, _ = _kernels()
    if module is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(module.msda_forward_kernel, InterpretedFunction)


@torch.compiler.assume_constant_result
def triton_usable() -> bool:
    """``triton_status()[0]``, a constant to torch.compile (the import behind it is not traced)."""
    return triton_status()[0]


def _loaded(device: torch.device) -> ModuleType:
    module, reason = _kernels()
    if module is None:
        raise RuntimeError(f"ddetr_edu Triton kernels not available: {reason}")
    if device.type != "cuda" and not interpreted():
        raise RuntimeError(f"backend='triton' runs on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1 "
                           f"(set before the first Triton call); got tensors on {device}")
    return module


def _geometry(spatial_shapes: list[int], level_start_index: list[int]) -> list[int]:
    """[H_0..H_7, W_0..W_7, start_0..start_7], unused slots 1, 1, 0: the kernels' level arguments."""
    heights, widths = spatial_shapes[0::2], spatial_shapes[1::2]
    pad = MAX_LEVELS - len(heights)
    return [*heights, *[1] * pad, *widths, *[1] * pad, *level_start_index, *[0] * pad]


def _launch_args(value: Tensor, sampling_locations: Tensor, spatial_shapes: list[int],
                 level_start_index: list[int]) -> tuple[tuple[int, ...], list, dict]:
    """(grid, the size arguments, the compile-time constants) shared by both kernels."""
    n, s, m, d = value.shape
    lq, levels, points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    kernels = _loaded(value.device)
    total = n * lq * m
    block_h, block_d = kernels.block_sizes(d, total, interpreted())
    grid = ((total + block_h - 1) // block_h,)
    sizes = [total, lq * m, m, s, d, *_geometry(spatial_shapes, level_start_index)]
    return grid, sizes, dict(LEVELS=levels, POINTS=points, BLOCK_H=block_h, BLOCK_D=block_d)


@torch.library.custom_op("ddetr_edu::ms_deform_attn_triton", mutates_args=())
def ms_deform_attn_triton_op(value: Tensor, spatial_shapes: list[int], level_start_index: list[int],
                             sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """value (N, S, M, D), spatial_shapes [H_0, W_0, H_1, W_1, ...], level_start_index [start_l],
    sampling_locations (N, Lq, M, L, K, 2), attention_weights (N, Lq, M, L, K) -> (N, Lq, M*D)."""
    n, _, m, d = value.shape
    lq = sampling_locations.shape[1]
    if n * lq * m * d == 0:  # N = 0 or Lq = 0 (or an empty head): nothing to launch
        return value.new_zeros((n, lq, m * d))
    out = value.new_empty((n, lq, m * d))  # every entry is written by the kernel
    grid, sizes, constants = _launch_args(value, sampling_locations, spatial_shapes, level_start_index)
    _loaded(value.device).msda_forward_kernel[grid](
        value.contiguous(), sampling_locations.contiguous(), attention_weights.contiguous(), out, *sizes,
        **constants)
    return out


@ms_deform_attn_triton_op.register_fake
def _forward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    n, _, m, d = value.shape
    torch._check(sampling_locations.shape[0] == n and sampling_locations.shape[2] == m)
    return value.new_empty((n, sampling_locations.shape[1], m * d))


@torch.library.custom_op("ddetr_edu::ms_deform_attn_triton_backward", mutates_args=())
def ms_deform_attn_triton_backward_op(value: Tensor, spatial_shapes: list[int], level_start_index: list[int],
                                      sampling_locations: Tensor, attention_weights: Tensor,
                                      grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """grad_out (N, Lq, M*D) -> (grad value (N, S, M, D), grad locations (N, Lq, M, L, K, 2),
    grad weights (N, Lq, M, L, K)), each in its input's dtype."""
    accumulate = sampling_locations.dtype
    grad_value = torch.zeros(value.shape, dtype=accumulate, device=value.device)  # atomic adds land here
    grad_loc = torch.zeros_like(sampling_locations)
    grad_attn = torch.zeros_like(attention_weights)
    if grad_out.numel() > 0:  # else the zero gradients of the degenerate rule
        grid, sizes, constants = _launch_args(value, sampling_locations, spatial_shapes, level_start_index)
        _loaded(value.device).msda_backward_kernel[grid](
            value.contiguous(), sampling_locations.contiguous(), attention_weights.contiguous(),
            grad_out.contiguous(), grad_value, grad_loc, grad_attn, *sizes, **constants)
    return grad_value.to(value.dtype), grad_loc, grad_attn


@ms_deform_attn_triton_backward_op.register_fake
def _backward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_out):
    return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)


register_backward_op(ms_deform_attn_triton_op, ms_deform_attn_triton_backward_op)


def run_triton_op(value: Tensor, levels: Levels, sampling_locations: Tensor,
                  attention_weights: Tensor) -> Tensor:
    """The op on checked inputs (``checks.check_core_inputs``): half-precision locations and
    weights go to float32 first (the sums accumulate in their dtype), the geometry as ints."""
    if len(levels) > MAX_LEVELS:
        raise ValueError(f"backend='triton' takes at most {MAX_LEVELS} levels, got {len(levels)} "
                         f"(spatial_shapes {[list(s) for s in levels.sizes]}); use backend='grid_sample'")
    if sampling_locations.dtype in (torch.float16, torch.bfloat16):
        sampling_locations, attention_weights = sampling_locations.float(), attention_weights.float()
    return ms_deform_attn_triton_op(value, levels.flat_sizes, list(levels.starts), sampling_locations,
                                    attention_weights)
