"""ONNX export: onnxruntime on the CPU gives the scores and boxes PyTorch gives.

Two models: the shapes preset (small CNN, refinement + two-stage) and the small official model of
the reference fixture (ResNet-50, two-stage), with the fixture's weight rule. Needs the
``export`` extra (onnx, onnxscript, onnxruntime); without it the tests skip with that reason.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx", reason="needs the export extra: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="needs the export extra: pip install -e '.[export]'")
pytest.importorskip("onnxruntime", reason="needs the export extra: pip install -e '.[export]'")

from ddetr_edu.checkpoints import load_official_checkpoint  # noqa: E402
from ddetr_edu.config import get_preset  # noqa: E402
from ddetr_edu.models import build_detector  # noqa: E402
from ddetr_edu.onnx_export import compare_with_onnxruntime, export_onnx  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"
SCORE_TOL = 1e-4  # seen: 8e-8 (shapes), 7e-7 (official fixture); boxes alike
BOX_TOL = 1e-4


def _official_model():
    spec = importlib.util.spec_from_file_location("fill_weights", REFERENCE / "fill_weights.py")
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    fixture = torch.load(REFERENCE / "official_small_multiscale_refine_twostage.pt", weights_only=True)
    state = fill.fill_official_state_dict(fixture["keys"], fixture["seed"])
    return load_official_checkpoint({"model": state, "args": fixture["args"]})


def test_shapes_model_matches_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = build_detector(get_preset("shapes_cpu"))
    path = export_onnx(model, tmp_path / "shapes.onnx", image_size=(96, 96), batch_size=2)
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    error = compare_with_onnxruntime(model, path, images)
    assert error["scores"] <= SCORE_TOL and error["boxes"] <= BOX_TOL, error
    assert model.training, "export must leave the model's mode as it was"
    assert all(m.backend == "grid_sample" for m in model.modules() if hasattr(m, "backend")), \
        "export must restore the attention backend"


@pytest.mark.slow
def test_official_fixture_model_matches_onnxruntime(tmp_path):
    model = _official_model()
    path = export_onnx(model, tmp_path / "official.onnx", image_size=(128, 160))
    images = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(2))
    error = compare_with_onnxruntime(model, path, images)
    assert error["scores"] <= SCORE_TOL and error["boxes"] <= BOX_TOL, error


def test_export_refuses_a_bad_size(tmp_path):
    model = build_detector(get_preset("shapes_cpu"))
    with pytest.raises(ValueError, match="image_size"):
        export_onnx(model, tmp_path / "x.onnx", image_size=(96,))
    with pytest.raises(ValueError, match="batch_size"):
        export_onnx(model, tmp_path / "x.onnx", image_size=(96, 96), batch_size=0)


def _our_checkpoint(path):
    from ddetr_edu.checkpoints.training_state import atomic_torch_save, build_checkpoint
    from ddetr_edu.config import config_to_dict
    from ddetr_edu.training.config import train_preset

    torch.manual_seed(0)
    cfg = get_preset("shapes_cpu")
    model = build_detector(cfg)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    atomic_torch_save(build_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                                       epoch=1, step_in_epoch=0, global_step=1, best_ap=0.0,
                                       model_config=config_to_dict(cfg),
                                       train_config=train_preset("shapes_cpu").to_dict()), path)
    return path


def test_cli_export_writes_a_checked_graph_and_never_replaces_a_file(tmp_path, capsys):
    from ddetr_edu.cli import main

    checkpoint = _our_checkpoint(tmp_path / "checkpoint.pth")
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "(1, 3, 96, 96)" in printed, printed  # the shapes recipe's scale
    scores_error = float(printed.split("input: scores ")[1].split(",")[0])
    assert scores_error <= SCORE_TOL, printed
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "b.onnx")]) == 2
