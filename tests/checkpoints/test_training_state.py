"""Training checkpoints: atomic writes, weights_only loading, RNG round trips, clear errors."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from ddetr_edu.checkpoints import training_state as ckpt
from ddetr_edu.checkpoints import load_checkpoint
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.optim import build_optimizer, build_scheduler


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _checkpoint(model):
    optimizer = build_optimizer(model, TrainConfig())
    scheduler = build_scheduler(optimizer, TrainConfig())
    return ckpt.build_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                                 epoch=3, step_in_epoch=0, global_step=12, best_ap=0.25,
                                 model_config={"hidden_dim": 8, "levels": (1, 2)},
                                 train_config=TrainConfig().to_dict(), metrics={"AP": 0.25})


def test_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = _model()
    path = ckpt.atomic_torch_save(_checkpoint(model), tmp_path / "sub" / "checkpoint_last.pth")
    assert sorted(os.listdir(path.parent)) == ["checkpoint_last.pth"]  # no temp file left behind
    loaded = load_checkpoint(path)  # uses weights_only=True
    assert loaded["epoch"] == 3 and loaded["global_step"] == 12 and loaded["best_ap"] == 0.25
    assert TrainConfig.from_dict(loaded["train_config"]) == TrainConfig()
    other = _model()
    ckpt.restore_training_state(loaded, model=other, restore_rng=False)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name


def test_rng_states_round_trip():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = ckpt.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    ckpt.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "checkpoint_last.pth"
    ckpt.atomic_torch_save({"format": ckpt.CHECKPOINT_FORMAT, "epoch": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        ckpt.atomic_torch_save({"bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.pth"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_get_the_permissions_of_any_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = ckpt.atomic_torch_save({"epoch": 1}, tmp_path / "checkpoint_last.pth")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_no_temporary_file_outlives_a_failed_write(tmp_path, monkeypatch, stop):
    target = ckpt.atomic_torch_save({"epoch": 1}, tmp_path / "checkpoint_last.pth")

    def half_written(obj, file):
        file.write(b"half a checkpoint")
        raise stop()

    monkeypatch.setattr(ckpt.torch, "save", half_written)
    with pytest.raises(stop):
        ckpt.atomic_torch_save({"epoch": 2}, target)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.pth"]
    assert torch.load(target, weights_only=True)["epoch"] == 1


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    stale = [tmp_path / ".checkpoint_last.pth.4242.0a1b2c3d.tmp", tmp_path / ".checkpoint_best.pth.k9x_2lq.tmp"]
    kept = [tmp_path / "checkpoint_last.pth", tmp_path / ".log.jsonl.12.tmp", tmp_path / "notes.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x")
    removed = ckpt.remove_stale_temporaries(tmp_path, ("checkpoint_last.pth", "checkpoint_best.pth"))
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_config_changes_name_the_fields_that_differ():
    saved = {"transformer": {"d_model": 64, "n_heads": 2}, "levels": (1, 2), "lr": 1e-3}
    same = {"transformer": {"d_model": 64, "n_heads": 2}, "levels": [1, 2], "lr": 1e-3}
    assert ckpt.config_changes(saved, same) == []
    assert ckpt.config_changes(saved, {"transformer": {"d_model": 128, "n_heads": 2}, "levels": [1, 2], "lr": 1e-2}) \
        == ["d_model 64 -> 128", "lr 0.001 -> 0.01"]
