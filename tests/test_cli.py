"""The command line and the demo pipeline, end to end on a tiny model and tiny shapes."""
from __future__ import annotations

import json

import pytest
import torch

from ddetr_edu.cli import UsageError, main, official_postprocess, split_overrides
from ddetr_edu.config import get_preset, with_overrides
from ddetr_edu.data.shapes import ShapesConfig
from ddetr_edu.training.config import TrainConfig, train_preset

TINY_SHAPES = ["--set", "num_train=4", "--set", "num_val=2", "--set", "image_size=32",
               "--set", "min_size=8", "--set", "max_size=16", "--set", "max_objects=2"]
TINY_MODEL = {"d_model": "64", "n_heads": "2", "enc_layers": "1", "dec_layers": "2", "dim_feedforward": "32",
              "small_cnn_channels": "8,8,16,16", "num_queries": "5", "num_classes": "5",
              "num_feature_levels": "3", "attention_backend": "grid_sample"}
TINY_TRAIN = {"batch_size": "2", "image_size": "32", "log_every": "1", "eval_every": "1", "lr_drop": "5"}


def _sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    assert main(["make-shapes", "--out", str(out), "--seed", "3", *TINY_SHAPES]) == 0
    return out


def test_make_shapes_writes_both_splits(shapes_dir):
    train = json.loads((shapes_dir / "train.json").read_text())
    assert len(train["images"]) == 4 and train["info"]["config"]["seed"] == 3
    assert len(list((shapes_dir / "images" / "val").glob("*.png"))) == 2


def test_train_eval_and_resume_through_the_cli(shapes_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "shapes_cpu", "--data", str(shapes_dir), "--out", str(run),
            *_sets(TINY_MODEL), *_sets(TINY_TRAIN)]
    assert main([*args, "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and "done: 1 epochs" in out
    saved = torch.load(run / "checkpoint_last.pth", weights_only=True)
    assert saved["epoch"] == 1 and saved["model_config"]["transformer"]["d_model"] == 64
    assert saved["train_config"]["batch_size"] == 2

    assert main(["train", "--resume", str(run / "checkpoint_last.pth"), "--data", str(shapes_dir),
                 "--out", str(run), "--epochs", "2"]) == 0
    assert torch.load(run / "checkpoint_last.pth", weights_only=True)["epoch"] == 2
    assert "resumed from" in capsys.readouterr().out

    assert main(["eval", "--checkpoint", str(run / "checkpoint_last.pth"), "--data", str(shapes_dir)]) == 0
    table = capsys.readouterr().out
    assert "AP " in table and "AP_S" in table and "AP per class" in table


@pytest.mark.parametrize("args, message", [
    (["train", "--set", "no_such_field=1"], "no config has a field 'no_such_field'; model fields: "),
    (["train", "--set", "d_model=wide"], "ModelConfig.d_model: expected int, got 'wide'"),
    (["train", "--set", "d_model=100"], "d_model: expected a multiple of 32"),  # config validation
    (["train", "--set", "lr"], "--set expects key=value"),
    (["train", "--data", "{tmp}/missing"], "no dataset found under"),
    (["train", "--resume", "{tmp}/none.pth"], "checkpoint not found"),
    (["eval", "--checkpoint", "{tmp}/none.pth"], "checkpoint not found"),
    (["eval", "--checkpoint", "{tmp}/none.pth", "--set", "d_model=64"], "eval takes the model from --checkpoint"),
    (["make-shapes", "--set", "num_train=-1"], "num_train/num_val must be >= 0"),
])
def test_bad_input_gives_exit_code_2_and_one_line(shapes_dir, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    if args[0] != "make-shapes" and "--data" not in args:
        args += ["--data", str(shapes_dir)]
    args += ["--out", str(tmp_path / "out")] if args[0] != "eval" else []
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize("bug", [TypeError, ValueError])
def test_a_bug_inside_training_keeps_its_traceback(shapes_dir, tmp_path, monkeypatch, bug):
    import ddetr_edu.training.loop as loop

    def broken(*args, **kwargs):
        raise bug("a bug deep inside training")

    monkeypatch.setattr(loop, "build_optimizer", broken)  # called by fit(), after all input checks
    with pytest.raises(bug, match="a bug deep inside training"):
        main(["train", "--data", str(shapes_dir), "--out", str(tmp_path / "run"), "--epochs", "1",
              *_sets(TINY_MODEL), *_sets(TINY_TRAIN)])


def test_overrides_are_routed_as_strings_and_typed_by_the_config():
    model, train = split_overrides(["d_model=64", "lr=1e-3", "two_stage=true", "train.seed=5",
                                    "model.small_cnn_channels=8,16,16,32", "max_steps_per_epoch=none"])
    assert model == {"d_model": "64", "two_stage": "true", "small_cnn_channels": "8,16,16,32"}
    assert train == {"lr": "1e-3", "seed": "5", "max_steps_per_epoch": "none"}
    cfg = with_overrides(train_preset("coco"), train)
    assert (cfg.lr, cfg.seed, cfg.max_steps_per_epoch) == (1e-3, 5, None)
    model_cfg = with_overrides(get_preset("multiscale_refine"), model)
    assert model_cfg.transformer.d_model == 64 and model_cfg.two_stage is True
    assert model_cfg.backbone.small_cnn_channels == (8, 16, 16, 32)
    with pytest.raises(UsageError, match="the model config has no field 'lr'; model fields: "):
        split_overrides(["model.lr=1"])
    with pytest.raises(UsageError, match="prefix must be 'model.' or 'train.'"):
        split_overrides(["data.lr=1"])
    with pytest.raises(UsageError, match="key=value"):
        split_overrides(["d_model"])


def test_a_name_in_both_configs_needs_its_prefix(monkeypatch):
    import ddetr_edu.config as config

    real = config.config_fields  # no name is in both today: give both configs a field "shared"
    monkeypatch.setattr(config, "config_fields", lambda cls: {**real(cls), "shared": (("shared",), int)}
                        if cls in (config.ModelConfig, TrainConfig) else real(cls))
    with pytest.raises(UsageError, match="both configs have 'shared'; write model.shared or train.shared"):
        split_overrides(["shared=1"])
    assert split_overrides(["train.shared=1", "model.d_model=64"]) == ({"d_model": "64"}, {"shared": "1"})


def test_official_postprocess_maps_coco_ids_to_contiguous_labels():
    logits = torch.full((1, 2, 91), -10.0)
    logits[0, 0, 3] = 5.0  # category id 3 -> label 1 below
    logits[0, 1, 90] = 4.0  # category id 90 is not in this dataset: dropped
    outputs = {"pred_logits": logits, "pred_boxes": torch.full((1, 2, 4), 0.5)}
    (result,) = official_postprocess({1: 0, 3: 1})(outputs, torch.tensor([[10, 20]]))
    assert result["labels"][0].item() == 1 and 90 not in result["labels"].tolist()
    assert len(result["labels"]) == len(result["scores"]) == len(result["boxes"])


def test_demo_pipeline_writes_table_curves_and_pictures(tmp_path):
    from ddetr_edu.demo import run_demo, shapes_dataset_is_ready

    shapes = ShapesConfig(num_train=4, num_val=2, image_size=32, min_size=8, max_size=16, max_objects=2)
    model_cfg = get_preset("shapes_cpu", **TINY_MODEL)  # strings are parsed by the field types
    train_cfg = with_overrides(train_preset("shapes_cpu"), {**TINY_TRAIN, "epochs": "2"})
    lines = []
    result = run_demo(tmp_path / "data", tmp_path / "run", shapes=shapes, model_cfg=model_cfg,
                      train_cfg=train_cfg, num_pictures=2, report=lines.append, num_visualized=1)
    assert shapes_dataset_is_ready(tmp_path / "data", shapes)
    assert {p.name for p in result.figures} == {"loss.png", "ap.png", "detections.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in result.figures)
    assert set(result.metrics) >= {"AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"} and "AP50" in result.table
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()).keys() == result.metrics.keys()
    # a second run finds the data and the finished checkpoint: nothing is retrained
    again = run_demo(tmp_path / "data", tmp_path / "run", shapes=shapes, model_cfg=model_cfg,
                     train_cfg=train_cfg, num_pictures=2, report=lines.append, num_visualized=1)
    assert "shapes dataset found" in lines[-2] and "continuing" in lines[-1]
    assert again.metrics == pytest.approx(result.metrics, nan_ok=True)
