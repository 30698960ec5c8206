"""Checks of chapter 0's exercises (the whole model): token counts and parameters that follow
from the config, compared with what the library's config and modules give."""
from __future__ import annotations

from ddetr_edu.config import get_preset
from ddetr_edu.models.input_proj import make_input_projections
from ddetr_edu.viz.architecture_shapes import backbone_channels, shapes_implied_by_config

from . import assert_equal, correct, unanswered

IMAGE = (427, 640)  # (H, W) of the image of exercises 0.1 and 0.2


def check_0_1(answer) -> None:
    """answer: S, the encoder's tokens for one IMAGE with the `multiscale` preset."""
    if unanswered("0.1", answer):
        return
    expected = shapes_implied_by_config(get_preset("multiscale"), *IMAGE)["tokens"][1]
    assert_equal("0.1", answer, expected, "the number of tokens S (sum over the 4 levels of ceil(H/s) ceil(W/s))")
    correct("0.1")


def check_0_2(answer) -> None:
    """answer: the encoder's tokens for one IMAGE with the `singlescale` preset (C5 only)."""
    if unanswered("0.2", answer):
        return
    expected = shapes_implied_by_config(get_preset("singlescale"), *IMAGE)["tokens"][1]
    assert_equal("0.2", answer, expected, "the number of single-scale tokens (C5 alone, stride 32)")
    correct("0.2")


def check_0_3(answer) -> None:
    """answer: the parameters of the four input projections of the `multiscale` preset."""
    if unanswered("0.3", answer):
        return
    cfg = get_preset("multiscale")
    t = cfg.transformer
    projections = make_input_projections(backbone_channels(cfg), t.d_model, t.num_feature_levels)
    expected = sum(p.numel() for p in projections.parameters())
    assert_equal("0.3", answer, expected, "the parameter count of the input projections "
                 "(each: conv weight + bias, GroupNorm scale + shift)")
    correct("0.3")
