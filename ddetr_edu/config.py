"""Typed configuration of the detector, with named presets for the paper's variants.

A :class:`ModelConfig` has two parts, :class:`BackboneConfig` and :class:`TransformerConfig`,
plus the detection choices (classes, queries, box refinement, two-stage). Builders take these
objects (``ddetr_edu.models.build_detector(cfg)``), never an argparse namespace.

Presets (``get_preset(name, **overrides)``):

=============================== ===================================================================
``singlescale``                 one level (C5), no refinement                       (paper: 39.7 AP*)
``singlescale_dc5``             one level, dilated C5 (stride 16)
``multiscale``                  C3-C5 + C6, the default Deformable DETR             (43.8 AP)
``multiscale_refine``           + iterative bounding-box refinement                 (45.4 AP)
``multiscale_refine_twostage``  + two-stage proposals                               (46.2 AP)
``shapes_cpu``                  small CNN + small transformer, trains on synthetic shapes on 2 CPUs
=============================== ===================================================================

(* the single-scale number of Table 2 is with K=1; the released single-scale model uses K=4.)

Overrides, one mechanism for every config dataclass (this one, ``TrainConfig``, ``ShapesConfig``):
:func:`with_overrides` replaces fields named flat, typed values or strings parsed by the field's
type (the command line's ``--set``). Field names are unique across the three dataclasses here, so
``get_preset("multiscale", num_classes=2, d_model=128, arch="resnet18")`` needs no paths.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ddetr_edu.ops import BACKENDS as ATTENTION_BACKENDS  # the attention core's backends

C = TypeVar("C")  # a config dataclass

BACKBONE_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "small_cnn")


@dataclass
class BackboneConfig:
    """The CNN that turns an image into C3, C4, C5 feature maps (strides 8, 16, 32)."""

    arch: str = "resnet50"  # one of BACKBONE_ARCHS; the paper uses ResNet-50
    dilation: bool = False  # DC5: layer4 uses dilation 2 instead of stride 2 (C5 at stride 16)
    train_backbone: bool = True  # official lr_backbone > 0: layer2-4 train, stem + layer1 frozen
    small_cnn_channels: tuple[int, int, int, int] = (32, 64, 128, 192)  # only for arch="small_cnn"
    pretrained_path: str | None = None  # local torchvision ImageNet .pth for a ResNet; never downloaded

    def __post_init__(self) -> None:
        if self.arch not in BACKBONE_ARCHS:
            raise ValueError(f"arch: expected one of {BACKBONE_ARCHS}, got {self.arch!r}")
        self.small_cnn_channels = tuple(int(c) for c in self.small_cnn_channels)


@dataclass
class TransformerConfig:
    """Encoder/decoder sizes and their attention (official defaults: deformable, multi-scale)."""

    d_model: int = 256  # C, channels of every token
    n_heads: int = 8  # M
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 1024  # FFN hidden width
    dropout: float = 0.1  # FFN, residual and decoder self-attention dropout
    num_feature_levels: int = 4  # L: 1 (C5 only) or >= 3 (C3-C5 plus extra stride-2 levels)
    enc_n_points: int = 4  # K in the encoder
    dec_n_points: int = 4  # K in the decoder
    attention_backend: str = "auto"  # one of ATTENTION_BACKENDS (ddetr_edu.ops)
    position_scale: float = 6.283185307179586  # sine encoding: normalised coords times 2*pi
    position_temperature: float = 10000.0  # sine encoding: wavelengths up to 2*pi*temperature
    # "dense": DETR's baseline, every query attends to every token (nn.MultiheadAttention) in the
    # encoder and the decoder's cross-attention; see ddetr_edu/models/attention_choice.py
    attention: Literal["deformable", "dense"] = "deformable"
    # False: Table 2's "multi-scale inputs without multi-scale attention", each encoder token
    # samples its own level only (the decoder keeps every level); see attention_choice.py
    cross_level_attention: bool = True

    def __post_init__(self) -> None:
        if self.d_model % 32:
            raise ValueError(f"d_model: expected a multiple of 32 (GroupNorm(32) on every level), "
                             f"got {self.d_model}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.num_feature_levels not in (1,) and self.num_feature_levels < 3:
            raise ValueError("num_feature_levels: expected 1 (C5 only) or >= 3 (C3, C4, C5 and extra "
                             f"levels), got {self.num_feature_levels}")
        for name in ("enc_layers", "dec_layers", "dim_feedforward", "enc_n_points", "dec_n_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend: expected one of {ATTENTION_BACKENDS}, "
                             f"got {self.attention_backend!r}")
        if self.attention not in ("deformable", "dense"):
            raise ValueError(f"attention: expected 'deformable' or 'dense', got {self.attention!r}")
        if self.attention == "dense" and self.num_feature_levels != 1:
            raise ValueError(f"num_feature_levels: attention='dense' needs 1 (C5 only, as DETR), got "
                             f"{self.num_feature_levels}: its cost grows with the square of all tokens")
        if self.attention == "dense" and not self.cross_level_attention:
            raise ValueError("cross_level_attention=False restricts deformable sampling to a level; "
                             "attention='dense' has no levels to restrict (keep it True)")


@dataclass
class ModelConfig:
    """The whole detector."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    num_classes: int = 91  # official: COCO's max category id + 1, no "no object" class; `train`: the data's count
    num_queries: int = 300  # object queries; for two-stage, the number of top proposals kept
    with_box_refine: bool = False  # per-layer box heads; each layer refines the previous box
    two_stage: bool = False  # encoder proposals become the decoder's reference boxes and queries
    aux_loss: bool = True  # also return the predictions of the earlier decoder layers
    # DINO's look-forward-twice (Zhang et al. 2023): layer i's supervised box starts from layer
    # i-1's box *before* it is detached, so layer i's box loss also trains layer i-1 (the next
    # layer's reference stays detached); needs with_box_refine. See ddetr_edu/models/decoder.py
    look_forward_twice: bool = False
    # DINO's mixed query selection: with two-stage, the top proposals give the decoder's positional
    # queries only; the content queries are learned (Q, C), as in DETR. See models/transformer.py
    mixed_query_selection: bool = False

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {self.num_classes}")
        if self.num_queries < 1:
            raise ValueError(f"num_queries: expected >= 1, got {self.num_queries}")
        if self.two_stage and not self.with_box_refine:
            # the official model needs the per-layer box heads for the proposal head as well
            raise ValueError("two_stage=True needs with_box_refine=True (as in the official code)")
        if self.mixed_query_selection and not self.two_stage:
            raise ValueError("mixed_query_selection=True needs two_stage=True: it changes which queries "
                             "the encoder proposals give")
        if self.look_forward_twice and not self.with_box_refine:
            raise ValueError("look_forward_twice=True needs with_box_refine=True: it changes how each "
                             "layer's box refines the previous layer's box")
        if self.two_stage and self.transformer.attention == "dense":
            raise ValueError("two_stage=True needs attention='deformable': encoder proposals are "
                             "Deformable DETR's addition, the dense baseline is DETR with learned queries")

    @property
    def num_backbone_levels(self) -> int:
        """Feature maps taken from the backbone: C5 alone, or C3, C4, C5."""
        return 1 if self.transformer.num_feature_levels == 1 else 3


def _multiscale(**model: Any) -> ModelConfig:
    return ModelConfig(**model)


def _singlescale(dilation: bool) -> ModelConfig:
    return ModelConfig(backbone=BackboneConfig(dilation=dilation),
                       transformer=TransformerConfig(num_feature_levels=1))


def _shapes_cpu() -> ModelConfig:
    # Sized for `make demo` on 2 CPU cores: 96 x 96 shapes images, five classes, refinement +
    # two-stage (the fastest-converging variant). Every choice buys optimiser steps, because the
    # demo is compute-bound (its AP was still rising when the time ran out):
    # * one encoder layer: each one costs ~19 ms of a ~80 ms step (fwd + bwd, 772 tokens);
    # * three levels (C3..C5: 12^2, 6^2, 3^2 tokens), no 2 x 2 extra level (-10% a step);
    # * FFN 256 instead of 128: costs nothing measurable (this model is bound by op count);
    # * the grid_sample backend: on maps this small it was the faster one (one demo epoch: 29 s
    #   with grid_sample, 43 s with the earlier sparse-matrix einops backend, 2 threads).
    # Measured 2026-11-21, 1 thread, batch 4: 80 ms a step for (enc 2, FFN 128, 4 levels), 57 ms
    # for this; in the same training time it reached AP 0.566 against 0.467.
    return ModelConfig(
        backbone=BackboneConfig(arch="small_cnn", small_cnn_channels=(16, 32, 64, 128)),
        transformer=TransformerConfig(d_model=64, n_heads=4, enc_layers=1, dec_layers=3,
                                      dim_feedforward=256, dropout=0.0, num_feature_levels=3,
                                      enc_n_points=4, dec_n_points=4, attention_backend="grid_sample"),
        num_classes=5,  # synthetic shapes: circle, square, triangle, star, cross
        num_queries=16,  # at most 4 objects per demo image
        with_box_refine=True,
        two_stage=True,
    )


_PRESETS = {
    "singlescale": lambda: _singlescale(dilation=False),
    "singlescale_dc5": lambda: _singlescale(dilation=True),
    "multiscale": lambda: _multiscale(),
    "multiscale_refine": lambda: _multiscale(with_box_refine=True),
    "multiscale_refine_twostage": lambda: _multiscale(with_box_refine=True, two_stage=True),
    "shapes_cpu": _shapes_cpu,
}

PRESET_NAMES = tuple(_PRESETS)


def config_fields(config_type: type) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Flat field name -> (attribute path, resolved annotation), for a dataclass type.

    A field holding a dataclass is listed itself and so are its own fields, by their own names:
    for :class:`ModelConfig`, ``"transformer" -> (("transformer",), TransformerConfig)`` and
    ``"d_model" -> (("transformer", "d_model"), int)``. A name met twice is a TypeError.
    """
    fields: dict[str, tuple[tuple[str, ...], Any]] = {}

    def add(name: str, path: tuple[str, ...], annotation: Any) -> None:
        if name in fields:
            raise TypeError(f"{config_type.__name__}: field name {name!r} is both "
                            f"{'.'.join(fields[name][0])} and {'.'.join(path)}")
        fields[name] = (path, annotation)

    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        annotation = hints[f.name]
        add(f.name, (f.name,), annotation)
        if dataclasses.is_dataclass(annotation):
            for name, (path, inner) in config_fields(annotation).items():
                add(name, (f.name, *path), inner)
    return fields


def parse_value(text: str, annotation: Any, where: str) -> Any:
    """The string ``text`` as a value of the resolved type ``annotation``; ``where`` names the field.

    int, float, str, bool (true/false, yes/no, on/off, 1/0), ``Literal`` choices, tuples
    (``"8,16,32"``) and optional fields (``"none"`` -> None).
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X] / X | None
        if text.lower() in ("none", "null", ""):
            return None
        return parse_value(text, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if text not in args:
            raise ValueError(f"{where}: expected one of {list(args)}, got {text!r}")
        return text
    if origin is tuple:
        parts = [p for p in text.replace(" ", "").split(",") if p]
        return tuple(parse_value(p, args[0] if args else str, where) for p in parts)
    if annotation is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}: expected a boolean (true/false), got {text!r}")
    if annotation in (int, float, str):
        try:
            return annotation(text)
        except ValueError:
            raise ValueError(f"{where}: expected {annotation.__name__}, got {text!r}") from None
    raise ValueError(f"{where}: a field of type {annotation!r} cannot be set from a string")


def _replace_paths(config: Any, changes: dict[tuple[str, ...], Any]) -> Any:
    """``dataclasses.replace`` along attribute paths: ``{("transformer", "d_model"): 64}``."""
    direct = {path[0]: value for path, value in changes.items() if len(path) == 1}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in changes.items():
        if len(path) > 1:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, inner in nested.items():  # a part given whole and field by field: fields win
        direct[name] = _replace_paths(direct.get(name, getattr(config, name)), inner)
    return dataclasses.replace(config, **direct)


def with_overrides(config: C, overrides: Mapping[str, Any]) -> C:
    """A copy of the dataclass ``config`` with the named fields replaced; validation runs again.

    Names are flat (see :func:`config_fields`): ``{"d_model": 128, "arch": "resnet18"}`` on a
    :class:`ModelConfig` reaches into its parts. A ``str`` value is parsed by the field's
    annotation (``{"lr": "1e-4", "two_stage": "true", "small_cnn_channels": "8,16,16,32"}``, as
    ``--set`` gives them); any other value is used as it is. An unknown name is a ValueError that
    lists the known ones. The result shares no mutable part with ``config``.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"with_overrides: expected a dataclass instance, got {type(config).__name__}")
    kind = type(config).__name__
    fields = config_fields(type(config))
    changes = {}
    for name, value in overrides.items():
        if name not in fields:
            raise ValueError(f"{kind} has no field {name!r}; known fields: {', '.join(sorted(fields))}")
        path, annotation = fields[name]
        if isinstance(value, str):
            value = parse_value(value, annotation, f"{kind}.{name}")
        changes[path] = value
    return _replace_paths(copy.deepcopy(config), changes)


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """A fresh ModelConfig of the named preset, with optional field overrides (:func:`with_overrides`)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESET_NAMES)}")
    return with_overrides(_PRESETS[name](), overrides)


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """Plain nested dict (for saving next to a checkpoint)."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Inverse of :func:`config_to_dict`; unknown keys raise ValueError."""
    data = dict(data)
    try:
        backbone = BackboneConfig(**data.pop("backbone", {}))
        transformer = TransformerConfig(**data.pop("transformer", {}))
        return ModelConfig(backbone=backbone, transformer=transformer, **data)
    except TypeError as err:  # an unexpected keyword
        raise ValueError(f"config dict does not match ModelConfig: {err}") from None
