"""Dataset folders: the two layouts, a clear error otherwise, and the augmentation recipe."""
from __future__ import annotations

import pytest

from ddetr_edu.data import CocoDetection, build_datasets, find_data, transform_config
from ddetr_edu.training.config import TrainConfig


def test_shapes_layout_is_found_and_built(tiny_shapes):
    paths = find_data(tiny_shapes.root)
    assert paths.train_annotations == tiny_shapes.train_json and paths.val_images == tiny_shapes.val_images
    train_set, val_set = build_datasets(tiny_shapes.root, TrainConfig(augmentation="shapes", image_size=64))
    assert isinstance(train_set, CocoDetection) and (len(train_set), len(val_set)) == (4, 12)
    _, target = val_set[0]
    assert target["size"].tolist() == [64, 64]  # the evaluation resize of the config (square images)


def test_no_known_layout_names_both(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset found") as error:
        find_data(tmp_path)
    assert "train.json" in str(error.value) and "instances_val2017.json" in str(error.value)


def test_transform_config_follows_the_training_config():
    coco = transform_config(TrainConfig())
    assert coco.train_scales == tuple(range(480, 801, 32)) and coco.max_size == 1333 and coco.crop_prob == 0.5
    shapes = transform_config(TrainConfig(augmentation="shapes", image_size=96, scale_jitter=False, crop_prob=0.0))
    assert shapes.train_scales == (96,) and shapes.eval_scale == 96 and shapes.crop_prob == 0.0
