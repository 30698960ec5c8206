"""Checks of the full-training chapter's exercises: a learning rate of the paper's schedule, a
clipped gradient and one AdamW step, against ``parameter_groups``/``build_scheduler``,
``clip_grad_norm_`` and ``torch.optim.AdamW`` with the recipe's settings."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ddetr_edu.training.config import train_preset
from ddetr_edu.training.optim import build_optimizer, build_scheduler

from . import assert_close, correct, unanswered

# the chapter's number, from its file name (book/NN_full_training.ipynb): the labels "N.k"
CHAPTER = int(next(Path(__file__).resolve().parents[1].glob("[0-9][0-9]_full_training.ipynb")).name[:2])
EPOCH = 45                                   # exercise 1: the epoch asked about (counted from 0)
GRADIENT = (0.3, -0.4, 1.2)                  # exercise 2: a gradient, and the coco preset's clip
WEIGHT, GRAD = 1.5, -0.02                    # exercise 3: one parameter of the "main" group and its gradient


def tiny_model() -> nn.Module:
    """Three one-weight layers named like the detector's three parameter groups."""
    return nn.ModuleDict({"backbone": nn.Linear(1, 1, bias=False), "sampling_offsets": nn.Linear(1, 1, bias=False),
                          "class_embed": nn.Linear(1, 1, bias=False)})


def check_1(answer, label: str = f"{CHAPTER}.1") -> None:
    """answer: the lr of the sampling offsets during epoch EPOCH of the coco preset."""
    if unanswered(label, answer):
        return
    cfg = train_preset("coco")
    optimizer = build_optimizer(tiny_model(), cfg)
    scheduler = build_scheduler(optimizer, cfg)
    for _ in range(EPOCH):
        optimizer.step()
        scheduler.step()
    expected = next(g["lr"] for g in optimizer.param_groups if g["name"] == "linear_proj")
    assert_close(label, answer, expected, f"the sampling offsets' lr in epoch {EPOCH}", atol=0, rtol=1e-9)
    correct(label)


def check_2(answer, label: str = f"{CHAPTER}.2") -> None:
    """answer: GRADIENT after clipping its norm to the coco preset's clip_max_norm."""
    if unanswered(label, answer):
        return
    parameter = nn.Parameter(torch.zeros(len(GRADIENT), dtype=torch.float64))
    parameter.grad = torch.tensor(GRADIENT, dtype=torch.float64)
    nn.utils.clip_grad_norm_([parameter], train_preset("coco").clip_max_norm)
    assert_close(label, answer, parameter.grad, "the clipped gradient", atol=1e-9)
    correct(label)


def check_3(answer, label: str = f"{CHAPTER}.3") -> None:
    """answer: WEIGHT after the first AdamW step with gradient GRAD, the coco preset's lr, betas
    and weight decay (eps 1e-8)."""
    if unanswered(label, answer):
        return
    cfg = train_preset("coco")
    parameter = nn.Parameter(torch.tensor([WEIGHT], dtype=torch.float64))
    optimizer = torch.optim.AdamW([parameter], lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    parameter.grad = torch.tensor([GRAD], dtype=torch.float64)
    optimizer.step()
    assert_close(label, answer, float(parameter.detach()), "the weight after one step", atol=1e-12, rtol=1e-12)
    correct(label)
