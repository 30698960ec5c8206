"""ONNX export: onnxruntime on the CPU gives the scores and boxes PyTorch gives.

Two models: the shapes preset (small CNN, refinement + two-stage; with one encoder layer and two
decoder layers for the dynamic graph, whose export takes longest) and the small official model
of the reference fixture (ResNet-50, two-stage), with the fixture's weight rule. One dynamic
graph runs at square, landscape and portrait sizes and batches of 1 and 2. Needs the ``export``
extra (onnx, onnxscript, onnxruntime); without it the tests skip with that reason.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx", reason="needs the export extra: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="needs the export extra: pip install -e '.[export]'")
pytest.importorskip("onnxruntime", reason="needs the export extra: pip install -e '.[export]'")

from ddetr_edu.checkpoints import load_official_checkpoint  # noqa: E402
from ddetr_edu.config import get_preset  # noqa: E402
from ddetr_edu.models import build_detector  # noqa: E402
from ddetr_edu.onnx_export import (OPSET, compare_with_onnxruntime, export_onnx,  # noqa: E402
                                   read_input_range)

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


def _small_shapes_model():
    """The shapes preset with 1 encoder and 2 decoder layers: every path of the model (refinement,
    two-stage proposals, the decoder's second layer), a shorter export."""
    torch.manual_seed(0)
    return build_detector(get_preset("shapes_cpu", enc_layers=1, dec_layers=2))


@pytest.fixture(scope="module")
def dynamic_graph(tmp_path_factory):
    """``ddetr-edu export`` without --size on a checkpoint of the small shapes model, once for the
    module (the longest export): (the checkpoint's model, the checkpoint, the graph, what it printed)."""
    from ddetr_edu import load_detector
    from ddetr_edu.cli import main

    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = _our_checkpoint(folder / "checkpoint.pth")
    out = folder / "dynamic.onnx"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return load_detector(checkpoint).model, checkpoint, out, printed.getvalue()


# (batch, height, width): square, landscape, portrait, odd sizes; batches of 1 and 2
DYNAMIC_SIZES = [(1, 96, 96), (2, 96, 96), (2, 96, 160), (1, 160, 96), (2, 75, 131), (1, 32, 300)]


@pytest.mark.slow
def test_one_dynamic_graph_runs_at_every_size_and_batch(dynamic_graph):
    import onnx

    model, _, path, _ = dynamic_graph
    graph = onnx.load(str(path))
    assert {o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
    axes = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert axes == ["batch", 3, "height", "width"], axes
    proven = read_input_range(path)  # the model's own minimum: the backbone's coarsest stride
    assert (proven.min_height, proven.min_width) == (32, 32), proven
    generator = torch.Generator().manual_seed(3)
    for n, h, w in DYNAMIC_SIZES:
        error = compare_with_onnxruntime(model, path, torch.randn(n, 3, h, w, generator=generator))
        assert error["scores"] <= SCORE_TOL and error["boxes"] <= BOX_TOL, ((n, h, w), error)


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

    model = _small_shapes_model()
    cfg = model.cfg
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    atomic_torch_save(build_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                                       epoch=1, step_in_epoch=0, global_step=1, best_ap=0.0,
                                       model_config=config_to_dict(cfg),
                                       train_config=train_preset("shapes_cpu").to_dict()), path)
    return path


@pytest.mark.slow
def test_cli_export_writes_a_checked_graph_and_never_replaces_a_file(dynamic_graph, tmp_path, capsys):
    from ddetr_edu.cli import main

    _, checkpoint, out, printed = dynamic_graph
    assert out.is_file() and "(N, 3, H, W), any batch N, H >= 32, W >= 32" in printed, printed
    assert f"opset {OPSET}" in printed, printed
    checked = printed.split("random input: ")[1].split("; ")  # square, landscape, portrait at the scale 96
    assert [c.split()[0] for c in checked] == ["1x96x96", "2x96x120", "1x120x96"], printed
    assert all(float(c.split("scores ")[1].split(",")[0]) <= SCORE_TOL for c in checked), printed
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "b.onnx")]) == 2
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "c.onnx"), "--batch-size", "2"]) == 2
    assert "--size" in capsys.readouterr().err


def test_cli_export_with_size_fixes_the_size_and_batch(tmp_path, capsys):
    from ddetr_edu.cli import main

    checkpoint = _our_checkpoint(tmp_path / "checkpoint.pth")
    out = tmp_path / "fixed.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--size", "64", "96",
                 "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "input images (2, 3, 64, 96)" in printed and "2x64x96 scores" in printed, printed
    assert read_input_range(out) is None  # a fixed graph
