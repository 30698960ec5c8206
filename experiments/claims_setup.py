"""What the miniature trains: the named configurations, the dataset and the recipe.

Every configuration is the CPU preset (``shapes_cpu``: small CNN, d_model 64, 4 heads, 3 decoder
layers, 16 queries) with a few fields changed, so that each comparison changes one thing:

=================================  =================================================================
``detr_dense``                     C5 only, dense attention (DETR-style, ``attention="dense"``)
``deformable_single``              C5 only, deformable attention, K = 4
``deformable_multi``               C3-C5 + C6, deformable attention, K = 4 (Deformable DETR)
``deformable_multi_refine``        + iterative box refinement
``deformable_multi_twostage``      + refinement + two-stage
``single_k1``                      C5 only, K = 1 (Table 2 row 1: like deformable convolution)
``msinputs_k1``                    four levels, each token samples its own level only, K = 1
``msinputs_k4``                    the same with K = 4
=================================  =================================================================

(Table 2's last row, multi-scale inputs and multi-scale attention with K = 4, is
``deformable_multi``.) Everything else, the engine, loss, matcher and recipe, is shared; the
recipe is the CPU preset's (AdamW lr 5e-4, clip 0.1, batch 4), not DETR's (lr 1e-4, 500 epochs).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ddetr_edu.config import ModelConfig, get_preset
from ddetr_edu.data.shapes import ShapesConfig
from ddetr_edu.training.config import TrainConfig, train_preset

# The plain detector every configuration starts from: no refinement, no two-stage, two encoder
# layers (the part the comparison is about; the demo's single layer leaves it little to do).
BASE = dict(with_box_refine=False, two_stage=False, enc_layers=2)
SINGLE = dict(num_feature_levels=1)
MULTI = dict(num_feature_levels=4)

RUNS: dict[str, dict[str, Any]] = {
    "detr_dense": {**SINGLE, "attention": "dense"},
    "deformable_single": {**SINGLE},
    "deformable_multi": {**MULTI},
    "deformable_multi_refine": {**MULTI, "with_box_refine": True},
    "deformable_multi_twostage": {**MULTI, "with_box_refine": True, "two_stage": True},
    "single_k1": {**SINGLE, "enc_n_points": 1, "dec_n_points": 1},
    "msinputs_k1": {**MULTI, "cross_level_attention": False, "enc_n_points": 1, "dec_n_points": 1},
    "msinputs_k4": {**MULTI, "cross_level_attention": False},
}
MAIN = ("detr_dense", "deformable_single", "deformable_multi")  # Figure 3: every seed
SEEDS = (0, 1)  # the main comparison runs with each; the other runs with the first

# The data: 160 px images, so that the single-scale C5 map is 5 x 5 = 25 tokens (the demo's 96 px
# give 3 x 3) and the four levels 20^2 + 10^2 + 5^2 + 3^2 = 534; objects 10..120 px, so that COCO's
# small (< 32 px), medium and large (> 96 px) ranges all hold objects. Larger images would give
# dense attention more tokens, but cost the multi-scale runs (most of the total) in proportion.
# Size of the run: 2000 images x 10 epochs = 5000 steps of batch 4 per run, 11 runs. Measured
# (2026-11-28, 1 thread, a step of batch 4): alone, dense / single-scale 28 ms and multi-scale
# 107-113 ms; two at a time with another session's work beside them, 53-60 ms and 198-230 ms, for
# which ``--plan`` estimated 62 min in all (the 75-minute budget: BUDGET_MINUTES).
SHAPES = ShapesConfig(seed=0, num_train=2000, num_val=150, image_size=160, min_objects=1, max_objects=5,
                      min_size=10.0, max_size=120.0)
EPOCHS = 10
BUDGET_MINUTES = 75  # the full run on 2 idle cores must fit this (the plan warns when it does not)
FAST_STEPS = 3  # --fast: steps of one epoch per configuration
FAST_SHAPES = dataclasses.replace(SHAPES, num_train=12, num_val=4)


def model_config(name: str) -> ModelConfig:
    """The ModelConfig of the named run; an unknown name is a ValueError listing the known ones."""
    if name not in RUNS:
        raise ValueError(f"run name: expected one of {', '.join(RUNS)}, got {name!r}")
    return get_preset("shapes_cpu", **{**BASE, **RUNS[name]})


def train_config(seed: int, epochs: int = EPOCHS, max_steps: int | None = None,
                 max_eval_images: int | None = None) -> TrainConfig:
    """The CPU preset's recipe at this image size, evaluated every epoch, lr x0.1 for the last
    quarter of the epochs; ``max_steps`` cuts every epoch short (``--fast``)."""
    return dataclasses.replace(
        train_preset("shapes_cpu"), epochs=epochs, lr_drop=max(1, epochs - epochs // 4), eval_every=1,
        seed=seed, image_size=SHAPES.image_size, max_steps_per_epoch=max_steps,
        max_eval_images=max_eval_images, log_every=50)


def run_list(names: list[str] | None = None, seeds: tuple[int, ...] = SEEDS) -> list[tuple[str, int]]:
    """(name, seed) pairs: every seed for the main runs, the first seed for the others."""
    names = list(RUNS) if names is None else names
    for name in names:
        model_config(name)  # a bad name fails here, before anything runs
    return [(name, seed) for name in names for seed in (seeds if name in MAIN else seeds[:1])]
