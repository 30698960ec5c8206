"""Two processes: the gradients of one big batch, and one scoring of the detections.

* Batch B on each of two processes gives the loss and gradients of one process with batch 2B:
  the loss divides by the number of boxes averaged over processes and DDP averages gradients,
  so (1/2) sum_r grad(L_r) equals grad(L) of the whole batch (see ddetr_edu.training.distributed).
* Evaluation: rank 0 alone scores (runs COCOeval) and every rank ends with its metrics, so the
  ranks agree on the best AP.

Runs on the CPU with gloo on 127.0.0.1.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import ddetr_edu.data.evaluation as evaluation
from ddetr_edu.data import ShapesConfig, build_dataloader, build_datasets, make_shapes_dataset, score_detections
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import (
    DistributedContext,
    all_reduce_mean,
    init_from_env,
    shutdown,
    wrap_model,
)
from ddetr_edu.training.engine import TrainState, predict, train_one_epoch
from ddetr_edu.training.fit import evaluate_model
from ddetr_edu.training.loop import train_loop
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
    loader = build_dataloader(TinyBoxes(2 * B, flip=False), batch_size, shuffle=True, seed=cfg.seed,
                              collate_fn=collate, rank=context.rank, world_size=context.world_size)
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
        loader = build_dataloader(TinyBoxes(3, flip=False), B, shuffle=False, seed=CFG.seed, collate_fn=collate,
                                  rank=context.rank, world_size=context.world_size)
        detections = predict(TinyDetector(), loader, _top_query, device=torch.device("cpu"), context=context)
        if rank == 0:
            torch.save({"losses": losses, "grads": grads, "check": check, "world": context.world_size,
                        "image_ids": [d["image_id"] for d in detections]}, out_path)
    finally:
        shutdown(context)


def _whole_image(outputs, sizes):
    """One detection per image: the whole image (h, w) as an xyxy pixel box, class 0."""
    return [{"scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.int64),
             "boxes": torch.tensor([[0.0, 0.0, float(w), float(h)]])} for h, w in sizes.tolist()]


def _scoring_worker(rank: int, world_size: int, port: int, data_dir: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    coco_evals = []

    class CountedCOCOeval(evaluation.COCOeval):
        def __init__(self, *args, **kwargs):
            coco_evals.append(rank)
            super().__init__(*args, **kwargs)

    evaluation.COCOeval = CountedCOCOeval  # this process only (forked)
    context = init_from_env("cpu")
    try:
        # COCO evaluation of a model on 3 shapes images split over the two ranks
        cfg = TrainConfig(augmentation="shapes", image_size=32, batch_size=1, num_workers=0, device="cpu", seed=5)
        _, val_set = build_datasets(data_dir, cfg)
        metrics, detections = evaluate_model(TinyDetector(), val_set, cfg, context=context,
                                             device=torch.device("cpu"), postprocess=_whole_image)
        # the training loop: a score that depends on how many detections it is given
        scored = []

        def score(found):
            scored.append(len(found))
            return {"AP": 0.1 * len(found), "AP50": 0.0}, f"{len(found)} detections"

        result = train_loop(TinyDetector(), DetectionLoss(NUM_CLASSES), TinyBoxes(4), TinyBoxes(3, seed=1), collate,
                            TrainConfig(**{**CFG.to_dict(), "epochs": 1}), os.path.join(out_dir, "run"),
                            postprocess=_top_query, score=score,
                            context=context, verbose=False)
        torch.save({"coco_evals": len(coco_evals), "stats": metrics.stats, "table": metrics.table,
                    "image_ids": [d["image_id"] for d in detections], "scored": scored,
                    "best_ap": result.best_ap, "last": result.metrics, "loop_table": result.table},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        if rank == 0:
            torch.save(detections, os.path.join(out_dir, "detections.pt"))
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


@pytest.mark.timeout(180)
def test_rank_zero_alone_scores_and_every_rank_gets_the_metrics(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    shapes = ShapesConfig(num_train=2, num_val=3, image_size=32, min_size=8, max_size=16, max_objects=2)
    make_shapes_dataset(tmp_path / "data", shapes)
    mp.start_processes(_scoring_worker, args=(2, _free_port(), str(tmp_path / "data"), str(tmp_path)), nprocs=2,
                       join=True, start_method="fork")
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert (zero["coco_evals"], one["coco_evals"]) == (1, 0)  # evaluate_model: COCOeval on rank 0 only
    assert zero["image_ids"] == one["image_ids"] == [1, 2, 3]  # predict() gathers onto every rank
    assert one["stats"] == pytest.approx(zero["stats"], nan_ok=True) and one["table"] == zero["table"]
    _, val_set = build_datasets(tmp_path / "data", TrainConfig(augmentation="shapes", image_size=32))
    detections = torch.load(tmp_path / "detections.pt", weights_only=True)
    assert zero["stats"] == pytest.approx(score_detections(val_set, detections).stats, nan_ok=True)
    # the loop: rank 0 scored the 3 gathered detections once per epoch, rank 1 never; both agree
    assert zero["scored"] == [3] and one["scored"] == []
    assert one["best_ap"] == zero["best_ap"] == pytest.approx(0.3) and one["last"] == zero["last"]
    assert one["loop_table"] == zero["loop_table"] == "3 detections"
