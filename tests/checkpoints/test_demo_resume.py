"""The demo continues its own unfinished run, says why when it cannot, and never replaces a run
made with other settings."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ddetr_edu.checkpoints import CHECKPOINT_FORMAT
from ddetr_edu.config import config_to_dict, get_preset
from ddetr_edu.demo import _resume_point
from ddetr_edu.training.config import train_preset
from ddetr_edu.training.loop import INTERRUPTED, LAST


def _write_last(run_dir, model_cfg, train_cfg):
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}, "model_config": config_to_dict(model_cfg),
                "train_config": train_cfg.to_dict()}, run_dir / LAST)


def test_same_configs_continue_silently(tmp_path):
    model_cfg, train_cfg = get_preset("shapes_cpu"), train_preset("shapes_cpu")
    _write_last(tmp_path, model_cfg, train_cfg)
    lines = []
    assert _resume_point(tmp_path, model_cfg, train_cfg, lines.append) == tmp_path / LAST and lines == []
    assert _resume_point(tmp_path / "empty", model_cfg, train_cfg, lines.append) is None and lines == []


def test_other_configs_are_refused_and_say_which(tmp_path):  # replacing that run would lose it
    model_cfg, train_cfg = get_preset("shapes_cpu"), train_preset("shapes_cpu")
    _write_last(tmp_path, model_cfg, dataclasses.replace(train_cfg, epochs=train_cfg.epochs + 1))
    lines = []
    with pytest.raises(ValueError, match=f"{tmp_path} holds a demo run with other settings "
                                         rf"\(epochs {train_cfg.epochs + 1} -> {train_cfg.epochs}\)"):
        _resume_point(tmp_path, model_cfg, train_cfg, lines.append)
    assert lines == [] and (tmp_path / LAST).is_file()


def test_an_interrupted_run_continues_from_its_interrupted_checkpoint(tmp_path):
    model_cfg, train_cfg = get_preset("shapes_cpu"), train_preset("shapes_cpu")
    _write_last(tmp_path, model_cfg, train_cfg)
    (tmp_path / LAST).rename(tmp_path / INTERRUPTED)  # Ctrl-C before the first epoch ended
    assert _resume_point(tmp_path, model_cfg, train_cfg, print) == tmp_path / INTERRUPTED
    _write_last(tmp_path, model_cfg, train_cfg)  # both: the interrupted one is the newer
    assert _resume_point(tmp_path, model_cfg, train_cfg, print) == tmp_path / INTERRUPTED


def test_an_unreadable_checkpoint_starts_afresh_and_says_why(tmp_path):
    (tmp_path / LAST).write_text("not a checkpoint")
    lines = []
    assert _resume_point(tmp_path, get_preset("shapes_cpu"), train_preset("shapes_cpu"), lines.append) is None
    assert len(lines) == 1 and "cannot continue from" in lines[0] and str(tmp_path / LAST) in lines[0]
