"""The one DataLoader builder: batches whose order and augmentations repeat exactly.

The order of epoch ``e`` depends only on ``(seed, e)``: a ``DistributedSampler`` with
``set_epoch(e)`` draws it, also with one process (``world_size=1``), so the order never
touches the global RNG. With ``W`` processes, rank ``r`` gets every W-th index of that order
(the last batch is padded by repeating indices). ``skip_batches`` leaves out the batches an
interrupted epoch already trained on (:class:`SkipFirst`), which is how a resumed run continues
with the very next batch.

The loader's own ``torch.Generator`` is seeded from ``(seed, epoch, rank)``: it gives the
worker processes their base seed (PyTorch seeds torch, numpy and ``random`` in worker ``i``
from ``base_seed`` and ``i``), and with ``num_workers=0`` it keeps the loader from drawing on the
global RNG. In-process augmentations use torch's global RNG: seed it (``torch.manual_seed``)
for repeatable runs, as the training loop does.

Worker processes leave a scheduler's SIGTERM to the main process, which saves its checkpoint
and then ends them; a SIGTERM from the main process itself ends a worker
(:mod:`ddetr_edu.data.worker_signals`).

    loader = build_dataloader(train_set, batch_size=4, shuffle=True, seed=0, epoch=3)
    images, masks, targets = next(iter(loader))  # (n, 3, H, W), (n, H, W) True = padding, [dict]
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ddetr_edu.data.collate import collate_detection
from ddetr_edu.data.worker_signals import leave_sigterm_to_the_main_process


class SkipFirst(Sampler[int]):
    """The indices of ``sampler`` without the first ``skip`` (resuming in the middle of an epoch)."""

    def __init__(self, sampler: Sampler[int], skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        for position, index in enumerate(self.sampler):
            if position >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)  # type: ignore[arg-type]


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    *,
    epoch: int = 0,
    skip_batches: int = 0,
    rank: int = 0,
    world_size: int = 1,
    collate_fn: Callable = collate_detection,
) -> DataLoader:
    """The DataLoader of epoch ``epoch`` for process ``rank`` of ``world_size`` (module docstring).

    ``shuffle=False`` keeps the dataset's order (evaluation). Batches are ``collate_fn``'s
    output, by default ``(images (n, 3, H, W), masks (n, H, W), targets)``.
    """
    if batch_size < 1:
        raise ValueError(f"build_dataloader: batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"build_dataloader: rank must be in 0..world_size-1 = 0..{world_size - 1}, got {rank}")
    sampler: Sampler[int] = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                               seed=seed, drop_last=False)
    sampler.set_epoch(epoch)  # type: ignore[attr-defined]
    if skip_batches:
        sampler = SkipFirst(sampler, skip_batches * batch_size)
    generator = torch.Generator().manual_seed(seed * 1000 + epoch * 16 + rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        generator=generator,
        drop_last=False,
        worker_init_fn=leave_sigterm_to_the_main_process if num_workers > 0 else None,
    )


__all__ = ["SkipFirst", "build_dataloader"]
