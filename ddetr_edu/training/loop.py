"""The epoch loop: train, step the schedule, evaluate, checkpoint; resume; Ctrl-C; NaN.

:func:`train_loop` is independent of the model and the data format: it takes a model, a
criterion, two datasets, a collate function and two callables (``postprocess`` and
``score``). :func:`ddetr_edu.training.fit.fit` builds those from configs and calls it.

Files written into ``run_dir`` (rank 0 only, atomically):

* ``checkpoint_last.pth``: after every epoch (what ``--resume`` continues from);
* ``checkpoint_best.pth``: the epoch with the best validation AP so far;
* ``checkpoint_interrupted.pth``: on Ctrl-C or SIGTERM (:mod:`ddetr_edu.training.stopping`), the
  state between two steps of the epoch (with the epoch's loss sums so far), or after its training
  but before its evaluation and ``checkpoint_last.pth`` (resuming does those first); deleted once
  a later ``checkpoint_last.pth`` is written;
* ``log.jsonl``: the logbook (see :mod:`ddetr_edu.training.logbook`);
* ``run.lock``: held while the run lives, so that no second run writes into the same folder
  (:mod:`ddetr_edu.training.run_lock`).

A new run (no ``resume``, or a checkpoint from another folder) replaces these files; resuming
from a checkpoint of ``run_dir`` keeps them and cuts the logbook back to the records that
checkpoint had seen. So a run stopped anywhere (Ctrl-C, SIGTERM, a kill) and resumed from its
latest checkpoint ends with the weights, checkpoints and log records of a run that never stopped
(only the timings differ). Temporary files that a killed process left are removed when a run
starts. Messages number epochs from 1, as the progress line "epoch 1/3" does.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from ddetr_edu.checkpoints.reading import load_checkpoint
from ddetr_edu.checkpoints.training_state import (atomic_torch_save, build_checkpoint, remove_stale_temporaries,
                                                  restore_training_state)
from ddetr_edu.data.loader import build_dataloader
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import DistributedContext, barrier, rank_zero_print, wrap_model
from ddetr_edu.training.engine import (LossMeans, TrainState, evaluate, make_grad_scaler, seed_everything, timed,
                                       train_one_epoch)
from ddetr_edu.training.logbook import AP_KEYS, Logbook, read_log
from ddetr_edu.training.optim import build_optimizer, build_scheduler
from ddetr_edu.training.run_lock import RunLock, acquire_run_lock
from ddetr_edu.training.stopping import StopSignals, Terminated

LAST, BEST, INTERRUPTED = "checkpoint_last.pth", "checkpoint_best.pth", "checkpoint_interrupted.pth"
LOG = "log.jsonl"
RUN_FILES = (LAST, BEST, INTERRUPTED, LOG)  # what a run writes into its folder

ScoreFn = Callable[[list[dict[str, Any]]], tuple[dict[str, float], str]]  # -> (metrics, table)


@dataclass
class FitResult:
    """What a training run ended with."""

    run_dir: Path
    epochs_completed: int
    best_ap: float
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    table: str = ""  # the last evaluation's COCO table
    interrupted: bool = False  # True after Ctrl-C or SIGTERM (see checkpoint_interrupted.pth)
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (unwrapped)
    stop_signal: int | None = None  # the signal that stopped it (signal.SIGINT or SIGTERM), when interrupted


@dataclass
class TrainingRun:
    """What the steps of one :func:`train_loop` run share; ``state`` changes as it trains."""

    model: nn.Module  # unwrapped: checkpoints, evaluation and the epoch callback use it
    train_model: nn.Module  # DDP-wrapped under torchrun (else ``model``): the training steps use it
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    state: TrainState
    cfg: TrainConfig
    run_dir: Path
    model_config: dict[str, Any]  # stored in every checkpoint
    context: DistributedContext
    device: torch.device
    logbook: Logbook
    say: Callable[[str], None]  # progress lines (rank 0, when verbose)
    table: str = ""  # the last evaluation's table
    epoch_end: dict[str, Any] | None = None  # the checkpoint of an epoch whose end (evaluation, save) is due
    class_names: list[str] | None = None  # the training set's classes, label order (stored in checkpoints)
    signals: StopSignals = field(default_factory=StopSignals)  # Ctrl-C / SIGTERM during the epochs
    lock: RunLock | None = None  # run.lock of run_dir (rank 0)

    def train_epoch(self, train_set: Dataset, collate_fn: Callable) -> None:
        """One epoch (the rest of it, after resuming mid-epoch), then the schedule's step."""
        cfg, state, context = self.cfg, self.state, self.context
        loader = build_dataloader(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers,
                                  epoch=state.epoch, skip_batches=state.step_in_epoch, collate_fn=collate_fn,
                                  rank=context.rank, world_size=context.world_size)
        means, seconds = timed(lambda: train_one_epoch(
            self.train_model, self.criterion, loader, self.optimizer, cfg, state,
            device=self.device, context=context, scaler=self.scaler, logbook=self.logbook, signals=self.signals))
        self.scheduler.step()
        self.logbook.write("epoch", epoch=state.epoch, seconds=seconds, **{f"train_{k}": v for k, v in means.items()})
        steps = state.step_in_epoch
        state.epoch += 1
        state.step_in_epoch = 0
        self.epoch_end = self.checkpoint(0, epoch_end_due=True)  # what Ctrl-C saves until the epoch's end is done
        self.say(f"epoch {state.epoch}/{cfg.epochs}: loss {means.get('loss', float('nan')):.4f} "
                 f"({seconds:.1f} s, {steps} steps)")

    def evaluate_epoch(self, val_set: Dataset, collate_fn: Callable, postprocess: Callable, score: ScoreFn) -> bool:
        """Score the model on ``val_set`` (rank 0 scores, every rank gets the metrics); True when
        the AP beats the best so far."""
        state = self.state
        (metrics, self.table), _ = evaluate(self.model, val_set, collate_fn, postprocess, score, self.cfg,
                                            device=self.device, context=self.context, signals=self.signals)
        state.last_metrics = {k: float(metrics[k]) for k in AP_KEYS if k in metrics}
        self.logbook.write("eval", epoch=state.epoch, **state.last_metrics)
        self.say(f"epoch {state.epoch}: AP {state.last_metrics.get('AP', float('nan')):.3f} "
                 f"AP50 {state.last_metrics.get('AP50', float('nan')):.3f}")
        if state.last_metrics.get("AP", -1.0) > state.best_ap:
            state.best_ap = state.last_metrics["AP"]
            return True
        return False

    def end_epoch(self, evaluation: tuple[Dataset, Callable, ScoreFn] | None, collate_fn: Callable,
                  epoch_callback: Callable[[nn.Module, int], None] | None) -> None:
        """After an epoch's training: evaluate (when due; ``evaluation`` = (val_set, postprocess,
        score) or None), save ``checkpoint_last.pth`` (and ``checkpoint_best.pth`` on a new best
        AP), run the callback; then the epoch is done."""
        state = self.state
        improved = False
        self.signals.check()
        if evaluation is not None and _should_evaluate(state.epoch, self.cfg):
            val_set, postprocess, score = evaluation
            improved = self.evaluate_epoch(val_set, collate_fn, postprocess, score)
        checkpoint = self.checkpoint(0)
        self.save(LAST, checkpoint)
        if self.context.is_main:
            (self.run_dir / INTERRUPTED).unlink(missing_ok=True)  # older than the checkpoint just written
        if improved:
            self.save(BEST, checkpoint)
        if epoch_callback is not None and self.context.is_main:
            epoch_callback(self.model, state.epoch)
        barrier(self.context)
        self.epoch_end = None
        if state.epoch < self.cfg.epochs:  # after the last epoch everything is saved: the run just ends
            self.signals.stop_if_any_rank_was_signalled()  # torchrun: all ranks stop here together

    def checkpoint(self, step_in_epoch: int, rng: dict | None = None, epoch_end_due: bool = False) -> dict[str, Any]:
        """The checkpoint of now (its tensors are the live ones: save it before training goes on);
        ``rng``: the random states to store (default: now)."""
        state = self.state
        return build_checkpoint(
            model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
            epoch=state.epoch, step_in_epoch=step_in_epoch, global_step=state.global_step,
            best_ap=state.best_ap, model_config=self.model_config, train_config=self.cfg.to_dict(),
            metrics=state.last_metrics, rng=rng, log_records=self.logbook.count, epoch_end_due=epoch_end_due,
            class_names=self.class_names,
            epoch_sums=state.epoch_means.to_dict() if step_in_epoch and state.epoch_means is not None else None,
        )

    def save(self, name: str, checkpoint: dict[str, Any]) -> None:
        """Write ``checkpoint`` to ``run_dir/name`` atomically (rank 0 only)."""
        if self.context.is_main:
            atomic_torch_save(checkpoint, self.run_dir / name)

    def save_interrupted(self, stop: KeyboardInterrupt) -> None:
        """Ctrl-C or SIGTERM (``stop``): save where training stands (between two steps, or an epoch
        whose end is due) and say so, numbering epochs from 1."""
        state = self.state
        checkpoint = self.epoch_end or self.checkpoint(state.step_in_epoch, rng=state.rng_at_step_start)
        self.save(INTERRUPTED, checkpoint)
        by = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        self.say(f"{'' if by == 'SIGTERM' else chr(10)}interrupted by {by} "  # Ctrl-C: a new line after the ^C
                 f"{stopped_where(checkpoint, self.cfg.epochs)}; saved {self.run_dir / INTERRUPTED}")

    def result(self, stop: KeyboardInterrupt | None = None) -> FitResult:
        """What the run ended with; ``stop``: the Ctrl-C / SIGTERM that interrupted it."""
        state = self.state
        signum = None if stop is None else getattr(stop, "signum", signal.SIGINT)
        return FitResult(self.run_dir, state.epoch, state.best_ap, state.last_metrics, self.table, stop is not None,
                         self.model, signum)


def stopped_where(checkpoint: dict[str, Any], epochs: int) -> str:
    """Where a checkpoint stands, epochs numbered from 1: "in epoch 2/3 after step 5"."""
    epoch, step = checkpoint["epoch"], checkpoint["step_in_epoch"]
    if checkpoint.get("epoch_end_due"):
        return f"after training epoch {epoch}/{epochs}, before its evaluation and checkpoint"
    if step:
        return f"in epoch {epoch + 1}/{epochs} after step {step}"
    return f"after epoch {epoch}/{epochs}" if epoch else f"before epoch 1/{epochs}"


def _should_evaluate(epoch_done: int, cfg: TrainConfig) -> bool:
    return epoch_done % cfg.eval_every == 0 or epoch_done == cfg.epochs


def _resumed_state(checkpoint: dict[str, Any], cfg: TrainConfig, context: DistributedContext) -> TrainState:
    """The counters of ``checkpoint`` (whose RNG states are already restored)."""
    state = TrainState(epoch=checkpoint["epoch"], step_in_epoch=checkpoint["step_in_epoch"],
                       global_step=checkpoint["global_step"], best_ap=checkpoint["best_ap"],
                       last_metrics=dict(checkpoint["metrics"]))
    if state.step_in_epoch and checkpoint.get("epoch_sums") is not None:  # older checkpoints lack the sums
        state.epoch_means = LossMeans.from_dict(checkpoint["epoch_sums"])
    if context.rank > 0:  # the checkpoint holds rank 0's RNG; give the others their own
        seed_everything(cfg.seed + context.rank + 7919 * state.epoch)
    return state


def run_files(run_dir: str | Path) -> list[str]:
    """The names of :data:`RUN_FILES` that ``run_dir`` holds (``[]``: no run there)."""
    return [name for name in RUN_FILES if (Path(run_dir) / name).exists()]


def continues_run_in(run_dir: str | Path, resume: str | Path | None) -> bool:
    """True when ``resume`` is a checkpoint inside ``run_dir``: resuming continues the run there."""
    return resume is not None and Path(resume).resolve().parent == Path(run_dir).resolve()


def _prepare_run_dir(run_dir: Path, resume: str | Path | None, checkpoint: dict[str, Any] | None,
                     say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rank 0: create ``run_dir``, clear killed writes' temporary files and, for a new run, the
    old run's files; return the log records the run starts with (a resumed run: those its
    checkpoint had seen, read from the log beside it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir, (LAST, BEST, INTERRUPTED))
    kept: list[dict[str, Any]] = []
    if checkpoint is not None:
        written = read_log(Path(resume).parent / LOG)
        count = checkpoint.get("log_records")
        kept = written if count is None else written[:count]
        if len(written) > len(kept):
            say(f"{Path(resume).parent / LOG}: dropped {len(written) - len(kept)} records written after "
                f"{Path(resume).name}")
    if not continues_run_in(run_dir, resume):
        for name in run_files(run_dir):
            (run_dir / name).unlink()
    return kept


def start_run(
    model: nn.Module,
    criterion: nn.Module,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    model_config: dict[str, Any],
    resume: str | Path | None,
    context: DistributedContext,
    device: torch.device,
    verbose: bool,
    class_names: list[str] | None = None,
) -> TrainingRun:
    """Seed, move to ``device``, build the optimiser, schedule and scaler, restore ``resume``, lock
    and prepare ``run_dir`` (see the module docstring; :class:`~ddetr_edu.training.run_lock.RunFolderBusy`
    when another run holds it)."""
    say = (lambda line: rank_zero_print(context, line)) if verbose else (lambda line: None)
    checkpoint = load_checkpoint(resume, map_location=device) if resume is not None else None
    lock = acquire_run_lock(run_dir) if context.is_main else None
    try:
        return _start_locked_run(model, criterion, cfg, run_dir, model_config=model_config, resume=resume,
                                 checkpoint=checkpoint, context=context, device=device, say=say,
                                 class_names=class_names, lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _start_locked_run(model: nn.Module, criterion: nn.Module, cfg: TrainConfig, run_dir: Path, *,
                      model_config: dict[str, Any], resume: str | Path | None, checkpoint: dict[str, Any] | None,
                      context: DistributedContext, device: torch.device, say: Callable[[str], None],
                      class_names: list[str] | None, lock: RunLock | None) -> TrainingRun:
    if lock is not None and lock.takeover_message:
        say(lock.takeover_message)
    records = _prepare_run_dir(run_dir, resume, checkpoint, say) if context.is_main else []
    seed_everything(cfg.seed + context.rank)
    model.to(device)
    criterion.to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = make_grad_scaler(cfg.amp, device)
    state = TrainState()
    if checkpoint is not None:
        restore_training_state(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        state = _resumed_state(checkpoint, cfg, context)
        say(f"resumed from {resume}: it stopped {stopped_where(checkpoint, cfg.epochs)}")
    run = TrainingRun(model, wrap_model(model, context, cfg.find_unused_parameters), criterion, optimizer,
                      scheduler, scaler, state, cfg, run_dir, model_config, context, device,
                      Logbook(run_dir / LOG, enabled=context.is_main, records=records), say,
                      class_names=class_names, signals=StopSignals(collective=context.enabled), lock=lock)
    if checkpoint is not None and checkpoint.get("epoch_end_due", False):
        run.epoch_end = run.checkpoint(0, epoch_end_due=True)  # = the checkpoint: its RNG is restored
    return run


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
    """Train ``model`` for ``cfg.epochs`` epochs (continuing ``resume`` if given; without it, or
    with a checkpoint of another folder, the run files already in ``run_dir`` are replaced).

    ``postprocess(outputs, orig_sizes) -> detections`` and ``score(detections) -> (metrics,
    table)`` run the COCO evaluation on ``val_set`` every ``cfg.eval_every`` epochs; pass
    ``None`` for any of the three to skip evaluation. Under torch.distributed ``score`` runs on
    rank 0 alone, with every rank's detections, and its result is sent to every rank. Raises
    :class:`~ddetr_edu.training.engine.NonFiniteLossError` on a NaN/inf loss (checkpoints
    untouched), :class:`~ddetr_edu.disk_full.DiskFullError` on a full disk (the last good
    checkpoint intact), :class:`~ddetr_edu.training.run_lock.RunFolderBusy` when another run
    holds ``run_dir``; returns with ``interrupted=True`` after saving on Ctrl-C or SIGTERM
    (handled while the epochs run, in the main thread: :mod:`ddetr_edu.training.stopping`).

    ``epoch_callback(model, epochs_done)`` (rank 0 only, e.g. a
    :class:`ddetr_edu.viz.recording.SamplingRecorder`) runs once before training starts
    (``epochs_done = 0``, not when resuming) and after every epoch.
    """
    context = context or DistributedContext()
    run = start_run(model, criterion, cfg, Path(run_dir), model_config=model_config or {}, resume=resume,
                    context=context, device=device or torch.device("cpu"), verbose=verbose,
                    class_names=getattr(train_set, "class_names", None))
    evaluation = None if val_set is None or postprocess is None or score is None else (val_set, postprocess, score)
    state = run.state
    if epoch_callback is not None and context.is_main and state.epoch == 0 and state.step_in_epoch == 0:
        epoch_callback(model, 0)  # the untrained model
    try:
        with run.signals:
            try:
                if run.epoch_end is not None:  # resumed after an epoch's training, before its end
                    run.end_epoch(evaluation, collate_fn, epoch_callback)
                while state.epoch < cfg.epochs:
                    run.train_epoch(train_set, collate_fn)
                    run.end_epoch(evaluation, collate_fn, epoch_callback)
            except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM (Terminated); later signals are ignored
                run.signals.acted = True
                run.save_interrupted(stop)
                return run.result(stop)
        return run.result()
    finally:
        if run.lock is not None:
            run.lock.release()


__all__ = ["LAST", "BEST", "INTERRUPTED", "LOG", "RUN_FILES", "FitResult", "ScoreFn", "TrainingRun", "stopped_where",
           "run_files", "continues_run_in", "start_run", "train_loop"]
