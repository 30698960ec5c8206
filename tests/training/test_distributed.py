"""Two processes with batch B each give the loss and gradients of one process with batch 2B.

The loss divides by the number of boxes averaged over processes and DDP averages gradients,
so (1/2) sum_r grad(L_r) equals grad(L) of the whole batch (see ddetr_edu.training.distributed).
Runs on the CPU with gloo on 127.0.0.1.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    init_from_env,
    shutdown,
    wrap_model,
)
from ddetr_edu.training.engine import TrainState, make_loader, predict, train_one_epoch
from ddetr_edu.training.losses import DetectionLoss
from ddetr_edu.training.optim import build_optimizer

from engine_standins import NUM_CLASSES, TinyBoxes, TinyDetector, collate

B = 2  # images per process
CFG = TrainConfig(batch_size=B, num_workers=0, clip_max_norm=0.0, max_steps_per_epoch=1, device="cpu", seed=5)


def _one_step(context: DistributedContext, batch_size: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One optimiser step on 2B images split over the processes; (mean losses, gradients)."""
    torch.manual_seed(0)
    model = TinyDetector(dropout=0.0)  # the same initial weights everywhere
    train_model = wrap_model(model, context)
    cfg = TrainConfig(**{**CFG.to_dict(), "batch_size": batch_size})
    loader = make_loader(TinyBoxes(2 * B, flip=False), collate, cfg, context, train=True, epoch=0)
    losses = train_one_epoch(train_model, DetectionLoss(NUM_CLASSES), loader, build_optimizer(model, cfg), cfg,
                             TrainState(), device=torch.device("cpu"), context=context)
    return losses, {n: p.grad.clone() for n, p in model.named_parameters()}  # DDP-averaged gradients


def _top_query(outputs, sizes):
    """One detection per image: query 0, class 0 (a stand-in for the real postprocess)."""
    return [{"scores": logits[:1, 0], "labels": torch.zeros(1, dtype=torch.int64), "boxes": boxes[:1]}
            for logits, boxes in zip(outputs["pred_logits"], outputs["pred_boxes"])]


def _worker(rank: int, world_size: int, port: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    context = init_from_env("cpu")
    try:
        losses, grads = _one_step(context, batch_size=B)
        check = all_reduce_mean({"rank": float(rank)}, context)["rank"]  # (0 + 1) / 2
        # evaluation: 3 images over 2 ranks (the sampler repeats one); every rank gets all, once
        loader = make_loader(TinyBoxes(3, flip=False), collate, CFG, context, train=False)
        detections = predict(TinyDetector(), loader, _top_query, device=torch.device("cpu"), context=context)
        if rank == 0:
            torch.save({"losses": losses, "grads": grads, "check": check, "world": context.world_size,
                        "image_ids": [d["image_id"] for d in detections]}, out_path)
    finally:
        shutdown(context)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(180)
def test_two_processes_match_one_big_batch(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    out_path = str(tmp_path / "rank0.pt")
    # fork: the children reuse the imported modules (spawn would re-import torch, ~5 s each)
    mp.start_processes(_worker, args=(2, _free_port(), out_path), nprocs=2, join=True, start_method="fork")
    two = torch.load(out_path, weights_only=True)
    assert two["world"] == 2 and two["check"] == pytest.approx(0.5)
    assert two["image_ids"] == [1, 2, 3]

    one_losses, one_grads = _one_step(DistributedContext(), batch_size=2 * B)
    assert two["losses"]["loss"] == pytest.approx(one_losses["loss"], rel=1e-5)
    for name, grad in one_grads.items():
        assert grad.abs().sum() > 0, f"{name} got no gradient"
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-7, msg=lambda m: f"{name}: {m}")
