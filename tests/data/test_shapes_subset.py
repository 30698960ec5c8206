"""Shapes datasets of a subset of the shapes under other names (another task, for fine-tuning)."""
from __future__ import annotations

import json

import pytest

from ddetr_edu.data import ShapesConfig, make_shapes_dataset
from ddetr_edu.data.shapes import dataset_conflict

SUBSET = ShapesConfig(seed=5, num_train=6, num_val=2, image_size=48, min_size=8, max_size=24, max_objects=3,
                      shapes=("star", "cross"), class_names=("spark", "plus"))


def test_only_the_chosen_shapes_are_drawn_under_their_new_names(tmp_path):
    paths = make_shapes_dataset(tmp_path, SUBSET, num_workers=0)
    content = json.loads(paths.train_json.read_text())
    assert content["categories"] == [{"id": 1, "name": "spark", "supercategory": "shape"},
                                     {"id": 2, "name": "plus", "supercategory": "shape"}]
    assert content["annotations"] and {a["category_id"] for a in content["annotations"]} <= {1, 2}
    assert dataset_conflict(tmp_path, SUBSET) is None  # the same config: nothing to replace


def test_a_manifest_older_than_the_new_fields_reads_as_their_defaults(tmp_path):
    default = ShapesConfig(seed=5, num_train=2, num_val=1, image_size=32, min_size=8, max_size=16)
    make_shapes_dataset(tmp_path, default, num_workers=0)
    for split in ("train", "val"):  # as a dataset written before `shapes` and `class_names` existed
        path = tmp_path / f"{split}.json"
        content = json.loads(path.read_text())
        del content["info"]["config"]["shapes"], content["info"]["config"]["class_names"]
        path.write_text(json.dumps(content))
    assert dataset_conflict(tmp_path, default) is None
    assert "shapes" in dataset_conflict(tmp_path, SUBSET)


@pytest.mark.parametrize("fields, message", [({"shapes": ("star", "dog")}, "shapes must be distinct names"),
                                             ({"shapes": ()}, "shapes must be distinct names"),
                                             ({"class_names": ("a", "b")}, "class_names must be 5 distinct names")])
def test_bad_subsets_are_value_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        ShapesConfig(**fields)


def test_the_demo_finds_a_dataset_older_than_the_new_fields_ready(tmp_path):
    from ddetr_edu.demo import shapes_dataset_is_ready

    config = ShapesConfig(seed=5, num_train=2, num_val=1, image_size=32, min_size=8, max_size=16)
    make_shapes_dataset(tmp_path, config, num_workers=0)
    for split in ("train", "val"):
        path = tmp_path / f"{split}.json"
        content = json.loads(path.read_text())
        del content["info"]["config"]["shapes"], content["info"]["config"]["class_names"]
        path.write_text(json.dumps(content))
    assert shapes_dataset_is_ready(tmp_path, config)
    assert not shapes_dataset_is_ready(tmp_path, SUBSET)
