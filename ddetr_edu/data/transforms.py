"""DETR's data augmentation, written on PIL images and torch tensors (no torchvision).

Every transform is a callable ``(image, target) -> (image, target)``. Until the last step the
image is a PIL RGB image and ``target["boxes"]`` holds (T, 4) float32 **xyxy boxes in pixels** of
the current image; the geometric transforms move the boxes with the pixels. The last step,
`ToTensorNormalize`, turns the image into a (3, h, w) float32 tensor normalised with the
ImageNet mean and std, and the boxes into **cxcywh normalised by the image's (w, h)**: the
target format defined in :mod:`ddetr_edu.data.coco` ({"boxes", "labels", "image_id",
"orig_size", "size"}).

The training recipe (DETR, used unchanged by Deformable DETR):

    flip with p = 0.5, then with p = 0.5 either
        resize the short side to a random scale (max size cap), or
        resize to one of a few scales, crop a random region, resize to a random scale.

Randomness comes from torch's global RNG, so a seeded `DataLoader` (see `loader.py`) or
``torch.manual_seed`` makes the augmentations reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor

from ddetr_edu.boxes import xyxy_to_cxcywh

ImageTarget = tuple[Image.Image, dict]
Transform = Callable[[Image.Image, dict], tuple]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TransformConfig:
    """Sizes of the augmentation recipe; `coco()` is DETR's, `shapes()` a small CPU one."""

    train_scales: tuple[int, ...]  # short-side sizes picked at random for training
    max_size: int  # cap on the long side after resizing
    crop_first_scales: tuple[int, ...]  # crop branch: short side before the crop
    crop_min: int  # crop branch: crop width/height drawn in [crop_min, crop_max]
    crop_max: int
    eval_scale: int  # short side at evaluation
    flip_prob: float = 0.5
    crop_prob: float = 0.5  # probability of the crop branch

    @classmethod
    def coco(cls) -> "TransformConfig":
        """DETR / Deformable DETR on COCO: short side 480..800 step 32, max 1333."""
        return cls(train_scales=tuple(range(480, 801, 32)), max_size=1333, crop_first_scales=(400, 500, 600),
                   crop_min=384, crop_max=600, eval_scale=800)

    @classmethod
    def shapes(cls, image_size: int = 256) -> "TransformConfig":
        """The same recipe scaled to `image_size`: short side 3/4..9/8 of it, crops 5/8..1 of it.

        For 256 px shapes: scales 192..288 step 16, max 384, crop 160..256, eval 256.
        """
        step = max(1, image_size // 16)
        return cls(train_scales=tuple(range(image_size * 3 // 4, image_size * 9 // 8 + 1, step)),
                   max_size=image_size * 3 // 2, crop_first_scales=(image_size * 3 // 4, image_size * 7 // 8, image_size),
                   crop_min=image_size * 5 // 8, crop_max=image_size, eval_scale=image_size)


def _uniform() -> float:
    return float(torch.rand(()))


def _choice(options: Sequence[int]) -> int:
    return options[int(torch.randint(len(options), ()))]


def resized_size(width: int, height: int, short_side: int, max_size: int | None) -> tuple[int, int]:
    """(new_w, new_h): short side -> `short_side`, aspect kept, long side <= `max_size`."""
    short, long = min(width, height), max(width, height)
    if max_size is not None and long * short_side / short > max_size:
        short_side = int(max_size * short / long)
    new_short, new_long = short_side, int(round(short_side * long / short))
    if max_size is not None:
        new_long = min(new_long, max_size)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize(image: Image.Image, target: dict, short_side: int, max_size: int | None) -> ImageTarget:
    """Resize so the short side is `short_side` (long side <= `max_size`); boxes scale with it."""
    new_w, new_h = resized_size(image.width, image.height, short_side, max_size)
    scale = torch.tensor([new_w / image.width, new_h / image.height] * 2, dtype=torch.float32)
    target = dict(target, boxes=target["boxes"] * scale, size=torch.tensor([new_h, new_w], dtype=torch.int64))
    return image.resize((new_w, new_h), Image.BILINEAR), target


def hflip(image: Image.Image, target: dict) -> ImageTarget:
    """Mirror left-right: x -> w - x, so (x0, y0, x1, y1) -> (w - x1, y0, w - x0, y1)."""
    x0, y0, x1, y1 = target["boxes"].unbind(-1)
    boxes = torch.stack([image.width - x1, y0, image.width - x0, y1], dim=-1)
    return image.transpose(Image.FLIP_LEFT_RIGHT), dict(target, boxes=boxes)


def crop(image: Image.Image, target: dict, top: int, left: int, height: int, width: int) -> ImageTarget:
    """Cut the region [left, left + width) x [top, top + height); boxes are clipped to it and
    boxes left with no area are dropped (with their labels)."""
    offset = torch.tensor([left, top, left, top], dtype=torch.float32)
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.minimum((target["boxes"] - offset).clamp(min=0), limit)  # (T, 4)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    target = dict(target, boxes=boxes[keep], labels=target["labels"][keep],
                  size=torch.tensor([height, width], dtype=torch.int64))
    return image.crop((left, top, left + width, top + height)), target


class Compose:
    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, target):
        return hflip(image, target) if _uniform() < self.p else (image, target)


class RandomResize:
    """Resize the short side to a size drawn from `scales`, the long side capped at `max_size`."""

    def __init__(self, scales: Sequence[int], max_size: int | None = None):
        if len(scales) == 0:
            raise ValueError("RandomResize: scales must not be empty")
        self.scales, self.max_size = tuple(scales), max_size

    def __call__(self, image, target):
        return resize(image, target, _choice(self.scales), self.max_size)


class RandomSizeCrop:
    """Crop a random region whose width and height are drawn in [min_size, max_size] (and <= the image)."""

    def __init__(self, min_size: int, max_size: int):
        if not 0 < min_size <= max_size:
            raise ValueError(f"RandomSizeCrop: need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image, target):
        width = int(torch.randint(min(self.min_size, image.width), min(image.width, self.max_size) + 1, ()))
        height = int(torch.randint(min(self.min_size, image.height), min(image.height, self.max_size) + 1, ()))
        top = int(torch.randint(image.height - height + 1, ()))
        left = int(torch.randint(image.width - width + 1, ()))
        return crop(image, target, top, left, height, width)


class RandomSelect:
    """Apply `first` with probability `p`, else `second` (DETR's "resize, or crop then resize")."""

    def __init__(self, first: Transform, second: Transform, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, image, target):
        return self.first(image, target) if _uniform() < self.p else self.second(image, target)


class ToTensorNormalize:
    """PIL RGB -> (3, h, w) float32, (x / 255 - mean) / std; boxes xyxy pixels -> cxcywh / (w, h)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, image: Image.Image, target: dict) -> tuple[Tensor, dict]:
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        pixels = pixels.view(image.height, image.width, 3).permute(2, 0, 1).contiguous()  # (3, h, w) uint8
        # (x / 255 - mean) / std, written as one scale and one shift per channel
        normalised = torch.addcmul(-self.mean / self.std, pixels.float(), 1.0 / (255.0 * self.std))
        scale = torch.tensor([image.width, image.height] * 2, dtype=torch.float32)
        boxes = xyxy_to_cxcywh(target["boxes"] / scale) if len(target["boxes"]) else target["boxes"].reshape(0, 4)
        size = torch.tensor([image.height, image.width], dtype=torch.int64)
        return normalised, dict(target, boxes=boxes.float(), size=size)


def build_train_transforms(config: TransformConfig) -> Compose:
    """flip -> (resize | resize, crop, resize) -> tensor + normalise."""
    return Compose([
        RandomHorizontalFlip(config.flip_prob),
        RandomSelect(
            RandomResize(config.train_scales, config.max_size),
            Compose([RandomResize(config.crop_first_scales),
                     RandomSizeCrop(config.crop_min, config.crop_max),
                     RandomResize(config.train_scales, config.max_size)]),
            p=1.0 - config.crop_prob,
        ),
        ToTensorNormalize(),
    ])


def build_eval_transforms(config: TransformConfig) -> Compose:
    """Resize the short side to `eval_scale` (long side <= max_size) -> tensor + normalise."""
    return Compose([RandomResize([config.eval_scale], config.max_size), ToTensorNormalize()])
