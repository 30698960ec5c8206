"""One place tells a checkpoint's kind: ours, official, or a clear error naming the file."""
from __future__ import annotations

import argparse

import pytest
import torch

from ddetr_edu.checkpoints import (CHECKPOINT_FORMAT, kind_of, load_checkpoint, load_official_checkpoint,
                                   read_checkpoint)


def _save(tmp_path, name, content):
    path = tmp_path / name
    torch.save(content, path)
    return path


def test_ours_and_official_are_told_apart(tmp_path):
    ours = _save(tmp_path, "ours.pth", {"format": CHECKPOINT_FORMAT, "model": {}, "epoch": 2})
    official = _save(tmp_path, "official.pth", {"model": {"w": torch.zeros(1)}, "args": argparse.Namespace()})
    kind, content = read_checkpoint(ours)
    assert kind == "ddetr_edu" and content["epoch"] == 2
    assert read_checkpoint(official)[0] == "official"
    assert load_checkpoint(ours)["epoch"] == 2
    with pytest.raises(ValueError, match="official Deformable DETR checkpoint, not a ddetr_edu") as error:
        load_checkpoint(official)
    assert str(official) in str(error.value) and "load_official_checkpoint" in str(error.value)
    with pytest.raises(ValueError, match="is a ddetr_edu training checkpoint, not an official one"):
        load_official_checkpoint(ours)


@pytest.mark.parametrize("content, found", [
    ({"model": {"w": torch.zeros(1)}}, "keys ['model']"),  # 'model' without 'args'
    ({"format": "ddetr_edu.train.v0", "model": {}}, "format 'ddetr_edu.train.v0'"),
    (torch.zeros(3), "a Tensor"),
])
def test_neither_kind_is_a_value_error_naming_the_file(tmp_path, content, found):
    path = _save(tmp_path, "foreign.pth", content)
    assert kind_of(torch.load(path, weights_only=True)) is None
    for read in (read_checkpoint, load_checkpoint):
        with pytest.raises(ValueError, match="neither a ddetr_edu training checkpoint") as error:
            read(path)
        assert str(path) in str(error.value) and found in str(error.value)


@pytest.mark.parametrize("text", ["hello", ""])
def test_unreadable_files_are_a_value_error_naming_the_file(tmp_path, text):
    path = tmp_path / "notes.pth"
    path.write_text(text)
    with pytest.raises(ValueError, match="not a checkpoint torch.load can read") as error:
        read_checkpoint(path)
    assert str(path) in str(error.value) and "official Deformable DETR" in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pth")
