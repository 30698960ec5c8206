"""One run of the miniature: the library's ``fit`` on the shapes data -> one JSON record.

A record (``<results>/<name>_seed<k>.json``)::

    {"name", "seed", "threads", "torch", "model_config", "train_config", "shapes_config",
     "parameters", "level_sizes": [[H_l, W_l], ...],  # of one image of the dataset's size
     "attention_flops": {"encoder", "decoder", "total"},  # per image, see attention_flops.py
     "epochs": [{"epoch", "train_loss", "train_seconds", "wall_seconds",
                 "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"}, ...],
     "train_seconds", "wall_seconds"}  # totals

``train_seconds`` is the training steps alone (the logbook's epoch time); ``wall_seconds`` adds
the evaluation and the checkpoint of that epoch (timed by ``fit``'s epoch callback).

Runs go two at a time (``jobs=2``), each in its own process with one thread: on 2 cores that
is what the estimate in ``paper_claims.py`` assumes (see its docstring for the measurement).
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from ddetr_edu.config import ModelConfig, config_to_dict
from ddetr_edu.data.shapes import ShapesConfig
from ddetr_edu.training.fit import fit
from ddetr_edu.training.logbook import AP_KEYS, read_log
from experiments.attention_flops import attention_flops
from experiments.claims_setup import model_config, train_config


def level_sizes(model: torch.nn.Module, image_size: int) -> list[list[int]]:
    """The (H_l, W_l) of every level for one square image of ``image_size`` pixels."""
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, image_size, image_size), return_intermediates=True)
    return out["intermediates"]["spatial_shapes"].tolist()


def epoch_rows(log_path: Path, wall: list[float]) -> list[dict[str, Any]]:
    """Per-epoch rows from the run's ``log.jsonl`` and the callback's times ``wall`` (epoch 0 first)."""
    evals = {r["epoch"]: r for r in read_log(log_path, "eval")}
    rows = []
    for record in read_log(log_path, "epoch"):
        done = record["epoch"] + 1  # "epoch" records count from 0, "eval" records the epochs done
        row = {"epoch": done, "train_loss": record.get("train_loss"), "train_seconds": record["seconds"],
               "wall_seconds": wall[done] - wall[done - 1] if done < len(wall) else None}
        row.update({k: evals.get(done, {}).get(k) for k in AP_KEYS})
        rows.append(row)
    return rows


def train_run(name: str, seed: int, data_dir: Path, work_dir: Path, shapes: ShapesConfig, *,
              epochs: int, max_steps: int | None = None, max_eval_images: int | None = None,
              threads: int = 1, model: ModelConfig | None = None,
              eval_every: int = 1) -> dict[str, Any]:
    """Train the named configuration with ``fit`` (its checkpoints go to ``work_dir``); the record.
    ``model``: train this configuration under ``name`` instead of ``model_config(name)``;
    ``eval_every``: evaluate after every n-th epoch (and after the last)."""
    torch.set_num_threads(threads)
    cfg = model_config(name) if model is None else model
    train_cfg = dataclasses.replace(train_config(seed, epochs, max_steps, max_eval_images), eval_every=eval_every)
    run_dir = work_dir / f"{name}_seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # fit appends to an existing log.jsonl
    wall: list[float] = []
    result = fit(cfg, train_cfg, data_dir, run_dir, verbose=False,
                 epoch_callback=lambda model, done: wall.append(time.perf_counter()))
    rows = epoch_rows(run_dir / "log.jsonl", wall)
    sizes = level_sizes(result.model, shapes.image_size)
    return {
        "name": name, "seed": seed, "threads": threads, "torch": torch.__version__,
        "model_config": config_to_dict(cfg), "train_config": train_cfg.to_dict(),
        "shapes_config": dataclasses.asdict(shapes), "parameters": sum(p.numel() for p in result.model.parameters()),
        "level_sizes": sizes, "attention_flops": attention_flops(cfg, sizes), "epochs": rows,
        "train_seconds": sum(r["train_seconds"] for r in rows), "wall_seconds": wall[-1] - wall[0],
    }


def write_record(record: dict[str, Any], results_dir: Path) -> Path:
    """``results_dir/<name>_seed<k>.json``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{record['name']}_seed{record['seed']}.json"
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def train_many(runs: Iterable[tuple[str, int]], jobs: int, on_done: Callable[[dict[str, Any]], None],
               **kwargs: Any) -> list[dict[str, Any]]:
    """``train_run`` for every (name, seed), ``jobs`` processes at a time (``jobs=1``: here, in order);
    ``on_done(record)`` as each one finishes. ``runs`` should come longest first (fewest idle cores)."""
    records = []
    if jobs == 1:
        for name, seed in runs:
            records.append(train_run(name, seed, **kwargs))
            on_done(records[-1])
        return records
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_run, name, seed, **kwargs) for name, seed in runs]
        for future in as_completed(futures):
            records.append(future.result())  # a failed run raises here, loudly
            on_done(records[-1])
    return records
