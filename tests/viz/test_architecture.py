"""The architecture recorder: the shapes one forward pass records are the shapes the config implies,
and the block diagram draws them."""
from __future__ import annotations

import matplotlib
import pytest
import torch

from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector
from ddetr_edu.viz.architecture_figure import plot_architecture
from ddetr_edu.viz.architecture_shapes import (level_sizes, record_shapes, shape_mismatches,
                                               shapes_implied_by_config)

matplotlib.use("Agg")

SMALL = dict(arch="small_cnn", small_cnn_channels=(8, 16, 24, 32), d_model=32, n_heads=2, enc_layers=1,
             dec_layers=2, dim_feedforward=32, dropout=0.0, num_queries=5, num_classes=3,
             attention_backend="grid_sample")


@pytest.mark.parametrize("preset, extra", [
    ("multiscale", {}), ("multiscale_refine", {}), ("multiscale_refine_twostage", {}),
    ("singlescale", {}), ("multiscale", {"num_feature_levels": 5}), ("multiscale", {"dilation": True}),
    ("singlescale", {"attention": "dense"})])
def test_recorded_shapes_are_the_configs(preset, extra):
    cfg = get_preset(preset, **{**SMALL, **extra})
    torch.manual_seed(0)
    height, width = 75, 130  # not multiples of the strides: the sizes round up
    shapes = record_shapes(build_detector(cfg), torch.randn(2, 3, height, width))
    assert shape_mismatches(shapes, shapes_implied_by_config(cfg, height, width, batch=2)) == []
    # a few shapes spelled out, independent of shapes_implied_by_config
    assert shapes["memory"] == (2, sum(h * w for h, w in level_sizes(cfg, height, width)), 32)
    assert shapes["pred_boxes"] == (2, 5, 4)
    assert shapes["level_embed"] == (cfg.transformer.num_feature_levels, 32)


def test_level_sizes_round_up_and_the_extra_levels_halve():
    cfg = get_preset("multiscale", **SMALL)
    assert level_sizes(cfg, 75, 130) == [(10, 17), (5, 9), (3, 5), (2, 3)]


def test_a_wrong_expectation_is_reported():
    cfg = get_preset("multiscale", **SMALL)
    shapes = record_shapes(build_detector(cfg), torch.randn(1, 3, 96, 96))
    expected = shapes_implied_by_config(cfg, 96, 96)
    expected["x3"] = (1, 32, 3, 3)  # the extra level of a 96 x 96 image is 2 x 2
    expected["not_a_tensor"] = (1,)
    problems = shape_mismatches(shapes, expected)
    assert any(p.startswith("x3: recorded (1, 32, 2, 2)") for p in problems)
    assert any(p.startswith("not_a_tensor") for p in problems)


def test_the_figure_writes_the_recorded_shapes():
    cfg = get_preset("multiscale_refine_twostage", **SMALL)
    shapes = record_shapes(build_detector(cfg), torch.randn(1, 3, 96, 128))
    figure = plot_architecture(shapes)
    figure.canvas.draw()
    text = "\n".join(t.get_text() for ax in figure.axes for t in ax.texts)
    for name in ("C3", "x3", "memory", "proposals", "pred_logits"):
        assert str(shapes[name]) in text, name


def test_the_model_is_left_without_hooks():
    model = build_detector(get_preset("multiscale", **SMALL))
    record_shapes(model, torch.randn(1, 3, 96, 96))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_model_that_is_not_a_detector_is_refused():
    with pytest.raises(ValueError, match="model: expected a DeformableDETR"):
        record_shapes(torch.nn.Linear(2, 2), torch.randn(1, 3, 8, 8))
