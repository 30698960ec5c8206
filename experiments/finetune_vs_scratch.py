"""Fine-tuning the reference model against training from scratch, on a task it has not seen.

    python -m experiments.finetune_vs_scratch                      # the committed run (2 seeds, 2 processes)
    python -m experiments.finetune_vs_scratch --fast --out /tmp/ft  # 2 steps per run (seconds)

The task (``TASK``): 64 px images (the reference saw 128 px), a rougher background (twice the
texture, 2.5x the noise), objects of 8 to 40 px, and three of the five shapes under new names
(triangle, star, cross -> "tent", "spark", "plus"). Both arms train the reference model's
architecture (``shapes_cpu``, refinement + two-stage) with 3 classes, on the same data, with the
same recipe, steps and seeds; the fine-tuned arm starts from the reference weights
(``fit(..., init_from="reference")``: every tensor but the class heads), the other from the
model's initialisation. AP on the validation split after every ``--steps-per-eval`` steps.

Writes into ``--out`` (default ``experiments/results``): ``finetune_vs_scratch.json`` (the command,
the machine, the configs and every run's AP curve), ``finetune_vs_scratch.png`` (AP against steps)
and ``finetune_vs_scratch.md`` (the table). Data and run folders go to ``--work``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import multiprocessing
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ddetr_edu.checkpoints.init_weights import init_model_config, read_init_weights
from ddetr_edu.config import config_to_dict
from ddetr_edu.data.shapes import ShapesConfig, dataset_conflict, make_shapes_dataset
from ddetr_edu.training.config import train_preset, with_epochs
from ddetr_edu.training.fit import fit
from ddetr_edu.training.logbook import read_log

TASK = ShapesConfig(seed=7, num_train=400, num_val=60, image_size=64, min_objects=1, max_objects=3,
                    min_size=8.0, max_size=40.0, noise_std=10.0, texture_strength=80.0,
                    shapes=("triangle", "star", "cross"), class_names=("tent", "spark", "plus"))
ARMS = {"finetune": "fine-tuned from the reference model", "scratch": "from scratch (same architecture)"}
SEEDS = (0, 1)


def train_config(seed: int, steps_per_eval: int, evals: int):
    """``shapes_cpu`` at the task's 64 px, ``evals`` epochs of ``steps_per_eval`` steps, the last at lr x0.1."""
    recipe = dataclasses.replace(train_preset("shapes_cpu"), image_size=TASK.image_size, seed=seed,
                                 max_steps_per_epoch=steps_per_eval, eval_every=1)
    return with_epochs(recipe, evals)


def run_arm(arm: str, seed: int, data: Path, work: Path, steps_per_eval: int, evals: int) -> dict[str, Any]:
    """One run; its AP after every ``steps_per_eval`` steps."""
    reference = read_init_weights("reference")
    model_cfg = init_model_config(reference, len(TASK.shapes))  # the same architecture in both arms
    cfg = train_config(seed, steps_per_eval, evals)
    run_dir = work / f"{arm}_seed{seed}"
    start = time.perf_counter()
    fit(model_cfg, cfg, data, run_dir, init_from=reference if arm == "finetune" else None, verbose=False)
    seconds = time.perf_counter() - start
    evals_logged = [r for r in read_log(run_dir / "log.jsonl") if r.get("kind") == "eval"]
    return {"arm": arm, "seed": seed, "seconds": round(seconds, 1),
            "steps": [r["epoch"] * steps_per_eval for r in evals_logged],
            "AP": [r["AP"] for r in evals_logged], "AP50": [r["AP50"] for r in evals_logged],
            "model_config": config_to_dict(model_cfg), "train_config": cfg.to_dict()}


def _run_job(job: tuple) -> dict[str, Any]:
    torch.set_num_threads(1)
    return run_arm(*job)


def write_table(results: dict[str, Any], path: Path) -> None:
    runs = results["runs"]
    steps = runs[0]["steps"]
    lines = [f"# Fine-tuning the reference model vs training from scratch", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['machine']}; {results['date']}", "",
             f"Task: {results['task_description']}", "",
             "AP (COCO, validation split of 60 images) after each number of steps, per seed:", "",
             "| arm | seed | " + " | ".join(str(s) for s in steps) + " | seconds |",
             "|---|---|" + "---|" * len(steps) + "---|"]
    for run in runs:
        lines.append(f"| {run['arm']} | {run['seed']} | " + " | ".join(f"{ap:.3f}" for ap in run["AP"])
                     + f" | {run['seconds']:.0f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    parser.add_argument("--work", type=Path, default=Path("runs/finetune_vs_scratch"))
    parser.add_argument("--steps-per-eval", type=int, default=30)
    parser.add_argument("--evals", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2, help="runs at the same time, one thread each")
    parser.add_argument("--fast", action="store_true", help="tiny data, 2 steps per evaluation, 2 evaluations")
    args = parser.parse_args(argv)
    task = dataclasses.replace(TASK, num_train=8, num_val=4) if args.fast else TASK
    steps_per_eval, evals = (2, 2) if args.fast else (args.steps_per_eval, args.evals)
    data = args.work / "data"
    if dataset_conflict(data, task) is not None:
        raise SystemExit(f"error: {dataset_conflict(data, task)}")
    make_shapes_dataset(data, task, num_workers=0)
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "command": " ".join(["python -m experiments.finetune_vs_scratch",
                             shlex.join(sys.argv[1:] if argv is None else argv)]).strip(),
        "machine": (f"{platform.processor() or platform.machine()}, {args.processes} runs at a time with 1 thread "
                    f"each, torch {torch.__version__}"),
        "date": datetime.date.today().isoformat(),
        "task": dataclasses.asdict(task),
        "task_description": ("64 px images, rougher background (texture 80, noise 10), objects 8-40 px, 3 classes "
                             "(triangle, star, cross renamed tent, spark, plus); the reference saw 128 px images "
                             "of all five shapes"),
        "steps_per_eval": steps_per_eval, "evals": evals, "seeds": list(SEEDS), "arms": ARMS, "runs": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(arm, seed, data, args.work, steps_per_eval, evals) for seed in SEEDS for arm in ARMS]
    pool = multiprocessing.get_context("spawn").Pool(args.processes) if args.processes > 1 else None
    with pool or contextlib.nullcontext():  # runs are independent: several at a time give the same numbers
        for run in (pool.imap_unordered(_run_job, jobs) if pool else map(_run_job, jobs)):
            results["runs"].append(run)
            results["runs"].sort(key=lambda r: (r["seed"], list(ARMS).index(r["arm"])))
            print(f"{run['arm']} seed {run['seed']}: AP {' '.join(f'{ap:.3f}' for ap in run['AP'])} "
                  f"({run['seconds']:.0f} s)", flush=True)
            (args.out / "finetune_vs_scratch.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    write_table(results, args.out / "finetune_vs_scratch.md")
    from ddetr_edu.viz.finetune import plot_finetune_comparison

    figure = plot_finetune_comparison(results)
    figure.savefig(args.out / "finetune_vs_scratch.png", dpi=120, bbox_inches="tight")
    print(f"wrote {args.out / 'finetune_vs_scratch.json'}, .md and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
