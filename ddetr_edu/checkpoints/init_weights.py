"""Starting a new run from trained weights (fine-tuning): ``train --init-from CKPT``.

Four sources are accepted (:func:`read_init_weights`):

* ``"reference"``: the shipped reference model (:mod:`ddetr_edu.checkpoints.reference`);
* one of our training checkpoints (``checkpoint_best.pth``: its ``model``, ``model_config``,
  ``class_names``);
* an official Deformable DETR checkpoint (converted to our names; its ``args`` give the config);
* a bare ``state_dict`` file (tensors only: no config, no class names).

:func:`load_matching` copies into a freshly built model every tensor whose name and shape are
the same in the source. The class heads (``class_embed.*``) keep the model's own initialisation
(the focal prior in the bias) when the classes differ: another count, or other names when both
sides know them. It returns an :class:`InitReport` whose :meth:`~InitReport.summary` is the one
line the command prints, e.g. ``loaded 171 of 179 tensors from reference; re-initialised
class_embed.* (5 -> 3 classes)``. When fewer than half of the model's tensors match, the source
is another architecture: a ``ValueError`` names the first mismatches and the likely fix.

Nothing of the source's training state is used: the new run has a fresh optimiser, schedule
and log (that is ``--resume``'s job, which continues a run).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ddetr_edu.config import ModelConfig, config_from_dict
from ddetr_edu.checkpoints.reading import kind_of
from ddetr_edu.checkpoints.safe_load import safe_torch_load

REFERENCE = "reference"  # the word that names the shipped model
CLASS_HEAD = "class_embed."  # the class heads' parameter prefix (every layer's, and the proposal head's)
MIN_MATCHED_FRACTION = 0.5  # fewer of the model's tensors found in the source: another architecture


@dataclass(frozen=True)
class InitWeights:
    """Weights to start a new run from, read by :func:`read_init_weights`."""

    name: str  # how messages name the source: "reference" or the file's path
    kind: str  # "reference", "ddetr_edu", "official" or "state_dict"
    state_dict: dict[str, Tensor] = field(repr=False)  # our parameter names
    model_config: ModelConfig | None  # None for a bare state_dict (the run's preset decides)
    class_names: list[str] | None  # in label order; None when the source does not say


@dataclass(frozen=True)
class InitReport:
    """What :func:`load_matching` did."""

    source: str
    loaded: list[str]  # model tensors copied from the source
    total: int  # tensors in the model's state_dict
    reinitialised: list[str]  # class-head tensors left at the model's initialisation
    skipped: list[str]  # other model tensors the source lacks or holds in another shape
    unused: list[str]  # source tensors the model has no place for
    classes: tuple[int, int] | None  # (source count, model count) when the class head was re-initialised

    def summary(self) -> str:
        """One line: ``loaded 171 of 179 tensors from reference; re-initialised class_embed.* (5 -> 3 classes)``."""
        parts = [f"loaded {len(self.loaded)} of {self.total} tensors from {self.source}"]
        if self.reinitialised:
            before, after = self.classes or (0, 0)
            parts.append(f"re-initialised {CLASS_HEAD}* ({before} -> {after} classes)")
        if self.skipped:
            parts.append(f"kept the initial values of {len(self.skipped)} tensors the source lacks or holds in "
                         f"another shape ({_first(self.skipped)})")
        if self.unused:
            parts.append(f"{len(self.unused)} source tensors unused ({_first(self.unused)})")
        return "; ".join(parts)


def _first(names: list[str], count: int = 3) -> str:
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def _is_state_dict(content: Any) -> bool:
    return isinstance(content, Mapping) and bool(content) and all(isinstance(v, Tensor) for v in content.values())


def looks_like_imagenet_resnet(state_dict: Mapping[str, Any]) -> bool:
    """A torchvision ImageNet ResNet's state_dict (``conv1.weight``, ``layer1.*``, ``fc.weight``)."""
    return ("conv1.weight" in state_dict and "fc.weight" in state_dict
            and any(k.startswith("layer1.") for k in state_dict))


def describe_weights_file(content: Any) -> str | None:
    """What a loaded file holds, in words, when it is a whole detector: ``"a ddetr_edu training
    checkpoint"``, ``"an official Deformable DETR checkpoint"``, ``"a detector's bare state_dict"``;
    None for anything else (e.g. ImageNet backbone weights)."""
    kind = kind_of(content)
    if kind == "ddetr_edu":
        return "a ddetr_edu training checkpoint (a whole detector)"
    if kind == "official":
        return "an official Deformable DETR checkpoint (a whole detector)"
    if _is_state_dict(content) and any(k.startswith(("transformer.", "class_embed.")) for k in content):
        return "a detector's bare state_dict (a whole detector)"
    return None


def read_init_weights(source: str | os.PathLike) -> InitWeights:
    """The weights of ``source``: ``"reference"`` or a file (see the module docstring).

    ``FileNotFoundError`` for a missing file; ``ValueError`` naming the file for one of no
    known kind.
    """
    if os.fspath(source) == REFERENCE:
        from ddetr_edu.checkpoints.reference import WEIGHTS_FILE, reference_card

        card = reference_card()
        return InitWeights(REFERENCE, "reference", dict(safe_torch_load(WEIGHTS_FILE)),
                           config_from_dict(card["model_config"]), list(card["class_names"]))
    path = os.fspath(source)
    if os.path.isdir(path):
        raise ValueError(f"--init-from {path} is a folder; expected a checkpoint file (e.g. "
                         f"{Path(path) / 'checkpoint_best.pth'}) or the word {REFERENCE!r}")
    content = safe_torch_load(path)
    kind = kind_of(content)
    if kind == "ddetr_edu":
        if "model" not in content or "model_config" not in content:
            raise ValueError(f"{path} looks like a ddetr_edu checkpoint but lacks 'model' or 'model_config'")
        names = content.get("class_names")
        return InitWeights(path, kind, dict(content["model"]), config_from_dict(content["model_config"]),
                           None if names is None else list(names))
    if kind == "official":
        from ddetr_edu.checkpoints.official import config_from_official_args, convert_official_state_dict

        config = config_from_official_args(content["args"])
        return InitWeights(path, kind, dict(convert_official_state_dict(content["model"], config)), config, None)
    if _is_state_dict(content):
        return InitWeights(path, "state_dict", dict(content), None, None)
    shown = sorted(map(str, content))[:8] if isinstance(content, Mapping) else type(content).__name__
    raise ValueError(f"{path} holds neither a ddetr_edu checkpoint, an official Deformable DETR checkpoint nor a "
                     f"state_dict of tensors (found {shown}); --init-from expects one of those or {REFERENCE!r}")


def init_model_config(weights: InitWeights, num_classes: int) -> ModelConfig:
    """The source's model config for a new run on data with ``num_classes`` classes: the
    ImageNet ``pretrained_path`` is dropped (every backbone weight comes from the source). A
    ValueError for a bare state_dict, which has no config (name a preset)."""
    if weights.model_config is None:
        raise ValueError(f"{weights.name} is a bare state_dict (no model config): give the --preset (and --set "
                         f"values) of the model it was trained as")
    backbone = replace(weights.model_config.backbone, pretrained_path=None)
    return replace(weights.model_config, backbone=backbone, num_classes=num_classes)


def _mismatch_fix(weights: InitWeights) -> str:
    if looks_like_imagenet_resnet(weights.state_dict):
        return (f"{weights.name} looks like ImageNet ResNet weights for the backbone alone: pass them with "
                f"--set pretrained_path={weights.name} instead of --init-from")
    if weights.model_config is None:
        return "give the --preset and --set values of the model these weights belong to"
    return ("leave out the --preset / model --set values that change the architecture (the source's config is "
            "used without them)")


def match_tensors(own: Mapping[str, Tensor], weights: InitWeights, class_names: list[str] | None = None) -> InitReport:
    """Which tensors of ``weights`` go into a model whose ``state_dict()`` is ``own`` (only the
    names and shapes are read, so ``own`` may live on the meta device). ``class_names``: the new
    run's classes (label order). The class heads are left at the model's initialisation when
    the counts differ, or when both sides name their classes and the names differ. A ValueError
    when fewer than half of the model's tensors match."""
    source = weights.state_dict
    head_keys = [k for k in own if k.startswith(CLASS_HEAD)]
    source_classes = next((int(source[k].shape[0]) for k in sorted(source) if k.startswith(CLASS_HEAD)
                           and k.endswith(".bias")), None)
    model_classes = next((int(own[k].shape[0]) for k in head_keys if k.endswith(".bias")), None)
    new_classes = (source_classes != model_classes or (weights.class_names is not None and class_names is not None
                                                       and list(weights.class_names) != list(class_names)))
    reinitialised = head_keys if new_classes else []
    loaded = [k for k, v in source.items() if k in own and k not in reinitialised and v.shape == own[k].shape]
    skipped = [k for k in own if k not in set(loaded) | set(reinitialised)]
    unused = [k for k in source if k not in own]
    if len(loaded) < MIN_MATCHED_FRACTION * len(own):
        shapes = [f"{k} {tuple(source[k].shape)} vs {tuple(own[k].shape)}" for k in skipped if k in source]
        first = _first(shapes + [f"{k} missing" for k in skipped if k not in source], 3)
        raise ValueError(f"{weights.name} does not fit this model: only {len(loaded)} of {len(own)} tensors match "
                         f"by name and shape (first mismatches: {first}); {_mismatch_fix(weights)}")
    count = (source_classes or 0, model_classes or 0) if reinitialised else None
    return InitReport(weights.name, sorted(loaded), len(own), reinitialised, skipped, unused, count)


def load_matching(model: nn.Module, weights: InitWeights, class_names: list[str] | None = None) -> InitReport:
    """Copy every tensor of ``weights`` whose name and shape match into ``model`` (in place; the
    rest keep the model's initialisation); see :func:`match_tensors`."""
    report = match_tensors(model.state_dict(), weights, class_names)
    model.load_state_dict({k: weights.state_dict[k] for k in report.loaded}, strict=False)
    return report


def check_fits(model_cfg: ModelConfig, weights: InitWeights, class_names: list[str] | None = None) -> InitReport:
    """:func:`match_tensors` for the model of ``model_cfg``, built on the meta device (no memory,
    no weights): the report, or the ValueError of another architecture, before a run starts."""
    import torch

    from ddetr_edu.models import build_detector

    with torch.device("meta"):
        model = build_detector(model_cfg)
    return match_tensors(model.state_dict(), weights, class_names)


__all__ = ["REFERENCE", "InitWeights", "InitReport", "read_init_weights", "init_model_config", "match_tensors",
           "load_matching", "check_fits", "describe_weights_file", "looks_like_imagenet_resnet"]
