"""The training curves of a run's logbook (``log.jsonl``) as matplotlib figures.

:func:`plot_loss_curve` and :func:`plot_ap_curve` return figures (no ``plt.show``, no pyplot
state); :func:`save_curves` writes both as PNG. The records are those of
:mod:`ddetr_edu.training.logbook`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ddetr_edu.training.logbook import read_log


def _series(records: Iterable[dict[str, Any]], x_key: str, y_key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for record in records:
        if record.get(y_key) is not None and record.get(x_key) is not None:
            xs.append(record[x_key])
            ys.append(record[y_key])
    return xs, ys


def _lines(records: list[dict[str, Any]], kind: str, x_key: str, y_keys: tuple[str, ...],
           **style: Any) -> tuple[Figure, Axes]:
    """A figure with one line per key of ``y_keys`` against ``x_key``, over the records of ``kind``."""
    figure = Figure(figsize=(6, 3.6), layout="constrained")
    axes = figure.add_subplot()
    chosen = [r for r in records if r.get("kind") == kind]
    for key in y_keys:
        xs, ys = _series(chosen, x_key, key)
        if xs:
            axes.plot(xs, ys, label=key, **style)
    return figure, axes


def plot_loss_curve(records: list[dict[str, Any]], terms: tuple[str, ...] = ("loss",)) -> Figure:
    """Training loss against optimiser steps (log scale), one line per term in ``terms``."""
    figure, axes = _lines(records, "train", "global_step", terms)
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
    figure, axes = _lines(records, "eval", "epoch", keys, marker="o")
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


__all__ = ["plot_loss_curve", "plot_ap_curve", "save_curves"]
