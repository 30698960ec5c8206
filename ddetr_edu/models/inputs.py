"""Checking and padding the detector's input batch.

Images of different sizes share one tensor by zero-padding at the bottom and right; the mask
records where: (N, H, W) bool, True on padding. The model then works in coordinates of each
image's valid area (see ``encoder.valid_ratios``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_images(images: Tensor, masks: Tensor | None) -> Tensor:
    """Validate a batch, images (N, 3, H, W) float and masks (N, H, W) bool or None; returns the
    masks (all False when None). Raises ValueError. The detector and the backbone both use it."""
    if not isinstance(images, Tensor):
        raise ValueError(f"images: expected a tensor (N, 3, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images: expected 4 dimensions (N, 3, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] != 3:
        raise ValueError(f"images: expected 3 channels (RGB) in (N, 3, H, W), got {images.shape[1]} "
                         f"channels (shape {tuple(images.shape)}); convert grayscale/RGBA to RGB first")
    if not images.is_floating_point():
        raise ValueError(f"images: expected a floating-point tensor (ImageNet-normalised), got "
                         f"{images.dtype}; convert with images.float() / 255 and normalise")
    n, _, h, w = images.shape
    if masks is None:
        return torch.zeros(n, h, w, dtype=torch.bool, device=images.device)
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool:
        got = masks.dtype if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks: expected a bool tensor (True = padding), got {got}")
    if tuple(masks.shape) != (n, h, w):
        raise ValueError(f"masks: expected shape (N, H, W) = {(n, h, w)}, got {tuple(masks.shape)}")
    return masks


def check_model_input(images: Tensor, weight_dtype: torch.dtype, min_side: int) -> None:
    """The batch (N, 3, H, W) against the model: one dtype with its weights (any mix is fine under
    autocast, which casts), and H, W >= ``min_side`` pixels (the coarsest backbone level needs a
    pixel; a 1 x 1 image cannot be normalised there). Raises a one-line ValueError."""
    if images.dtype != weight_dtype and not torch.is_autocast_enabled(images.device.type):
        raise ValueError(f"images: expected {weight_dtype}, the dtype of the model's weights, got {images.dtype}; "
                         f"convert with images.to({weight_dtype}) (or run under torch.autocast)")
    height, width = images.shape[-2:]
    if height < min_side or width < min_side:
        raise ValueError(f"images: expected height and width of at least {min_side} pixels (the backbone's "
                         f"coarsest stride), got {height} x {width}; resize the image up")


def pad_images(images: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """[(3, H_i, W_i)] -> (images (N, 3, max H, max W) zero-padded bottom/right,
    masks (N, max H, max W) bool True = padding)."""
    if len(images) == 0:
        raise ValueError("images: expected at least one image, got an empty list")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3:
            got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"images[{i}]: expected a (3, H, W) tensor, got {got}")
    channels = {int(im.shape[0]) for im in images}
    if len(channels) != 1:
        raise ValueError(f"images: all images need the same channels, got {sorted(channels)}")
    h = max(int(im.shape[1]) for im in images)
    w = max(int(im.shape[2]) for im in images)
    first = images[0]
    batch = first.new_zeros(len(images), first.shape[0], h, w)
    masks = torch.ones(len(images), h, w, dtype=torch.bool, device=first.device)
    for i, image in enumerate(images):
        batch[i, :, :image.shape[1], :image.shape[2]].copy_(image)
        masks[i, :image.shape[1], :image.shape[2]] = False
    return batch, masks
