"""Fine-tuning's weight loading: every source kind, the class head, another architecture."""
from __future__ import annotations

import argparse
import math

import pytest
import torch

from ddetr_edu.checkpoints.init_weights import (check_fits, init_model_config, load_matching, read_init_weights)
from ddetr_edu.config import config_to_dict, get_preset
from ddetr_edu.models import build_detector
from ddetr_edu.models.heads import FOCAL_PRIOR
from ddetr_edu.models.resnet import read_backbone_weights

TINY = {"d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 32,
        "small_cnn_channels": (8, 8, 16, 16), "num_queries": 5, "num_feature_levels": 3,
        "attention_backend": "grid_sample"}
FIVE = ["circle", "square", "triangle", "star", "cross"]


def _tiny(num_classes: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_detector(get_preset("shapes_cpu", num_classes=num_classes, **TINY))


def _our_checkpoint(path, model, class_names):
    cfg = get_preset("shapes_cpu", num_classes=len(class_names), **TINY)
    torch.save({"format": "ddetr_edu.train.v1", "model": model.state_dict(), "model_config": config_to_dict(cfg),
                "train_config": {}, "class_names": class_names}, path)
    return path


def test_other_classes_load_everything_but_a_fresh_class_head(tmp_path):
    trained = _tiny(5, seed=1)
    weights = read_init_weights(_our_checkpoint(tmp_path / "five.pth", trained, FIVE))
    assert weights.kind == "ddetr_edu" and weights.class_names == FIVE
    model = _tiny(3, seed=2)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_matching(model, weights, ["tent", "spark", "plus"])
    heads = [k for k in fresh if k.startswith("class_embed.")]
    assert len(heads) == 2 * 3  # weight and bias of 2 decoder layers' heads + the proposal head
    for key, value in model.state_dict().items():
        expected = fresh[key] if key in heads else trained.state_dict()[key]
        assert torch.equal(value, expected), key
    prior_bias = -math.log((1 - FOCAL_PRIOR) / FOCAL_PRIOR)
    assert torch.allclose(model.class_embed[0].bias, torch.full((3,), prior_bias))
    total = len(fresh)
    assert report.summary() == (f"loaded {total - 6} of {total} tensors from {tmp_path / 'five.pth'}; "
                                f"re-initialised class_embed.* (5 -> 3 classes)")


def test_same_classes_load_every_tensor_and_renamed_classes_get_a_new_head(tmp_path):
    weights = read_init_weights(_our_checkpoint(tmp_path / "five.pth", _tiny(5, seed=1), FIVE))
    model = _tiny(5, seed=2)
    report = load_matching(model, weights, FIVE)
    assert report.reinitialised == [] and len(report.loaded) == report.total
    assert report.summary() == f"loaded {report.total} of {report.total} tensors from {tmp_path / 'five.pth'}"
    renamed = load_matching(_tiny(5, seed=2), weights, ["a", "b", "c", "d", "e"])
    assert len(renamed.reinitialised) == 6 and "(5 -> 5 classes)" in renamed.summary()


def test_reference_bare_state_dict_and_official_checkpoint_are_read(tmp_path):
    reference = read_init_weights("reference")
    assert reference.kind == "reference" and len(reference.class_names) == 5
    report = check_fits(init_model_config(reference, 3), reference, ["a", "b", "c"])
    assert report.summary().startswith(f"loaded {report.total - 8} of {report.total} tensors from reference; "
                                       f"re-initialised class_embed.* (5 -> 3 classes)")

    torch.save(_tiny(5).state_dict(), tmp_path / "bare.pt")
    bare = read_init_weights(tmp_path / "bare.pt")
    assert bare.kind == "state_dict" and bare.model_config is None and bare.class_names is None
    with pytest.raises(ValueError, match="bare state_dict .no model config.: give the --preset"):
        init_model_config(bare, 3)

    official_path = _official_checkpoint(tmp_path)
    official = read_init_weights(official_path)
    assert official.kind == "official" and official.model_config.backbone.arch == "resnet18"
    model = build_detector(init_model_config(official, 3))
    report = load_matching(model, official, ["a", "b", "c"])
    assert report.classes == (20, 3) and len(report.loaded) == report.total - 2  # one shared head: weight, bias

    with pytest.raises(ValueError, match="is a folder; expected a checkpoint file"):
        read_init_weights(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_init_weights(tmp_path / "absent.pth")


def _official_checkpoint(tmp_path):
    """A small official-format checkpoint: ResNet-18, 1 encoder and 1 decoder layer, 20 classes."""
    args = argparse.Namespace(backbone="resnet18", hidden_dim=64, nheads=2, enc_layers=1, dec_layers=1,
                              dim_feedforward=64, num_queries=5, dataset_file="voc")
    from ddetr_edu.checkpoints.official import config_from_official_args

    torch.manual_seed(0)
    model = build_detector(config_from_official_args(args))
    path = tmp_path / "official.pth"
    torch.save({"model": model.state_dict(), "args": args, "epoch": 3}, path)
    return path


def test_another_architecture_is_one_line_naming_mismatches_and_the_fix(tmp_path):
    weights = read_init_weights(_our_checkpoint(tmp_path / "five.pth", _tiny(5), FIVE))
    other = get_preset("shapes_cpu", num_classes=5, **{**TINY, "d_model": 64})
    with pytest.raises(ValueError) as caught:
        check_fits(other, weights, FIVE)
    message = str(caught.value)
    assert "does not fit this model: only" in message and "first mismatches:" in message and "\n" not in message
    assert "leave out the --preset / model --set values" in message

    imagenet = {**{k: v for k, v in build_detector(get_preset("singlescale", num_classes=3, arch="resnet18",
                                                              d_model=64, enc_layers=1, dec_layers=1))
                   .backbone.body.state_dict().items()},
                "conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512), "layer1.0.x": torch.zeros(1)}
    torch.save(imagenet, tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="looks like ImageNet ResNet weights .* --set pretrained_path="):
        check_fits(get_preset("shapes_cpu", num_classes=3, **TINY), read_init_weights(tmp_path / "resnet18.pth"))


def test_a_whole_detector_given_as_backbone_weights_points_to_init_from(tmp_path):
    ours = _our_checkpoint(tmp_path / "five.pth", _tiny(5), FIVE)
    with pytest.raises(ValueError, match=r"is a ddetr_edu training checkpoint .* use --init-from .*five.pth"):
        read_backbone_weights(ours)
    with pytest.raises(ValueError, match=r"is an official Deformable DETR checkpoint .* use --init-from"):
        read_backbone_weights(_official_checkpoint(tmp_path))
