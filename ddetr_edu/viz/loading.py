"""Loading a detector (ours or official) and an image file, for the visualizer.

Both checkpoint kinds (told apart by :func:`ddetr_edu.checkpoints.read_checkpoint`) are
accepted:

* ours (``"ddetr_edu"``, written by ``ddetr_edu.training``): ``model_config`` rebuilds the
  detector; the evaluation resize comes from its ``train_config``; the labels' names from its
  ``class_names`` (checkpoints written before that key existed: "class <i>");
* official Deformable DETR (``"official"``, ``main.py``), converted by ``ddetr_edu.checkpoints``;
  COCO's evaluation resize (short side 800, long side <= 1333); labels are COCO category ids,
  named from :data:`ddetr_edu.viz.coco_names.COCO_CATEGORY_NAMES` ("person", ...).

:func:`load_reference_detector` gives the shipped reference model
(:mod:`ddetr_edu.checkpoints.reference`) the same way, with the names and resize of its card.

The model input is at most ``MAX_SHORT_SIDE`` x ``MAX_LONG_SIDE`` pixels: a larger ``short_side``
is a ValueError (the activations of a 100000-pixel input would not fit in memory).

Anything else (a missing file, a file ``torch.load`` cannot read, a dict of another kind) is a
clear error: ``FileNotFoundError`` or ``ValueError`` naming the file and what was expected.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from PIL import Image
from torch import Tensor

from ddetr_edu.checkpoints import load_official_checkpoint, read_checkpoint
from ddetr_edu.data.folders import transform_config
from ddetr_edu.data.images import load_image
from ddetr_edu.data.transforms import TransformConfig, build_eval_transforms
from ddetr_edu.inference import Detector
from ddetr_edu.viz.coco_names import coco_label_names


MAX_SHORT_SIDE = 2048  # pixels: short side of the model input, at most
MAX_LONG_SIDE = 4096  # pixels: long side of the model input, at most


LoadedDetector = Detector  # model, kind, transforms, class_names; Detector.detect(image) gives boxes


def load_detector(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedDetector:
    """The detector stored in ``path`` (see the module docstring for the accepted kinds); with no
    path at hand, ``ddetr_edu.load_detector()`` gives the reference model."""
    from ddetr_edu.config import config_from_dict
    from ddetr_edu.models import build_detector
    from ddetr_edu.training.config import TrainConfig

    kind, checkpoint = read_checkpoint(path)
    if kind == "ddetr_edu":
        model = build_detector(config_from_dict(checkpoint["model_config"]))
        model.load_state_dict(checkpoint["model"])
        recipe = transform_config(TrainConfig.from_dict(checkpoint["train_config"]))
        loaded = LoadedDetector(model, kind, recipe, stored_class_names(checkpoint, path))
    else:
        model = load_official_checkpoint(checkpoint)
        loaded = LoadedDetector(model, kind, TransformConfig.coco(), coco_label_names(model.cfg.num_classes))
    loaded.model.to(device).eval()
    return loaded


def load_reference_detector(device: str | torch.device = "cpu") -> LoadedDetector:
    """The shipped reference model with its class names and evaluation resize (ValueError, one
    line, when the package lacks its weights or card)."""
    from ddetr_edu.checkpoints.reference import load_reference_model
    from ddetr_edu.training.config import TrainConfig

    model, card = load_reference_model(device)
    recipe = transform_config(TrainConfig.from_dict(card["train_config"]))
    return LoadedDetector(model, "ddetr_edu", recipe, list(card["class_names"]))


def stored_class_names(checkpoint: dict, path: str | os.PathLike) -> list[str] | None:
    """The ``class_names`` list of one of our checkpoints; None when it has none (older ones)."""
    names = checkpoint.get("class_names")
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"checkpoint {path}: class_names must be a list of strings, got {names!r:.80}")
    return list(names)


def check_short_side(short_side: int | None) -> None:
    """ValueError unless ``short_side`` is None (the recipe's scale) or 32..``MAX_SHORT_SIDE``."""
    if short_side is not None and not 32 <= short_side <= MAX_SHORT_SIDE:
        raise ValueError(f"short_side: expected 32 to {MAX_SHORT_SIDE} pixels (the short side of the model "
                         f"input), got {short_side}")


def prepare_image(path: str | os.PathLike, transforms: TransformConfig,
                  short_side: int | None = None) -> tuple[Image.Image, Tensor]:
    """(the original RGB picture, the model input (3, h, w) resized and normalised).

    ``short_side`` (32..``MAX_SHORT_SIDE``) overrides the recipe's evaluation scale (the long
    side keeps the recipe's max/eval ratio, at most ``MAX_LONG_SIDE``), e.g. to look at a large
    photo quickly on a CPU.
    """
    check_short_side(short_side)
    picture = load_image(path)  # FileNotFoundError / ValueError naming the file
    if short_side is not None:
        ratio = transforms.max_size / transforms.eval_scale
        max_size = min(MAX_LONG_SIDE, max(short_side, round(short_side * ratio)))
        transforms = dataclasses.replace(transforms, eval_scale=short_side, max_size=max_size)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    tensor, _ = build_eval_transforms(transforms)(picture, empty)
    return picture, tensor


__all__ = ["MAX_LONG_SIDE", "MAX_SHORT_SIDE", "LoadedDetector", "check_short_side", "load_detector", "load_reference_detector",
           "prepare_image", "stored_class_names"]
