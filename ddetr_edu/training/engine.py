"""The training engine: one optimiser step, one epoch, one evaluation pass.

One step, for a batch of images (n, 3, h, w), padding masks (n, h, w) and targets:

    outputs = model(images, masks)                 # autocast to bf16/fp16 on CUDA if asked
    losses  = criterion(outputs, targets)          # float32; losses["loss"] is the weighted sum
    loss.backward(); clip ||grad||_2 <= 0.1; optimizer.step()

A loss that is NaN or infinite stops training at once with :class:`NonFiniteLossError`, which
names the epoch, the step and the loss terms; the checkpoint on disk is the last good one.

The data order of epoch ``e`` depends only on ``(seed, e)`` and the loader's worker seeds come
from a generator seeded the same way (:func:`ddetr_edu.data.loader.build_dataloader`). Together
with the RNG states saved in the checkpoint this makes a resumed run bit-identical to an
uninterrupted one on the CPU.

Evaluation: every process predicts its share of the images, :func:`predict` gathers all the
detections onto every rank, and :func:`evaluate` scores them on rank 0 alone and sends the
metrics to the others.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ddetr_edu.checkpoints.training_state import capture_rng_state
from ddetr_edu.data.loader import build_dataloader
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import DistributedContext, all_gather_objects, all_reduce_mean, run_on_main
from ddetr_edu.training.logbook import Logbook
from ddetr_edu.training.matcher import check_labels
from ddetr_edu.training.stopping import StopSignals

STOP_KEY = "_stop"  # all-reduced with the loss values: > 0 when some rank got SIGTERM/SIGINT


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before touching any checkpoint."""


@dataclass
class TrainState:
    """Where training stands; updated in place so that Ctrl-C knows how far it got."""

    epoch: int = 0  # the epoch running now (= epochs completed, between epochs)
    step_in_epoch: int = 0  # optimiser steps done in this epoch
    global_step: int = 0  # optimiser steps done in total
    best_ap: float = -1.0  # best validation AP so far (-1 before the first evaluation)
    last_metrics: dict[str, float] = field(default_factory=dict)
    rng_at_step_start: dict[str, Any] | None = None  # RNG before the running step loaded its batch
    epoch_means: LossMeans | None = None  # the loss sums of the running epoch's steps so far


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def autocast_context(amp: str | None, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp``: "bf16" on CUDA or the CPU, "fp16" on CUDA; a no-op for
    ``amp=None``. (bf16 on the CPU is how the test suite runs the mixed-precision path.)"""
    if amp is None:
        return contextlib.nullcontext()
    if device.type not in ("cuda", "cpu") or (amp == "fp16" and device.type != "cuda"):
        raise ValueError(f"amp={amp!r} needs a CUDA device (bf16 also runs on the CPU), got device {device}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(amp: str | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (bf16 has float32's range and needs none)."""
    if amp == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def to_float32(outputs: Any) -> Any:
    """The model's output dict with every floating tensor cast to float32 (losses run in fp32)."""
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: to_float32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(to_float32(v) for v in outputs)
    return outputs


def move_targets(targets: list[dict], device: torch.device) -> list[dict]:
    """Targets with their tensors on ``device`` (ints such as ``image_id`` untouched); the copies
    are non-blocking (a blocking copy to a GPU waits for it)."""
    return [{k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in t.items()}
            for t in targets]


def read_losses(loss_dict: dict[str, Tensor]) -> dict[str, float]:
    """The loss terms as floats, read from the device in one copy (one host sync, not one per term)."""
    keys = list(loss_dict)
    values = torch.stack([loss_dict[k].detach().float() for k in keys]).tolist() if keys else []
    return dict(zip(keys, values))


def _loss_message(state: TrainState, values: dict[str, float]) -> str:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
    return (
        f"non-finite loss at epoch {state.epoch + 1}, step {state.step_in_epoch + 1} (global step "
        f"{state.global_step + 1}): non-finite terms {sorted(bad)}; all terms: {shown}. Training stopped; "
        f"the last checkpoint on disk is from before this epoch. Try a lower lr, a smaller "
        f"clip_max_norm or amp=None."
    )


def progress_enabled(context: DistributedContext) -> bool:
    """Progress bars on rank 0 of an interactive terminal only."""
    return context.is_main and sys.stderr.isatty()


class LossMeans:
    """Sums of the loss terms over the epoch and over the window since the last log line.

    A checkpoint saved in the middle of an epoch stores them (:meth:`to_dict`, plain floats), so
    that the epoch's means after resuming cover all its steps, as in a run that never stopped.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.window: dict[str, float] = {}
        self.window_steps = 0

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.window[key] = self.window.get(key, 0.0) + value
        self.steps += 1
        self.window_steps += 1

    def epoch_means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "steps": self.steps, "window": dict(self.window),
                "window_steps": self.window_steps}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> LossMeans:
        """The sums of :meth:`to_dict` (``None``: empty sums)."""
        means = cls()
        if values:
            means.sums = {k: float(v) for k, v in values["sums"].items()}
            means.window = {k: float(v) for k, v in values["window"].items()}
            means.steps, means.window_steps = int(values["steps"]), int(values["window_steps"])
        return means

    def take_window(self) -> dict[str, float]:
        """The means since the last call (a smoother curve than single steps), then a new window."""
        means = {k: v / max(self.window_steps, 1) for k, v in self.window.items()}
        self.window, self.window_steps = {}, 0
        return means


def forward_losses(
    model: nn.Module,
    criterion: nn.Module,
    batch: tuple[Tensor, Tensor, list[dict]],
    cfg: TrainConfig,
    state: TrainState,
    *,
    device: torch.device,
    context: DistributedContext,
    signals: StopSignals | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """(the loss to minimise, its terms as floats averaged over processes) for one batch of
    images (n, 3, h, w), masks (n, h, w) and targets; :class:`NonFiniteLossError` on NaN/inf.

    Under torch.distributed with ``signals``, whether any rank got SIGTERM/SIGINT travels with
    the loss values, and every rank raises the stop here, before the optimiser step
    (:mod:`ddetr_edu.training.stopping`)."""
    images, masks, targets = batch
    if hasattr(criterion, "num_classes"):  # checked on the CPU, before the batch moves
        check_labels(targets, criterion.num_classes)
    images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
    targets = move_targets(targets, device)
    with autocast_context(cfg.amp, device):
        outputs = model(images, masks)
    loss_dict = criterion(to_float32(outputs), targets)  # one host sync: the matching
    values = read_losses(loss_dict)
    collective_stop = signals is not None and signals.collective and context.enabled
    if collective_stop:
        values[STOP_KEY] = signals.flag  # type: ignore[union-attr]
    values = all_reduce_mean(values, context)  # one host sync: the logged values
    if collective_stop:
        signals.stop(values.pop(STOP_KEY))  # type: ignore[union-attr]
    if not math.isfinite(values["loss"]):
        raise NonFiniteLossError(_loss_message(state, values))
    return loss_dict["loss"], values


def optimizer_step(
    model: nn.Module,
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    clip_max_norm: float,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Backward, clip the gradients' total norm to ``clip_max_norm`` (0: no clipping), step.

    With a GradScaler (fp16) the loss is scaled for the backward pass and the gradients are
    unscaled before clipping, so that the true gradients are clipped.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if clip_max_norm > 0:
        # g <- g * min(1, max_norm / ||g||_2), ||g||_2 over all parameters together
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_max_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    state: TrainState,
    *,
    device: torch.device,
    context: DistributedContext,
    scaler: torch.amp.GradScaler | None = None,
    logbook: Logbook | None = None,
    signals: StopSignals | None = None,
) -> dict[str, float]:
    """Train for one epoch (or ``cfg.max_steps_per_epoch`` steps); returns the mean loss terms
    over all the epoch's steps (``state.epoch_means`` carries those before a mid-epoch resume).

    A step (forward, backward, optimiser step, ``state.step_in_epoch`` and ``state.global_step``,
    the loss sums, the log line) runs inside ``signals.deferred()``, and so does fetching its batch:
    Ctrl-C or SIGTERM lands between the two, so ``state`` describes exactly the steps that were
    taken (a batch fetched but not trained on is fetched again on resuming).
    """
    model.train()
    criterion.train()
    if state.step_in_epoch == 0 or state.epoch_means is None:
        state.epoch_means = LossMeans()
    means = state.epoch_means
    step_guard = signals.deferred if signals is not None else contextlib.nullcontext
    limit = cfg.max_steps_per_epoch
    total = len(loader) if limit is None else max(min(len(loader), limit - state.step_in_epoch), 0)
    bar = tqdm(total=total, desc=f"epoch {state.epoch + 1}/{cfg.epochs}", leave=False, disable=not progress_enabled(context))
    batches = signals.guarded(loader) if signals is not None else iter(loader)
    try:
        while limit is None or state.step_in_epoch < limit:
            # Ctrl-C saves this state: resuming re-draws the same augmentation and dropout
            state.rng_at_step_start = capture_rng_state()
            batch = next(batches, None)  # received inside signals.deferred() too
            if batch is None:
                break
            with step_guard():
                loss, values = forward_losses(model, criterion, batch, cfg, state, device=device, context=context,
                                              signals=signals)
                optimizer_step(model, loss, optimizer, cfg.clip_max_norm, scaler)
                state.step_in_epoch += 1
                state.global_step += 1
                means.add(values)
                if logbook is not None and (state.global_step % cfg.log_every == 0 or state.global_step == 1):
                    logbook.write("train", epoch=state.epoch, step=state.step_in_epoch,
                                  global_step=state.global_step, lr=optimizer.param_groups[0]["lr"],
                                  **means.take_window())
                state.rng_at_step_start = None  # the step is done: a stop now saves the RNG of now
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.3f}")
    finally:
        bar.close()
    state.rng_at_step_start = None
    state.epoch_means = None
    return means.epoch_means()


Predictions = list[dict[str, Any]]  # [{"image_id", "scores" (k,), "labels" (k,), "boxes" (k, 4) xyxy px}]


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    postprocess: Callable[[dict, Tensor], list[dict]],
    *,
    device: torch.device,
    context: DistributedContext,
    amp: str | None = None,
    max_images: int | None = None,
    signals: StopSignals | None = None,
) -> Predictions:
    """Detections for every image of ``loader``, gathered from all processes (on every rank).

    ``postprocess(outputs, target_sizes (n, 2) (h, w))`` maps the model's outputs to boxes in
    pixels of each image's *original* size (``orig_size``), which is what COCO scores.
    ``signals``: during training, each batch is received inside ``signals.deferred()``.
    """
    model.eval()
    predictions: Predictions = []
    seen = 0
    bar = tqdm(total=len(loader), desc="evaluate", leave=False, disable=not progress_enabled(context))
    for images, masks, targets in (signals.guarded(loader) if signals is not None else loader):
        if max_images is not None and seen >= max_images:
            break
        with autocast_context(amp, device):
            outputs = model(images.to(device), masks.to(device))
        sizes = torch.stack([t["orig_size"] for t in targets]).to(device)  # (n, 2) (h, w)
        for target, result in zip(targets, postprocess(to_float32(outputs), sizes)):
            predictions.append({"image_id": int(target["image_id"]),
                                **{k: v.detach().cpu() for k, v in result.items()}})
        seen += len(targets)
        bar.update(1)
    bar.close()
    merged: dict[int, dict] = {}
    for part in all_gather_objects(predictions, context):
        for item in part:  # type: ignore[union-attr]
            merged[item["image_id"]] = item  # DistributedSampler pads by repeating images
    return [merged[k] for k in sorted(merged)]


Score = TypeVar("Score")


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    collate_fn: Callable,
    postprocess: Callable[[dict, Tensor], list[dict]],
    score: Callable[[Predictions], Score],
    cfg: TrainConfig,
    *,
    device: torch.device,
    context: DistributedContext,
    signals: StopSignals | None = None,
) -> tuple[Score, Predictions]:
    """(``score(detections)``, the detections) of ``model`` on ``dataset``.

    Every rank predicts its share of the images and receives all the detections; rank 0 alone
    calls ``score`` and sends its result to the others, so every rank returns the same score.
    A collective call under torch.distributed: every rank must make it.
    """
    loader = build_dataloader(dataset, cfg.batch_size, shuffle=False, seed=cfg.seed, num_workers=cfg.num_workers,
                              collate_fn=collate_fn, rank=context.rank, world_size=context.world_size)
    detections = predict(model, loader, postprocess, device=device, context=context, amp=cfg.amp,
                         max_images=cfg.max_eval_images, signals=signals)
    return run_on_main(lambda: score(detections), context), detections


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    """``(function(), seconds)``."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


__all__ = [
    "NonFiniteLossError",
    "TrainState",
    "seed_everything",
    "resolve_device",
    "autocast_context",
    "make_grad_scaler",
    "to_float32",
    "move_targets",
    "progress_enabled",
    "LossMeans",
    "forward_losses",
    "optimizer_step",
    "train_one_epoch",
    "predict",
    "evaluate",
    "timed",
]
