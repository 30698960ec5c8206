"""Batching images of different sizes (the loader that uses it: :mod:`ddetr_edu.data.loader`).

`collate_detection` pads every image of a batch at the bottom and right with zeros to the
largest height and width (optionally rounded up to a multiple of `size_divisibility`) and returns
a padding mask that is True on padded pixels: the model and its positional encodings use it
to ignore the padding, and the targets' normalised boxes stay relative to each *unpadded* image.
"""
from __future__ import annotations

import torch
from torch import Tensor


def collate_detection(batch: list[tuple[Tensor, dict]], size_divisibility: int = 0) -> tuple[Tensor, Tensor, list[dict]]:
    """[(image (3, h_i, w_i), target), ...] -> (images (n, 3, H, W), masks (n, H, W) bool, targets)."""
    if len(batch) == 0:
        raise ValueError("collate_detection: got an empty batch")
    images = [image for image, _ in batch]
    for image in images:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"collate_detection: expected images of shape (3, h, w), got {tuple(image.shape)}")
    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    if size_divisibility > 0:
        height = -(-height // size_divisibility) * size_divisibility
        width = -(-width // size_divisibility) * size_divisibility
    padded = images[0].new_zeros((len(images), 3, height, width))  # (n, 3, H, W)
    masks = torch.ones((len(images), height, width), dtype=torch.bool)  # (n, H, W), True = padding
    for i, image in enumerate(images):
        h, w = image.shape[1:]
        padded[i, :, :h, :w] = image
        masks[i, :h, :w] = False
    return padded, masks, [target for _, target in batch]


__all__ = ["collate_detection"]
