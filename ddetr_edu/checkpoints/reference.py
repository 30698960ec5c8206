"""The shipped reference model: the ``shapes_cpu`` detector trained well, ready to look at.

Made by one command (``make reference-model`` = ``python -m experiments.reference_model``,
seed 0, about an hour on 2 CPU cores), which trains on :data:`REFERENCE_SHAPES` with
:func:`reference_train_config` and writes two files into ``ddetr_edu/checkpoints/reference/``:

* ``shapes_reference.pt``: the model's ``state_dict`` only (float32), read with the safe loader;
* ``shapes_reference.json``: the model config, the dataset config, the training config, the class
  names, the command, the date and the COCO metrics measured on the validation split.

``load_reference_model()`` rebuilds the detector from those two files; the suite re-evaluates it
on the (deterministic) validation split and checks the stated AP.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddetr_edu.checkpoints.safe_load import safe_torch_load
from ddetr_edu.data.shapes import ShapesConfig

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
WEIGHTS_FILE = REFERENCE_DIR / "shapes_reference.pt"
CARD_FILE = REFERENCE_DIR / "shapes_reference.json"

# Images of 128 px, so that COCO's large range (box area >= 96^2) is reachable: objects of 16 to
# 112 px (log-uniform), 1..4 per image. 4000 training images; 200 validation images (~500 objects).
REFERENCE_SHAPES = ShapesConfig(
    seed=0,
    num_train=4000,
    num_val=200,
    image_size=128,
    min_objects=1,
    max_objects=4,
    min_size=16.0,
    max_size=112.0,
)

REFERENCE_EPOCHS = 50


def reference_train_config(epochs: int = REFERENCE_EPOCHS):
    """The ``shapes_cpu`` training preset on 128 px images for ``epochs`` epochs, the last fifth at lr x0.1."""
    from ddetr_edu.training.config import train_preset, with_epochs

    preset = dataclasses.replace(train_preset("shapes_cpu"), image_size=REFERENCE_SHAPES.image_size, eval_every=5)
    return with_epochs(preset, epochs)


def reference_card() -> dict[str, Any]:
    """The contents of ``shapes_reference.json`` (a ValueError when the package lacks it)."""
    if not CARD_FILE.is_file() or not WEIGHTS_FILE.is_file():
        raise ValueError(f"{REFERENCE_DIR}: the reference model is not there; make it with `make reference-model`")
    return json.loads(CARD_FILE.read_text(encoding="utf-8"))


def load_reference_model(device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The reference detector (eval mode) and its card (configs, class names, metrics)."""
    from ddetr_edu.config import config_from_dict
    from ddetr_edu.models import build_detector

    card = reference_card()
    model = build_detector(config_from_dict(card["model_config"]))
    model.load_state_dict(safe_torch_load(WEIGHTS_FILE))
    return model.to(device).eval(), card


__all__ = ["REFERENCE_DIR", "WEIGHTS_FILE", "CARD_FILE", "REFERENCE_SHAPES", "REFERENCE_EPOCHS",
           "reference_train_config", "reference_card", "load_reference_model"]
