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
