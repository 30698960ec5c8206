"""COCO box evaluation (pycocotools' COCOeval) with a small, quiet interface.

What the numbers mean. One scale everywhere: every AP and AR that ddetr_edu prints (this table,
the training log, the command line), writes (``log.jsonl``, ``metrics.json``, checkpoints) or
plots is a fraction 0..1, pycocotools' own scale; papers print them x100 (0.438 here is the
paper's 43.8).

* AP: precision averaged over recall levels 0, 0.01, ..., 1, then over the 10 IoU thresholds
  0.50, 0.55, ..., 0.95 and over the classes. A detection counts as correct at threshold t
  when its IoU with a not-yet-matched ground-truth box of its class is >= t.
* AP50, AP75: the same at the single IoU threshold 0.5 (loose) or 0.75 (strict).
* AP_S, AP_M, AP_L: AP over objects of area in [0, 32^2], [32^2, 96^2], [96^2, inf) pixels (the
  ranges include their ends; area from the annotation file); ground truth outside the range is
  ignored, and so are detections outside it that match nothing.
* AR1, AR10, AR100: recall with at most 1, 10, 100 detections per image, averaged over IoU
  thresholds and classes; AR_S, AR_M, AR_L: AR100 per size range.

A metric that has no ground truth to measure (e.g. AP_L on a set with no large object) is NaN,
where pycocotools reports -1; the table prints it as n/a and :meth:`CocoMetrics.stats_json` as null.

Usage::

    evaluator = CocoEvaluator(dataset.coco, dataset.label_to_category_id)
    evaluator.update({image_id: {"scores": (K,), "labels": (K,) contiguous, "boxes": (K, 4) xyxy pixels}})
    result = evaluator.compute()  # CocoMetrics: .stats dict, .table str, .per_class dict

or, for a :class:`~ddetr_edu.data.coco.CocoDetection` and a list of detections,
``score_detections(dataset, detections)``. Scoring runs in one process: under torch.distributed
the detections are gathered first and rank 0 alone scores them
(:func:`ddetr_edu.training.engine.evaluate`).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

if TYPE_CHECKING:
    from ddetr_edu.data.coco import CocoDetection

STAT_NAMES = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR1", "AR10", "AR100", "AR_S", "AR_M", "AR_L")


@dataclass
class CocoMetrics:
    """The 12 COCO numbers (0..1, NaN where undefined), AP per class name, and a printable table."""

    stats: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)

    @property
    def table(self) -> str:
        def fmt(value: float) -> str:
            return "  n/a" if math.isnan(value) else f"{value:5.3f}"

        lines = ["metric   value (0..1)"]
        lines += [f"{name:<8} {fmt(value)}" for name, value in self.stats.items()]
        if self.per_class:
            lines.append("AP per class:")
            lines += [f"  {name:<12} {fmt(value)}" for name, value in self.per_class.items()]
        return "\n".join(lines)

    def stats_json(self) -> str:
        """The 12 numbers as strict JSON (what ``metrics.json`` holds): NaN becomes null."""
        plain = {name: None if math.isnan(value) else value for name, value in self.stats.items()}
        return json.dumps(plain, indent=2, allow_nan=False) + "\n"

    def __str__(self) -> str:
        return self.table


class CocoEvaluator:
    """Collects predictions image by image, then runs COCOeval (bbox) on them."""

    def __init__(self, coco_gt: COCO, label_to_category_id: Sequence[int], verbose: bool = False):
        self.coco_gt = coco_gt
        self.label_to_category_id = [int(c) for c in label_to_category_id]
        missing = [c for c in self.label_to_category_id if c not in coco_gt.cats]
        if missing:
            raise ValueError(f"CocoEvaluator: category ids {missing} are not in the ground truth's categories "
                             f"{sorted(coco_gt.cats)}")
        self.verbose = verbose
        self.detections: list[dict] = []
        self.image_ids: set[int] = set()

    def update(self, predictions: Mapping[int, Mapping[str, torch.Tensor]]) -> None:
        """Add predictions {image_id: {"scores" (K,), "labels" (K,) int contiguous, "boxes" (K, 4) xyxy px}}.

        Boxes are in pixels of the *original* image (``postprocess`` with ``orig_size``). An
        image given with K = 0 is evaluated with no detections (its objects count as missed).
        """
        for image_id, prediction in predictions.items():
            image_id = int(image_id)
            if image_id not in self.coco_gt.imgs:
                raise ValueError(f"CocoEvaluator.update: image_id {image_id} is not in the ground truth")
            scores = torch.as_tensor(prediction["scores"]).detach().cpu().reshape(-1).tolist()
            labels = torch.as_tensor(prediction["labels"]).detach().cpu().reshape(-1).tolist()
            boxes = torch.as_tensor(prediction["boxes"]).detach().cpu().float().reshape(-1, 4)
            if not len(scores) == len(labels) == len(boxes):
                raise ValueError(f"CocoEvaluator.update: image {image_id} has {len(scores)} scores, "
                                 f"{len(labels)} labels and {len(boxes)} boxes; expected equal counts")
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()  # COCO wants [x, y, w, h]
            for score, label, box in zip(scores, labels, xywh):
                if not 0 <= int(label) < len(self.label_to_category_id):
                    raise ValueError(f"CocoEvaluator.update: label {label} outside 0..{len(self.label_to_category_id) - 1}")
                self.detections.append({"image_id": image_id, "category_id": self.label_to_category_id[int(label)],
                                        "bbox": box, "score": float(score)})
            self.image_ids.add(image_id)

    def _load_results(self, detections: list[dict]) -> COCO:
        """A COCO object holding the detections (pycocotools' loadRes cannot take an empty list)."""
        results = COCO()
        results.dataset = {"images": copy.copy(self.coco_gt.dataset["images"]),
                           "categories": copy.deepcopy(self.coco_gt.dataset.get("categories", []))}
        annotations = []
        for index, det in enumerate(detections, start=1):
            x, y, w, h = det["bbox"]
            annotations.append(dict(det, id=index, area=w * h, iscrowd=0))
        results.dataset["annotations"] = annotations
        with contextlib.redirect_stdout(io.StringIO()):
            results.createIndex()
        return results

    def compute(self, image_ids: Sequence[int] | None = None) -> CocoMetrics:
        """Run COCOeval over `image_ids` (default: every image given to `update`, or, if none
        was, every ground-truth image) and return the metrics."""
        detections = self.detections
        if image_ids is None:
            image_ids = sorted(self.image_ids) if self.image_ids else sorted(self.coco_gt.imgs)
        quiet = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
        with quiet:
            coco_eval = COCOeval(self.coco_gt, self._load_results(detections), iouType="bbox")
            coco_eval.params.imgIds = list(image_ids)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats = {name: (float("nan") if value < 0 else float(value)) for name, value in zip(STAT_NAMES, coco_eval.stats)}
        # precision: (iou thresholds, recall levels, classes, area ranges, max dets); area "all", 100 dets
        precision = coco_eval.eval["precision"][:, :, :, 0, -1]
        per_class = {}
        for k, category_id in enumerate(coco_eval.params.catIds):
            values = precision[:, :, k]
            values = values[values > -1]
            per_class[self.coco_gt.cats[category_id].get("name", str(category_id))] = (
                float(np.mean(values)) if values.size else float("nan"))
        return CocoMetrics(stats=stats, per_class=per_class)


def evaluate_detections(coco_gt: COCO, label_to_category_id: Sequence[int],
                        predictions: Mapping[int, Mapping[str, torch.Tensor]], verbose: bool = False) -> CocoMetrics:
    """One-call form: `CocoEvaluator(...).update(predictions)` then `.compute()`."""
    evaluator = CocoEvaluator(coco_gt, label_to_category_id, verbose=verbose)
    evaluator.update(predictions)
    return evaluator.compute()


def score_detections(dataset: CocoDetection, detections: Sequence[Mapping[str, Any]]) -> CocoMetrics:
    """COCO metrics of ``detections`` ([{"image_id", "scores", "labels", "boxes"}], the boxes xyxy
    in pixels of the original image) on ``dataset``'s annotations."""
    evaluator = CocoEvaluator(dataset.coco, dataset.label_to_category_id)
    evaluator.update({d["image_id"]: d for d in detections})
    return evaluator.compute()


def coco_scorer(dataset: CocoDetection) -> Callable[[list[dict[str, Any]]], tuple[dict[str, float], str]]:
    """``score(detections) -> (metrics, table)`` on ``dataset``, the form the training loop takes."""

    def score(detections: list[dict[str, Any]]) -> tuple[dict[str, float], str]:
        metrics = score_detections(dataset, detections)
        return metrics.stats, metrics.table

    return score


__all__ = ["STAT_NAMES", "CocoMetrics", "CocoEvaluator", "evaluate_detections", "score_detections", "coco_scorer"]
