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
    ours = _save(tmp_path, "ours.pth", {"format": CHECKPOINT_FORMAT, "model": {}, "model_config": {},
                                        "train_config": {}, "epoch": 2})
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


def test_our_format_without_its_keys_is_one_line_naming_the_file(tmp_path):
    from ddetr_edu.checkpoints.reading import read_checkpoint
    from ddetr_edu.checkpoints.training_state import CHECKPOINT_FORMAT

    path = tmp_path / "format_only.pth"
    torch.save({"format": CHECKPOINT_FORMAT}, path)
    with pytest.raises(ValueError, match="format_only.pth.*lacks.*model_config"):
        read_checkpoint(path)


def test_cli_on_a_format_only_checkpoint_exits_2(tmp_path, capsys):
    from ddetr_edu.checkpoints.training_state import CHECKPOINT_FORMAT
    from ddetr_edu.cli import main

    path = tmp_path / "format_only.pth"
    torch.save({"format": CHECKPOINT_FORMAT}, path)
    assert main(["eval", "--checkpoint", str(path), "--data", str(tmp_path / "nowhere")]) == 2
    assert main(["train", "--resume", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("lacks" in line for line in err), err
