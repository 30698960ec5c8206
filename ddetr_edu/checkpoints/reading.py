"""Which kind of checkpoint a file holds: told here, and nowhere else.

Two kinds are recognised, by the content of the file (never by its name):

* ``"ddetr_edu"``: a training checkpoint written by this library, a dict whose ``format`` is
  ``ddetr_edu.train.v1`` (its keys: :mod:`ddetr_edu.checkpoints.training_state`);
* ``"official"``: a checkpoint of the official Deformable DETR ``main.py``, a dict with
  ``'model'`` (the state dict) and ``'args'`` (the run's ``argparse.Namespace``), converted by
  :mod:`ddetr_edu.checkpoints.official`.

Errors name the file and what was expected: ``FileNotFoundError`` for a missing file,
``ValueError`` for a file ``torch.load`` cannot read safely or a dict of neither kind.

    kind, content = read_checkpoint("runs/demo/checkpoint_best.pth")  # ("ddetr_edu", {...})
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import torch

from ddetr_edu.checkpoints.safe_load import safe_torch_load
from ddetr_edu.checkpoints.training_state import CHECKPOINT_FORMAT

CheckpointKind = Literal["ddetr_edu", "official"]
# what every reader of each kind needs (the full list of ours: training_state.build_checkpoint)
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {"ddetr_edu": ("model", "model_config", "train_config"),
                                             "official": ("model", "args")}


def kind_of(content: Any) -> CheckpointKind | None:
    """The kind of a loaded checkpoint object, or ``None`` when it is neither."""
    if not isinstance(content, Mapping):
        return None
    if content.get("format") == CHECKPOINT_FORMAT:
        return "ddetr_edu"
    if "model" in content and "args" in content:
        return "official"
    return None


def _described(content: Any) -> str:
    """What a file of neither kind holds, for the error message."""
    if not isinstance(content, Mapping):
        return f"a {type(content).__name__}"
    if content and all(isinstance(value, torch.Tensor) for value in content.values()):
        return (f"a bare state_dict of {len(content)} tensors (weights only); to start a new run from it: "
                f"train --init-from FILE")
    fmt = f"format {content['format']!r}, " if "format" in content else ""
    keys = sorted(map(str, content))
    return f"a dict with {fmt}{len(keys)} keys {keys[:8]}{' ...' if len(keys) > 8 else ''}"


def read_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> tuple[CheckpointKind, dict[str, Any]]:
    """``(kind, content)`` of the checkpoint file at ``path`` (read with ``weights_only=True``)."""
    content = safe_torch_load(path, map_location=map_location)
    kind = kind_of(content)
    if kind is None:
        raise ValueError(
            f"{os.fspath(path)} is neither a ddetr_edu training checkpoint (format {CHECKPOINT_FORMAT!r}) "
            f"nor an official Deformable DETR checkpoint (a dict with 'model' and 'args'); "
            f"found {_described(content)}")
    required = REQUIRED_KEYS[kind]
    missing = [key for key in required if key not in content]
    if missing:
        raise ValueError(f"{os.fspath(path)} looks like a {kind} checkpoint but lacks {missing}; "
                         f"expected the keys {list(required)}")
    return kind, content


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A ddetr_edu training checkpoint (the dict of :mod:`~ddetr_edu.checkpoints.training_state`).

    An official Deformable DETR file is a ``ValueError`` pointing to
    :func:`ddetr_edu.checkpoints.load_official_checkpoint`.
    """
    kind, content = read_checkpoint(path, map_location)
    if kind != "ddetr_edu":
        raise ValueError(
            f"{os.fspath(path)} is an official Deformable DETR checkpoint, not a ddetr_edu training "
            f"checkpoint (format {CHECKPOINT_FORMAT!r}); load it with "
            f"ddetr_edu.checkpoints.load_official_checkpoint")
    return content


__all__ = ["CheckpointKind", "REQUIRED_KEYS", "kind_of", "read_checkpoint", "load_checkpoint"]
