"""experiments/finetune_vs_scratch.py in its fast mode: both arms, both seeds, the three files."""
from __future__ import annotations

import json

import pytest

from experiments import finetune_vs_scratch


@pytest.mark.slow
def test_fast_mode_writes_every_run_and_the_figure(tmp_path):
    assert finetune_vs_scratch.main(["--fast", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
                                     "--processes", "1"]) == 0
    results = json.loads((tmp_path / "out" / "finetune_vs_scratch.json").read_text())
    runs = {(run["arm"], run["seed"]): run for run in results["runs"]}
    assert set(runs) == {(arm, seed) for arm in finetune_vs_scratch.ARMS for seed in finetune_vs_scratch.SEEDS}
    for run in runs.values():
        assert run["steps"] == [2, 4] and len(run["AP"]) == 2 and all(0 <= ap <= 1 for ap in run["AP"])
        assert run["model_config"]["num_classes"] == 3
    table = (tmp_path / "out" / "finetune_vs_scratch.md").read_text()
    assert "python -m experiments.finetune_vs_scratch --fast" in table and table.count("| finetune |") == 2
    assert (tmp_path / "out" / "finetune_vs_scratch.png").stat().st_size > 10_000
