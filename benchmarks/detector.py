"""Detector speed and peak memory on the CPU (2 threads), ours vs the official formulation.

Two cases:

* ``small_train``: the small two-stage fixture model (ResNet-50 + reduced transformer, built from
  the fixture's official args and weights) in train mode, forward + backward on the fixture's
  2-image batch (160x224 and 128x192, padded);
* ``r50_infer``: the full ``multiscale`` preset (ResNet-50, 6+6 layers, 300 queries), inference on
  one 800x1066 image.

Each case runs with our default attention backend ("auto": on the CPU, the kernel's arithmetic
compiled for the CPU when it builds, else grid_sample) and with "grid_sample", the official
pure-PyTorch reference formulation (``F.grid_sample`` per level), which stands in for the official
code (it cannot run here; transformers uses the same formulation); everything else in the model is
identical, so the ratio isolates the attention core. Printed: median wall time over all repeats of
all rounds and the median peak memory. The machine is noisy: ``--rounds R`` alternates the two
backends' processes R times (auto, grid_sample, auto, grid_sample, ...), so that a burst of load
from elsewhere hits both; the load average is printed.

Peak memory: torch allocates CPU tensors with its own allocator (malloc), which ``tracemalloc``
does not see; ``torch.profiler``'s memory events do, but add overhead to the timed run. So every
(case, backend) pair runs in a fresh subprocess and reports ``ru_maxrss`` (peak resident set
size, the true high-water mark of the process), together with the RSS after building the model
and before the first (warm-up) run; the difference is the working memory of the forward (+ backward).

Usage: ``python benchmarks/detector.py [--repeats 3] [--rounds 1] [--threads 2] [--cases small_train r50_infer]``
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / ".." / "shared" / "reference"
FIXTURE = REFERENCE / "official_small_multiscale_refine_twostage.pt"
BACKENDS = ("auto", "grid_sample")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _small_train(backend: str):
    import torch

    from ddetr_edu.checkpoints import config_from_official_args, load_official_checkpoint
    from ddetr_edu.config import with_overrides

    fixture = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    spec = importlib.util.spec_from_file_location("fill_weights", REFERENCE / "fill_weights.py")
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    cfg = with_overrides(config_from_official_args(fixture["args"]), {"attention_backend": backend})
    official = fill.fill_official_state_dict(fixture["keys"], fixture["seed"])
    model = load_official_checkpoint({"model": official}, config=cfg).train()
    images, masks = fixture["samples_tensor"], fixture["samples_mask"]

    def step():
        model.zero_grad(set_to_none=True)
        out = model(images, masks)
        loss = out["pred_logits"].sum() + out["pred_boxes"].sum()
        loss = loss + sum(a["pred_logits"].sum() + a["pred_boxes"].sum() for a in out["aux_outputs"])
        loss = loss + out["enc_outputs"]["pred_logits"].sum()
        loss.backward()
    return step


def _r50_infer(backend: str):
    import torch

    from ddetr_edu.config import get_preset
    from ddetr_edu.models import build_detector

    torch.manual_seed(0)
    model = build_detector(get_preset("multiscale", attention_backend=backend)).eval()
    image = torch.randn(1, 3, 800, 1066)

    def step():
        with torch.no_grad():
            model(image)
    return step


CASES = {"small_train": _small_train, "r50_infer": _r50_infer}


def worker(case: str, backend: str, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    step = CASES[case](backend)
    rss_before = _rss_mib()  # model, weights and inputs are in memory; nothing has run yet
    step()  # warm-up (allocator, first-call costs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"median_s": statistics.median(times), "times_s": times, "peak_mib": peak, "rss_before_mib": rss_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the backends' processes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.threads)))
        return
    from ddetr_edu.ops import cpu_kernel_status
    usable, why = cpu_kernel_status()  # builds it now (once, cached), outside the workers' timings
    print(f"CPU kernel: {'built' if usable else 'not available (' + why + '): auto is grid_sample'}")
    if "small_train" in args.cases and not FIXTURE.exists():
        print(f"skipping small_train: fixture not found at {FIXTURE}")
        args.cases = [c for c in args.cases if c != "small_train"]

    print(f"CPU, {args.threads} threads, median of {args.rounds} x {args.repeats} runs (each process: one "
          f"warm-up, then {args.repeats}), load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'case':<12} {'backend':<12} {'median s':>9} {'peak MiB':>9} {'work MiB':>9}")
    for case in args.cases:
        runs = {backend: [] for backend in BACKENDS}
        for _ in range(args.rounds):
            for backend in BACKENDS:
                cmd = [sys.executable, __file__, "--worker", case, backend,
                       "--repeats", str(args.repeats), "--threads", str(args.threads)]
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                runs[backend].append(json.loads(done.stdout.strip().splitlines()[-1]))
        results = {}
        for backend, rs in runs.items():
            r = results[backend] = {"median_s": statistics.median(t for x in rs for t in x["times_s"]),
                                    "peak_mib": statistics.median(x["peak_mib"] for x in rs),
                                    "work_mib": statistics.median(x["peak_mib"] - x["rss_before_mib"] for x in rs)}
            print(f"{case:<12} {backend:<12} {r['median_s']:9.3f} {r['peak_mib']:9.0f} {r['work_mib']:9.0f}")
        ours, ref = results["auto"], results["grid_sample"]
        print(f"{case:<12} {'ours/grid':<12} {ours['median_s'] / ref['median_s']:9.2f} "
              f"{ours['peak_mib'] / ref['peak_mib']:9.2f} {ours['work_mib'] / ref['work_mib']:9.2f}", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
