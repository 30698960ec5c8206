"""The paper's claims in miniature: train the named configurations, write Figure 3, Tables 1 and 2.

    python -m experiments.paper_claims            # the full run (make paper-claims), < 75 min on 2 cores
    python -m experiments.paper_claims --plan     # measure each configuration, print the plan, exit
    python -m experiments.paper_claims --fast --out /tmp/claims   # every configuration, a few steps (< 60 s)
    python -m experiments.paper_claims --fast --images 200 --epochs 2 --runs deformable_multi  # a small real run
    python -m experiments.paper_claims --runs detr_dense,deformable_single --seeds 0,1,2

The configurations, data and recipe are in ``claims_setup.py``. The full run first measures every
configuration for a few steps (``claims_sizing.py``) and prints the estimate, then writes the
shapes dataset, trains (``claims_training.py``, with the library's ``fit``) and writes into
``--out`` (default ``experiments/results``): one ``<name>_seed<k>.json`` per run,
``figure3.png``, ``table1.md``, ``table2.md`` and a ``README.md`` with the date, the machine and
this command. Checkpoints and data go to ``--work`` (default ``build/paper_claims``).

Why two processes with one thread each (the default ``--jobs 2 --threads 1``), measured on the
2-core machine on 2026-11-28: with little else running, ``deformable_multi`` took 72 ms a step in
one process with two threads, and 125-140 ms a step in each of two one-thread processes at once
(66 ms a step for the pair: 9% more steps per second). With another session's work beside it,
``--plan`` estimated the full run at 62 min two-at-a-time but 3800 min with ``--jobs 1 --threads
2``: two OpenMP threads that must wait for a core held by someone else made a step take 5-8 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from ddetr_edu.data.shapes import make_shapes_dataset
from ddetr_edu.demo import shapes_dataset_is_ready
from experiments import claims_setup as setup
from experiments.claims_report import table1, table2, write_report
from experiments.claims_sizing import longest_first, makespan, measure_costs, run_seconds
from experiments.claims_training import train_many, write_record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.paper_claims", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="measure, print the plan and the estimate, exit")
    mode.add_argument("--fast", action="store_true", help=f"tiny data ({setup.FAST_SHAPES.num_train} training "
                      f"images unless --images), one epoch unless --epochs")
    parser.add_argument("--runs", default=",".join(setup.RUNS), help="comma-separated configuration names")
    parser.add_argument("--seeds", default=",".join(map(str, setup.SEEDS)), help="seeds of the main comparison")
    parser.add_argument("--epochs", type=int, default=None, help=f"of the main runs (default {setup.EPOCHS}; "
                        "--fast: 1)")
    parser.add_argument("--images", type=int, default=None, help="--fast only: training images "
                        f"(default {setup.FAST_SHAPES.num_train})")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default experiments/results; "
                        "--fast: <work>/fast_results)")
    parser.add_argument("--work", type=Path, default=Path("build/paper_claims"), help="data and checkpoints")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args.run_list = setup.run_list(args.runs.split(","), tuple(int(s) for s in args.seeds.split(",")))
    except ValueError as error:
        parser.error(str(error))  # exit status 2, the bad name on stderr
    if args.images is not None and (not args.fast or args.images < 1):
        parser.error("--images: expected a count >= 1, with --fast")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs: expected a count >= 1, got {args.epochs}")
    args.epochs = args.epochs or (1 if args.fast else setup.EPOCHS)
    args.shapes = setup.SHAPES if not args.fast else dataclasses.replace(
        setup.FAST_SHAPES, num_train=args.images or setup.FAST_SHAPES.num_train)
    if args.out is None:
        args.out = args.work / "fast_results" if args.fast else Path("experiments/results")
    return args


def plan(args: argparse.Namespace) -> tuple[list[tuple[str, int]], float]:
    """Measure every configuration, print the plan; (runs longest first, estimated seconds)."""
    names = sorted({name for name, _ in args.run_list}, key=list(setup.RUNS).index)
    print(f"measuring {len(names)} configurations ({args.jobs} process(es) x {args.threads} thread(s)) ...",
          flush=True)
    costs, per_image = measure_costs(names, setup.SHAPES, args.work, args.jobs, args.threads)
    seconds = {name: run_seconds(costs[name], setup.SHAPES, args.epochs) for name in names}
    runs = longest_first(args.run_list, seconds)
    data_seconds = per_image * (setup.SHAPES.num_train + setup.SHAPES.num_val)
    total = data_seconds + makespan([seconds[name] for name, _ in runs], args.jobs)
    print(f"data: {setup.SHAPES}\nrecipe: {args.epochs} epochs of {setup.SHAPES.num_train} images, "
          f"evaluated every epoch on {setup.SHAPES.num_val}")
    print(f"{'configuration':28s} {'seeds':>6s} {'step ms':>8s} {'eval ms/img':>12s} {'min/run':>8s}")
    for name in names:
        seeds = [s for n, s in args.run_list if n == name]
        print(f"{name:28s} {len(seeds):6d} {1000 * costs[name].step:8.0f} "
              f"{1000 * costs[name].eval_per_image:12.1f} {seconds[name] / 60:8.1f}")
    print(f"estimate: {total / 60:.1f} min for {len(runs)} runs ({data_seconds / 60:.1f} min of it writing "
          f"the data), {args.jobs} at a time", flush=True)
    if total > 60 * setup.BUDGET_MINUTES:
        fitting = int(args.epochs * (60 * setup.BUDGET_MINUTES - data_seconds) / (total - data_seconds))
        print(f"WARNING: over the {setup.BUDGET_MINUTES}-minute budget. Is something else using the cores "
              f"(uptime)? --epochs {max(1, fitting)} would fit.", flush=True)
    return runs, total


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_readme(args: argparse.Namespace, records: list[dict], estimate: float | None, seconds: float) -> Path:
    """``out/README.md``: when, where, how (the exact command), and the two tables."""
    command = " ".join(["python -m experiments.paper_claims", shlex.join(args.argv)]).rstrip()
    lines = [
        "# The paper's claims in miniature: results", "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {os.cpu_count()} CPU cores, {cpu_name()}, {platform.system()}",
        f"- command: `{command}` (in the repository root; `make paper-claims` runs the full one)",
        f"- torch {torch.__version__}, python {platform.python_version()}",
        f"- {args.jobs} process(es) x {args.threads} thread(s); estimate "
        f"{'-' if estimate is None else f'{estimate / 60:.1f} min'}, took {seconds / 60:.1f} min",
        f"- data: `{args.shapes}`",
        f"- {len(records)} runs: " + ", ".join(f"{r['name']}_seed{r['seed']}.json" for r in records), "",
        "![Figure 3 in miniature](figure3.png)", "", "## Table 1 in miniature", "", table1(records),
        "## Table 2 in miniature", "", table2(records),
        "Cells: mean ± half-range over the seeds; AP of the last epoch on the 0..1 scale the library prints "
        "everywhere (the paper's percentages converted: 43.8 -> 0.438); training time excludes evaluation. Each "
        "run's per-epoch numbers are in its JSON file.", "",
        "`make paper-claims` then runs chapter 11's two further experiments, which write their own pages "
        "here: [ten_x.md](ten_x.md) (the dense model after 10 N epochs against the deformable ones after N) "
        "and [refinement_gap.md](refinement_gap.md) (why refinement gains so much in miniature).", "",
    ]
    path = args.out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    estimate = None
    shapes = args.shapes
    if args.fast:
        runs = args.run_list
    else:
        runs, estimate = plan(args)
        if args.plan:
            return 0
    data_dir = args.work / (f"fast_data_{shapes.num_train}" if args.fast else "data")
    if not shapes_dataset_is_ready(data_dir, shapes):
        make_shapes_dataset(data_dir, shapes)

    def done(record: dict) -> None:
        path = write_record(record, args.out)
        last = record["epochs"][-1]
        print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {path.name}: AP {last.get('AP')}, "
              f"{record['train_seconds'] / 60:.1f} min training", flush=True)

    records = train_many(runs, args.jobs, done, data_dir=data_dir, work_dir=args.work / "runs", shapes=shapes,
                         epochs=args.epochs, threads=args.threads)
    paths = write_report(records, args.out)
    readme = write_readme(args, records, estimate, time.perf_counter() - start)
    print(f"wrote {len(records)} records, {', '.join(p.name for p in paths)}, {readme.name} into {args.out} "
          f"in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
