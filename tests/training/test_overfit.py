"""``--overfit-batch``: one batch learnt by heart, or a one-line failure."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from engine_standins import NUM_CLASSES, TinyBoxes, TinyDetector

from ddetr_edu.data.collate import collate_detection
from ddetr_edu.training.config import train_preset
from ddetr_edu.training.losses import DetectionLoss
from ddetr_edu.training.matcher import HungarianMatcher
from ddetr_edu.training.overfit import overfit_batch

CFG = dataclasses.replace(train_preset("shapes_cpu"), lr=1e-2, lr_backbone=1e-2, clip_max_norm=0.0)


def _batch():
    data = TinyBoxes(size=2, flip=False)
    return collate_detection([data[0], data[1]])


def test_a_learnable_batch_gets_below_the_target_and_says_so():
    torch.manual_seed(0)
    result = overfit_batch(TinyDetector(dropout=0.0), DetectionLoss(NUM_CLASSES, HungarianMatcher()), _batch(), CFG,
                           device=torch.device("cpu"), target_fraction=0.2, max_steps=300)
    assert result.reached and result.last_loss < 0.2 * result.first_loss and 0 < result.steps < 300
    assert result.summary().startswith(f"overfit check passed: loss {result.first_loss:.3f} -> {result.last_loss:.3f}")
    assert "\n" not in result.summary()


def test_too_few_steps_is_a_failure_naming_what_to_look_at():
    torch.manual_seed(0)
    result = overfit_batch(TinyDetector(dropout=0.0), DetectionLoss(NUM_CLASSES, HungarianMatcher()), _batch(), CFG,
                           device=torch.device("cpu"), max_steps=2)
    assert not result.reached and result.steps == 2
    assert result.summary().startswith("overfit check FAILED: ") and "draw a few boxes" in result.summary()


@pytest.mark.parametrize("options, message", [({"target_fraction": 1.5}, "target_fraction"),
                                              ({"max_steps": 0}, "max_steps")])
def test_impossible_options_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        overfit_batch(TinyDetector(), DetectionLoss(NUM_CLASSES, HungarianMatcher()), _batch(), CFG,
                      device=torch.device("cpu"), **options)
