"""The run's logbook: one JSON object per line (``log.jsonl``) and its curves as figures.

Each line is a record with a ``kind``:

* ``{"kind": "train", "epoch", "step", "global_step", "lr", "loss", <loss terms>...}`` every
  ``log_every`` steps, each term the mean over the steps since the previous line;
* ``{"kind": "epoch", "epoch", "train_loss", "seconds", ...}`` at the end of each epoch;
* ``{"kind": "eval", "epoch", "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"}`` after evaluation.

Appending one line at a time keeps the file valid after a crash; a resumed run appends to the
same file. :func:`plot_loss_curve` and :func:`plot_ap_curve` return matplotlib figures (no
``plt.show``); :func:`save_curves` writes them as PNG.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from matplotlib.figure import Figure

AP_KEYS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")


class Logbook:
    """Append-only JSONL log at ``path`` (its folder is created)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero ranks: they log nothing
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **values: Any) -> None:
        """Append ``{"kind": kind, **values}`` as one line (floats that are not finite become null)."""
        if not self.enabled:
            return
        record = {"kind": kind, **{k: _jsonable(v) for k, v in values.items()}}
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every record (of one ``kind``), in order."""
        return read_log(self.path, kind)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # 0-d tensors and numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def read_log(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Parse ``log.jsonl``; ``kind`` keeps only records of that kind. A missing file gives []."""
    path = Path(path)
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def _series(records: Iterable[dict[str, Any]], x_key: str, y_key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for record in records:
        if record.get(y_key) is not None and record.get(x_key) is not None:
            xs.append(record[x_key])
            ys.append(record[y_key])
    return xs, ys


def plot_loss_curve(records: list[dict[str, Any]], terms: tuple[str, ...] = ("loss",)) -> Figure:
    """Training loss against optimiser steps (log scale), one line per term in ``terms``."""
    figure = Figure(figsize=(6, 3.6), layout="constrained")
    axes = figure.add_subplot()
    train = [r for r in records if r.get("kind") == "train"]
    for term in terms:
        xs, ys = _series(train, "global_step", term)
        if xs:
            axes.plot(xs, ys, label=term)
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("training loss")
    if any(line.get_ydata().size for line in axes.lines) and all(
        min(line.get_ydata()) > 0 for line in axes.lines
    ):
        axes.set_yscale("log")
    if axes.lines:
        axes.legend()
    axes.set_title("training loss")
    axes.grid(alpha=0.3)
    return figure


def plot_ap_curve(records: list[dict[str, Any]], keys: tuple[str, ...] = ("AP", "AP50", "AP75")) -> Figure:
    """Validation AP (COCO, 0-1 scale) against epochs, one line per metric in ``keys``."""
    figure = Figure(figsize=(6, 3.6), layout="constrained")
    axes = figure.add_subplot()
    evals = [r for r in records if r.get("kind") == "eval"]
    for key in keys:
        xs, ys = _series(evals, "epoch", key)
        if xs:
            axes.plot(xs, ys, marker="o", label=key)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation AP")
    axes.set_ylim(0, 1)
    if axes.lines:
        axes.legend()
    axes.set_title("COCO AP on the validation set")
    axes.grid(alpha=0.3)
    return figure


def save_curves(log_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``loss.png`` and ``ap.png`` for the log at ``log_path`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = read_log(log_path)
    written = []
    for name, figure in (("loss.png", plot_loss_curve(records)), ("ap.png", plot_ap_curve(records))):
        target = out_dir / name
        figure.savefig(target, dpi=110)
        written.append(target)
    return written


__all__ = ["AP_KEYS", "Logbook", "read_log", "plot_loss_curve", "plot_ap_curve", "save_curves"]
