"""``fit``: from configs and a data folder to a trained, evaluated detector.

    result = fit(get_preset("shapes_cpu"), train_preset("shapes_cpu"), "data/shapes", "runs/demo")

builds the detector (:func:`ddetr_edu.models.build_detector`), the loss, the COCO-format
datasets with their augmentation (:func:`ddetr_edu.data.folders.build_datasets`: the shapes or
the COCO 2017 folder layout), and runs :func:`ddetr_edu.training.loop.train_loop`, scoring with
pycocotools every ``eval_every`` epochs (:func:`ddetr_edu.data.evaluation.coco_scorer`).

Fine-tuning: ``fit(None, train_cfg, data, run, init_from="reference")`` (or a checkpoint file)
starts a new run from trained weights (:mod:`ddetr_edu.checkpoints.init_weights`): the model
config is the source's with the data's class count (pass a ``ModelConfig`` to choose another),
every tensor whose name and shape match is loaded, and the class head starts afresh when the
classes differ.

Classes: the model needs a class logit for each of the dataset's C classes (labels 0..C-1),
and may have more (the paper presets keep the official 91 = COCO's largest category id + 1,
while the data numbers COCO's 80 categories 0..79). The extra logits are classes the data
never has: training pushes them down, and evaluation ranks detections among the first C only
(:func:`dataset_postprocess`). ``fit`` uses ``model_cfg.num_classes`` as given; the command
line sets it to the dataset's class count unless ``--set num_classes`` says otherwise.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ddetr_edu.checkpoints.init_weights import InitWeights, init_model_config, load_matching, read_init_weights
from ddetr_edu.config import ModelConfig, config_to_dict
from ddetr_edu.data.coco import CocoDetection
from ddetr_edu.data.collate import collate_detection
from ddetr_edu.data.evaluation import CocoMetrics, coco_scorer, score_detections
from ddetr_edu.data.folders import build_datasets
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.distributed import DistributedContext, current_context, rank_zero_print
from ddetr_edu.training.engine import evaluate, resolve_device
from ddetr_edu.training.loop import FitResult, train_loop


def build_criterion(model_cfg: ModelConfig) -> nn.Module:
    """The paper's loss: Hungarian matching (2, 5, 2) and focal + L1 + GIoU (2, 5, 2)."""
    from ddetr_edu.training.losses import DetectionLoss
    from ddetr_edu.training.matcher import HungarianMatcher

    return DetectionLoss(model_cfg.num_classes, HungarianMatcher())


def check_classes(model_cfg: ModelConfig, class_names: Sequence[str],
                  trained_on: Sequence[str] | None = None, fix: str | None = None) -> None:
    """The model must have a logit for every class of the data (``class_names``, labels 0..C-1);
    ``trained_on``: the class names a checkpoint was trained with, which must be the same.
    ``fix``: the advice that ends the message (default: set num_classes / label i must match),
    e.g. ``--resume``'s, whose model cannot change."""
    if model_cfg.num_classes < len(class_names):
        shown = ", ".join(class_names[:10]) + (", ..." if len(class_names) > 10 else "")
        raise ValueError(f"model num_classes={model_cfg.num_classes} but the dataset has {len(class_names)} "
                         f"classes ({shown}); {fix or f'set num_classes >= {len(class_names)}'}")
    if trained_on is not None and list(trained_on) != list(class_names):
        raise ValueError(f"the model was trained on the classes {list(trained_on)} but the dataset has "
                         f"{list(class_names)}; {fix or 'label i must mean the same class in both'}")


def dataset_postprocess(num_classes: int) -> Callable[[dict, torch.Tensor], list[dict]]:
    """:func:`ddetr_edu.models.postprocess` over the first ``num_classes`` class logits only:
    a model with more logits than the data has classes ranks its detections among the data's
    classes, and every label is in 0..num_classes-1 (what the evaluation maps to category ids)."""
    from ddetr_edu.models import postprocess

    def on_dataset_classes(outputs: dict, target_sizes: torch.Tensor) -> list[dict]:
        # pred_logits (N, Q, K) -> (N, Q, num_classes); K >= num_classes (check_classes)
        return postprocess({**outputs, "pred_logits": outputs["pred_logits"][..., :num_classes]}, target_sizes)

    return on_dataset_classes


def training_device(cfg: TrainConfig, context: DistributedContext) -> torch.device:
    """The device of this process: ``cfg.device``, or ``cuda:LOCAL_RANK`` under torchrun."""
    device = resolve_device(cfg.device)
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)
    return device


def fit(
    model_cfg: ModelConfig | None,
    train_cfg: TrainConfig,
    data_root: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    resume: str | os.PathLike | None = None,
    init_from: str | os.PathLike | InitWeights | None = None,
    verbose: bool = True,
    epoch_callback: Callable[[nn.Module, int], None] | None = None,
) -> FitResult:
    """Train the detector of ``model_cfg`` on ``data_root`` with ``train_cfg``; see module docstring.

    ``resume`` continues a run from its checkpoint; ``init_from`` (``"reference"``, a checkpoint
    or state_dict file, or :class:`~ddetr_edu.checkpoints.init_weights.InitWeights` already read)
    starts a new run from trained weights, and then ``model_cfg`` may be None
    (the source's config with the data's class count). The two exclude each other.

    Under torchrun, initialise the process group first (:func:`ddetr_edu.training.distributed.init_from_env`,
    the CLI does it); ``fit`` then trains with DDP and a DistributedSampler. ``epoch_callback``:
    see :func:`ddetr_edu.training.loop.train_loop`.
    """
    from ddetr_edu.models import build_detector

    if resume is not None and init_from is not None:
        raise ValueError("resume and init_from exclude each other: resume continues a run, init_from starts a new "
                         "one from trained weights")
    if model_cfg is None and init_from is None:
        raise ValueError("model_cfg: a ModelConfig is needed unless init_from gives the weights and their config")
    context = current_context()
    train_set, val_set = build_datasets(data_root, train_cfg)  # the same classes (build_datasets checks)
    weights = read_init_weights(init_from) if isinstance(init_from, (str, os.PathLike)) else init_from
    if model_cfg is None:
        model_cfg = init_model_config(weights, train_set.num_classes)
    check_classes(model_cfg, train_set.class_names)
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = build_detector(model_cfg)
    if weights is not None:
        report = load_matching(model, weights, train_set.class_names)
        if verbose:
            rank_zero_print(context, report.summary())
    return train_loop(
        model, build_criterion(model_cfg), train_set, val_set, collate_detection, train_cfg, run_dir,
        postprocess=dataset_postprocess(val_set.num_classes), score=coco_scorer(val_set),
        model_config=config_to_dict(model_cfg), resume=resume, context=context,
        device=training_device(train_cfg, context), verbose=verbose, epoch_callback=epoch_callback,
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

    ``postprocess`` defaults to :func:`dataset_postprocess` (labels 0..C-1 of ``val_set``). Under
    torch.distributed every rank must call it: the detections are gathered from all ranks,
    rank 0 alone runs COCOeval and every rank returns the same metrics.
    """
    postprocess = postprocess or dataset_postprocess(val_set.num_classes)
    context = context or current_context()
    device = device or training_device(train_cfg, context)
    model.to(device)
    return evaluate(model, val_set, collate_detection, postprocess, lambda found: score_detections(val_set, found),
                    train_cfg, device=device, context=context)


__all__ = ["build_criterion", "check_classes", "dataset_postprocess", "training_device", "fit", "evaluate_model"]
