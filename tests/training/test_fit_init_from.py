"""``fit(..., init_from=...)``: a new run from trained weights, from Python."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ddetr_edu.config import config_to_dict, get_preset
from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
from ddetr_edu.models import build_detector
from ddetr_edu.training.config import train_preset
from ddetr_edu.training.fit import fit

TINY = {"d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 32,
        "small_cnn_channels": (8, 8, 16, 16), "num_queries": 5, "num_feature_levels": 3,
        "attention_backend": "grid_sample"}
DATA = ShapesConfig(seed=4, num_train=4, num_val=2, image_size=32, min_size=8, max_size=16, max_objects=2,
                    shapes=("triangle", "star"), class_names=("tent", "spark"))
CFG = dataclasses.replace(train_preset("shapes_cpu"), epochs=1, batch_size=2, image_size=32, max_steps_per_epoch=1)


@pytest.mark.slow
def test_fit_from_a_checkpoint_takes_its_architecture_and_the_data_classes(tmp_path, capsys):
    data = make_shapes_dataset(tmp_path / "data", DATA, num_workers=0).root
    source_cfg = get_preset("shapes_cpu", num_classes=5, **TINY)
    torch.manual_seed(3)
    source = build_detector(source_cfg)
    checkpoint = tmp_path / "five.pth"
    torch.save({"format": "ddetr_edu.train.v1", "model": source.state_dict(),
                "model_config": config_to_dict(source_cfg), "train_config": {}, "class_names": list("abcde")},
               checkpoint)
    result = fit(None, CFG, data, tmp_path / "run", init_from=checkpoint)
    assert "re-initialised class_embed.* (5 -> 2 classes)" in capsys.readouterr().out
    assert result.model.class_embed[0].out_features == 2 and result.model.transformer.d_model == 32
    saved = torch.load(tmp_path / "run" / "checkpoint_last.pth", weights_only=True)
    assert saved["class_names"] == ["tent", "spark"] and saved["global_step"] == 1


def test_fit_refuses_resume_with_init_from_and_no_config_without_weights(tmp_path):
    with pytest.raises(ValueError, match="resume and init_from exclude each other"):
        fit(None, CFG, tmp_path, tmp_path / "run", resume=tmp_path / "a.pth", init_from="reference")
    with pytest.raises(ValueError, match="a ModelConfig is needed unless init_from"):
        fit(None, CFG, tmp_path, tmp_path / "run")
