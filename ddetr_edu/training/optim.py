"""The optimiser and learning-rate schedule of the paper.

AdamW (lr 2e-4, betas (0.9, 0.999), weight decay 1e-4) over three parameter groups:

=====================  ===========================================  =====================
group                  parameters (by name)                         learning rate
=====================  ===========================================  =====================
``backbone``           names containing ``backbone``                ``lr_backbone`` (2e-5)
``linear_proj``        names containing ``sampling_offsets`` or     ``lr * 0.1``
                       ``reference_points``
``main``               everything else                              ``lr`` (2e-4)
=====================  ===========================================  =====================

The sampling-offset and reference-point projections learn 10x slower because a small change
to them moves *where* the attention looks, which changes the features abruptly. Frozen
parameters (``requires_grad=False``, e.g. the frozen BatchNorm statistics or the ResNet stem)
are left out. A :class:`torch.optim.lr_scheduler.StepLR` multiplies every group's lr by 0.1
after ``lr_drop`` epochs (paper: epoch 40 of 50).
"""
from __future__ import annotations

from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import StepLR

from ddetr_edu.training.config import TrainConfig


def _holds_any(name: str, keywords: tuple[str, ...]) -> bool:
    return any(keyword in name for keyword in keywords)


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Split the trainable parameters of ``model`` into the paper's three AdamW groups.

    Returns a list of ``{"name", "params", "lr", "weight_decay"}`` dicts; empty groups are
    dropped (a model without a backbone has no backbone group). Backbone names win over
    linear-projection names if a name matched both.
    """
    groups: dict[str, list] = {"main": [], "backbone": [], "linear_proj": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if _holds_any(name, cfg.lr_backbone_names):
            groups["backbone"].append(param)
        elif _holds_any(name, cfg.lr_linear_proj_names):
            groups["linear_proj"].append(param)
        else:
            groups["main"].append(param)
    lrs = {
        "main": cfg.lr,
        "backbone": cfg.lr_backbone,
        "linear_proj": cfg.lr * cfg.lr_linear_proj_mult,
    }
    result = [
        {"name": key, "params": params, "lr": lrs[key], "weight_decay": cfg.weight_decay}
        for key, params in groups.items()
        if params
    ]
    if not result:
        raise ValueError("parameter_groups: the model has no trainable parameters")
    return result


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> AdamW:
    """AdamW over :func:`parameter_groups` (``model`` may be DDP-wrapped: names then start with
    ``module.``, which keyword matching ignores)."""
    # fused: one kernel per group updates every tensor (CPU and CUDA). Measured on the shapes_cpu
    # model (179 tensors, 1 thread): 1.3 ms a step, against 5.5 ms for foreach=True (which on a
    # CPU still loops over tensors) and 7.1 ms for the plain loop. Same update rule.
    return AdamW(parameter_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                 fused=True)


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig) -> StepLR:
    """lr_e = lr_0 * 0.1 ** floor(e / lr_drop), stepped once per epoch."""
    return StepLR(optimizer, step_size=cfg.lr_drop, gamma=cfg.lr_drop_factor)


__all__ = ["parameter_groups", "build_optimizer", "build_scheduler"]
