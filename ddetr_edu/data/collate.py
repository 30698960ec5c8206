"""Batching images of different sizes, and reproducible data loaders.

`collate_detection` pads every image of a batch at the bottom and right with zeros to the
largest height and width (optionally rounded up to a multiple of `size_divisibility`) and returns
a padding mask that is True on padded pixels: the model and its positional encodings use it
to ignore the padding, and the targets' normalised boxes stay relative to each *unpadded* image.

`build_dataloader` makes a `DataLoader` whose shuffling and augmentations repeat for a given
seed: the sampler draws from a `torch.Generator` seeded with `seed`; each worker process gets
torch seed ``base_seed + worker_id`` from that generator (PyTorch's rule) and `seed_worker`
derives numpy's and Python's seeds from it. With ``num_workers=0`` the augmentations run in
the main process on torch's global RNG, so seed it (``torch.manual_seed``) for repeatable runs.
"""
from __future__ import annotations

import functools
import random

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


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


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn`: seed numpy and Python from the worker's torch seed (set by the DataLoader)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_dataloader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                     sampler: Sampler | None = None, drop_last: bool = False,
                     size_divisibility: int = 0) -> DataLoader:
    """A DataLoader of (images, masks, targets) batches, reproducible for a given `seed`.

    Pass a `sampler` (e.g. ``DistributedSampler``) to choose the order yourself; `shuffle` must
    then be False (the sampler decides).
    """
    if batch_size < 1:
        raise ValueError(f"build_dataloader: batch_size must be >= 1, got {batch_size}")
    if sampler is not None and shuffle:
        raise ValueError("build_dataloader: pass shuffle=False with a sampler (the sampler decides the order)")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=functools.partial(collate_detection, size_divisibility=size_divisibility),
        worker_init_fn=seed_worker,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
    )
