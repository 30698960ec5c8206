"""The paper-claims runner (experiments/): its fast mode end to end, its refusals, its FLOP count."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from matplotlib.figure import Figure
from torch.utils.flop_counter import FlopCounterMode

from ddetr_edu.ops import Levels, MSDeformAttn
from experiments.attention_flops import attention_flops, deformable_flops, dense_flops
from experiments.claims_setup import MAIN, RUNS, model_config, run_list
from experiments.paper_claims import main

ROOT = Path(__file__).resolve().parents[1]
EPOCH_KEYS = {"epoch", "train_loss", "train_seconds", "wall_seconds", "AP", "AP50", "AP_S", "AP_M", "AP_L"}


@pytest.mark.slow
def test_fast_mode_writes_every_record_and_the_figures(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "experiments.paper_claims", "--fast", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = {f"{name}_seed{seed}.json" for name, seed in run_list()}
    assert {p.name for p in out.glob("*.json")} == expected
    for name in expected:
        record = json.loads((out / name).read_text())
        assert record["name"] in RUNS and record["parameters"] > 0 and record["epochs"]
        assert EPOCH_KEYS <= set(record["epochs"][0])
        assert record["attention_flops"]["total"] > 0 and record["model_config"]["transformer"]
    for name in ("figure3.png", "table1.md", "table2.md", "README.md"):
        assert (out / name).stat().st_size > 0, name
    readme = (out / "README.md").read_text()
    assert "experiments.paper_claims --fast" in readme
    assert "0..1 scale" in readme and "x100" not in readme  # the tables' scale, said as it is


def test_a_bad_configuration_name_fails_loudly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--plan", "--runs", "detr_dense,no_such_run"])
    assert exit_info.value.code == 2
    assert "no_such_run" in capsys.readouterr().err


def test_every_main_configuration_runs_with_every_seed():
    runs = run_list(seeds=(0, 1))
    assert all((name, seed) in runs for name in MAIN for seed in (0, 1))
    assert all(model_config(name).transformer for name in RUNS)


def _counted(module: nn.Module, *inputs, linear_only: bool = False, **kwargs) -> int:
    """FLOPs torch's counter sees in one call; ``linear_only``: those of the linear layers (addmm)."""
    with FlopCounterMode(display=False) as counter:
        module(*inputs, **kwargs)
    if linear_only:
        return counter.get_flop_counts()["Global"][torch.ops.aten.addmm]
    return counter.get_total_flops()


def test_dense_formula_matches_torch_flop_counter():
    attention = nn.MultiheadAttention(32, 4, batch_first=True)
    query, tokens = torch.randn(1, 7, 32), torch.randn(1, 30, 32)
    # need_weights=True: the explicit matmul path, which the counter sees (it does not count the
    # fused CPU attention kernel of need_weights=False; the arithmetic is the same)
    counted = _counted(attention, query, tokens, tokens, need_weights=True)
    assert counted == dense_flops(7, 30, 32)


def test_deformable_formula_matches_torch_flop_counter_for_its_linear_layers():
    """The four linear layers, counted by torch; the sampling is the formula's last term (the
    counter cannot see all of it: bilinear weights are elementwise products)."""
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3, backend="einops")
    levels = Levels(((4, 4), (2, 3)))
    query, value = torch.randn(1, 5, 32), torch.randn(1, 22, 32)
    counted = _counted(module, query, torch.rand(1, 5, 2, 2), value, levels, linear_only=True)
    sampling = 10 * 5 * (4 * 2 * 3) * (32 // 4)
    assert counted == deformable_flops(5, 22, 32, heads=4, levels=2, points=3) - sampling


def test_dense_cost_grows_with_the_square_of_the_tokens_and_own_level_costs_less():
    small, large = attention_flops(model_config("detr_dense"), [[5, 5]]), \
        attention_flops(model_config("detr_dense"), [[10, 10]])
    assert large["encoder"] > 4 * small["encoder"]
    sizes = [[20, 20], [10, 10], [5, 5], [3, 3]]
    own, full = attention_flops(model_config("msinputs_k4"), sizes), attention_flops(model_config("deformable_multi"), sizes)
    assert own["encoder"] < full["encoder"] and own["decoder"] == full["decoder"]
    with pytest.raises(ValueError, match="level_sizes"):
        attention_flops(model_config("deformable_multi"), [[5, 5]])


def test_fast_mode_honours_epochs_and_images_and_refuses_images_without_it(capsys):
    from experiments.paper_claims import parse_args

    args = parse_args(["--fast", "--epochs", "3", "--images", "160"])
    assert args.epochs == 3 and args.shapes.num_train == 160 and args.shapes.image_size == 160
    assert parse_args(["--fast"]).epochs == 1 and parse_args([]).epochs == 10
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--images", "100"])
    assert exit_info.value.code == 2 and "--images" in capsys.readouterr().err


def _record(name: str, seed: int, aps: dict[int, float]) -> dict:
    return {"name": name, "seed": seed, "shapes_config": {"num_train": 500},
            "epochs": [{"epoch": e, "AP": aps.get(e)} for e in range(1, max(aps) + 1)]}


def test_ten_x_reads_dense_at_ten_n_and_deformable_at_n():
    from experiments.ten_x import as_tenx, comparison, figure, table

    records = [_record("tenx_detr_dense", s, {5: 0.01, 10: 0.02 + s, 15: 0.03, 20: 0.04 + s}) for s in (0, 1)]
    records += [_record("tenx_deformable_multi", s, {1: 0.05, 2: 0.06 + s}) for s in (0, 1)]
    rows = {(r["N"], r["run"]): r for r in comparison(records, (1, 2))}
    assert rows[1, "tenx_detr_dense"]["epoch"] == 10 and rows[1, "tenx_detr_dense"]["AP"] == [0.02, 1.02]
    assert rows[2, "tenx_detr_dense"]["AP"] == [0.04, 1.04]
    assert rows[2, "tenx_deformable_multi"]["AP"] == [0.06, 1.06] and rows[1, "tenx_deformable_single"]["AP"] == []
    assert "| 2 | deformable, multi-scale, N epochs | 2 | 0.0600, 1.0600 | 0.5600 |" in table(list(rows.values()))
    assert isinstance(figure(records, (1, 2)), Figure)
    main = as_tenx([_record("detr_dense", 0, {10: 0.1}), _record("single_k1", 0, {1: 0.2})])
    assert [r["name"] for r in main] == ["tenx_detr_dense"]


def test_refinement_gap_geometry_and_inside():
    from experiments.refinement_gap import inside, star_outside_share

    assert star_outside_share(10_000, 10_000, (8,), 1, 4) < 0.01  # a tiny star on a huge image
    assert star_outside_share(16, 16, (64,), 1, 4) == 1.0  # every point 64 px away from a 16 px image
    # 4 heads, one point 8 px away on a 32 px image: a point is out when its reference is within 8 px
    # of the edge it points to (1/4 of the side): a quarter of all points
    assert star_outside_share(32, 32, (8,), 1, 4, grid=64) == pytest.approx(0.25)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert inside(torch.tensor([[0.55, 0.65], [0.65, 0.5]]), boxes).tolist() == [True, False]
