"""The training state in a checkpoint: what it holds, written atomically, restored exactly.

A training checkpoint is a plain dict (so that ``torch.load(..., weights_only=True)`` reads it,
with no arbitrary pickled objects):

===================  =================================================================
key                  value
===================  =================================================================
``format``           ``"ddetr_edu.train.v1"``
``model``            the model's ``state_dict`` (without a DDP ``module.`` prefix)
``optimizer``        ``optimizer.state_dict()``
``scheduler``        ``scheduler.state_dict()``
``scaler``           ``GradScaler.state_dict()`` or ``None`` (fp16 only)
``epoch``            epochs fully completed (the next epoch to run)
``step_in_epoch``    batches already done in epoch ``epoch`` (``0`` except after Ctrl-C)
``global_step``      optimiser steps taken so far
``best_ap``          best validation AP so far (``-1.0`` before the first evaluation)
``rng``              :func:`capture_rng_state`: python, numpy, torch CPU and CUDA states
``model_config``     ``ModelConfig`` as a plain dict
``train_config``     ``TrainConfig`` as a plain dict
``metrics``          the last evaluation's metrics (floats) or ``{}``
``log_records``      records in the run's ``log.jsonl`` when it was written (``None``: unknown)
``epoch_sums``       the running epoch's loss sums (``LossMeans.to_dict``) when
                     ``step_in_epoch > 0``, else ``None``
``epoch_end_due``    ``True``: epoch ``epoch - 1`` is trained but its evaluation and
                     ``checkpoint_last.pth`` are not done yet (Ctrl-C during them); resuming
                     does them first. ``False`` otherwise
``class_names``      the training set's class names in label order (0..C-1), or ``None``
===================  =================================================================

The last four keys came later; a checkpoint without them reads as ``None``, ``None``, ``False``
and ``None`` (read them with ``checkpoint.get(...)``).

Writing goes to a temporary file in the same folder (``.<name>.<pid>.<random>.tmp``), then
``os.replace`` renames it over the target: a crash mid-write never leaves a truncated
``checkpoint_last.pth`` behind, and any exception (Ctrl-C included) removes the temporary file.
Only a killed process leaves one; :func:`remove_stale_temporaries` clears them. The file gets the
permissions of any new file (``0o666`` less the umask: ``0o644`` with the usual ``022``). Reading
one back (and telling it from an official Deformable DETR checkpoint) is
:mod:`ddetr_edu.checkpoints.reading`.
"""
from __future__ import annotations

import json
import os
import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddetr_edu.disk_full import disk_full_error

CHECKPOINT_FORMAT = "ddetr_edu.train.v1"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same folder + ``os.replace``;
    a full disk is a :class:`~ddetr_edu.disk_full.DiskFullError` naming ``path`` (the previous
    file intact, the temporary one removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # mode 0o666 less the umask, as for any new file (mkstemp would give 0o600)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:  # Ctrl-C and SystemExit too: no temporary file outlives the call
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        full = disk_full_error(error, path, f"{kept} and no partial file is left")
        if full is not None:
            raise full from None
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_torch_save` left for ``folder/<name>`` when its
    process was killed mid-write; returns them."""
    stale = [tmp for name in names for tmp in Path(folder).glob(f".{name}.*.tmp") if tmp.is_file()]
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def capture_rng_state() -> dict[str, Any]:
    """Every random number generator the training loop touches, as weights_only-safe values.

    numpy's state holds an ndarray, which ``weights_only`` loading refuses, so its key array is
    stored as an int64 tensor.
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored when CUDA exists)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or anything with ``.module``) wrapper."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def build_checkpoint(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    epoch: int,
    step_in_epoch: int,
    global_step: int,
    best_ap: float,
    model_config: dict[str, Any],
    train_config: dict[str, Any],
    metrics: dict[str, float] | None = None,
    rng: dict[str, Any] | None = None,
    log_records: int | None = None,
    epoch_end_due: bool = False,
    class_names: list[str] | None = None,
    epoch_sums: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict described in the module docstring.

    ``rng`` is a :func:`capture_rng_state` result to store; by default the states are captured now.
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": int(epoch),
        "step_in_epoch": int(step_in_epoch),
        "global_step": int(global_step),
        "best_ap": float(best_ap),
        "rng": rng if rng is not None else capture_rng_state(),
        "model_config": model_config,
        "train_config": train_config,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "log_records": None if log_records is None else int(log_records),
        "epoch_sums": epoch_sums,
        "epoch_end_due": bool(epoch_end_due),
        "class_names": None if class_names is None else [str(name) for name in class_names],
    }


def config_changes(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``["d_model 64 -> 128", ...]``: the fields of two config dicts (nested dicts flattened to
    their leaf names, as ``--set`` names them) whose values differ; tuples equal lists."""
    def leaves(values: dict[str, Any]) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for name, value in values.items():
            flat.update(leaves(value) if isinstance(value, dict) else {name: value})
        return flat

    old, new = leaves(json.loads(json.dumps(saved))), leaves(json.loads(json.dumps(wanted)))
    return [f"{name} {old.get(name)} -> {new.get(name)}" for name in {**old, **new}
            if old.get(name) != new.get(name)]


def restore_training_state(
    checkpoint: dict[str, Any],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    restore_rng: bool = True,
) -> None:
    """Load weights, optimiser, scheduler, scaler and RNG states from ``checkpoint`` in place."""
    unwrap_model(model).load_state_dict(checkpoint["model"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler") is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    if restore_rng:
        restore_rng_state(checkpoint["rng"])


__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_torch_save",
    "remove_stale_temporaries",
    "capture_rng_state",
    "restore_rng_state",
    "unwrap_model",
    "build_checkpoint",
    "config_changes",
    "restore_training_state",
]
