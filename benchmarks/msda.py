"""Benchmark of the attention core: each backend against the grid_sample formulation.

One run prints, for an encoder-sized and a decoder-sized problem, the median time and the peak
extra memory of forward and forward+backward, and the ratio of each backend to the grid_sample
formulation (the original reference: one grid_sample per level). Ratios are what to read: the
machine is noisy, and every backend is timed in the same run, interleaved. "cpu" is the kernel's
arithmetic compiled for the CPU (built on first use, before any timing); "auto" picks it on CPU
tensors when it builds.

    python benchmarks/msda.py [--repeats 7] [--threads 2] [--backends cpu,grid_sample,einops]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakMemory, available, fix_mmap_threshold  # noqa: E402

from ddetr_edu.ops import cpu_kernel_status, ms_deform_attn  # noqa: E402

LEVELS = [(64, 64), (32, 32), (16, 16), (8, 8)]  # S = 5,440


def make_inputs(n_queries: int | None, n=2, m=8, d=32, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(LEVELS, dtype=torch.int64)
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    lq = s if n_queries is None else n_queries
    value = torch.randn(n, s, m, d, generator=g)
    # points around the map, some outside it, as trained models produce
    locations = torch.rand(n, lq, m, len(LEVELS), k, 2, generator=g) * 1.1 - 0.05
    weights = torch.rand(n, lq, m, len(LEVELS), k, generator=g)
    weights = weights / weights.sum(dim=(-1, -2), keepdim=True)
    return value, shapes, locations, weights


def run_once(backend, inputs, backward):
    value, shapes, locations, weights = inputs
    if backward:
        value, locations, weights = (t.detach().requires_grad_() for t in (value, locations, weights))
        out = ms_deform_attn(value, shapes, locations, weights, backend=backend)
        out.sum().backward()
    else:
        with torch.no_grad():
            ms_deform_attn(value, shapes, locations, weights, backend=backend)


def peak_in_subprocess(backend, n_queries, backward, threads) -> float:
    """Peak extra memory (MiB) of one call, measured in a fresh process (see peak_memory.py)."""
    command = [sys.executable, __file__, "--peak-of", json.dumps([backend, n_queries, backward]),
               "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(backends, inputs, backward, repeats, n_queries, threads):
    times = {b: [] for b in backends}
    peaks = {b: peak_in_subprocess(b, n_queries, backward, threads) for b in backends}
    for b in backends:  # warm-up
        run_once(b, inputs, backward)
    for _ in range(repeats):  # interleaved so that machine noise hits every backend alike
        for b in backends:
            t0 = time.perf_counter()
            run_once(b, inputs, backward)
            times[b].append(time.perf_counter() - t0)
    return {b: statistics.median(ts) for b, ts in times.items()}, peaks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="cpu,grid_sample,einops")
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # internal: one memory measurement
    args = parser.parse_args(argv)
    if not available():
        raise SystemExit("peak memory needs Linux /proc/self/clear_refs")
    torch.set_num_threads(args.threads)
    if args.peak_of:
        backend, n_queries, backward = json.loads(args.peak_of)
        fix_mmap_threshold()
        inputs = make_inputs(n_queries)
        with PeakMemory() as peak:
            run_once(backend, inputs, backward)
        print(peak.mib)
        return
    backends = args.backends.split(",")
    if "cpu" in backends and not cpu_kernel_status()[0]:  # builds it now, outside the timings
        print(f"skipping backend cpu: {cpu_kernel_status()[1]}")
        backends.remove("cpu")
    baseline = "grid_sample"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, N=2 M=8 D=32 K=4, "
          f"levels {LEVELS}; median of {args.repeats}; peak = extra resident memory of one call, in a fresh process; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"| size | pass | backend | time ms | peak MiB | time / {baseline} | peak / {baseline} |")
    print("|---|---|---|---|---|---|---|")
    for label, n_queries in (("encoder Lq=5440", None), ("decoder Lq=300", 300)):
        inputs = make_inputs(n_queries)
        for backward in (False, True):
            times, peaks = measure(backends, inputs, backward, args.repeats, n_queries, args.threads)
            for b in backends:
                peak_ratio = f"{peaks[b] / peaks[baseline]:.2f}" if peaks[baseline] >= 1 else "n/a (< 1 MiB)"
                print(f"| {label} | {'fwd+bwd' if backward else 'fwd'} | {b} | {times[b] * 1e3:.1f} | "
                      f"{peaks[b]:.1f} | {times[b] / times[baseline]:.2f} | {peak_ratio} |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
