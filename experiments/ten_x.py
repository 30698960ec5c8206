"""The headline claim head on: does deformable attention after N epochs reach what dense attention
reaches after 10 N?

    python -m experiments.ten_x                 # the run (make paper-claims runs it after paper_claims)
    python -m experiments.ten_x --plan          # measure the three configurations, print the estimate, exit
    python -m experiments.ten_x --fast --out /tmp/tenx   # N = 1, a few steps per epoch (seconds)

The paper compares Deformable DETR after 50 epochs with DETR after 500. Here the DETR-style model
``detr_dense`` trains ``FACTOR * N`` epochs and the two deformable models of Figure 3
(``deformable_single``, ``deformable_multi``) train N epochs, each with its own schedule of the
miniature's recipe (``claims_setup.train_config``: lr x0.1 for the last quarter of the epochs,
which for N = 2 is after the last epoch), every model with seeds 0 and 1. So that the 20 dense
epochs fit beside everything else on 2 cores, an epoch here is ``TENX_SHAPES.num_train`` = 500
images (the main runs' first quarter: the same generator and seed), validated on the same 150
images as the main runs. Evaluating the dense model costs about as much as an epoch of it, so it is
evaluated every ``DENSE_EVAL_EVERY`` epochs; the deformable ones after every epoch. The N = 1
comparison reads the dense run at epoch 10 (before its lr drop) and the deformable runs at epoch 1
(exactly a 1-epoch run: an N-epoch schedule drops the lr after its last epoch for N <= 3).

Writes ``tenx_<configuration>_seed<k>.json`` per run (the records of ``claims_training.py``), ``ten_x.png``
and ``ten_x.md`` (the table, the date, the machine and the command) into ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import multiprocessing
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ddetr_edu.data.shapes import make_shapes_dataset
from ddetr_edu.demo import shapes_dataset_is_ready
from experiments import claims_setup as setup
from experiments.claims_sizing import makespan, measure_costs
from experiments.claims_training import train_run, write_record

N = 2  # epochs of the deformable models
FACTOR = 10  # the dense model trains FACTOR * N epochs
DENSE_EVAL_EVERY = 5
TENX_SHAPES = dataclasses.replace(setup.SHAPES, num_train=500)
FAST_SHAPES = dataclasses.replace(setup.FAST_SHAPES, num_train=12)
SEEDS = (0, 1)
RUNS = {  # run -> (configuration, epochs as a multiple of N, evaluate every ... epochs)
    "tenx_detr_dense": ("detr_dense", FACTOR, DENSE_EVAL_EVERY),
    "tenx_deformable_single": ("deformable_single", 1, 1),
    "tenx_deformable_multi": ("deformable_multi", 1, 1),
}
LABELS = {"tenx_detr_dense": ("DETR-style (dense), 10N epochs", "tab:red"),
          "tenx_deformable_single": ("deformable, single-scale, N epochs", "tab:blue"),
          "tenx_deformable_multi": ("deformable, multi-scale, N epochs", "tab:green")}


def ap_at(record: dict[str, Any], epoch: int) -> float | None:
    """The record's AP after ``epoch`` epochs (None if not evaluated then)."""
    rows = [r for r in record["epochs"] if r["epoch"] == epoch]
    return rows[0].get("AP") if rows else None


def comparison(records: list[dict[str, Any]], n_values: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per N and run: [{"N", "run", "epoch", "AP": [per seed]}], the dense run read at FACTOR * N."""
    rows = []
    for n in n_values:
        for run in RUNS:
            epoch = FACTOR * n if run == "tenx_detr_dense" else n
            mine = sorted((r for r in records if r["name"] == run), key=lambda r: r["seed"])
            values = [ap_at(r, epoch) for r in mine]
            rows.append({"N": n, "run": run, "epoch": epoch, "seeds": [r["seed"] for r in mine], "AP": values})
    return rows


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per N and run, AP per seed and the mean."""
    lines = ["| N | run | epochs | AP per seed | mean AP |", "|---|---|---|---|---|"]
    for row in rows:
        per_seed = ", ".join("-" if v is None else f"{v:.4f}" for v in row["AP"])
        mean = _mean(row["AP"])
        lines.append(f"| {row['N']} | {LABELS[row['run']][0]} | {row['epoch']} | {per_seed} | "
                     f"{'-' if mean is None else f'{mean:.4f}'} |")
    return "\n".join(lines) + "\n"


def as_tenx(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The main runs of Figure 3 (``detr_dense``, ``deformable_single``, ``deformable_multi``) under
    this experiment's run names, so that :func:`comparison` and :func:`figure` read them too (their
    epoch is 2000 images; N = 1 only: the dense main run trains 10 epochs)."""
    names = {config: run for run, (config, _, _) in RUNS.items()}
    return [{**r, "name": names[r["name"]]} for r in records if r["name"] in names]


def figure(records: list[dict[str, Any]], n_values: tuple[int, ...], images: int | None = None) -> Figure:
    """Left: AP against epochs (thin: seeds, thick: mean); right: deformable after N epochs beside
    dense after 10 N, one group per N (bars: the mean, dots: the seeds). ``images``: per epoch
    (default: the records' own ``shapes_config``)."""
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    curves, bars = fig.subplots(1, 2, width_ratios=(1.5, 1))
    for run, (label, colour) in LABELS.items():
        mine = [r for r in records if r["name"] == run]
        last = max(n_values) * RUNS[run][1]  # what the comparison reads: N, or 10 N epochs
        for record in mine:
            points = [(r["epoch"], r["AP"]) for r in record["epochs"] if r.get("AP") is not None and r["epoch"] <= last]
            curves.plot(*zip(*points), color=colour, alpha=0.35, linewidth=1, marker=".")
        if mine:
            epochs = sorted({x["epoch"] for r in mine for x in r["epochs"] if x.get("AP") is not None and x["epoch"] <= last})
            means = [_mean([ap_at(r, e) for r in mine]) for e in epochs]
            curves.plot(epochs, means, color=colour, linewidth=2.2, marker="o", label=f"{label}, {len(mine)} seeds")
            if run != "tenx_detr_dense" and means:  # what dense has to reach
                curves.axhline(means[-1], color=colour, linestyle="--", linewidth=1, alpha=0.7)
    for n in n_values:
        curves.axvline(n, color="grey", linestyle=":", linewidth=1)
        curves.axvline(FACTOR * n, color="grey", linestyle=":", linewidth=1)
    images = images or records[0]["shapes_config"]["num_train"]
    curves.set_xlabel(f"epoch (of {images} images)")
    curves.set_ylabel("COCO AP (validation, 0..1)")
    curves.set_title("AP while training (dotted: N and 10 N; dashed: deformable after N)", fontsize=10)
    curves.legend(fontsize=8, loc="upper center")
    curves.grid(alpha=0.3)
    rows = comparison(records, n_values)
    width = 0.8 / len(RUNS)
    for i, row in enumerate(rows):
        x = n_values.index(row["N"]) + (list(RUNS).index(row["run"]) - (len(RUNS) - 1) / 2) * width
        colour = LABELS[row["run"]][1]
        mean = _mean(row["AP"])
        if mean is not None:
            bars.bar(x, mean, width * 0.9, color=colour, alpha=0.6,
                     label=LABELS[row["run"]][0] if row["N"] == n_values[0] else None)
            bars.scatter([x] * len([v for v in row["AP"] if v is not None]), [v for v in row["AP"] if v is not None],
                         color=colour, edgecolor="black", zorder=3, s=18)
    bars.set_xticks(range(len(n_values)), [f"N = {n}\n(dense: {FACTOR * n} epochs)" for n in n_values])
    bars.set_ylabel("AP (bars: mean, dots: seeds)")
    bars.set_title("deformable after N epochs vs dense after 10 N", fontsize=10)
    bars.grid(alpha=0.3, axis="y")
    highest = max((v for row in rows for v in row["AP"] if v is not None), default=0.0)
    bars.set_ylim(0, 1.35 * highest if highest > 0 else 1.0)  # room for the legend
    bars.legend(fontsize=8, loc="upper left")
    return fig


def plan(shapes, n: int, jobs: int, work: Path) -> float:
    """Measure the three configurations (``claims_sizing``), print and return the estimated seconds."""
    names = sorted({config for config, _, _ in RUNS.values()}, key=list(setup.RUNS).index)
    costs, per_image = measure_costs(names, shapes, work, jobs, 1)
    steps = math.ceil(shapes.num_train / setup.train_config(0).batch_size)
    seconds = {}
    for run, (config, multiple, every) in RUNS.items():
        epochs = multiple * n
        evaluations = epochs // every + (epochs % every != 0)
        seconds[run] = epochs * steps * costs[config].step + evaluations * shapes.num_val * costs[config].eval_per_image
        print(f"{run:24s} {epochs:3d} epochs x {len(SEEDS)} seeds: {1000 * costs[config].step:5.0f} ms a step, "
              f"{seconds[run] / 60:5.1f} min a run")
    durations = sorted((seconds[run] for run in RUNS for _ in SEEDS), reverse=True)
    total = per_image * (shapes.num_train + shapes.num_val) + makespan(durations, jobs)
    print(f"estimate: {total / 60:.1f} min, {jobs} at a time", flush=True)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.ten_x", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="measure, print the estimate, exit")
    mode.add_argument("--fast", action="store_true", help="N = 1 on tiny data (seconds)")
    parser.add_argument("--no-plan", action="store_true", help="train without measuring first (no estimate)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one process (one thread) each")
    parser.add_argument("--out", type=Path, default=None, help="default experiments/results (--fast: <work>/fast_results)")
    parser.add_argument("--work", type=Path, default=Path("build/ten_x"), help="data and checkpoints")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: expected >= 1, got {args.jobs}")
    argv = sys.argv[1:] if argv is None else list(argv)
    shapes, n = (FAST_SHAPES, 1) if args.fast else (TENX_SHAPES, N)
    out = args.out or (args.work / "fast_results" if args.fast else Path("experiments/results"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    estimate = None if args.fast or args.no_plan else plan(shapes, n, args.jobs, args.work)
    if args.plan:
        return 0
    data_dir = args.work / ("fast_data" if args.fast else "data")
    if not shapes_dataset_is_ready(data_dir, shapes):
        make_shapes_dataset(data_dir, shapes)
    jobs = [(run, seed, dict(epochs=multiple * n, model=setup.model_config(config), eval_every=every))
            for run, (config, multiple, every) in RUNS.items() for seed in SEEDS]  # the longest (dense) first
    common = dict(data_dir=data_dir, work_dir=args.work / "runs", shapes=shapes, threads=1)
    records = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_run, run, seed, **common, **extra) for run, seed, extra in jobs]
        for future in as_completed(futures):
            records.append(future.result())  # a failed run raises here
            write_record(records[-1], out)
            print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {records[-1]['name']} seed "
                  f"{records[-1]['seed']}: AP {records[-1]['epochs'][-1].get('AP')}", flush=True)
    return _write(records, out, argv, estimate, time.perf_counter() - start, shapes, n)


def _write(records, out, argv, estimate, seconds, shapes, n) -> int:
    out.mkdir(parents=True, exist_ok=True)
    n_values = tuple(range(1, n + 1))
    figure(records, n_values).savefig(out / "ten_x.png", dpi=110)
    command = "python -m experiments.ten_x " + shlex.join(argv)
    (out / "ten_x.md").write_text(
        "# Deformable after N epochs vs dense after 10 N\n\n"
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}\n- command: `{command}`\n"
        f"- estimate {'-' if estimate is None else f'{estimate / 60:.1f} min'}, took {seconds / 60:.1f} min\n"
        f"- data: `{shapes}`\n\n![ten_x](ten_x.png)\n\n" + table(comparison(records, n_values)), encoding="utf-8")
    print(table(comparison(records, n_values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
