"""The optimiser follows the paper: three AdamW groups and a x0.1 StepLR drop."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ddetr_edu.training.config import TrainConfig, train_preset
from ddetr_edu.training.optim import build_optimizer, build_scheduler, parameter_groups

from engine_standins import TinyDetector


def _group_names(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: sorted(names[id(p)] for p in g["params"]) for g in optimizer.param_groups}


def test_paper_groups_and_learning_rates():
    model = TinyDetector()
    model.backbone[0].bias.requires_grad_(False)  # frozen parameters are left out
    cfg = train_preset("coco")
    optimizer = build_optimizer(model, cfg)
    groups = _group_names(optimizer, model)
    assert groups["backbone"] == ["backbone.0.weight"]
    assert groups["linear_proj"] == ["sampling_offsets.bias", "sampling_offsets.weight"]
    assert "backbone.0.bias" not in sum(groups.values(), [])
    assert len(groups["main"]) == 6  # class, box and aux box heads, weight + bias
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == pytest.approx({"main": 2e-4, "backbone": 2e-5, "linear_proj": 2e-5})
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)
    assert isinstance(optimizer, torch.optim.AdamW)


def test_ddp_prefix_and_reference_points_are_matched():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = nn.ModuleDict({"reference_points": nn.Linear(2, 2), "head": nn.Linear(2, 2)})

    groups = {g["name"]: len(g["params"]) for g in parameter_groups(Wrapper(), TrainConfig())}
    assert groups == {"main": 2, "linear_proj": 2}


def test_step_lr_drops_by_ten_at_lr_drop():
    model = TinyDetector()
    cfg = TrainConfig(lr_drop=3)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2e-4, 2e-4, 2e-4, 2e-5, 2e-5])


def test_no_trainable_parameters_is_an_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, TrainConfig())
