"""Checkpoint files are read with weights_only=True plus argparse.Namespace, nothing else."""
from __future__ import annotations

import argparse

import pytest
import torch

from ddetr_edu.checkpoints import load_official_checkpoint, safe_torch_load
from ddetr_edu.config import BackboneConfig, get_preset
from ddetr_edu.models import build_detector

EXECUTED: list[str] = []


def _record(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class Payload:
    """Unpickling this would call _record: the loader must refuse it before that happens."""

    def __reduce__(self):
        return (_record, ("payload ran",))


def test_namespace_is_allowed(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(hidden_dim=256)}, path)
    loaded = safe_torch_load(path)
    assert isinstance(loaded["args"], argparse.Namespace) and loaded["args"].hidden_dim == 256
    assert torch.equal(loaded["model"]["w"], torch.ones(2))


def test_other_objects_are_refused_without_running(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "args": Payload()}, path)
    EXECUTED.clear()
    with pytest.raises(ValueError, match="refused to load"):
        safe_torch_load(path)
    assert EXECUTED == []


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_torch_load(tmp_path / "nothing.pth")


def test_official_checkpoint_file_roundtrip(tmp_path):
    """An official-format file (Namespace args, aliased shared heads) loads into our model."""
    # every field the official args carry is given, so the test does not follow the preset's tuning
    cfg = get_preset("shapes_cpu", with_box_refine=False, two_stage=False, dec_layers=2, enc_layers=1,
                     arch="small_cnn", num_classes=5, small_cnn_channels=BackboneConfig().small_cnn_channels,
                     d_model=128, n_heads=4, dim_feedforward=256, dropout=0.0, num_queries=20,
                     num_feature_levels=4, enc_n_points=4, dec_n_points=4)
    source = build_detector(cfg)
    ours = source.state_dict()
    official = {}
    for key, value in ours.items():
        key = key.replace("backbone.body.", "backbone.0.body.")
        official[key] = value
        if key.startswith(("class_embed.0.", "bbox_embed.0.")):  # the shared head, twice
            official[key.replace(".0.", ".1.", 1)] = value
    args = argparse.Namespace(backbone="small_cnn", hidden_dim=128, nheads=4, enc_layers=1,
                              dec_layers=2, dim_feedforward=256, dropout=0.0, num_queries=20,
                              num_feature_levels=4, enc_n_points=4, dec_n_points=4,
                              with_box_refine=False, two_stage=False, dataset_file="shapes")
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": official, "args": args, "epoch": 3}, path)
    model = load_official_checkpoint(path, num_classes=5)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours[key]), key
