"""The shipped reference model: its files load with the safe loader, are small, and re-evaluated on
the deterministic validation split they give the COCO AP their card states (and at least 0.65)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ddetr_edu.checkpoints import reference
from ddetr_edu.config import config_from_dict, get_preset
from ddetr_edu.data.folders import build_val_dataset
from ddetr_edu.data.shapes import SHAPE_NAMES, ShapesConfig, make_shapes_dataset
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.fit import evaluate_model

MAX_WEIGHTS_BYTES = 3_000_000


def test_the_reference_files_are_small_and_hold_a_model_state_only():
    assert reference.WEIGHTS_FILE.stat().st_size <= MAX_WEIGHTS_BYTES
    state = torch.load(reference.WEIGHTS_FILE, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) and v.dtype in (torch.float32, torch.int64) for v in state.values())
    card = reference.reference_card()
    assert config_from_dict(card["model_config"]) == get_preset("shapes_cpu")  # the preset, trained longer
    # the card predates ShapesConfig.shapes / class_names: those fields read as their defaults
    assert ShapesConfig(**card["shapes_config"]) == reference.REFERENCE_SHAPES
    assert card["class_names"] == list(SHAPE_NAMES)
    assert card["metrics"]["AP"] >= 0.65


def test_the_reference_card_says_the_command_that_made_it():
    card = reference.reference_card()
    assert card["command"].startswith("make reference-model")
    assert TrainConfig.from_dict(card["train_config"]) == reference.reference_train_config()


def test_a_missing_reference_model_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(reference, "CARD_FILE", tmp_path / "missing.json")
    with pytest.raises(ValueError, match="make reference-model"):
        reference.reference_card()


def test_the_reference_model_reaches_the_ap_its_card_states(tmp_path):
    """About 20 s on 2 cores: 200 validation images of 128 px written again (the training images
    are not needed: each image is drawn from its own seed) and evaluated with pycocotools."""
    model, card = reference.load_reference_model()
    assert config_from_dict(card["model_config"]).num_classes == len(card["class_names"])
    make_shapes_dataset(tmp_path, dataclasses.replace(reference.REFERENCE_SHAPES, num_train=0), num_workers=1)
    train_cfg = TrainConfig.from_dict(card["train_config"])
    metrics, _ = evaluate_model(model, build_val_dataset(tmp_path, train_cfg), train_cfg, device=torch.device("cpu"))
    assert metrics.stats["AP"] == pytest.approx(card["metrics"]["AP"], abs=0.005)
    assert metrics.stats["AP50"] == pytest.approx(card["metrics"]["AP50"], abs=0.005)
    assert metrics.stats["AP"] >= 0.65
