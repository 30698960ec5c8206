"""Tiny stand-ins for the engine tests: a detector-shaped model and a boxes dataset.

They follow the detector's output contract (``pred_logits``, ``pred_boxes``, ``aux_outputs``:
:class:`ddetr_edu.models.detector.DeformableDETR`), the target dicts of
:mod:`ddetr_edu.data.coco` and the ``(images, masks, targets)`` batches of
:func:`ddetr_edu.data.collate.collate_detection`, while being small enough that a whole training run takes
a fraction of a second. Tests only; never imported by the library.
"""
from __future__ import annotations

import random

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

NUM_CLASSES = 3
NUM_QUERIES = 6


class TinyDetector(nn.Module):
    """images (n, 3, h, w) -> {"pred_logits" (n, q, c), "pred_boxes" (n, q, 4), "aux_outputs"}.

    Parameter names include ``backbone`` and ``sampling_offsets`` so that the optimiser's
    parameter groups have something to find. ``dropout`` > 0 makes the forward pass consume
    the torch RNG (which resuming must restore).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, num_queries: int = NUM_QUERIES, dropout: float = 0.1):
        super().__init__()
        self.num_classes, self.num_queries = num_classes, num_queries
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.sampling_offsets = nn.Linear(8, 8)
        self.dropout = nn.Dropout(dropout)
        self.class_head = nn.Linear(8, num_queries * num_classes)
        self.box_head = nn.Linear(8, num_queries * 4)
        self.aux_box_head = nn.Linear(8, num_queries * 4)

    def forward(self, images: Tensor, masks: Tensor | None = None, return_attention: bool = False) -> dict:
        n = images.shape[0]
        features = self.backbone(images).mean(dim=(2, 3))  # (n, 8)
        features = self.dropout(torch.relu(self.sampling_offsets(features)) + features)
        logits = self.class_head(features).view(n, self.num_queries, self.num_classes)
        boxes = self.box_head(features).view(n, self.num_queries, 4).sigmoid()
        aux_boxes = self.aux_box_head(features).view(n, self.num_queries, 4).sigmoid()
        return {"pred_logits": logits, "pred_boxes": boxes,
                "aux_outputs": [{"pred_logits": logits, "pred_boxes": aux_boxes}]}


class TinyBoxes(Dataset):
    """``size`` random 16x16 images, 1-2 boxes each; a random flip drawn from python's RNG."""

    def __init__(self, size: int = 4, seed: int = 0, image_size: int = 16, flip: bool = True):
        self.flip = flip
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(size, 3, image_size, image_size, generator=generator)
        self.targets = []
        for index in range(size):
            count = 1 + index % 2
            centres = 0.3 + 0.4 * torch.rand(count, 2, generator=generator)
            sizes = 0.1 + 0.3 * torch.rand(count, 2, generator=generator)
            self.targets.append({
                "boxes": torch.cat([centres, sizes], dim=1),
                "labels": torch.randint(0, NUM_CLASSES, (count,), generator=generator),
                "image_id": index + 1,
                "orig_size": torch.tensor([image_size, image_size]),
                "size": torch.tensor([image_size, image_size]),
            })

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, target = self.images[index], dict(self.targets[index])
        if self.flip and random.random() < 0.5:  # horizontal flip: x -> 1 - x
            image = image.flip(-1)
            boxes = target["boxes"].clone()
            boxes[:, 0] = 1 - boxes[:, 0]
            target["boxes"] = boxes
        return image, target


def collate(batch):
    """(images (n, 3, h, w), masks (n, h, w) all False, targets) for equal-size images."""
    images = torch.stack([image for image, _ in batch])
    masks = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.bool)
    return images, masks, [target for _, target in batch]
