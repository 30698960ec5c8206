"""Loading a detector (ours or official) and an image file, for the visualizer.

Two checkpoint kinds are recognised:

* ours (``ddetr_edu.train.v1``, written by ``ddetr_edu.training``): ``model_config`` rebuilds the
  detector; the evaluation resize comes from its ``train_config``;
* official Deformable DETR (``main.py``): a dict with ``'model'`` and ``'args'``, converted by
  ``ddetr_edu.checkpoints``; COCO's evaluation resize (short side 800, long side <= 1333).

Anything else (a missing file, a file ``torch.load`` cannot read, a dict of another kind) is a
clear error: ``FileNotFoundError`` or ``ValueError`` naming the file and what was expected.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from ddetr_edu.data.images import load_rgb_image
from ddetr_edu.data.transforms import TransformConfig, build_eval_transforms
from ddetr_edu.training.checkpoint import CHECKPOINT_FORMAT as TRAINING_FORMAT


@dataclass
class LoadedDetector:
    """A detector ready to look at images."""

    model: nn.Module  # DeformableDETR in eval mode
    kind: str  # "ddetr_edu" or "official"
    transforms: TransformConfig  # the evaluation resize of its training recipe
    class_names: list[str] | None = None  # None: labels are printed as "class <i>"


def _read(path: Path):
    from ddetr_edu.checkpoints import safe_torch_load

    try:
        return safe_torch_load(path)
    except FileNotFoundError:
        raise
    except (KeyError, RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a checkpoint torch.load can read (expected a ddetr_edu training "
                         f"checkpoint or an official Deformable DETR .pth): {type(error).__name__}: "
                         f"{error}") from None


def load_detector(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedDetector:
    """The detector stored in ``path`` (see the module docstring for the accepted kinds)."""
    from ddetr_edu.checkpoints import load_official_checkpoint
    from ddetr_edu.config import config_from_dict
    from ddetr_edu.models import build_detector

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = _read(path)
    if isinstance(checkpoint, dict) and checkpoint.get("format") == TRAINING_FORMAT:
        from ddetr_edu.training.config import TrainConfig
        from ddetr_edu.training.fit import transform_config

        model = build_detector(config_from_dict(checkpoint["model_config"]))
        model.load_state_dict(checkpoint["model"])
        recipe = transform_config(TrainConfig.from_dict(checkpoint["train_config"]))
        loaded = LoadedDetector(model, "ddetr_edu", recipe)
    elif isinstance(checkpoint, dict) and "model" in checkpoint and "args" in checkpoint:
        loaded = LoadedDetector(load_official_checkpoint(checkpoint), "official", TransformConfig.coco())
    else:
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is neither a ddetr_edu training checkpoint (format {TRAINING_FORMAT!r}) "
                         f"nor an official Deformable DETR checkpoint (a dict with 'model' and 'args'); "
                         f"found {found}")
    loaded.model.to(device).eval()
    return loaded


def prepare_image(path: str | os.PathLike, transforms: TransformConfig,
                  short_side: int | None = None) -> tuple[Image.Image, Tensor]:
    """(the original RGB picture, the model input (3, h, w) resized and normalised).

    ``short_side`` overrides the recipe's evaluation scale (the long side keeps the recipe's
    max/eval ratio), e.g. to look at a large photo quickly on a CPU.
    """
    picture = load_rgb_image(path)  # FileNotFoundError / ValueError naming the file
    if short_side is not None:
        if short_side < 32:
            raise ValueError(f"short_side: expected >= 32 pixels, got {short_side}")
        max_size = max(short_side, round(short_side * transforms.max_size / transforms.eval_scale))
        transforms = dataclasses.replace(transforms, eval_scale=short_side, max_size=max_size)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    tensor, _ = build_eval_transforms(transforms)(picture, empty)
    return picture, tensor


__all__ = ["LoadedDetector", "load_detector", "prepare_image"]
