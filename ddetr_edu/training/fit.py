"""``fit``: from configs and a data folder to a trained, evaluated detector.

    result = fit(get_preset("shapes_cpu"), train_preset("shapes_cpu"), "data/shapes", "runs/demo")

builds the detector (:func:`ddetr_edu.models.build_detector`), the loss, the COCO-format
datasets with their augmentation, and runs :func:`ddetr_edu.training.loop.train_loop`, scoring
with pycocotools every ``eval_every`` epochs. Two folder layouts are recognised
(:func:`find_data`):

* shapes (``ddetr_edu make-shapes``): ``train.json``, ``val.json``, ``images/{train,val}/``;
* COCO 2017: ``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ddetr_edu.config import ModelConfig, config_to_dict
from ddetr_edu.data.coco import CocoDetection
from ddetr_edu.data.collate import collate_detection
from ddetr_edu.data.evaluation import CocoEvaluator, CocoMetrics
from ddetr_edu.data.transforms import TransformConfig, build_eval_transforms, build_train_transforms
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import DistributedContext, current_context
from ddetr_edu.training.engine import make_loader, predict, resolve_device
from ddetr_edu.training.loop import FitResult, train_loop


@dataclass(frozen=True)
class DataPaths:
    """Image folders and COCO annotation files of the two splits."""

    train_images: Path
    train_annotations: Path
    val_images: Path
    val_annotations: Path


def find_data(root: str | os.PathLike) -> DataPaths:
    """The splits under ``root`` (shapes or COCO 2017 layout); ``FileNotFoundError`` otherwise."""
    root = Path(root)
    layouts = {
        "shapes": DataPaths(root / "images" / "train", root / "train.json",
                            root / "images" / "val", root / "val.json"),
        "COCO 2017": DataPaths(root / "train2017", root / "annotations" / "instances_train2017.json",
                               root / "val2017", root / "annotations" / "instances_val2017.json"),
    }
    for paths in layouts.values():
        if all(Path(p).exists() for p in dataclasses.astuple(paths)):
            return paths
    expected = "; ".join(f"{name}: {', '.join(str(Path(p).relative_to(root)) for p in dataclasses.astuple(paths))}"
                         for name, paths in layouts.items())
    raise FileNotFoundError(f"no dataset found under {root}; expected one of these layouts: {expected}")


def transform_config(cfg: TrainConfig) -> TransformConfig:
    """The augmentation recipe of ``cfg`` as the data pipeline's :class:`TransformConfig`."""
    recipe = TransformConfig.coco() if cfg.augmentation == "coco" else TransformConfig.shapes(cfg.image_size)
    changes: dict[str, Any] = {"crop_prob": cfg.crop_prob, "flip_prob": cfg.flip_prob}
    if not cfg.scale_jitter:
        changes["train_scales"] = (recipe.eval_scale,)
    return dataclasses.replace(recipe, **changes)


def build_datasets(data_root: str | os.PathLike, cfg: TrainConfig) -> tuple[CocoDetection, CocoDetection]:
    """(train set with augmentation, validation set with the evaluation resize)."""
    paths = find_data(data_root)
    recipe = transform_config(cfg)
    train_set = CocoDetection(paths.train_images, paths.train_annotations, build_train_transforms(recipe))
    val_set = CocoDetection(paths.val_images, paths.val_annotations, build_eval_transforms(recipe))
    return train_set, val_set


def coco_scorer(val_set: CocoDetection):
    """``score(detections) -> (metrics, table)`` for :func:`train_loop`, with pycocotools."""

    def score(detections: list[dict[str, Any]]) -> tuple[dict[str, float], str]:
        metrics = score_detections(val_set, detections)
        return metrics.stats, metrics.table

    return score


def score_detections(val_set: CocoDetection, detections: list[dict[str, Any]]) -> CocoMetrics:
    """COCO metrics of ``detections`` ([{"image_id", "scores", "labels", "boxes"}]) on ``val_set``.

    Under torch.distributed the evaluator all-gathers, so every rank must call this (each with
    its own, non-overlapping detections).
    """
    evaluator = CocoEvaluator(val_set.coco, val_set.label_to_category_id)
    evaluator.update({d["image_id"]: d for d in detections})
    return evaluator.compute()


def build_criterion(model_cfg: ModelConfig) -> nn.Module:
    """The paper's loss: Hungarian matching (2, 5, 2) and focal + L1 + GIoU (2, 5, 2)."""
    from ddetr_edu.training.losses import DetectionLoss
    from ddetr_edu.training.matcher import HungarianMatcher

    return DetectionLoss(model_cfg.num_classes, HungarianMatcher())


def check_classes(model_cfg: ModelConfig, dataset: CocoDetection) -> None:
    """The model must have a logit for every class of the data (labels 0..C-1)."""
    if model_cfg.num_classes < dataset.num_classes:
        raise ValueError(f"model num_classes={model_cfg.num_classes} but the dataset has "
                         f"{dataset.num_classes} classes {dataset.class_names}; set num_classes >= "
                         f"{dataset.num_classes}")


def training_device(cfg: TrainConfig, context: DistributedContext) -> torch.device:
    """The device of this process: ``cfg.device``, or ``cuda:LOCAL_RANK`` under torchrun."""
    device = resolve_device(cfg.device)
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)
    return device


def fit(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data_root: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    resume: str | os.PathLike | None = None,
    verbose: bool = True,
    epoch_callback: Callable[[nn.Module, int], None] | None = None,
) -> FitResult:
    """Train the detector of ``model_cfg`` on ``data_root`` with ``train_cfg``; see module docstring.

    Under torchrun, initialise the process group first (:func:`ddetr_edu.training.distributed.init_from_env`,
    the CLI does it); ``fit`` then trains with DDP and a DistributedSampler. ``epoch_callback``:
    see :func:`ddetr_edu.training.loop.train_loop`.
    """
    from ddetr_edu.models import build_detector, postprocess

    context = current_context()
    train_set, val_set = build_datasets(data_root, train_cfg)
    check_classes(model_cfg, train_set)
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = build_detector(model_cfg)
    return train_loop(
        model, build_criterion(model_cfg), train_set, val_set, collate_detection, train_cfg, run_dir,
        postprocess=postprocess, score=coco_scorer(val_set), model_config=config_to_dict(model_cfg),
        resume=resume, context=context, device=training_device(train_cfg, context), verbose=verbose,
        epoch_callback=epoch_callback,
    )


def evaluate_model(
    model: nn.Module,
    val_set: CocoDetection,
    train_cfg: TrainConfig,
    *,
    context: DistributedContext | None = None,
    device: torch.device | None = None,
    postprocess: Callable | None = None,
) -> tuple[CocoMetrics, list[dict[str, Any]]]:
    """COCO metrics of ``model`` on ``val_set`` and the detections behind them.

    ``postprocess`` defaults to :func:`ddetr_edu.models.postprocess` (labels 0..C-1).
    """
    if postprocess is None:
        from ddetr_edu.models import postprocess

    context = context or current_context()
    device = device or training_device(train_cfg, context)
    model.to(device)
    loader = make_loader(val_set, collate_detection, train_cfg, context, train=False)
    detections = predict(model, loader, postprocess, device=device, context=context, amp=train_cfg.amp,
                         max_images=train_cfg.max_eval_images)
    # rank 0 holds every rank's detections already; the others add none to the evaluator's gather
    return score_detections(val_set, detections if context.is_main else []), detections


__all__ = ["DataPaths", "find_data", "transform_config", "build_datasets", "coco_scorer", "score_detections",
           "build_criterion", "check_classes", "training_device", "fit", "evaluate_model"]
