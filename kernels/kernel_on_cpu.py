"""The CUDA kernel's arithmetic, compiled for the CPU: a check of the kernel without a GPU.

A test and teaching harness, not part of the library. ``ddetr_edu/ops/csrc/msda_math.h`` holds
everything the kernel computes per thread (bilinear corners, zero padding, the forward sum, the
gradient formulas) as ``__host__ __device__`` functions. ``msda_cpu.cpp`` (beside this file) runs
those same per-thread functions in a plain loop over (head, lane), standing in for the GPU's
threads; g++ builds it into a small shared library (about 2 s, no torch headers) that this module
loads with ctypes. The tests compare it with the einops backend; the book uses it to show the
kernel's numbers on a laptop. ``register_as_cpu_implementation()`` makes it the CPU implementation
of the op ``ddetr_edu::ms_deform_attn`` (the library registers the op for CUDA tensors only), so
that the op's registration, autograd and torch.compile paths are tested on the CPU.

Import it with ``kernels/`` on ``sys.path`` (pytest does that, see ``pyproject.toml``). The library
is cached under ``build/kernel_on_cpu/<hash of sources>/`` in the repository (or
``$DDETR_EDU_KERNEL_BUILD_DIR``); building it needs a C++ compiler.

Shapes: value (N, S, M, D); spatial_shapes (L, 2) int64 rows (H, W); level_start_index (L,);
sampling_locations (N, Lq, M, L, K, 2); attention_weights (N, Lq, M, L, K); out (N, Lq, M*D).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from ddetr_edu.ops.cuda_backend import KERNEL_SOURCES, ms_deform_attn_backward_op, ms_deform_attn_op

HARNESS = Path(__file__).resolve().parent  # kernels/
CPU_SOURCE = HARNESS / "msda_cpu.cpp"
_HEADERS = ("msda_math.h", "msda_launch.h")  # from the package's csrc/
_CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC")
_DTYPES = {torch.float64: "f64", torch.float32: "f32"}


def _build_dir() -> Path:
    return Path(os.environ.get("DDETR_EDU_KERNEL_BUILD_DIR", HARNESS.parent / "build" / "kernel_on_cpu"))


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _source_hash(compiler: str) -> str:
    digest = hashlib.sha256(" ".join((compiler, *_CXX_FLAGS)).encode())
    for path in (CPU_SOURCE, *(KERNEL_SOURCES / name for name in _HEADERS)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def library_path() -> Path | None:
    """Where the cached library is (or would be) for the current sources; None without a compiler."""
    compiler = _compiler()
    if compiler is None or not (KERNEL_SOURCES / _HEADERS[0]).exists():
        return None
    return _build_dir() / _source_hash(compiler) / "libmsda_cpu.so"


def is_built() -> bool:
    """True when the library for the current sources is already in the cache (no build needed)."""
    path = library_path()
    return path is not None and path.exists()


@functools.cache
def load_library(timeout_s: float = 120.0) -> ctypes.CDLL:
    """Build (once, atomically) and load the CPU library. Raises RuntimeError saying why not."""
    compiler = _compiler()
    if not (KERNEL_SOURCES / _HEADERS[0]).exists():
        raise RuntimeError(f"kernel sources not found at {KERNEL_SOURCES}")
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    target = library_path()
    assert target is not None
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [compiler, *_CXX_FLAGS, "-I", str(KERNEL_SOURCES), str(CPU_SOURCE), "-o", tmp]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            if result.returncode != 0:
                raise RuntimeError(f"building the CPU kernel failed: {result.stderr.strip()[-400:]}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    lib = ctypes.CDLL(str(target))
    ptr, i64, cint = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in _DTYPES.values():
        getattr(lib, f"msda_cpu_forward_{suffix}").argtypes = [ptr] * 7 + [cint, cint]
        getattr(lib, f"msda_cpu_forward_{suffix}").restype = cint
        getattr(lib, f"msda_cpu_backward_{suffix}").argtypes = [ptr] * 10 + [cint, cint]
        getattr(lib, f"msda_cpu_backward_{suffix}").restype = cint
    lib.msda_choose_launch_config.argtypes = [cint, i64, i64, ptr]
    lib.msda_choose_launch_config.restype = None
    return lib


def kernel_on_cpu_status() -> tuple[bool, str]:
    """(usable, reason): whether the CPU build of the kernel's arithmetic can be loaded."""
    try:
        load_library()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        return False, str(err)
    return True, "ok"


def launch_config(dtype: torch.dtype, channels: int, alignment: int = 16) -> tuple[int, int]:
    """The GPU launcher's (G channels per thread, threads per head) for value dtype and D."""
    config = (ctypes.c_int * 2)()
    element_size = torch.empty((), dtype=dtype).element_size()
    load_library().msda_choose_launch_config(element_size, channels, alignment, config)
    return int(config[0]), int(config[1])


def _pointer_alignment(*tensors: Tensor, limit: int = 16) -> int:
    """Largest power of two <= limit dividing every tensor's address."""
    alignment = limit
    for t in tensors:
        while alignment > 1 and t.data_ptr() % alignment:
            alignment //= 2
    return alignment


def _prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    if value.dtype not in _DTYPES:
        raise ValueError(f"value must be float32 or float64 for the CPU build, got {value.dtype}")
    if value.dim() != 4 or sampling_locations.dim() != 6 or attention_weights.dim() != 5:
        raise ValueError(
            f"expected value (N, S, M, D), sampling_locations (N, Lq, M, L, K, 2), attention_weights "
            f"(N, Lq, M, L, K); got {tuple(value.shape)}, {tuple(sampling_locations.shape)}, "
            f"{tuple(attention_weights.shape)}")
    n, s, m, d = value.shape
    lq, l, k = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    sizes = torch.tensor([n, s, m, d, lq, l, k], dtype=torch.int64)
    tensors = [value.detach().contiguous().cpu(),
               spatial_shapes.detach().to("cpu", torch.int64).contiguous(),
               level_start_index.detach().to("cpu", torch.int64).contiguous(),
               sampling_locations.detach().to("cpu", value.dtype).contiguous(),
               attention_weights.detach().to("cpu", value.dtype).contiguous()]
    return sizes, tensors


def _config(value: Tensor, others: list[Tensor], group: int | None, threads_per_head: int | None):
    """The GPU's launch configuration, or the caller's override after checking that the vector
    loads of ``group`` channels are aligned."""
    auto_group, auto_tph = launch_config(value.dtype, value.shape[3], _pointer_alignment(value, *others))
    if group is not None:
        needed = group * value.element_size()
        if _pointer_alignment(value, *others, limit=64) < min(needed, 64):
            raise ValueError(f"group={group} needs buffers aligned to {needed} bytes")
    return (group or auto_group), (threads_per_head or auto_tph)


def ms_deform_attn_kernel_on_cpu(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                                 sampling_locations: Tensor, attention_weights: Tensor,
                                 group: int | None = None, threads_per_head: int | None = None) -> Tensor:
    """Forward of the kernel's code on the CPU -> (N, Lq, M*D). ``group``/``threads_per_head``
    override the launch configuration the GPU would choose (G in 1, 2, 4, 8; tph a power of 2 <= 32)."""
    sizes, (v, shapes, starts, loc, attn) = _prepare(value, spatial_shapes, level_start_index,
                                                     sampling_locations, attention_weights)
    n, _, m, d = v.shape
    out = torch.empty(n, loc.shape[1], m * d, dtype=v.dtype)
    group, tph = _config(v, [out], group, threads_per_head)
    fn = getattr(load_library(), f"msda_cpu_forward_{_DTYPES[v.dtype]}")
    status = fn(sizes.data_ptr(), v.data_ptr(), shapes.data_ptr(), starts.data_ptr(), loc.data_ptr(),
                attn.data_ptr(), out.data_ptr(), group, tph)
    if status != 0:
        raise ValueError(f"invalid launch configuration group={group}, threads_per_head={tph} for D={d} "
                         "(group in 1, 2, 4, 8 dividing D; threads_per_head a power of two <= 32)")
    return out.to(value.device)


def ms_deform_attn_kernel_on_cpu_backward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                                          sampling_locations: Tensor, attention_weights: Tensor,
                                          grad_out: Tensor, group: int | None = None,
                                          threads_per_head: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Backward of the kernel's code on the CPU: grad_out (N, Lq, M*D) -> (dLoss/d value (N, S, M, D),
    dLoss/d sampling_locations (N, Lq, M, L, K, 2), dLoss/d attention_weights (N, Lq, M, L, K))."""
    sizes, (v, shapes, starts, loc, attn) = _prepare(value, spatial_shapes, level_start_index,
                                                     sampling_locations, attention_weights)
    n, _, m, d = v.shape
    if tuple(grad_out.shape) != (n, loc.shape[1], m * d):
        raise ValueError(f"grad_out must be (N, Lq, M*D) = {(n, loc.shape[1], m * d)}, got {tuple(grad_out.shape)}")
    g = grad_out.detach().to("cpu", v.dtype).contiguous()
    grad_value, grad_loc, grad_attn = torch.empty_like(v), torch.empty_like(loc), torch.empty_like(attn)
    group, tph = _config(v, [g], group, threads_per_head)
    fn = getattr(load_library(), f"msda_cpu_backward_{_DTYPES[v.dtype]}")
    status = fn(sizes.data_ptr(), v.data_ptr(), shapes.data_ptr(), starts.data_ptr(), loc.data_ptr(),
                attn.data_ptr(), g.data_ptr(), grad_value.data_ptr(), grad_loc.data_ptr(),
                grad_attn.data_ptr(), group, tph)
    if status != 0:
        raise ValueError(f"invalid launch configuration group={group}, threads_per_head={tph} for D={d}")
    device = value.device
    return (grad_value.to(device), grad_loc.to(device, sampling_locations.dtype),
            grad_attn.to(device, attention_weights.dtype))


# ---------------------------------------------------------------------------------------------
# The CPU implementation of the op ddetr_edu::ms_deform_attn (float32/float64; half precision is
# computed in float32), with the level geometry as the op takes it: ints.

def _compute(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _levels(spatial_shapes: list[int], level_start_index: list[int]) -> tuple[Tensor, Tensor]:
    return (torch.tensor(spatial_shapes, dtype=torch.int64).view(-1, 2),
            torch.tensor(level_start_index, dtype=torch.int64))


def _op_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    v = _compute(value)
    out = ms_deform_attn_kernel_on_cpu(v, *_levels(spatial_shapes, level_start_index),
                                       sampling_locations.to(v.dtype), attention_weights.to(v.dtype))
    return out.to(value.dtype)


def _op_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_out):
    v = _compute(value)
    gv, gl, ga = ms_deform_attn_kernel_on_cpu_backward(
        v, *_levels(spatial_shapes, level_start_index), sampling_locations.to(v.dtype),
        attention_weights.to(v.dtype), grad_out.to(v.dtype))
    return gv.to(value.dtype), gl.to(sampling_locations.dtype), ga.to(attention_weights.dtype)


@functools.cache
def register_as_cpu_implementation() -> None:
    """Make this build the CPU implementation of ``ddetr_edu::ms_deform_attn`` and its backward,
    for the rest of the process (once; later calls do nothing). Raises RuntimeError when the
    library cannot be built."""
    load_library()
    ms_deform_attn_op.register_kernel("cpu", _op_forward)
    ms_deform_attn_backward_op.register_kernel("cpu", _op_backward)
