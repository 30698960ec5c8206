"""DETR's augmentations keep boxes on the pixels they belong to."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ddetr_edu.boxes import cxcywh_to_xyxy
from ddetr_edu.data import (
    RandomSizeCrop,
    ToTensorNormalize,
    TransformConfig,
    build_eval_transforms,
    build_train_transforms,
    crop,
    hflip,
    resize,
)
from ddetr_edu.data.transforms import resized_size


def painted(width=64, height=48):
    """An image with two filled rectangles and their xyxy pixel boxes."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    boxes = torch.tensor([[4.0, 6.0, 20.0, 30.0], [30.0, 10.0, 60.0, 44.0]])
    for x0, y0, x1, y1 in boxes.int().tolist():
        pixels[y0:y1, x0:x1] = 255
    target = {"boxes": boxes, "labels": torch.tensor([0, 1]), "image_id": 1,
              "orig_size": torch.tensor([height, width]), "size": torch.tensor([height, width])}
    return Image.fromarray(pixels), target


def tight_box(image: Image.Image, box) -> list[int]:
    """xyxy of the white pixels inside `box` (pixel-exact transforms keep them aligned)."""
    pixels = np.asarray(image)[..., 0] > 127
    x0, y0, x1, y1 = (int(round(v)) for v in box.tolist())
    ys, xs = np.nonzero(pixels[y0:y1, x0:x1])
    return [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1]


def test_flip_twice_is_identity_and_boxes_follow_pixels():
    image, target = painted()
    flipped, flipped_target = hflip(image, target)
    for box in flipped_target["boxes"]:
        assert tight_box(flipped, box) == box.int().tolist()
    back, back_target = hflip(flipped, flipped_target)
    assert np.array_equal(np.asarray(back), np.asarray(image))
    assert torch.equal(back_target["boxes"], target["boxes"])


def test_crop_clips_and_drops_boxes():
    image, target = painted()
    cropped, out = crop(image, target, top=8, left=10, height=30, width=30)
    assert cropped.size == (30, 30) and out["size"].tolist() == [30, 30]
    # box 0 (4..20, 6..30) -> (0..10, 0..22); box 1 (30..60, 10..44) -> (20..30, 2..30)
    assert out["boxes"].tolist() == [[0, 0, 10, 22], [20, 2, 30, 30]]
    assert out["labels"].tolist() == [0, 1]
    for box in out["boxes"]:
        assert tight_box(cropped, box) == box.int().tolist()
    _, only_right = crop(image, target, top=0, left=25, height=48, width=39)
    assert only_right["labels"].tolist() == [1]  # box 0 lies left of the crop: dropped with its label


def test_random_crop_keeps_boxes_inside():
    torch.manual_seed(0)
    image, target = painted()
    for _ in range(30):
        cropped, out = RandomSizeCrop(16, 40)(image, target)
        w, h = cropped.size
        assert 16 <= w <= 40 and 16 <= h <= 40
        boxes = out["boxes"]
        assert len(boxes) == len(out["labels"])
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_resize_scales_boxes_and_respects_max_size():
    assert resized_size(640, 480, 800, 1333) == (1067, 800)
    assert resized_size(1000, 200, 800, 1333) == (1330, 266)  # short side lowered so the long one fits 1333
    image, target = painted()
    resized, out = resize(image, target, short_side=96, max_size=None)
    assert resized.size == (128, 96) and out["size"].tolist() == [96, 128]
    assert torch.allclose(out["boxes"], target["boxes"] * 2)


def test_to_tensor_normalise_gives_normalised_cxcywh():
    image, target = painted()
    tensor, out = ToTensorNormalize()(image, target)
    assert tensor.shape == (3, 48, 64) and tensor.dtype == torch.float32
    white = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(tensor[:, 10, 10], white)
    assert torch.allclose(cxcywh_to_xyxy(out["boxes"]) * torch.tensor([64, 48, 64, 48]), target["boxes"])


@pytest.mark.parametrize("config", [TransformConfig.shapes(), TransformConfig.coco()], ids=["shapes", "coco"])
def test_training_pipeline_output_contract(config):
    torch.manual_seed(1)
    image, target = painted(160, 120)
    sizes = set()
    for _ in range(6):
        tensor, out = build_train_transforms(config)(image, target)
        h, w = tensor.shape[1:]
        assert out["size"].tolist() == [h, w] and max(h, w) <= config.max_size
        boxes = out["boxes"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(out["labels"]), 4)
        xyxy = cxcywh_to_xyxy(boxes)
        assert (xyxy >= -1e-6).all() and (xyxy <= 1 + 1e-6).all()
        sizes.add((h, w))
    assert len(sizes) > 1  # the short side really is random
    tensor, out = build_eval_transforms(config)(image, target)
    assert min(tensor.shape[1:]) == config.eval_scale or max(tensor.shape[1:]) == config.max_size
    assert out["orig_size"].tolist() == [120, 160]


def test_shapes_recipe_numbers():
    config = TransformConfig.shapes(256)
    assert config.train_scales == (192, 208, 224, 240, 256, 272, 288)
    assert (config.max_size, config.crop_min, config.crop_max, config.eval_scale) == (384, 160, 256, 256)
    assert TransformConfig.coco().train_scales == tuple(range(480, 801, 32))
