"""Loading a detector (ours or official) and an image file, for the visualizer.

Both checkpoint kinds (told apart by :func:`ddetr_edu.checkpoints.read_checkpoint`) are
accepted:

* ours (``"ddetr_edu"``, written by ``ddetr_edu.training``): ``model_config`` rebuilds the
  detector; the evaluation resize comes from its ``train_config``;
* official Deformable DETR (``"official"``, ``main.py``), converted by ``ddetr_edu.checkpoints``;
  COCO's evaluation resize (short side 800, long side <= 1333).

Anything else (a missing file, a file ``torch.load`` cannot read, a dict of another kind) is a
clear error: ``FileNotFoundError`` or ``ValueError`` naming the file and what was expected.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor, nn

from ddetr_edu.checkpoints import CheckpointKind, load_official_checkpoint, read_checkpoint
from ddetr_edu.data.folders import transform_config
from ddetr_edu.data.images import load_rgb_image
from ddetr_edu.data.transforms import TransformConfig, build_eval_transforms


@dataclass
class LoadedDetector:
    """A detector ready to look at images."""

    model: nn.Module  # DeformableDETR in eval mode
    kind: CheckpointKind  # "ddetr_edu" or "official"
    transforms: TransformConfig  # the evaluation resize of its training recipe
    class_names: list[str] | None = None  # None: labels are printed as "class <i>"


def load_detector(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedDetector:
    """The detector stored in ``path`` (see the module docstring for the accepted kinds)."""
    from ddetr_edu.config import config_from_dict
    from ddetr_edu.models import build_detector
    from ddetr_edu.training.config import TrainConfig

    kind, checkpoint = read_checkpoint(path)
    if kind == "ddetr_edu":
        model = build_detector(config_from_dict(checkpoint["model_config"]))
        model.load_state_dict(checkpoint["model"])
        recipe = transform_config(TrainConfig.from_dict(checkpoint["train_config"]))
        loaded = LoadedDetector(model, kind, recipe)
    else:
        loaded = LoadedDetector(load_official_checkpoint(checkpoint), kind, TransformConfig.coco())
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
