"""The epoch loop: train, step the schedule, evaluate, checkpoint; resume; Ctrl-C; NaN.

:func:`train_loop` is independent of the model and the data format: it takes a model, a
criterion, two datasets, a collate function and two callables (``postprocess`` and
``score``). :func:`ddetr_edu.training.fit.fit` builds those from configs and calls it.

Files written into ``run_dir`` (rank 0 only, atomically):

* ``checkpoint_last.pth``: after every epoch (what ``--resume`` continues from);
* ``checkpoint_best.pth``: the epoch with the best validation AP so far;
* ``checkpoint_interrupted.pth``: on Ctrl-C, the state in the middle of the epoch;
* ``log.jsonl``: the logbook (see :mod:`ddetr_edu.training.logbook`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from ddetr_edu.training.checkpoint import (
    atomic_torch_save,
    build_checkpoint,
    load_checkpoint,
    restore_training_state,
)
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import DistributedContext, barrier, rank_zero_print, wrap_model
from ddetr_edu.training.engine import (
    TrainState,
    make_grad_scaler,
    make_loader,
    predict,
    seed_everything,
    timed,
    train_one_epoch,
)
from ddetr_edu.training.logbook import AP_KEYS, Logbook
from ddetr_edu.training.optim import build_optimizer, build_scheduler

LAST, BEST, INTERRUPTED = "checkpoint_last.pth", "checkpoint_best.pth", "checkpoint_interrupted.pth"

ScoreFn = Callable[[list[dict[str, Any]]], tuple[dict[str, float], str]]  # -> (metrics, table)


@dataclass
class FitResult:
    """What a training run ended with."""

    run_dir: Path
    epochs_completed: int
    best_ap: float
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    table: str = ""  # the last evaluation's COCO table
    interrupted: bool = False  # True after Ctrl-C (see checkpoint_interrupted.pth)
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (unwrapped)


def _should_evaluate(epoch_done: int, cfg: TrainConfig) -> bool:
    return epoch_done % cfg.eval_every == 0 or epoch_done == cfg.epochs


def train_loop(
    model: nn.Module,
    criterion: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    collate_fn: Callable,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    postprocess: Callable | None = None,
    score: ScoreFn | None = None,
    model_config: dict[str, Any] | None = None,
    resume: str | Path | None = None,
    context: DistributedContext | None = None,
    device: torch.device | None = None,
    verbose: bool = True,
    epoch_callback: Callable[[nn.Module, int], None] | None = None,
) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs (continuing ``resume`` if given).

    ``postprocess(outputs, orig_sizes) -> detections`` and ``score(detections) -> (metrics,
    table)`` run the COCO evaluation on ``val_set`` every ``cfg.eval_every`` epochs; pass
    ``None`` for any of the three to skip evaluation. Raises
    :class:`~ddetr_edu.training.engine.NonFiniteLossError` on a NaN/inf loss (checkpoints
    untouched); returns with ``interrupted=True`` after saving on Ctrl-C.

    ``epoch_callback(model, epochs_done)`` (rank 0 only, e.g. a
    :class:`ddetr_edu.viz.recording.SamplingRecorder`) runs once before training starts
    (``epochs_done = 0``, not when resuming) and after every epoch.
    """
    context = context or DistributedContext()
    device = device or torch.device("cpu")
    run_dir = Path(run_dir)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: rank_zero_print(context, *a)) if verbose else (lambda *a: None)

    seed_everything(cfg.seed + context.rank)
    model.to(device)
    criterion.to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = make_grad_scaler(cfg.amp, device)
    state = TrainState()
    if resume is not None:
        checkpoint = load_checkpoint(resume, map_location=device)
        restore_training_state(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        state = TrainState(epoch=checkpoint["epoch"], step_in_epoch=checkpoint["step_in_epoch"],
                           global_step=checkpoint["global_step"], best_ap=checkpoint["best_ap"],
                           last_metrics=dict(checkpoint["metrics"]))
        if context.rank > 0:  # the checkpoint holds rank 0's RNG; give the others their own
            seed_everything(cfg.seed + context.rank + 7919 * state.epoch)
        say(f"resumed from {resume}: epoch {state.epoch}, step {state.step_in_epoch}")
    train_model = wrap_model(model, context, cfg.find_unused_parameters)
    logbook = Logbook(run_dir / "log.jsonl", enabled=context.is_main)
    evaluating = val_set is not None and postprocess is not None and score is not None
    table = ""
    if epoch_callback is not None and context.is_main and state.epoch == 0 and state.step_in_epoch == 0:
        epoch_callback(model, 0)  # the untrained model

    def save(name: str, step_in_epoch: int, rng: dict | None = None) -> None:
        if not context.is_main:
            return
        checkpoint = build_checkpoint(
            model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
            epoch=state.epoch, step_in_epoch=step_in_epoch, global_step=state.global_step,
            best_ap=state.best_ap, model_config=model_config or {}, train_config=cfg.to_dict(),
            metrics=state.last_metrics, rng=rng,
        )
        atomic_torch_save(checkpoint, run_dir / name)

    try:
        while state.epoch < cfg.epochs:
            loader = make_loader(train_set, collate_fn, cfg, context, train=True,
                                 epoch=state.epoch, skip_batches=state.step_in_epoch)
            means, seconds = timed(lambda: train_one_epoch(
                train_model, criterion, loader, optimizer, cfg, state,
                device=device, context=context, scaler=scaler, logbook=logbook))
            scheduler.step()
            logbook.write("epoch", epoch=state.epoch, seconds=seconds,
                          **{f"train_{k}": v for k, v in means.items()})
            say(f"epoch {state.epoch + 1}/{cfg.epochs}: loss {means.get('loss', float('nan')):.4f} "
                f"({seconds:.1f} s, {state.step_in_epoch} steps)")
            state.epoch += 1
            state.step_in_epoch = 0
            improved = False
            if evaluating and _should_evaluate(state.epoch, cfg):
                val_loader = make_loader(val_set, collate_fn, cfg, context, train=False)
                detections = predict(model, val_loader, postprocess, device=device, context=context,
                                     amp=cfg.amp, max_images=cfg.max_eval_images)
                # every rank scores (a distributed COCO evaluator all-gathers); rank 0 alone
                # passes the detections, which predict() already gathered from all ranks
                metrics, table = score(detections if context.is_main else [])
                state.last_metrics = {k: float(metrics[k]) for k in AP_KEYS if k in metrics}
                logbook.write("eval", epoch=state.epoch, **state.last_metrics)
                say(f"epoch {state.epoch}: AP {state.last_metrics.get('AP', float('nan')):.3f} "
                    f"AP50 {state.last_metrics.get('AP50', float('nan')):.3f}")
                if state.last_metrics.get("AP", -1.0) > state.best_ap:
                    state.best_ap = state.last_metrics["AP"]
                    improved = True
            save(LAST, 0)
            if improved:
                save(BEST, 0)
            if epoch_callback is not None and context.is_main:
                epoch_callback(model, state.epoch)
            barrier(context)
    except KeyboardInterrupt:
        save(INTERRUPTED, state.step_in_epoch, rng=state.rng_at_step_start)
        say(f"\ninterrupted at epoch {state.epoch}, step {state.step_in_epoch}: saved "
            f"{run_dir / INTERRUPTED}; continue with --resume {run_dir / INTERRUPTED}")
        return FitResult(run_dir, state.epoch, state.best_ap, state.last_metrics, table, True, model)
    return FitResult(run_dir, state.epoch, state.best_ap, state.last_metrics, table, False, model)


__all__ = ["LAST", "BEST", "INTERRUPTED", "FitResult", "ScoreFn", "train_loop"]
