"""Multi-GPU and multi-node training with torchrun + DistributedDataParallel.

``torchrun --nproc_per_node 8 -m ddetr_edu train ...`` starts 8 processes and gives each the
environment variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`init_from_env` reads them and joins the process group (NCCL on GPUs,
gloo on CPU); without them it returns a single-process :class:`DistributedContext` and every
helper below becomes a no-op, so the same code runs on a laptop.

How the numbers stay the same as one big batch: each process sees ``B`` images of a global
batch of ``world_size * B``. The loss divides by the number of target boxes averaged over
processes (``DetectionLoss`` all-reduces it), and DDP averages the gradients, so

    (1/W) sum_r grad( sum_{boxes of r} loss / (N_boxes / W) ) = grad( sum_{all boxes} loss / N_boxes )

which is the gradient of the single-process loss on the global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None when torch.distributed is not initialised by us

    @property
    def is_main(self) -> bool:
        """True on rank 0: the process that prints, logs and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str = "cpu") -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if any.

    ``device_type`` "cuda" selects NCCL and sets the current device to ``LOCAL_RANK``; "cpu"
    selects gloo. Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is initialised.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():
        return DistributedContext(rank, world_size, local_rank, dist.get_backend())
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, backend)


def current_context() -> DistributedContext:
    """The context of an already initialised process group (or the single-process one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    world_size = dist.get_world_size()
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return DistributedContext(rank, world_size, local_rank, dist.get_backend())


def shutdown(context: DistributedContext) -> None:
    """Leave the process group that :func:`init_from_env` joined."""
    if context.backend is not None and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistributedContext, find_unused_parameters: bool = False) -> nn.Module:
    """DDP-wrap ``model`` when running with more than one process; return it unchanged otherwise."""
    if not context.enabled:
        return model
    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def all_reduce_mean(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average a dict of floats over processes (the same keys on every rank); identity alone."""
    if not context.enabled or not values:
        return dict(values)
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        stacked = stacked.cuda()
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    stacked = stacked.cpu() / context.world_size
    return {k: float(v) for k, v in zip(keys, stacked.tolist())}


def all_gather_objects(obj: object, context: DistributedContext) -> list[object]:
    """Every rank's ``obj`` in rank order (``[obj]`` alone); used to merge COCO detections."""
    if not context.enabled:
        return [obj]
    gathered: list[object] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def run_on_main(function: Callable[[], T], context: DistributedContext) -> T:
    """``function()`` computed on rank 0 alone, its result sent to every rank (``function()`` alone).

    A collective call: every rank must make it. Used to score COCO detections once (rank 0
    holds all of them) while every rank learns the metrics, e.g. to agree on the best AP.
    """
    if not context.enabled:
        return function()
    box = [function() if context.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def barrier(context: DistributedContext) -> None:
    """Wait for every process (no-op alone)."""
    if context.enabled:
        dist.barrier()


def rank_zero_print(context: DistributedContext, *args, **kwargs) -> None:
    """``print`` on rank 0 only (progress and tables; the library itself never prints)."""
    if context.is_main:
        print(*args, **kwargs, flush=True)


__all__ = [
    "DistributedContext",
    "init_from_env",
    "current_context",
    "shutdown",
    "wrap_model",
    "all_reduce_mean",
    "all_gather_objects",
    "run_on_main",
    "barrier",
    "rank_zero_print",
]
