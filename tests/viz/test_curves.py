"""Curves of several runs: evaluation records placed at the optimiser step they were made."""
from __future__ import annotations

import pytest

from ddetr_edu.viz.curves import eval_steps, plot_runs


def _log(epochs: int, steps_per_epoch: int, log_every: int, eval_every: int) -> list[dict]:
    """The records the training loop writes (train lines as train_one_epoch logs them, eval lines
    after every ``eval_every`` epochs and the last), with a loss falling by step."""
    records, global_step = [], 0
    for epoch in range(epochs):
        for step in range(1, steps_per_epoch + 1):
            global_step += 1
            if global_step % log_every == 0 or global_step == 1:
                records.append({"kind": "train", "epoch": epoch, "step": step, "global_step": global_step,
                                "loss": 10.0 / global_step})
        records.append({"kind": "epoch", "epoch": epoch})
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            records.append({"kind": "eval", "epoch": epoch + 1, "AP": 0.1 * (epoch + 1), "steps_done": global_step})
    return records


@pytest.mark.parametrize("epochs, steps_per_epoch, log_every, eval_every", [(3, 5, 2, 2), (7, 13, 10, 3), (4, 3, 1, 1)])
def test_eval_steps_are_the_steps_done_before_each_evaluation(epochs, steps_per_epoch, log_every, eval_every):
    records = _log(epochs, steps_per_epoch, log_every, eval_every)
    placed = eval_steps(records)
    assert [record["epoch"] for _, record in placed] == [r["epoch"] for r in records if r["kind"] == "eval"]
    assert [step for step, _ in placed] == [record["steps_done"] for _, record in placed]


def test_one_epoch_run_is_placed_at_its_last_logged_step():
    records = _log(1, 20, 5, 1)
    assert eval_steps(records) == [(20, records[-1])]


def test_plot_runs_draws_one_loss_and_one_ap_line_per_run():
    runs = {"short": _log(3, 5, 1, 1), "long": _log(6, 50, 10, 2)}
    figure = plot_runs(runs)
    loss_axes, ap_axes = figure.axes
    assert [line.get_label() for line in loss_axes.lines] == ["short", "long"]
    assert list(ap_axes.lines[1].get_xdata()) == [s for s, _ in eval_steps(runs["long"])]
    assert list(ap_axes.lines[1].get_ydata()) == [r["AP"] for _, r in eval_steps(runs["long"])]
    assert loss_axes.get_xscale() == "log" and ap_axes.get_ylim() == (0, 1)
