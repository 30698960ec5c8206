"""Loading checkpoints of the official Deformable DETR (fundamentalvision/Deformable-DETR).

An official checkpoint (``main.py --output_dir``) is a dict with ``'model'`` (the state dict),
``'args'`` (the ``argparse.Namespace`` of the run), ``'optimizer'``, ``'lr_scheduler'``, ``'epoch'``.

Our module names equal the official ones, so converting the state dict is:

1. alias removal: the official model stores some modules under two names (a state dict does
   not deduplicate). We check that each alias holds the same values, then drop it:
   * ``transformer.decoder.class_embed.*`` / ``transformer.decoder.bbox_embed.*`` repeat
     ``class_embed.*`` / ``bbox_embed.*`` (two-stage / box refinement);
   * without box refinement ``class_embed.0..5`` (and ``bbox_embed.*``) are one shared module;
     we keep a single head ``class_embed.0``;
2. the rename table ``RENAMES`` (the official backbone is wrapped in a ``Joiner``);
3. a strict comparison with our model: any missing, unexpected or mis-shaped key is an error
   that lists them.

Builders take config objects: ``config_from_official_args`` turns the run's args into a
``ModelConfig`` once, at this boundary.
"""
from __future__ import annotations

import argparse
import math
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ddetr_edu.checkpoints.reading import kind_of
from ddetr_edu.checkpoints.safe_load import safe_torch_load
from ddetr_edu.config import BackboneConfig, ModelConfig, TransformerConfig

# official key prefix -> our key prefix
RENAMES = (("backbone.0.body.", "backbone.body."),)

# official main.get_args_parser() defaults of the arguments that shape the model
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "backbone": "resnet50", "dilation": False, "position_embedding": "sine",
    "position_embedding_scale": 2 * math.pi, "num_feature_levels": 4, "enc_layers": 6,
    "dec_layers": 6, "dim_feedforward": 1024, "hidden_dim": 256, "dropout": 0.1, "nheads": 8,
    "num_queries": 300, "dec_n_points": 4, "enc_n_points": 4, "masks": False, "aux_loss": True,
    "with_box_refine": False, "two_stage": False, "dataset_file": "coco", "lr_backbone": 2e-5,
}


def _official_num_classes(dataset_file: str) -> int:
    # as the official build(): 91 for COCO (max category id + 1), 250 for panoptic, else 20
    if dataset_file == "coco_panoptic":
        return 250
    return 91 if dataset_file == "coco" else 20


def config_from_official_args(args: argparse.Namespace | Mapping[str, Any],
                              num_classes: int | None = None) -> ModelConfig:
    """ModelConfig of an official run. ``args``: the checkpoint's Namespace or a dict (missing
    entries take the official defaults). ``num_classes`` overrides the dataset's count."""
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, Mapping):
        raise ValueError(f"args: expected an argparse.Namespace or a dict, got {type(args).__name__}")
    a = {**OFFICIAL_DEFAULTS, **{k: v for k, v in args.items() if k in OFFICIAL_DEFAULTS}}
    if a["position_embedding"] not in ("sine", "v2"):
        raise ValueError(f"args.position_embedding: only the sine encoding is implemented, "
                         f"got {a['position_embedding']!r}")
    if a["masks"]:
        raise ValueError("args.masks=True (segmentation head) is not supported")
    return ModelConfig(
        backbone=BackboneConfig(arch=a["backbone"], dilation=bool(a["dilation"]),
                                train_backbone=float(a["lr_backbone"]) > 0),
        transformer=TransformerConfig(
            d_model=int(a["hidden_dim"]), n_heads=int(a["nheads"]), enc_layers=int(a["enc_layers"]),
            dec_layers=int(a["dec_layers"]), dim_feedforward=int(a["dim_feedforward"]),
            dropout=float(a["dropout"]), num_feature_levels=int(a["num_feature_levels"]),
            enc_n_points=int(a["enc_n_points"]), dec_n_points=int(a["dec_n_points"]),
            position_scale=float(a["position_embedding_scale"])),
        num_classes=_official_num_classes(a["dataset_file"]) if num_classes is None else num_classes,
        num_queries=int(a["num_queries"]),
        with_box_refine=bool(a["with_box_refine"]),
        two_stage=bool(a["two_stage"]),
        aux_loss=bool(a["aux_loss"]),
    )


def _drop_alias(sd: dict[str, Tensor], alias: str, original: str) -> None:
    if original not in sd:
        raise ValueError(f"official state dict: {alias!r} should repeat {original!r}, which is missing")
    if sd[alias].shape != sd[original].shape or not torch.equal(sd[alias], sd[original]):
        raise ValueError(f"official state dict: {alias!r} should be the same tensor as {original!r} "
                         f"but holds different values")
    del sd[alias]


def convert_official_state_dict(official: Mapping[str, Tensor], cfg: ModelConfig) -> OrderedDict:
    """Official ``'model'`` state dict -> our state dict for ``cfg`` (no key check against a model
    here; :func:`load_converted_state_dict` does that)."""
    sd = OrderedDict(official)
    # ignore what the official loader ignores: profiler counters and BN step counters
    for key in [k for k in sd if k.endswith(("total_params", "total_ops", "num_batches_tracked"))]:
        del sd[key]
    # 1a. the decoder's references to the detector heads
    for key in [k for k in sd if k.startswith(("transformer.decoder.class_embed.",
                                               "transformer.decoder.bbox_embed."))]:
        _drop_alias(sd, key, key[len("transformer.decoder."):])
    # 1b. without refinement every decoder layer shares one head: keep index 0
    if not cfg.with_box_refine:
        for key in list(sd):
            match = re.match(r"^(class_embed|bbox_embed)\.(\d+)\.(.*)$", key)
            if match and match.group(2) != "0":
                first = f"{match.group(1)}.0.{match.group(3)}"
                if first in sd and not torch.equal(sd[key], sd[first]):
                    raise ValueError(
                        f"official state dict: {key!r} differs from {first!r}, so the checkpoint has "
                        f"independent per-layer heads (with_box_refine=True) but the config has "
                        f"with_box_refine=False")
                _drop_alias(sd, key, first)
    # 2. renames
    converted = OrderedDict()
    for key, value in sd.items():
        for old, new in RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        converted[key] = value
    return converted


def load_converted_state_dict(model: torch.nn.Module, state_dict: Mapping[str, Tensor],
                              assign: bool = False) -> None:
    """Strict load: missing, unexpected or mis-shaped keys raise a ValueError listing them.

    ``assign=True`` makes the model hold the given tensors instead of copying them (no second
    copy of the weights; also the way to fill a model built on the meta device).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        def listing(title: str, keys: list[str]) -> str:
            shown = "\n    ".join(keys[:40]) + ("\n    ..." if len(keys) > 40 else "")
            return f"\n  {len(keys)} {title}:\n    {shown}" if keys else ""
        raise ValueError(
            "checkpoint does not match the model (another variant or configuration?):"
            + listing("missing keys (in the model, not in the checkpoint)", missing)
            + listing("unexpected keys (in the checkpoint, not in the model)", unexpected)
            + listing("keys with another shape", mis_shaped))
    model.load_state_dict(state_dict, strict=True, assign=assign)


def load_official_checkpoint(source: str | os.PathLike | Mapping[str, Any],
                             config: ModelConfig | None = None, num_classes: int | None = None,
                             map_location: str | torch.device = "cpu"):
    """Our ``DeformableDETR`` with the weights of an official checkpoint.

    Args:
        source: path of an official ``checkpoint.pth`` (read safely, see ``safe_load``) or the
            loaded dict, with ``'model'`` and (unless ``config`` is given) ``'args'``.
        config: build this configuration instead of the one in ``'args'``; a checkpoint of another
            variant then fails with the list of mismatched keys.
        num_classes: override the class count derived from ``args.dataset_file``.
    Returns:
        the model in eval mode.
    """
    from ddetr_edu.models import build_detector  # the checkpoint layer sits above the models

    checkpoint = source if isinstance(source, Mapping) else safe_torch_load(source, map_location)
    if kind_of(checkpoint) == "ddetr_edu":
        where = "the dict" if isinstance(source, Mapping) else os.fspath(source)
        raise ValueError(f"{where} is a ddetr_edu training checkpoint, not an official one; load it with "
                         f"ddetr_edu.checkpoints.load_checkpoint (or ddetr_edu.viz.load_detector)")
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        keys = list(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(f"expected an official checkpoint dict with a 'model' entry, got {keys}")
    if config is None:
        if "args" not in checkpoint:
            raise ValueError("the checkpoint has no 'args' entry: pass config=ModelConfig(...)")
        config = config_from_official_args(checkpoint["args"], num_classes=num_classes)
    model = build_detector(config)
    load_converted_state_dict(model, convert_official_state_dict(checkpoint["model"], config))
    return model.eval()
