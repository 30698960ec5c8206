"""The five full-size official key lists convert and load strictly into our presets.

Models are built on the meta device (no memory, no init cost); the official state dicts are
zero tensors expanded to each shape (no memory either), so the test checks names and shapes.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ddetr_edu.checkpoints import convert_official_state_dict, load_converted_state_dict
from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "reference"
KEY_LISTS = REFERENCE / "official_keys"
VARIANTS = ["singlescale", "singlescale_dc5", "multiscale", "multiscale_refine",
            "multiscale_refine_twostage"]



def _parse_keys_tsv(path: Path):
    spec = importlib.util.spec_from_file_location("fill_weights", REFERENCE / "fill_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_keys_tsv(path)


def _zero_state_dict(variant: str) -> dict[str, torch.Tensor]:
    entries = _parse_keys_tsv(KEY_LISTS / f"{variant}.tsv")
    return {name: torch.zeros((), dtype=getattr(torch, dtype.split(".")[-1])).expand(shape)
            for name, shape, dtype in entries}


def _meta_model(variant: str):
    with torch.device("meta"):
        return build_detector(get_preset(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_official_keys_load_into_preset(variant):
    official = _zero_state_dict(variant)
    cfg = get_preset(variant)
    model = _meta_model(variant)
    converted = convert_official_state_dict(official, cfg)
    load_converted_state_dict(model, converted, assign=True)  # raises on any mismatch
    assert set(converted) == set(model.state_dict())
    # what was dropped is exactly the aliases: decoder copies and shared heads
    dropped = set(official) - {k.replace("backbone.body.", "backbone.0.body.") for k in converted}
    refine = cfg.with_box_refine
    assert all(k.startswith(("transformer.decoder.class_embed.", "transformer.decoder.bbox_embed."))
               or (not refine and k.split(".")[0] in ("class_embed", "bbox_embed")
                   and k.split(".")[1] != "0")
               for k in dropped), sorted(dropped)[:5]
    heads = cfg.transformer.dec_layers + (1 if cfg.two_stage else 0) if refine else 1
    assert len(model.class_embed) == heads and len(model.bbox_embed) == heads


def test_other_variant_lists_mismatched_keys():
    official = _zero_state_dict("multiscale_refine_twostage")
    cfg = get_preset("multiscale_refine")
    model = _meta_model("multiscale_refine")
    with pytest.raises(ValueError) as err:
        load_converted_state_dict(model, convert_official_state_dict(official, cfg), assign=True)
    message = str(err.value)
    assert "missing keys" in message and "transformer.reference_points.weight" in message
    assert "unexpected keys" in message and "transformer.enc_output.weight" in message


def test_single_scale_into_multiscale_lists_shapes():
    official = _zero_state_dict("singlescale")
    cfg = get_preset("multiscale")
    with pytest.raises(ValueError, match="another shape") as err:
        load_converted_state_dict(_meta_model("multiscale"),
                                  convert_official_state_dict(official, cfg), assign=True)
    assert "transformer.level_embed" in str(err.value)


def test_refined_heads_into_shared_head_config_fail():
    official = _zero_state_dict("multiscale_refine")
    official = {k: v.clone() if k.startswith("class_embed.1.") else v for k, v in official.items()}
    official["class_embed.1.bias"] += 1.0  # independent per-layer heads
    official["transformer.decoder.class_embed.1.bias"] = official["class_embed.1.bias"]
    with pytest.raises(ValueError, match="with_box_refine"):
        convert_official_state_dict(official, get_preset("multiscale"))


def test_alias_with_other_values_fails():
    official = _zero_state_dict("multiscale_refine")
    official["transformer.decoder.bbox_embed.0.layers.0.bias"] = torch.ones(256)
    with pytest.raises(ValueError, match="same tensor"):
        convert_official_state_dict(official, get_preset("multiscale_refine"))
