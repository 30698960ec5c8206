"""The kernel's arithmetic compiled for the CPU: the CPU implementation of ``ddetr_edu::ms_deform_attn``.

``csrc/msda_cpu.cpp`` runs the per-thread bodies of the CUDA kernel (``csrc/msda_math.h``, one
header for both devices) in an ``at::parallel_for`` over heads (forward) or over (image, head)
slices (backward, so that no two threads add into the same value gradient). It is a small shared
library with a C interface, loaded with ctypes: it includes only ``ATen/Parallel.h`` and builds
in a few seconds with the machine's C++ compiler, on first use. The library is cached in
``$DDETR_EDU_KERNEL_BUILD_DIR`` (default ``$XDG_CACHE_HOME/ddetr_edu/cpu_kernel``, i.e.
``~/.cache/ddetr_edu/cpu_kernel``, or the temporary folder when that is not writable), in a
subfolder named by a hash of the sources, the compiler, its flags, the torch version and the
processor (the build targets this machine's vector instructions). One line
is printed while it builds; when it cannot be built (no compiler, a failed build, or
``DDETR_EDU_CPU_KERNEL=0``), ``kernel_status()`` says why and ``backend="auto"`` uses grid_sample.
``make cpu-kernel`` builds it ahead of time (it calls ``kernel_status()``).

Importing this module registers the CPU implementations of the op and of its backward (cheap:
nothing is built until a CPU tensor reaches the op). Public API:

- ``kernel_status() -> (usable, reason)``: never raises; builds (once per process) if needed.
- ``kernel_usable()``: its first element, a constant to torch.compile.
- ``forward(...)`` / ``backward(...)``: the library on tensors, with an optional GPU launch
  configuration ``(group, threads_per_head)`` to replay (``kernels/kernel_on_cpu.py``, tests).
- ``cpu_group(D)`` and ``launch_config(dtype, D, alignment)``: the CPU's and the GPU's schedules.

Dtypes: float64 and float32 run as they are; float16/bfloat16 values are converted to float32
(locations and weights are float32 by the mixed-precision contract) and the result is rounded
once to value's dtype, as in every backend.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from .cuda_backend import KERNEL_SOURCES, ms_deform_attn_backward_op, ms_deform_attn_op

CPU_SOURCE = KERNEL_SOURCES / "msda_cpu.cpp"
_HEADERS = ("msda_math.h", "msda_launch.h")
_DTYPE_CODES = {torch.float64: 0, torch.float32: 1}
_BUILD_TIMEOUT_S = 300.0


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _torch_dirs() -> tuple[Path, Path]:
    root = Path(torch.__file__).resolve().parent
    return root / "include", root / "lib"


def _flags() -> list[str]:
    """Compiler flags: optimised for this machine's vector instructions (x86-64: -march=native,
    the cache key names the processor), sums over channels reassociated so that they vectorise
    (no -ffast-math: NaN and infinity keep their meaning, which the NaN rule relies on), torch's
    C++ ABI, and OpenMP when torch's parallel backend is OpenMP (at::parallel_for is then a
    `#pragma omp parallel` in the header)."""
    include, lib = _torch_dirs()
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fassociative-math", "-fno-signed-zeros",
             "-fno-trapping-math", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
             "-I", str(KERNEL_SOURCES), "-isystem", str(include)]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-march=native")
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        flags.append("-fopenmp")
    return flags + ["-L", str(lib), "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib}"]


def _processor() -> str:
    """What -march=native compiles for: the processor's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _cache_root() -> Path:
    if "DDETR_EDU_KERNEL_BUILD_DIR" in os.environ:
        return Path(os.environ["DDETR_EDU_KERNEL_BUILD_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ddetr_edu" / "cpu_kernel"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _build_key(compiler: str) -> str:
    """Hash of everything the library depends on: sources, compiler, flags, torch, processor."""
    digest = hashlib.sha256("\n".join((compiler, *_flags(), torch.__version__, _processor())).encode())
    for path in (CPU_SOURCE, *(KERNEL_SOURCES / name for name in _HEADERS)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def library_path() -> Path | None:
    """Where the library for the current sources is (or would be); None without a compiler."""
    compiler = _compiler()
    if compiler is None or not CPU_SOURCE.exists():
        return None
    root = _cache_root()
    if not _writable(root) and "DDETR_EDU_KERNEL_BUILD_DIR" not in os.environ:
        root = Path(tempfile.gettempdir()) / f"ddetr_edu-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / "cpu_kernel"
    return root / _build_key(compiler) / "libmsda_cpu.so"


def is_built() -> bool:
    """True when the library for the current sources is in the cache (loading it builds nothing)."""
    path = library_path()
    return path is not None and path.exists()


def _build(compiler: str, target: Path) -> None:
    """Compile into a temporary file beside ``target``, then rename (atomic for concurrent builds)."""
    if not _writable(target.parent):
        raise RuntimeError(f"cache folder {target.parent} is not writable (set DDETR_EDU_KERNEL_BUILD_DIR)")
    print(f"ddetr_edu: building the CPU kernel of the attention core with {compiler} (once, a few seconds; "
          f"cached in {target.parent})", file=sys.stderr, flush=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run([compiler, str(CPU_SOURCE), "-o", tmp, *_flags()], capture_output=True,
                                text=True, timeout=_BUILD_TIMEOUT_S)
        if result.returncode != 0:
            if os.environ.get("DDETR_EDU_VERBOSE_BUILD") == "1":
                print(result.stderr, file=sys.stderr)
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise RuntimeError(f"build failed: {lines[-1][:300] if lines else f'exit code {result.returncode}'}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """(library, "ok") or (None, reason). Tried once per process: a failed build is not retried."""
    if os.environ.get("DDETR_EDU_CPU_KERNEL") == "0":
        return None, "disabled by DDETR_EDU_CPU_KERNEL=0"
    compiler = _compiler()
    if not CPU_SOURCE.exists():
        return None, f"kernel sources not found at {KERNEL_SOURCES}"
    if compiler is None:
        return None, "no C++ compiler found (install g++ or set CXX)"
    try:
        target = library_path()
        if not target.exists():
            _build(compiler, target)
        lib = ctypes.CDLL(str(target))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        return None, str(err).splitlines()[0] if str(err) else type(err).__name__
    ptr, i64, cint = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.msda_cpu_forward.argtypes = [cint] + [ptr] * 7 + [cint, cint]
    lib.msda_cpu_forward.restype = cint
    lib.msda_cpu_backward.argtypes = [cint] + [ptr] * 10 + [cint, cint]
    lib.msda_cpu_backward.restype = cint
    lib.msda_cpu_group.argtypes = [i64]
    lib.msda_cpu_group.restype = cint
    lib.msda_choose_launch_config.argtypes = [cint, i64, i64, ptr]
    lib.msda_choose_launch_config.restype = None
    return lib, "ok"


def kernel_status() -> tuple[bool, str]:
    """(usable, reason): whether the CPU build can run here (building it now if needed), and if not, why."""
    lib, reason = _library()
    return lib is not None, reason


@torch.compiler.assume_constant_result
def kernel_usable() -> bool:
    """``kernel_status()[0]``; a constant to torch.compile (the build behind it cannot be traced)."""
    return kernel_status()[0]


def _loaded() -> ctypes.CDLL:
    lib, reason = _library()
    if lib is None:
        raise RuntimeError(f"ddetr_edu CPU kernel not available: {reason}")
    return lib


def cpu_group(channels: int) -> int:
    """G, the channels one step of the CPU schedule handles: the largest of 32, 16, ..., 1 dividing D."""
    return int(_loaded().msda_cpu_group(channels))


def launch_config(dtype: torch.dtype, channels: int, alignment: int = 16) -> tuple[int, int]:
    """The GPU launcher's (G channels per thread, threads per head) for value dtype and D."""
    config = (ctypes.c_int * 2)()
    element_size = torch.empty((), dtype=dtype).element_size()
    _loaded().msda_choose_launch_config(element_size, channels, alignment, config)
    return int(config[0]), int(config[1])


# ---------------------------------------------------------------------------------------------
# The library on tensors. Level geometry: spatial_shapes [H_0, W_0, H_1, W_1, ...] and
# level_start_index [start_0, ...] as ints (the op's form).

def _check_levels(value: Tensor, spatial_shapes: list[int], level_start_index: list[int],
                  sampling_locations: Tensor, attention_weights: Tensor) -> None:
    """The checks that keep the C++ loops inside their buffers (the dispatcher checks more)."""
    if value.dim() != 4 or sampling_locations.dim() != 6 or attention_weights.dim() != 5:
        raise ValueError(f"expected value (N, S, M, D), sampling_locations (N, Lq, M, L, K, 2), attention_weights "
                         f"(N, Lq, M, L, K); got {tuple(value.shape)}, {tuple(sampling_locations.shape)}, "
                         f"{tuple(attention_weights.shape)}")
    n, s, m, _ = value.shape
    levels = len(level_start_index)
    if len(spatial_shapes) != 2 * levels or levels != sampling_locations.shape[3]:
        raise ValueError(f"spatial_shapes needs 2 ints per level and level_start_index one, for "
                         f"L = {sampling_locations.shape[3]}; got {len(spatial_shapes)} and {levels}")
    tokens = 0
    for level in range(levels):
        h, w = spatial_shapes[2 * level], spatial_shapes[2 * level + 1]
        if h <= 0 or w <= 0 or level_start_index[level] != tokens:
            raise ValueError(f"level {level}: size {h} x {w} must be positive and start at {tokens}, "
                             f"got start {level_start_index[level]}")
        tokens += h * w
    if tokens != s:
        raise ValueError(f"sum of H*W over the levels is {tokens} but value has S = {s}")
    if (sampling_locations.shape[0], sampling_locations.shape[2], sampling_locations.shape[5]) != (n, m, 2) \
            or attention_weights.shape != sampling_locations.shape[:5]:
        raise ValueError(f"sampling_locations {tuple(sampling_locations.shape)} and attention_weights "
                         f"{tuple(attention_weights.shape)} do not match value {tuple(value.shape)}")


def _prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """Contiguous CPU buffers in the compute dtype (float64 for float64 values, else float32)."""
    _check_levels(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if value.device.type != "cpu":
        raise ValueError(f"the CPU kernel needs CPU tensors, got value on {value.device}")
    compute = torch.float64 if value.dtype == torch.float64 else torch.float32
    n, s, m, d = value.shape
    lq, levels, k = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    sizes = torch.tensor([n, s, m, d, lq, levels, k], dtype=torch.int64)
    shapes = torch.tensor(list(spatial_shapes), dtype=torch.int64)
    starts = torch.tensor(list(level_start_index), dtype=torch.int64)
    buffers = [t.detach().to(compute).contiguous() for t in (value, sampling_locations, attention_weights)]
    return sizes, shapes, starts, buffers


def _status_error(status: int, group: int, tph: int, channels: int) -> ValueError:
    return ValueError(f"invalid launch configuration group={group}, threads_per_head={tph} for D={channels} "
                      "(group a power of two <= 32 dividing D; threads_per_head a power of two <= 32)")


def forward(value: Tensor, spatial_shapes: list[int], level_start_index: list[int], sampling_locations: Tensor,
            attention_weights: Tensor, group: int = 0, threads_per_head: int = 1) -> Tensor:
    """value (N, S, M, D), sampling_locations (N, Lq, M, L, K, 2), attention_weights (N, Lq, M, L, K)
    -> out (N, Lq, M*D) in value's dtype. ``group`` = 0: the CPU schedule; else a GPU launch
    configuration (G, threads_per_head) to replay."""
    sizes, shapes, starts, (v, loc, attn) = _prepare(value, spatial_shapes, level_start_index,
                                                     sampling_locations, attention_weights)
    n, _, m, d = v.shape
    out = torch.empty(n, loc.shape[1], m * d, dtype=v.dtype)
    status = _loaded().msda_cpu_forward(_DTYPE_CODES[v.dtype], sizes.data_ptr(), v.data_ptr(), shapes.data_ptr(),
                                        starts.data_ptr(), loc.data_ptr(), attn.data_ptr(), out.data_ptr(),
                                        group, threads_per_head)
    if status != 0:
        raise _status_error(status, group, threads_per_head, d)
    return out.to(value.dtype)


def backward(value: Tensor, spatial_shapes: list[int], level_start_index: list[int], sampling_locations: Tensor,
             attention_weights: Tensor, grad_out: Tensor, group: int = 0,
             threads_per_head: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """grad_out (N, Lq, M*D) -> (grad value (N, S, M, D), grad locations (N, Lq, M, L, K, 2), grad
    weights (N, Lq, M, L, K)), each in its input's dtype. ``group`` as in ``forward``."""
    sizes, shapes, starts, (v, loc, attn) = _prepare(value, spatial_shapes, level_start_index,
                                                     sampling_locations, attention_weights)
    n, _, m, d = v.shape
    if tuple(grad_out.shape) != (n, loc.shape[1], m * d):
        raise ValueError(f"grad_out must be (N, Lq, M*D) = {(n, loc.shape[1], m * d)}, got {tuple(grad_out.shape)}")
    g = grad_out.detach().to(v.dtype).contiguous()
    grad_value, grad_loc, grad_attn = torch.zeros_like(v), torch.zeros_like(loc), torch.zeros_like(attn)
    status = _loaded().msda_cpu_backward(_DTYPE_CODES[v.dtype], sizes.data_ptr(), v.data_ptr(), shapes.data_ptr(),
                                         starts.data_ptr(), loc.data_ptr(), attn.data_ptr(), g.data_ptr(),
                                         grad_value.data_ptr(), grad_loc.data_ptr(), grad_attn.data_ptr(),
                                         group, threads_per_head)
    if status != 0:
        raise _status_error(status, group, threads_per_head, d)
    return (grad_value.to(value.dtype), grad_loc.to(sampling_locations.dtype),
            grad_attn.to(attention_weights.dtype))


# The op's CPU implementations (the CUDA ones live in cuda_backend.py; autograd and the fake
# implementation are registered there, once for every device).
@ms_deform_attn_op.register_kernel("cpu")
def _op_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    return forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


@ms_deform_attn_backward_op.register_kernel("cpu")
def _op_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_out):
    return backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_out)

