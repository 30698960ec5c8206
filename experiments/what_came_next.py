"""DINO's look-forward-twice and mixed query selection against the plain model, in miniature.

    python -m experiments.what_came_next                 # the committed run (seeds 0 and 1), about 11 min on one quiet core
    python -m experiments.what_came_next --fast --out /tmp/wcn   # a few steps per run (< 1 min)

Every arm is the paper-claims runner's "++ two-stage" model (``claims_setup``:
``deformable_multi_twostage``, iterative box refinement + two-stage), plain, with
``look_forward_twice=True`` (``ddetr_edu/models/decoder.py``) or with ``mixed_query_selection=True``
(``ddetr_edu/models/transformer.py``). Same data, same seeds (for look-forward-twice also the same
initial weights and batches: that option adds no parameter), same recipe and steps, one thread,
one run after the other (``claims_training.train_run``), seed by seed; the results are
rewritten after every run, so a run cut short keeps the finished ones. The run is smaller than
the runner's (``SHAPES``, ``EPOCHS`` below): each run takes about 2 minutes on one quiet core.

Writes into ``--out`` (default ``experiments/results``): ``what_came_next.json`` (the command, the
machine and every run's record as ``claims_training`` writes it, per-epoch AP included) and
``what_came_next.md`` (the table). Data and checkpoints go to ``--work``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ddetr_edu.config import ModelConfig, with_overrides
from ddetr_edu.data.shapes import make_shapes_dataset
from ddetr_edu.demo import shapes_dataset_is_ready
from experiments import claims_setup as setup
from experiments.claims_report import by_name, final, spread
from experiments.claims_training import train_run
from experiments.paper_claims import cpu_name

BASE_RUN = "deformable_multi_twostage"  # the runner's "++ two-stage" model
ARMS = {  # run name -> (label, fields changed on the base model)
    "twostage_plain": ("refinement + two-stage (plain)", {}),
    "twostage_look_forward_twice": ("+ look-forward-twice (DINO)", {"look_forward_twice": True}),
    # not the same initial weights: the proposals' projection gives C numbers, not 2C, and the
    # content queries are a learned (Q, C) table
    "twostage_mixed_query_selection": ("+ mixed query selection (DINO)", {"mixed_query_selection": True}),
}
# Smaller than the runner's 2000 images x 10 epochs: 800 images of the same kind (160 px,
# objects 10..120 px) x 5 epochs = 1000 steps of batch 4 per run. Measured 2026-11-28 beside
# the reference training and other sessions' work: 0.35-0.55 s a step on one thread, 7.7 min a run.
SHAPES = dataclasses.replace(setup.SHAPES, num_train=800, num_val=100)
EPOCHS = 5
SEEDS = (0, 1)
FAST_STEPS = 3
FAST_SHAPES = dataclasses.replace(SHAPES, num_train=12, num_val=4)


def arm_config(name: str) -> ModelConfig:
    """The ModelConfig of the named arm; an unknown name is a ValueError listing the known ones."""
    if name not in ARMS:
        raise ValueError(f"arm name: expected one of {', '.join(ARMS)}, got {name!r}")
    return with_overrides(setup.model_config(BASE_RUN), ARMS[name][1])


def table(records: list[dict[str, Any]]) -> str:
    """The comparison as Markdown: mean ± half-range over the seeds, AP of the last epoch."""
    groups = by_name(records)
    keys = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
    lines = ["| model | seeds | epochs | " + " | ".join(keys) + " | AP per seed | train time (min) |",
             "|---|---|---|" + "---|" * len(keys) + "---|---|"]
    for name, (label, _) in ARMS.items():
        runs = groups.get(name)
        if not runs:
            continue
        per_seed = ", ".join(f"{r['seed']}: {v:.3f}" for r, v in zip(runs, final(runs, "AP")) if v is not None)
        cells = [label, str(len(runs)), str(len(runs[0]["epochs"])),
                 *(spread(final(runs, k), digits=3) for k in keys), per_seed,
                 spread([r["train_seconds"] / 60 for r in runs])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, records: list[dict[str, Any]], argv: list[str], seconds: float, fast: bool) -> list[Path]:
    """``what_came_next.json`` and ``what_came_next.md`` in ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    about = {
        "command": " ".join(["python -m experiments.what_came_next", shlex.join(argv)]).strip(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores, {cpu_name()}, {platform.system()}",
        "torch": torch.__version__, "minutes": round(seconds / 60, 1),
        "shapes_config": dataclasses.asdict(FAST_SHAPES if fast else SHAPES),
    }
    json_path, md_path = out / "what_came_next.json", out / "what_came_next.md"
    json_path.write_text(json.dumps({**about, "runs": records}, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(
        "# What came next, in miniature: DINO's look-forward-twice and mixed query selection\n\n"
        f"`{about['command']}` on {about['date']} ({about['machine']}, one thread, {about['minutes']} min).\n"
        f"Data: `{about['shapes_config']}`.\n\n" + table(records) +
        "\nCells: mean ± half-range over the seeds; AP of the last epoch (0..1), on the validation "
        "set; training time excludes evaluation. Per-epoch numbers: what_came_next.json.\n", encoding="utf-8")
    return [json_path, md_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.what_came_next", description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help=f"{FAST_STEPS} steps of one epoch per run, tiny data")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default experiments/results; "
                        "--fast: <work>/fast_results)")
    parser.add_argument("--work", type=Path, default=Path("build/what_came_next"), help="data and checkpoints")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    out = args.out or (args.work / "fast_results" if args.fast else Path("experiments/results"))
    seeds = [int(s) for s in args.seeds.split(",")]
    shapes, epochs = (FAST_SHAPES, 1) if args.fast else (SHAPES, args.epochs)
    extra = dict(max_steps=FAST_STEPS, max_eval_images=FAST_SHAPES.num_val) if args.fast else {}
    start = time.perf_counter()
    data_dir = args.work / ("fast_data" if args.fast else "data")
    if not shapes_dataset_is_ready(data_dir, shapes):
        make_shapes_dataset(data_dir, shapes, num_workers=0)
    records = []
    for seed in seeds:
        for name in ARMS:
            records.append(train_run(name, seed, data_dir, args.work / "runs", shapes, epochs=epochs, threads=1,
                                     model=arm_config(name), **extra))
            print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {name} seed {seed}: "
                  f"AP {records[-1]['epochs'][-1].get('AP')}", flush=True)
            paths = write_results(out, records, argv, time.perf_counter() - start, args.fast)  # after every run
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
