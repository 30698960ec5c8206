"""Figure 3, Table 1 and Table 2 in miniature, from the runs' JSON records (``claims_training.py``).

A cell of a configuration run with several seeds is ``mean ± half-range`` (with two seeds: the
mean and half their difference); AP is that of the last epoch, on the 0..1 scale the library prints
everywhere (the paper's percentages are converted: 43.8 -> 0.438). Training time is the training steps alone (no evaluation), in minutes, on the
run's one thread.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

Record = dict[str, Any]

CURVES = {  # Figure 3: configuration -> (label, colour)
    "detr_dense": ("DETR-style (dense attention, C5)", "tab:red"),
    "deformable_single": ("deformable, single-scale (C5)", "tab:blue"),
    "deformable_multi": ("deformable, multi-scale (C3-C6)", "tab:green"),
}
TABLE1 = {  # configuration -> (row, the paper's AP / AP_S / AP_M / AP_L and epochs, Table 1)
    "detr_dense": ("DETR-style (dense, single-scale)", "0.420 / 0.205 / 0.458 / 0.611 (500 ep); DC5, 50 ep: 0.353"),
    "deformable_single": ("Deformable, single-scale", "-"),
    "deformable_multi": ("Deformable, multi-scale", "0.438 / 0.264 / 0.471 / 0.580 (50 ep)"),
    "deformable_multi_refine": ("+ iterative box refinement", "0.454 / 0.268 / 0.483 / 0.617 (50 ep)"),
    "deformable_multi_twostage": ("++ two-stage", "0.462 / 0.288 / 0.492 / 0.617 (50 ep)"),
}
TABLE2 = {  # configuration -> (MS inputs, MS attention, K, the paper's AP, Table 2)
    "single_k1": ("", "", 1, "0.397"),
    "msinputs_k1": ("yes", "", 1, "0.414"),
    "msinputs_k4": ("yes", "", 4, "0.423"),
    "deformable_multi": ("yes", "yes", 4, "0.438"),
}


def by_name(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Records grouped by configuration name, each group sorted by seed."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r["seed"]):
        groups[record["name"]].append(record)
    return dict(groups)


def spread(values: Sequence[float | None], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± half-range`` of the values times ``scale`` (one value: itself; missing: "-")."""
    values = [v * scale for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def final(records: Sequence[Record], key: str) -> list[float | None]:
    """``key`` of the last epoch of each record; None where missing or -1 (COCO: no object of
    that size in the validation set)."""
    values = [r["epochs"][-1].get(key) if r["epochs"] else None for r in records]
    return [v if v is not None and v >= 0 else None for v in values]


def _ap_cell(runs: Sequence[Record], key: str) -> str:
    return spread(final(runs, key), digits=3)


def table1(records: Sequence[Record]) -> str:
    """Table 1 in miniature, Markdown."""
    groups = by_name(records)
    lines = ["| method | seeds | epochs | AP | AP_S | AP_M | AP_L | train time (min) | attention MFLOPs/img "
             "| params (M) | paper: AP / AP_S / AP_M / AP_L |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (label, paper) in TABLE1.items():
        runs = groups.get(name)
        if not runs:
            continue
        cells = [label, str(len(runs)), str(len(runs[0]["epochs"])),
                 *(_ap_cell(runs, k) for k in ("AP", "AP_S", "AP_M", "AP_L")),
                 spread([r["train_seconds"] / 60 for r in runs]),
                 f"{runs[0]['attention_flops']['total'] / 1e6:.1f}", f"{runs[0]['parameters'] / 1e6:.2f}", paper]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table2(records: Sequence[Record]) -> str:
    """Table 2 in miniature, Markdown."""
    groups = by_name(records)
    lines = ["| MS inputs | MS attention | K | seeds | AP | AP50 | AP_S | AP_M | AP_L | paper AP |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (inputs, attention, k, paper) in TABLE2.items():
        runs = groups.get(name)
        if not runs:
            continue
        cells = [inputs, attention, str(k), str(len(runs)),
                 *(_ap_cell(runs, key) for key in ("AP", "AP50", "AP_S", "AP_M", "AP_L")), paper]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _curve(record: Record, x: str) -> tuple[list[float], list[float]]:
    """(x, AP) of the evaluated epochs; x "epoch" or "minutes" (cumulative training time)."""
    xs, ys, minutes = [], [], 0.0
    for row in record["epochs"]:
        minutes += row["train_seconds"] / 60
        if row.get("AP") is not None:
            xs.append(row["epoch"] if x == "epoch" else minutes)
            ys.append(row["AP"])
    return xs, ys


def figure3(records: Sequence[Record]) -> Figure:
    """AP against epochs and against training time, one colour per configuration; each seed a
    thin line, their mean a thick one."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    groups = by_name(records)
    for axes, x, xlabel in ((panels[0], "epoch", "epoch"), (panels[1], "minutes", "training time (min, one process each)")):
        for name, (label, colour) in CURVES.items():
            runs = groups.get(name, [])
            curves = [_curve(r, x) for r in runs]
            for xs, ys in curves:
                axes.plot(xs, ys, color=colour, alpha=0.35, linewidth=1, marker=".")
            if curves and all(len(c[1]) == len(curves[0][1]) for c in curves):
                mean_x = [statistics.fmean(v) for v in zip(*(c[0] for c in curves))]
                mean_y = [statistics.fmean(v) for v in zip(*(c[1] for c in curves))]
                axes.plot(mean_x, mean_y, color=colour, linewidth=2.2, label=f"{label}, {len(runs)} seeds")
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("COCO AP (validation, 0..1)")
    panels[0].legend(loc="upper left", fontsize=8)
    figure.suptitle("Figure 3 in miniature: AP while training (shapes dataset; thin lines: seeds, thick: mean)")
    return figure


def write_report(records: Sequence[Record], out_dir: Path) -> list[Path]:
    """``figure3.png``, ``table1.md``, ``table2.md`` in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "figure3.png", out_dir / "table1.md", out_dir / "table2.md"]
    figure3(records).savefig(paths[0], dpi=120)
    note = ("\nCells: mean ± half-range over the seeds; AP of the last epoch, 0..1 (the paper's percentages converted). "
            "Paper: COCO val, ResNet-50, 8 GPUs.\n")
    paths[1].write_text("# Table 1 in miniature\n\n" + table1(records) + note, encoding="utf-8")
    paths[2].write_text("# Table 2 in miniature (no refinement, no two-stage)\n\n" + table2(records) + note,
                        encoding="utf-8")
    return paths
