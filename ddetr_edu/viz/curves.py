"""The training curves of a run's logbook (``log.jsonl``) as matplotlib figures.

:func:`plot_loss_curve` and :func:`plot_ap_curve` return figures (no ``plt.show``, no pyplot
state); :func:`plot_runs` draws several runs' loss and AP side by side; :func:`save_curves`
writes the first two as PNG. The records are those of
:mod:`ddetr_edu.training.logbook`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

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


def eval_steps(records: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(optimiser steps done, record) for every ``eval`` record: an evaluation after ``epoch``
    epochs comes after ``epoch * steps_per_epoch`` steps, read off a train record of a later
    epoch (its ``global_step - step``); a run of one epoch: its last logged ``global_step``."""
    train = [r for r in records if r.get("kind") == "train"]
    later = [r for r in train if r.get("epoch", 0) >= 1]
    if later:
        per_epoch = (later[0]["global_step"] - later[0]["step"]) / later[0]["epoch"]
    else:
        per_epoch = max((r["global_step"] for r in train), default=0)
    return [(round(r["epoch"] * per_epoch), r) for r in records if r.get("kind") == "eval"]


def plot_runs(runs: dict[str, list[dict[str, Any]]], term: str = "loss", ap_key: str = "AP") -> Figure:
    """Several runs on one scale: training ``term`` (left) and validation ``ap_key`` (right)
    against optimiser steps, both log-x, so that a run of 300 steps and one of 50 000 can be
    compared step for step; one colour per run (``runs``: name -> its log records)."""
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    loss_axes, ap_axes = figure.subplots(1, 2)
    for index, (name, records) in enumerate(runs.items()):
        colour = f"C{index}"
        xs, ys = _series([r for r in records if r.get("kind") == "train"], "global_step", term)
        loss_axes.plot(xs, ys, color=colour, label=name)
        evals = [(step, r[ap_key]) for step, r in eval_steps(records) if r.get(ap_key) is not None]
        ap_axes.plot([s for s, _ in evals], [a for _, a in evals], color=colour, marker="o", label=name)
    loss_axes.set(xscale="log", yscale="log", xlabel="optimiser step (log scale)", ylabel=f"training {term}",
                  title=f"training {term}")
    ap_axes.set(xscale="log", ylim=(0, 1), xlabel="optimiser step (log scale)", ylabel=f"validation {ap_key}",
                title=f"COCO {ap_key} on each run's validation set")
    for axes in (loss_axes, ap_axes):
        axes.grid(alpha=0.3, which="both")
        axes.xaxis.set_minor_formatter(NullFormatter())  # labels at powers of ten only: no overlaps
        axes.legend()
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


__all__ = ["plot_loss_curve", "plot_ap_curve", "eval_steps", "plot_runs", "save_curves"]
