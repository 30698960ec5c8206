"""The fine-tuning comparison (``experiments/finetune_vs_scratch.py``) as a figure.

:func:`plot_finetune_comparison` takes the experiment's JSON (as a dict) and draws AP against
optimiser steps: one thin line per run (seed), the mean of the seeds thick, one colour per arm.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

ARM_COLOURS = {"finetune": "tab:orange", "scratch": "tab:blue"}


def plot_finetune_comparison(results: dict[str, Any], ap_key: str = "AP") -> Figure:
    """AP (``ap_key``) against steps for every arm of ``results`` (``finetune_vs_scratch.json``)."""
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    axes = figure.add_subplot()
    for arm, label in results["arms"].items():
        runs = [run for run in results["runs"] if run["arm"] == arm]
        if not runs:
            continue
        colour = ARM_COLOURS.get(arm)
        for run in runs:
            axes.plot(run["steps"], run[ap_key], color=colour, alpha=0.35, linewidth=1)
        length = min(len(run[ap_key]) for run in runs)
        mean = np.mean([run[ap_key][:length] for run in runs], axis=0)
        axes.plot(runs[0]["steps"][:length], mean, color=colour, linewidth=2.2, marker="o",
                  markersize=4, label=f"{label} (mean of {len(runs)} seeds)")
    axes.set_xlabel("optimiser steps (batch 4)")
    axes.set_ylabel(f"validation {ap_key}")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return figure


__all__ = ["plot_finetune_comparison"]
