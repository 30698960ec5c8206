"""Presets, overrides and validation of the typed configuration."""
from __future__ import annotations

import dataclasses

import pytest

from ddetr_edu.config import (PRESET_NAMES, BackboneConfig, ModelConfig, TransformerConfig, config_fields,
                              config_from_dict, config_to_dict, get_preset, with_overrides)
from ddetr_edu.data.shapes import ShapesConfig
from ddetr_edu.training.config import FIELD_RULES, TrainConfig, train_preset


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
    with pytest.raises(ValueError, match="ModelConfig has no field 'hidden_dim'; known fields: .*d_model"):
        get_preset("multiscale", hidden_dim=128)


def test_with_overrides_takes_typed_values_and_strings_by_flat_name():
    base = get_preset("multiscale")
    typed = with_overrides(base, {"d_model": 128, "two_stage": True, "with_box_refine": True,
                                  "small_cnn_channels": (8, 8, 16, 16), "pretrained_path": None})
    parsed = with_overrides(base, {"d_model": "128", "two_stage": "true", "with_box_refine": "yes",
                                   "small_cnn_channels": "8, 8, 16, 16", "pretrained_path": "none"})
    assert typed == parsed
    assert (typed.transformer.d_model, typed.backbone.small_cnn_channels) == (128, (8, 8, 16, 16))
    assert base.transformer.d_model == 256 and not base.two_stage  # the input is left as it was
    parsed.backbone.arch = "resnet18"  # no part is shared with the input either
    assert base.backbone.arch == "resnet50"
    whole = with_overrides(base, {"backbone": BackboneConfig(arch="resnet18"), "dilation": True})
    assert whole.backbone.arch == "resnet18" and whole.backbone.dilation  # the part, then its field


def test_with_overrides_on_other_config_dataclasses():
    train = with_overrides(train_preset("coco"), {"lr": "1e-4", "epochs": 3, "amp": "bf16",
                                                  "betas": "0.8,0.9", "max_steps_per_epoch": "none"})
    assert (train.lr, train.epochs, train.amp, train.betas, train.max_steps_per_epoch) == (
        1e-4, 3, "bf16", (0.8, 0.9), None)
    shapes = with_overrides(ShapesConfig(), {"seed": 7, "num_train": "10", "noise_std": "0.5"})
    assert (shapes.seed, shapes.num_train, shapes.noise_std) == (7, 10, 0.5)


@pytest.mark.parametrize("config, overrides, match", [
    (ModelConfig(), {"d_model": "wide"}, r"ModelConfig\.d_model: expected int, got 'wide'"),
    (ModelConfig(), {"two_stage": "maybe"}, r"ModelConfig\.two_stage: expected a boolean"),
    (ModelConfig(), {"backbone": "resnet18"}, r"ModelConfig\.backbone: a field of type .* cannot be set"),
    (ModelConfig(), {"d_model": 100}, "multiple of 32"),  # validation runs again
    (train_preset("coco"), {"amp": "fp8"}, r"TrainConfig\.amp: expected one of \['bf16', 'fp16'\]"),
    (train_preset("coco"), {"d_model": "64"}, "TrainConfig has no field 'd_model'; known fields: amp, "),
    (ShapesConfig(), {"num_train": -1}, "num_train"),
])
def test_with_overrides_errors_name_the_field(config, overrides, match):
    with pytest.raises(ValueError, match=match):
        with_overrides(config, overrides)


def test_config_fields_are_flat_and_unique():
    fields = config_fields(ModelConfig)
    assert fields["d_model"] == (("transformer", "d_model"), int)
    assert fields["arch"] == (("backbone", "arch"), str) and fields["num_queries"] == (("num_queries",), int)
    assert fields["transformer"] == (("transformer",), TransformerConfig)

    @dataclasses.dataclass
    class Clash:
        transformer: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
        dropout: float = 0.0  # also a TransformerConfig field

    with pytest.raises(TypeError, match="'dropout' is both transformer.dropout and dropout"):
        config_fields(Clash)
    with pytest.raises(TypeError, match="dataclass instance"):
        with_overrides(ModelConfig, {"d_model": 64})


@pytest.mark.parametrize("kwargs, match", [
    (dict(two_stage=True), "with_box_refine"),
    (dict(look_forward_twice=True), "with_box_refine"),
    (dict(mixed_query_selection=True, with_box_refine=True), "two_stage"),
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


@pytest.mark.parametrize("field, value", [
    ("max_eval_images", -3), ("max_eval_images", 0), ("max_steps_per_epoch", 0), ("device", "tpu"),
    ("device", "cuda:x"), ("betas", (0.9,)), ("betas", (0.9, 1.0)), ("lr", 0.0), ("lr", float("nan")),
    ("lr_backbone", -1e-5), ("lr_linear_proj_mult", float("inf")), ("weight_decay", -0.1), ("clip_max_norm", -1.0),
    ("lr_drop_factor", 0.0), ("lr_drop_factor", 2.0), ("lr_drop", 0), ("epochs", 2.5), ("batch_size", True),
    ("num_workers", -1), ("seed", -1), ("log_every", 0), ("eval_every", 0), ("crop_prob", 1.5),
    ("flip_prob", float("nan")), ("scale_jitter", "yes"), ("find_unused_parameters", 1), ("image_size", 4),
    ("lr_backbone_names", ("",)), ("lr_linear_proj_names", "sampling_offsets"), ("amp", "fp8"),
    ("augmentation", "none"),
])
def test_impossible_training_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^TrainConfig\.{field} must be .*, got ") as error:
        TrainConfig(**{field: value})
    assert "\n" not in str(error.value)


def test_every_training_field_has_exactly_one_rule_and_the_presets_pass_them():
    ruled = [name for names, _, _ in FIELD_RULES for name in names]
    assert sorted(ruled) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    for preset in ("coco", "shapes_cpu"):
        assert TrainConfig.from_dict(train_preset(preset).to_dict()) == train_preset(preset)
    assert TrainConfig(device="cuda:1", max_eval_images=None, betas=(0, 0.5), lr_backbone=0).device == "cuda:1"


def test_a_one_number_betas_from_the_command_line_is_refused():
    with pytest.raises(ValueError, match=r"TrainConfig\.betas must be two numbers in \[0, 1\).*got \(0\.9,\)"):
        with_overrides(train_preset("coco"), {"betas": "0.9"})  # today an IndexError inside the optimiser
