"""``train --init-from`` (fine-tuning), ``--overfit-batch`` and the messages that point to them."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from ddetr_edu.checkpoints.reference import WEIGHTS_FILE
from ddetr_edu.cli import main
from ddetr_edu.config import config_to_dict, get_preset
from ddetr_edu.models import build_detector

TINY_SHAPES = ["--set", "num_train=4", "--set", "num_val=2", "--set", "image_size=32", "--set", "min_size=8",
               "--set", "max_size=16", "--set", "max_objects=2"]
TINY = {"d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 32,
        "small_cnn_channels": (8, 8, 16, 16), "num_queries": 5, "num_feature_levels": 3,
        "attention_backend": "grid_sample"}
FAST = ["--set", "batch_size=2", "--set", "image_size=32", "--set", "max_steps_per_epoch=1", "--epochs", "1"]
FIVE = ["circle", "square", "triangle", "star", "cross"]


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """Shapes data of 3 classes under new names (tent, spark, plus)."""
    out = tmp_path_factory.mktemp("three")
    assert main(["make-shapes", "--out", str(out), "--seed", "4", *TINY_SHAPES,
                 "--set", "shapes=triangle,star,cross", "--set", "class_names=tent,spark,plus"]) == 0
    return out


@pytest.fixture(scope="module")
def five_class_checkpoint(tmp_path_factory):
    """One of our training checkpoints of a tiny 5-class model (as a run writes it)."""
    path = tmp_path_factory.mktemp("five") / "checkpoint_best.pth"
    cfg = get_preset("shapes_cpu", num_classes=5, **TINY)
    torch.manual_seed(1)
    model = build_detector(cfg)
    torch.save({"format": "ddetr_edu.train.v1", "model": model.state_dict(), "model_config": config_to_dict(cfg),
                "train_config": {}, "class_names": FIVE}, path)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.slow
def test_init_from_our_checkpoint_starts_a_new_run_with_a_new_class_head(three_classes, five_class_checkpoint,
                                                                          tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--init-from", str(five_class_checkpoint), "--data", str(three_classes), "--out", str(run),
                 *FAST]) == 0
    out = capsys.readouterr().out
    source = torch.load(five_class_checkpoint, weights_only=True)["model"]
    total = len(source)
    assert (f"loaded {total - 6} of {total} tensors from {five_class_checkpoint}; re-initialised class_embed.* "
            f"(5 -> 3 classes)") in out
    saved = torch.load(run / "checkpoint_last.pth", weights_only=True)
    assert saved["class_names"] == ["tent", "spark", "plus"] and saved["model_config"]["num_classes"] == 3
    assert saved["model_config"]["transformer"]["d_model"] == 32  # the checkpoint's architecture
    assert saved["global_step"] == 1 and saved["epoch"] == 1  # a new run: its own counters and log
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[0]["kind"] == "train" and records[0]["global_step"] == 1
    assert saved["model"]["class_embed.0.weight"].shape == (3, 32)


def test_init_from_and_resume_exclude_each_other(three_classes, five_class_checkpoint, tmp_path, capsys):
    assert main(["train", "--init-from", "reference", "--resume", str(five_class_checkpoint), "--data",
                 str(three_classes), "--out", str(tmp_path / "out")]) == 2
    assert "--init-from and --resume exclude each other" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_resume_of_weights_only_files_is_a_short_line_pointing_to_init_from(three_classes, five_class_checkpoint,
                                                                             tmp_path, capsys):
    assert main(["train", "--resume", str(WEIGHTS_FILE), "--data", str(three_classes), "--out", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert "the shipped reference model's weights (a bare state_dict)" in err and "--init-from reference" in err
    assert len(err) < 400
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(five_class_checkpoint, weights_only=True)["model"], bare)
    assert main(["train", "--resume", str(bare), "--data", str(three_classes), "--out", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert "is a bare state_dict" in err and f"--init-from {bare}" in err and len(err) < 400
    official = tmp_path / "official.pth"
    torch.save({"model": torch.load(bare, weights_only=True), "args": argparse.Namespace(backbone="resnet50")},
               official)
    assert main(["train", "--resume", str(official), "--data", str(three_classes), "--out", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert "is an official Deformable DETR checkpoint" in err and f"--init-from {official}" in err


def test_resume_on_other_classes_advises_init_from_not_num_classes(three_classes, five_class_checkpoint, tmp_path,
                                                                   capsys):
    assert main(["train", "--resume", str(five_class_checkpoint), "--data", str(three_classes), "--out",
                 str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    assert f"start a new run with --init-from {five_class_checkpoint}" in err and "num_classes >=" not in err
    assert main(["train", "--resume", str(five_class_checkpoint), "--set", "num_classes=3", "--data",
                 str(three_classes), "--out", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    assert "num_classes 5 -> 3" in err and f"with --init-from {five_class_checkpoint} instead of --resume" in err


def test_whole_detectors_given_as_pretrained_path_say_what_they_are(three_classes, five_class_checkpoint, tmp_path,
                                                                    capsys):
    official = tmp_path / "official.pth"
    torch.save({"model": torch.load(five_class_checkpoint, weights_only=True)["model"],
                "args": argparse.Namespace(backbone="resnet50")}, official)
    for path, kind in [(five_class_checkpoint, "a ddetr_edu training checkpoint"),
                       (official, "an official Deformable DETR checkpoint")]:
        assert main(["train", "--preset", "singlescale", "--set", f"pretrained_path={path}", "--data",
                     str(three_classes), "--out", str(tmp_path / "out")]) == 2
        err = _one_line_error(capsys)
        assert f"pretrained_path={path} is {kind}" in err and f"use --init-from {path}" in err
    assert not (tmp_path / "out").exists()


def test_another_architecture_exits_2_naming_the_mismatch(three_classes, tmp_path, capsys):
    assert main(["train", "--init-from", "reference", "--set", "d_model=32", "--set", "n_heads=2",
                 "--data", str(three_classes), "--out", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys)
    assert "reference does not fit this model: only" in err and "first mismatches:" in err
    assert not (tmp_path / "out").exists()


def test_overfit_batch_says_in_one_line_whether_it_got_there_and_writes_nothing(three_classes,
                                                                                five_class_checkpoint, tmp_path,
                                                                                capsys):
    out = tmp_path / "out"
    code = main(["train", "--overfit-batch", "--overfit-steps", "2", "--init-from", str(five_class_checkpoint),
                 "--data", str(three_classes), "--out", str(out), "--set", "batch_size=2", "--set", "image_size=32"])
    printed = capsys.readouterr().out.splitlines()
    assert code == 1 and printed[-1].startswith("overfit check FAILED: loss ") and "after 2 steps" in printed[-1]
    assert len(printed) == 2 and printed[0].startswith("overfit check: training on the first 2 training images")
    assert not out.exists()
    assert main(["train", "--overfit-steps", "5", "--data", str(three_classes), "--out", str(out)]) == 2
    assert "--overfit-steps goes with --overfit-batch" in _one_line_error(capsys)
