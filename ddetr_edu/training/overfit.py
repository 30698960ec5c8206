"""The first troubleshooting step: can the model learn one batch by heart?

``train ... --overfit-batch`` (or :func:`overfit_check`) takes the first ``batch_size`` training
images at the evaluation resize (no augmentation: the very same tensors every step), and trains
on them alone until the loss falls below ``target_fraction`` of its first value (default 5%:
from about 33 to below 1.7 for the ``shapes_cpu`` model, which gets there in about 100 steps) or
``max_steps`` steps pass. A model, loss and data that work get there; when it does not, the
problem is in the data (boxes in the wrong format or place, wrong labels), the configuration
(a learning rate too low or too high) or the code, not in the length of the run. Nothing is
written to disk.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from ddetr_edu.config import ModelConfig
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import DistributedContext
from ddetr_edu.training.engine import TrainState, forward_losses, make_grad_scaler, optimizer_step, seed_everything

TARGET_FRACTION = 0.05  # "near zero": the loss below 5% of its first value
MAX_STEPS = 400


@dataclass(frozen=True)
class OverfitResult:
    """How one :func:`overfit_batch` went."""

    reached: bool  # the loss fell below target_fraction * first_loss
    steps: int  # optimiser steps taken
    first_loss: float
    last_loss: float  # the loss of the last forward pass
    target_fraction: float
    images: int  # images in the batch

    def summary(self) -> str:
        """One line saying whether the batch was learnt."""
        target = self.target_fraction * self.first_loss
        trend = f"loss {self.first_loss:.3f} -> {self.last_loss:.3f}"
        if self.reached:
            return (f"overfit check passed: {trend} (below {target:.3f}, {self.target_fraction:.0%} of the first) in "
                    f"{self.steps} steps on one batch of {self.images} images; the model, loss and data can learn")
        return (f"overfit check FAILED: {trend} after {self.steps} steps on one batch of {self.images} images, not "
                f"below {target:.3f} ({self.target_fraction:.0%} of the first); draw a few boxes on their images "
                f"(CocoDetection(...).load_raw) and check the labels, try another lr, or allow more steps "
                f"(--overfit-steps)")


def overfit_batch(model: nn.Module, criterion: nn.Module, batch: tuple, cfg: TrainConfig, *,
                  device: torch.device, target_fraction: float = TARGET_FRACTION,
                  max_steps: int = MAX_STEPS) -> OverfitResult:
    """Train ``model`` on ``batch`` = (images (n, 3, h, w), masks (n, h, w), targets) with the
    optimiser of ``cfg`` until the loss is below ``target_fraction`` of its first value or
    ``max_steps`` steps are done."""
    from ddetr_edu.training.optim import build_optimizer

    if not 0 < target_fraction < 1:
        raise ValueError(f"target_fraction: expected a number in (0, 1), got {target_fraction}")
    if max_steps < 1:
        raise ValueError(f"max_steps: expected >= 1, got {max_steps}")
    model.to(device).train()
    criterion.to(device).train()
    optimizer = build_optimizer(model, cfg)
    scaler = make_grad_scaler(cfg.amp, device)
    state, context = TrainState(), DistributedContext()
    first = last = float("nan")
    for step in range(max_steps + 1):  # the last pass only measures the loss after max_steps steps
        loss, values = forward_losses(model, criterion, batch, cfg, state, device=device, context=context)
        last = values["loss"]
        first = last if step == 0 else first
        if last < target_fraction * first or step == max_steps:
            break
        optimizer_step(model, loss, optimizer, cfg.clip_max_norm, scaler)
        state.step_in_epoch += 1
        state.global_step += 1
    return OverfitResult(last < target_fraction * first, state.global_step, first, last, target_fraction,
                         len(batch[2]))


def overfit_check(model_cfg: ModelConfig | None, train_cfg: TrainConfig, data_root: str | os.PathLike, *,
                  init_from=None, target_fraction: float = TARGET_FRACTION,
                  max_steps: int = MAX_STEPS) -> OverfitResult:
    """:func:`overfit_batch` on the first ``train_cfg.batch_size`` training images of ``data_root``
    for the detector of ``model_cfg`` (``init_from``: start from trained weights, as in
    :func:`ddetr_edu.training.fit.fit`)."""
    from ddetr_edu.checkpoints.init_weights import init_model_config, load_matching, read_init_weights
    from ddetr_edu.data.coco import CocoDetection
    from ddetr_edu.data.collate import collate_detection
    from ddetr_edu.data.folders import find_data, transform_config
    from ddetr_edu.data.transforms import build_eval_transforms
    from ddetr_edu.models import build_detector
    from ddetr_edu.training.engine import resolve_device
    from ddetr_edu.training.fit import build_criterion, check_classes

    paths = find_data(data_root)
    train_set = CocoDetection(paths.train_images, paths.train_annotations,  # type: ignore[arg-type]
                              build_eval_transforms(transform_config(train_cfg)))
    weights = read_init_weights(init_from) if isinstance(init_from, (str, os.PathLike)) else init_from
    if model_cfg is None:
        if weights is None:
            raise ValueError("model_cfg: a ModelConfig is needed unless init_from gives the weights and their config")
        model_cfg = init_model_config(weights, train_set.num_classes)
    check_classes(model_cfg, train_set.class_names)
    seed_everything(train_cfg.seed)
    model = build_detector(model_cfg)
    if weights is not None:
        load_matching(model, weights, train_set.class_names)
    batch = collate_detection([train_set[i] for i in range(min(train_cfg.batch_size, len(train_set)))])
    return overfit_batch(model, build_criterion(model_cfg), batch, train_cfg, device=resolve_device(train_cfg.device),
                         target_fraction=target_fraction, max_steps=max_steps)


__all__ = ["TARGET_FRACTION", "MAX_STEPS", "OverfitResult", "overfit_batch", "overfit_check"]
