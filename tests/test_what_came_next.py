"""experiments/what_came_next.py: look-forward-twice against the plain model, its fast mode end to end."""
from __future__ import annotations

import json

import pytest

from experiments.what_came_next import ARMS, BASE_RUN, arm_config, main, table
from experiments.claims_setup import model_config


def test_the_arms_differ_from_the_runners_two_stage_model_in_the_option_only():
    base = model_config(BASE_RUN)
    assert base.two_stage and base.with_box_refine and not base.look_forward_twice
    for name in ARMS:
        cfg = arm_config(name)
        assert cfg.look_forward_twice == (name == "twostage_look_forward_twice")
        assert cfg.mixed_query_selection == (name == "twostage_mixed_query_selection")
        assert cfg.transformer == base.transformer and cfg.backbone == base.backbone
    with pytest.raises(ValueError, match="arm name"):
        arm_config("no_such_arm")


@pytest.mark.slow
def test_fast_mode_writes_both_arms_and_the_table(tmp_path):
    out = tmp_path / "results"
    assert main(["--fast", "--seeds", "0", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    written = json.loads((out / "what_came_next.json").read_text())
    runs = written["runs"]
    assert sorted(r["name"] for r in runs) == sorted(ARMS) and {r["seed"] for r in runs} == {0}
    for record in runs:
        assert record["model_config"]["look_forward_twice"] == arm_config(record["name"]).look_forward_twice
        assert record["epochs"] and record["epochs"][-1]["train_loss"] > 0
    assert "--fast" in written["command"]
    markdown = (out / "what_came_next.md").read_text()
    assert all(label in markdown for label, _ in ARMS.values())
    assert table(runs) in markdown
