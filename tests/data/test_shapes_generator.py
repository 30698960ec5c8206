"""The shapes generator: deterministic bytes, valid COCO JSON, all three COCO size ranges."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from ddetr_edu.data import SHAPE_NAMES, ShapesConfig, draw_shapes_image, make_shapes_dataset

SMALL = ShapesConfig(seed=11, num_train=3, num_val=2, image_size=128, min_size=8, max_size=80)


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path):
    first = make_shapes_dataset(tmp_path / "a", SMALL)
    second = make_shapes_dataset(tmp_path / "b", SMALL)
    third = make_shapes_dataset(tmp_path / "c", ShapesConfig(**{**SMALL.__dict__, "seed": 12}))
    digests_a, digests_b, digests_c = _digests(first.root), _digests(second.root), _digests(third.root)
    assert len(digests_a) == 2 + 3 + 2  # two JSON files and five images, nothing else (no temp files)
    assert digests_a == digests_b
    assert digests_a["val.json"] != digests_c["val.json"]
    assert digests_a["images/train/000000.png"] != digests_c["images/train/000000.png"]


def test_rerun_with_fewer_images_leaves_no_stale_files(tmp_path):
    make_shapes_dataset(tmp_path, SMALL)
    smaller = make_shapes_dataset(tmp_path, ShapesConfig(**{**SMALL.__dict__, "num_train": 1}))
    assert sorted(p.name for p in smaller.train_images.iterdir()) == ["000000.png"]


def test_worker_processes_give_the_same_bytes(tmp_path):
    serial = make_shapes_dataset(tmp_path / "serial", SMALL, num_workers=0)
    parallel = make_shapes_dataset(tmp_path / "parallel", SMALL, num_workers=2)
    assert _digests(serial.root) == _digests(parallel.root)


def test_json_is_valid_coco_and_boxes_are_inside(tiny_shapes):
    for split in ("train", "val"):
        image_dir, ann_file = tiny_shapes.split(split)
        coco = COCO(str(ann_file))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_NAMES)
        assert sorted(coco.getImgIds()) == list(range(1, len(coco.imgs) + 1))
        assert len(coco.anns) > 0 and 0 not in coco.anns  # COCOeval treats annotation id 0 as "unmatched"
        for ann in coco.anns.values():
            x, y, w, h = ann["bbox"]
            info = coco.imgs[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= info["width"] and y + h <= info["height"]
            assert ann["area"] == w * h and ann["iscrowd"] == 0
        for info in coco.imgs.values():
            with Image.open(image_dir / info["file_name"]) as image:
                assert image.mode == "RGB" and image.size == (info["width"], info["height"])


def test_default_val_set_covers_small_medium_and_large(default_val_shapes):
    content = json.loads(default_val_shapes.val_json.read_text())
    areas = np.array([a["area"] for a in content["annotations"]])
    small, large = (areas < 32**2).sum(), (areas > 96**2).sum()
    medium = len(areas) - small - large
    assert len(content["images"]) == ShapesConfig().num_val
    # every range holds a real share of the objects, so AP_S / AP_M / AP_L rest on many boxes
    assert min(small, medium, large) >= 0.1 * len(areas), (small, medium, large)
    counts = np.bincount([a["category_id"] for a in content["annotations"]], minlength=len(SHAPE_NAMES) + 1)[1:]
    assert counts.min() >= 0.1 * len(areas)  # classes roughly balanced


def test_boxes_are_the_visible_extent_and_occlusion_is_bounded():
    config = ShapesConfig()
    rng = np.random.default_rng(5)
    occluded = 0
    for _ in range(20):
        pixels, objects, owner = draw_shapes_image(rng, config)
        assert pixels.shape == (256, 256, 3) and pixels.dtype == np.uint8 and owner.shape == (256, 256)
        assert config.min_objects <= len(objects) <= config.max_objects
        assert owner.max() == len(objects) - 1
        for index, obj in enumerate(objects):
            ys, xs = np.nonzero(owner == index)
            x, y, w, h = obj["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # tight, visible only
            assert obj["visible_fraction"] >= config.min_visible_fraction
            occluded += obj["visible_fraction"] < 1.0
        assert objects[-1]["visible_fraction"] == 1.0  # the last shape painted is never covered
    assert occluded > 0  # occlusion does happen


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="min_size"):
        ShapesConfig(min_size=300)
    with pytest.raises(ValueError, match="min_objects"):
        ShapesConfig(min_objects=4, max_objects=2)


def test_dataset_conflict_says_what_writing_would_replace(tmp_path):
    from ddetr_edu.data.shapes import dataset_conflict

    root = tmp_path / "data"
    assert dataset_conflict(root, SMALL) is None  # missing
    make_shapes_dataset(root, SMALL)
    assert dataset_conflict(root, SMALL) is None  # the same dataset
    other = ShapesConfig(**{**SMALL.__dict__, "seed": 12, "num_val": 5})
    assert dataset_conflict(root, other) == f"{root} holds a shapes dataset made with other settings: " \
                                            f"seed 11 instead of 12, num_val 2 instead of 5"
    (root / "val.json").unlink()  # an unfinished dataset of the same settings: nothing else to lose
    assert dataset_conflict(root, SMALL) is None
    (root / "train.json").unlink()
    assert dataset_conflict(root, other) is None  # images only: an unfinished write, no manifest yet
    (root / "train.json").write_text('{"images": [], "annotations": []}')
    assert dataset_conflict(root, SMALL) == f"{root} holds train.json, which is not the annotation file of a " \
                                           f"shapes dataset"
    (root / "train.json").unlink()
    (root / "README.txt").write_text("my data")
    assert dataset_conflict(root, SMALL) == f"{root} holds README.txt and no shapes dataset"
    (tmp_path / "file").write_text("x")
    assert dataset_conflict(tmp_path / "file", SMALL) == f"{tmp_path / 'file'} is a file, not a folder"
