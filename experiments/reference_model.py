"""Train the shipped reference model (``make reference-model``); see ddetr_edu.checkpoints.reference.

    python -m experiments.reference_model [--data data/shapes_reference] [--out runs/reference]
                                          [--epochs 30] [--threads 1]

Runs the demo pipeline (:func:`ddetr_edu.demo.run_demo`: data, training with the sampling points
recorded after every epoch, COCO evaluation, curves, pictures) on :data:`REFERENCE_SHAPES` with
:func:`reference_train_config` (seed 0), then writes into the package the final model's weights
(``state_dict`` only) and its card (configs, class names, command, date, COCO metrics), and copies
the run's curves and sampling-point evolution GIF to ``book/assets/reference_*`` for chapter 10.
Interrupted, the same command continues the run.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from ddetr_edu.checkpoints.reference import (CARD_FILE, REFERENCE_DIR, REFERENCE_EPOCHS, REFERENCE_SHAPES,
                                             WEIGHTS_FILE, reference_train_config)
from ddetr_edu.config import config_to_dict, get_preset
from ddetr_edu.data.shapes import SHAPE_NAMES
from ddetr_edu.demo import run_demo
from ddetr_edu.viz.evolution import save_evolution_gif
from ddetr_edu.viz.recording import HISTORY_FILE, load_sampling_history

BOOK_ASSETS = Path(__file__).resolve().parent.parent / "book" / "assets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/shapes_reference"))
    parser.add_argument("--out", type=Path, default=Path("runs/reference"))
    parser.add_argument("--epochs", type=int, default=REFERENCE_EPOCHS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the reference: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_cfg, train_cfg = get_preset("shapes_cpu"), reference_train_config(args.epochs)
    start = time.perf_counter()
    result = run_demo(args.data, args.out, shapes=REFERENCE_SHAPES, model_cfg=model_cfg, train_cfg=train_cfg,
                      report=print)
    if result.interrupted:
        return 1
    minutes = (time.perf_counter() - start) / 60
    print(result.table)
    write_reference(args.out, result.metrics, result.table, minutes, args.threads, args.epochs)
    print(f"wrote {WEIGHTS_FILE} ({WEIGHTS_FILE.stat().st_size / 1e6:.2f} MB) and {CARD_FILE}; "
          f"{minutes:.1f} min; AP {result.metrics['AP']:.3f}")
    return 0


def write_reference(run_dir: Path, metrics: dict[str, float], table: str, minutes: float, threads: int,
                    epochs: int) -> None:
    """The package's weights and card from the run's last checkpoint; the book's copies of its
    curves, detections, thinned log and sampling-point GIF."""
    from ddetr_edu.checkpoints import load_checkpoint

    model_cfg, train_cfg = get_preset("shapes_cpu"), reference_train_config(epochs)
    state = load_checkpoint(run_dir / "checkpoint_last.pth")["model"]
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor.float().contiguous() for name, tensor in state.items()}, WEIGHTS_FILE)
    card = {
        "command": "make reference-model (python -m experiments.reference_model"
                   + (f" --epochs {epochs}" if epochs != REFERENCE_EPOCHS else "") + ")",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": threads,
        "train_minutes": round(minutes, 1),
        "class_names": list(SHAPE_NAMES),
        "model_config": config_to_dict(model_cfg),
        "train_config": train_cfg.to_dict(),
        "shapes_config": dataclasses.asdict(REFERENCE_SHAPES),
        "metrics": {key: round(float(value), 4) for key, value in metrics.items()},
        "table": table,
    }
    CARD_FILE.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    BOOK_ASSETS.mkdir(parents=True, exist_ok=True)
    for name in ("loss.png", "ap.png"):
        shutil.copyfile(run_dir / name, BOOK_ASSETS / f"reference_{name}")
    # 128 colours: a tenth of the bytes, the same picture to the eye
    Image.open(run_dir / "detections.png").convert("RGB").quantize(colors=128).save(
        BOOK_ASSETS / "reference_detections.png", optimize=True)
    # the log thinned for the book: every record but the "train" ones, which are kept every 50 steps
    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line).get("kind") != "train" or json.loads(line)["step"] % 50 == 0]
    (BOOK_ASSETS / "reference_log.jsonl").write_text("".join(kept), encoding="utf-8")
    # the sampling points recorded before training and after every epoch, animated with the names
    history = load_sampling_history(run_dir / HISTORY_FILE)
    save_evolution_gif(history, BOOK_ASSETS / "reference_sampling_evolution.gif", class_names=list(SHAPE_NAMES))


if __name__ == "__main__":
    sys.exit(main())
