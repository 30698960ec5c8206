"""Presets, overrides and validation of the typed configuration."""
from __future__ import annotations

import pytest

from ddetr_edu.config import (PRESET_NAMES, ModelConfig, TransformerConfig, config_from_dict,
                              config_to_dict, get_preset)


def test_presets_match_the_released_variants():
    assert set(PRESET_NAMES) == {"singlescale", "singlescale_dc5", "multiscale", "multiscale_refine",
                                 "multiscale_refine_twostage", "shapes_cpu"}
    ms = get_preset("multiscale")
    t = ms.transformer
    assert (t.d_model, t.n_heads, t.enc_layers, t.dec_layers, t.dim_feedforward) == (256, 8, 6, 6, 1024)
    assert (t.num_feature_levels, t.enc_n_points, t.dec_n_points) == (4, 4, 4)
    assert (ms.num_queries, ms.num_classes, ms.backbone.arch) == (300, 91, "resnet50")
    assert not ms.with_box_refine and not ms.two_stage
    assert get_preset("multiscale_refine").with_box_refine
    two = get_preset("multiscale_refine_twostage")
    assert two.with_box_refine and two.two_stage
    assert get_preset("singlescale").transformer.num_feature_levels == 1
    dc5 = get_preset("singlescale_dc5")
    assert dc5.backbone.dilation and dc5.num_backbone_levels == 1
    cpu = get_preset("shapes_cpu")
    assert cpu.backbone.arch == "small_cnn" and cpu.transformer.d_model <= 256


def test_get_preset_returns_independent_copies():
    a = get_preset("multiscale")
    a.transformer.d_model = 512
    assert get_preset("multiscale").transformer.d_model == 256


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="multiscale_refine_twostage"):
        get_preset("deformable")


def test_overrides_reach_nested_fields():
    cfg = get_preset("multiscale", num_classes=2, d_model=128, arch="resnet18", dilation=True)
    assert cfg.num_classes == 2 and cfg.transformer.d_model == 128
    assert cfg.backbone.arch == "resnet18" and cfg.backbone.dilation
    with pytest.raises(ValueError, match="unknown config field"):
        get_preset("multiscale", hidden_dim=128)


@pytest.mark.parametrize("kwargs, match", [
    (dict(two_stage=True), "with_box_refine"),
    (dict(num_feature_levels=2), "num_feature_levels"),
    (dict(d_model=100), "multiple of 32"),
    (dict(n_heads=5), "divisible"),
    (dict(attention_backend="fast"), "attention_backend"),
    (dict(arch="vgg16"), "arch"),
    (dict(num_classes=0), "num_classes"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_preset("multiscale", **kwargs)


def test_dict_roundtrip():
    cfg = get_preset("multiscale_refine_twostage", num_classes=7)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="does not match"):
        config_from_dict({"transformer": {"hidden": 3}})
    assert isinstance(ModelConfig().transformer, TransformerConfig)
