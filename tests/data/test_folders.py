"""Dataset folders: the two layouts, a clear error otherwise, and the augmentation recipe."""
from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image

from ddetr_edu.data import (CocoDetection, DataFileError, ShapesConfig, build_datasets, build_val_dataset, find_data,
                            make_shapes_dataset, transform_config)
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


def _val_only(root, layout):
    """A folder with the validation split of ``layout`` alone: one 32 x 24 image, no train split."""
    images, ann = {"shapes": (root / "images" / "val", root / "val.json"),
                   "COCO 2017": (root / "val2017", root / "annotations" / "instances_val2017.json")}[layout]
    images.mkdir(parents=True)
    ann.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24)).save(images / "1.png")
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 24}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 90, "bbox": [2, 2, 8, 8],
                                                "area": 64, "iscrowd": 0}],
                               "categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}]}))
    return images, ann


@pytest.mark.parametrize("layout", ["shapes", "COCO 2017"])
def test_evaluation_needs_the_validation_split_only(tmp_path, layout):
    images, ann = _val_only(tmp_path, layout)
    paths = find_data(tmp_path, train=False)
    assert (paths.val_images, paths.val_annotations) == (images, ann)
    assert paths.train_images is None and paths.train_annotations is None
    val_set = build_val_dataset(tmp_path, TrainConfig(augmentation="shapes", image_size=32))
    assert len(val_set) == 1 and val_set.class_names == ["person", "toothbrush"]
    with pytest.raises(FileNotFoundError, match="no dataset found"):  # training needs both splits
        find_data(tmp_path)


def test_no_validation_split_names_the_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no dataset \(validation split\) found") as error:
        find_data(tmp_path, train=False)
    assert "val.json" in str(error.value) and "train.json" not in str(error.value)


def test_an_empty_validation_split_is_an_error_naming_its_file(tmp_path):
    # the rule: a split without images is an error (no run claims a "best" checkpoint it never measured)
    paths = make_shapes_dataset(tmp_path, ShapesConfig(num_train=2, num_val=0, image_size=32, min_size=8,
                                                       max_size=16))
    with pytest.raises(DataFileError, match=re.escape(f"annotation file {paths.val_json}: 'images' is empty")):
        build_datasets(tmp_path, TrainConfig(augmentation="shapes", image_size=32))


def test_train_and_val_must_list_the_same_categories(tiny_shapes, tmp_path):
    shutil.copytree(tiny_shapes.root, tmp_path / "data")
    val_json = tmp_path / "data" / "val.json"
    content = json.loads(val_json.read_text())
    content["categories"][0]["name"] = "ring"  # label 0 would mean "circle" in train, "ring" in val
    val_json.write_text(json.dumps(content))
    differ = "list different categories (id, name) [(1, 'circle'), (1, 'ring')]"
    with pytest.raises(DataFileError, match=re.escape(differ)):
        build_datasets(tmp_path / "data", TrainConfig(augmentation="shapes", image_size=64))
