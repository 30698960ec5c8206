"""Chapter 1's Figure 1.1: dense against deformable attention as the feature map grows.

:func:`plot_cost_measurements` returns a matplotlib Figure (no pyplot state) of four log-log
panels: the measured CPU time of one call (median, interquartile bars, the fitted sizes circled,
five times the fixed cost dotted), the peak memory, the counted FLOPs and the achieved speed
(FLOPs / time), with grey guide lines of slope 1 and 2.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

COLOURS = {"dense": "tab:red", "deformable": "tab:blue"}


def plot_cost_measurements(tokens: Sequence[int], measured: Mapping[str, Mapping[str, Sequence[float]]],
                           flops: Mapping[str, Sequence[float]], fixed: Mapping[str, float],
                           fits: Mapping[str, Sequence[int]], above_fixed: float) -> Figure:
    """tokens: the map sizes HW; measured[name] = {"time": s, "spread": s, "memory": bytes} per size;
    flops[name]: the formula's FLOPs per size; fixed[name]: the one-token time (s); fits[name]: the
    indices of the sizes a slope was fitted on (absent: none); above_fixed: the factor over the
    fixed cost from which sizes are fitted. ``name`` is "dense" or "deformable"."""
    figure = Figure(figsize=(13, 9), layout="constrained")
    time_ax, memory_ax, flops_ax, speed_ax = figure.subplots(2, 2).flatten()
    for name, colour in COLOURS.items():
        times = measured[name]["time"]
        time_ax.errorbar(tokens, times, yerr=measured[name]["spread"], fmt="o-", color=colour, capsize=3,
                         label=f"{name} (median, IQR bars)")
        time_ax.axhline(above_fixed * fixed[name], color=colour, ls=":", lw=1,
                        label=f"{above_fixed:g} x {name} fixed cost")
        if name in fits:
            time_ax.plot([tokens[i] for i in fits[name]], [times[i] for i in fits[name]], "o", ms=11, mfc="none",
                         color=colour)
        memory_ax.loglog(tokens, measured[name]["memory"], "o-", color=colour, label=name)
        flops_ax.loglog(tokens, flops[name], "s--", color=colour, label=f"{name} (formula)")
        speed_ax.semilogx(tokens, [f / t / 1e9 for f, t in zip(flops[name], times)], "o-", color=colour, label=name)
    time_ax.set(xscale="log", yscale="log")
    speed_ax.set_ylim(bottom=0)
    titles = [("CPU time of one call (s)", "measured time, 1 thread (circled: fitted)"),
              ("peak memory of the call (bytes)", "measured peak memory"), ("FLOPs", "counted FLOPs (the formulas)"),
              ("GFLOP per CPU second", "achieved speed: formula FLOPs / measured time")]
    for ax, (ylabel, title) in zip((time_ax, memory_ax, flops_ax, speed_ax), titles):
        ax.set(xlabel="tokens HW", ylabel=ylabel, title=title)
    for ax, values in ((memory_ax, [measured[n]["memory"][0] for n in COLOURS]), (flops_ax, [flops[n][0] for n in COLOURS])):
        start = 0.3 * min(values)                       # guide lines of slope 1 and 2, below the data
        for p, style in ((1, "-."), (2, ":")):
            ax.loglog(tokens, [start * (n / tokens[0]) ** p for n in tokens], color="grey", ls=style, lw=1.2,
                      label=f"slope {p}")
    for ax in (time_ax, memory_ax, flops_ax, speed_ax):
        ax.legend(fontsize=8)
    return figure
