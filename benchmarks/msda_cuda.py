"""Benchmark of the attention core on a GPU: the CUDA kernel and the Triton kernels vs einops vs grid_sample.

Two sizes from the paper's setting (batch 2, an 800 x 1333 image, M=8 heads x D=32 channels,
L=4 levels, K=4 points):
  encoder: every pixel is a query, levels 100x167, 50x84, 25x42, 13x21 -> Lq = S = 22,223
  decoder: 300 object queries over the same value maps
For each backend: median time of the forward and of forward+backward, the peak memory the call
adds (torch.cuda.max_memory_allocated above what the inputs take), and the effective bandwidth:
the bytes the operator must move at least (inputs read once, outputs written once) divided by
the time, against the GPU's peak (2 x memory clock x bus width). A second table gives each
backend's time as a ratio to grid_sample's, per dtype, size and pass.

    python benchmarks/msda_cuda.py                 # float32 and bfloat16, prints markdown tables
    python benchmarks/msda_cuda.py --dtype bfloat16 --reps 50 --backends triton,grid_sample

Paste the table under "## Results" in kernels/BENCHMARKS.md (the book plots it from there).
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from dataclasses import dataclass

import torch

from ddetr_edu.ops import cuda_kernel_status, ms_deform_attn
from ddetr_edu.ops.triton_backend import triton_cuda_status

LEVELS = ((100, 167), (50, 84), (25, 42), (13, 21))  # 800 x 1333 at strides 8, 16, 32, 64


@dataclass
class BenchSize:
    name: str
    batch: int = 2
    queries: int | None = None  # None: every token is a query (encoder)
    heads: int = 8
    channels: int = 32
    points: int = 4


SIZES = (BenchSize("encoder"), BenchSize("decoder", queries=300))


def make_inputs(size: BenchSize, dtype: torch.dtype, device: torch.device):
    """value (N, S, M, D) in dtype, the level sizes as ints, locations (N, Lq, M, L, K, 2) and
    weights (N, Lq, M, L, K) in float32 for half dtypes (the mixed-precision contract, what the
    detector passes under autocast), else in dtype."""
    tokens = sum(h * w for h, w in LEVELS)
    lq = size.queries or tokens
    coord = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    gen = torch.Generator(device=device).manual_seed(0)
    value = torch.randn(size.batch, tokens, size.heads, size.channels, device=device, dtype=dtype, generator=gen)
    loc = torch.rand(size.batch, lq, size.heads, len(LEVELS), size.points, 2, device=device, dtype=coord,
                     generator=gen)
    logits = torch.randn(size.batch, lq, size.heads, len(LEVELS) * size.points, device=device, generator=gen)
    weights = logits.softmax(-1).view(size.batch, lq, size.heads, len(LEVELS), size.points).to(coord)
    return value, LEVELS, loc, weights


def compulsory_bytes(value, loc, weights, backward: bool) -> int:
    """Bytes read/written at least once: inputs and output (forward); plus grad_out, the three
    gradients and a second read of the inputs (backward)."""
    def nbytes(t):
        return t.numel() * t.element_size()
    inputs = nbytes(value) + nbytes(loc) + nbytes(weights)
    out = nbytes(value) // value.shape[1] * loc.shape[1]  # (N, Lq, M*D)
    total = inputs + out
    if backward:
        total += out + inputs + inputs  # grad_out read; inputs re-read; gradients written
    return total


def peak_bandwidth_gbs() -> float | None:
    props = torch.cuda.get_device_properties(0)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def time_call(fn, warmup: int, reps: int) -> float:
    """Median milliseconds of fn() over reps, after warmup calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure(backend: str, size: BenchSize, dtype: torch.dtype, backward: bool, warmup: int, reps: int):
    device = torch.device("cuda")
    value, shapes, loc, weights = make_inputs(size, dtype, device)
    if backward:
        for t in (value, loc, weights):
            t.requires_grad_()

    def call():
        for t in (value, loc, weights):
            t.grad = None
        out = ms_deform_attn(value, shapes, loc, weights, backend=backend)
        if backward:
            out.backward(torch.ones_like(out))
        return out

    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    peak_mib = (torch.cuda.max_memory_allocated() - baseline) / 2**20
    ms = time_call(call, warmup, reps)
    gbs = compulsory_bytes(value, loc, weights, backward) / (ms * 1e-3) / 1e9
    return ms, peak_mib, gbs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32,bfloat16",
                        help="comma-separated, of float32, bfloat16, float16 (half: float32 locations)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backends", default="cuda,triton,einops,grid_sample")
    args = parser.parse_args(argv)
    dtype_names = args.dtype.split(",")
    for name in dtype_names:
        if name not in ("float32", "bfloat16", "float16"):
            parser.error(f"--dtype: expected float32, bfloat16 or float16, got {name!r}")
    if not torch.cuda.is_available():
        print("benchmarks/msda_cuda.py needs a CUDA device; none is available here.")
        return 2
    backends = args.backends.split(",")
    for backend, (ok, reason) in (("cuda", cuda_kernel_status()), ("triton", triton_cuda_status())):
        if backend in backends and not ok:
            print(f"note: the {backend} backend is not available ({reason}); its rows are skipped")
            backends.remove(backend)
    peak = peak_bandwidth_gbs()
    name = torch.cuda.get_device_name(0)
    print(f"GPU: {name}; torch {torch.__version__}; CUDA {torch.version.cuda}; dtypes {args.dtype}; "
          f"{datetime.date.today().isoformat()}; peak memory bandwidth "
          f"{f'{peak:.0f} GB/s' if peak else 'unknown'}\n")
    print("| size | backend | dtype | pass | time (ms) | peak extra memory (MiB) | effective GB/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|")
    times: dict[tuple[str, str, str, str], float] = {}  # (dtype, size, pass, backend) -> ms
    for dtype_name in dtype_names:
        for size in SIZES:
            for backward in (False, True):
                pass_name = "fwd+bwd" if backward else "fwd"
                for backend in backends:
                    try:
                        ms, mib, gbs = measure(backend, size, getattr(torch, dtype_name), backward, args.warmup,
                                               args.reps)
                    except torch.cuda.OutOfMemoryError:
                        print(f"| {size.name} | {backend} | {dtype_name} | {pass_name} | OOM | OOM | - | - |")
                        torch.cuda.empty_cache()
                        continue
                    times[dtype_name, size.name, pass_name, backend] = ms
                    share = f"{100 * gbs / peak:.1f}%" if peak else "-"
                    print(f"| {size.name} | {backend} | {dtype_name} | {pass_name} "
                          f"| {ms:.3f} | {mib:.1f} | {gbs:.0f} | {share} |")
                    sys.stdout.flush()
    print_ratios(times, dtype_names, backends)
    return 0


def print_ratios(times: dict[tuple[str, str, str, str], float], dtype_names: list[str], backends: list[str]) -> None:
    """Each backend's time / grid_sample's time for the same dtype, size and pass (a second table,
    so the first keeps the columns that book/09_kernel.ipynb reads)."""
    others = [b for b in backends if b != "grid_sample"]
    if "grid_sample" not in backends or not others:
        return
    print("\n| size | dtype | pass | " + " | ".join(f"{b}/grid_sample" for b in others) + " |")
    print("|---|---|---|" + "---|" * len(others))
    for size in SIZES:
        for dtype_name in dtype_names:
            for pass_name in ("fwd", "fwd+bwd"):
                base = times.get((dtype_name, size.name, pass_name, "grid_sample"))
                cells = [f"{times[key] / base:.3f}" if base and (key := (dtype_name, size.name, pass_name, b)) in times
                         else "-" for b in others]
                print(f"| {size.name} | {dtype_name} | {pass_name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
