"""CocoEvaluator: perfect, perturbed, partial and empty predictions."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ddetr_edu.data import (STAT_NAMES, CocoDetection, CocoEvaluator, CocoMetrics, coco_scorer, evaluate_detections,
                            load_coco_annotations, score_detections)


def ground_truth_predictions(dataset, keep=lambda box: True, jitter=0.0, seed=0):
    """Predictions equal to the ground truth (xyxy pixels), optionally filtered or jittered."""
    generator = torch.Generator().manual_seed(seed)
    predictions = {}
    for index in range(len(dataset)):
        _, target = dataset.load_raw(index)
        boxes, labels = target["boxes"], target["labels"]
        kept = torch.tensor([bool(keep(b)) for b in boxes], dtype=torch.bool)
        boxes, labels = boxes[kept], labels[kept]
        if jitter:
            wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
            boxes = boxes + jitter * wh * torch.randn(boxes.shape, generator=generator)
        predictions[target["image_id"]] = {"scores": torch.ones(len(labels)), "labels": labels, "boxes": boxes}
    return predictions


@pytest.fixture(scope="module")
def val_set(tiny_shapes):
    return CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json)


def test_ground_truth_scores_one(val_set, capsys):
    metrics = evaluate_detections(val_set.coco, val_set.label_to_category_id, ground_truth_predictions(val_set))
    assert list(metrics.stats) == list(STAT_NAMES)
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert metrics.stats[name] == pytest.approx(1.0)
    present = [v for k, v in metrics.stats.items() if k in ("AP_S", "AP_M", "AP_L") and not math.isnan(v)]
    assert present and all(v == pytest.approx(1.0) for v in present)
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed
    assert "AP50" in metrics.table and "1.000" in metrics.table  # the 0..1 scale of every AP printed


def test_jittered_boxes_score_below_one_and_strict_iou_suffers_most(val_set):
    metrics = evaluate_detections(val_set.coco, val_set.label_to_category_id,
                                  ground_truth_predictions(val_set, jitter=0.08))
    assert metrics.stats["AP"] < 0.95
    assert metrics.stats["AP75"] < metrics.stats["AP50"]


def test_wrong_labels_score_zero(val_set):
    predictions = ground_truth_predictions(val_set)
    for prediction in predictions.values():
        prediction["labels"] = (prediction["labels"] + 1) % val_set.num_classes
    assert evaluate_detections(val_set.coco, val_set.label_to_category_id, predictions).stats["AP"] == 0.0


def test_dropping_small_objects_hits_ap_small_only(val_set):
    def large_enough(box):
        return float((box[2] - box[0]) * (box[3] - box[1])) > 32**2  # COCO's small range is [0, 32^2], ends included

    metrics = evaluate_detections(val_set.coco, val_set.label_to_category_id,
                                  ground_truth_predictions(val_set, keep=large_enough))
    assert metrics.stats["AP_S"] == 0.0
    assert metrics.stats["AP_M"] > 0.9 and metrics.stats["AP_L"] == pytest.approx(1.0)
    assert 0.0 < metrics.stats["AP"] < 1.0


def test_no_detections_give_zero_not_a_crash(val_set):
    empty = {i: {"scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
             for i in val_set.image_ids}
    for predictions in (empty, {}):
        metrics = evaluate_detections(val_set.coco, val_set.label_to_category_id, predictions)
        assert metrics.stats["AP"] == 0.0 and metrics.stats["AR100"] == 0.0


def test_labels_map_back_to_sparse_category_ids(tmp_path):
    content = {"images": [{"id": 5, "file_name": "a.png", "width": 100, "height": 100}],
               "annotations": [{"id": 1, "image_id": 5, "category_id": 40, "bbox": [10, 10, 50, 50], "area": 2500,
                                "iscrowd": 0}],
               "categories": [{"id": 12, "name": "a"}, {"id": 40, "name": "b"}]}
    (tmp_path / "gt.json").write_text(json.dumps(content))
    coco = load_coco_annotations(tmp_path / "gt.json")
    evaluator = CocoEvaluator(coco, [12, 40])
    evaluator.update({5: {"scores": torch.tensor([0.9]), "labels": torch.tensor([1]),
                          "boxes": torch.tensor([[10.0, 10.0, 60.0, 60.0]])}})
    metrics = evaluator.compute()
    assert metrics.stats["AP"] == pytest.approx(1.0)
    assert math.isnan(metrics.stats["AP_S"]) and math.isnan(metrics.stats["AP_L"])  # no such objects: undefined
    assert metrics.per_class["b"] == pytest.approx(1.0) and math.isnan(metrics.per_class["a"])
    assert "n/a" in metrics.table


def test_bad_predictions_are_rejected(val_set):
    evaluator = CocoEvaluator(val_set.coco, val_set.label_to_category_id)
    with pytest.raises(ValueError, match="image_id 9999"):
        evaluator.update({9999: {"scores": torch.ones(1), "labels": torch.zeros(1), "boxes": torch.zeros(1, 4)}})
    with pytest.raises(ValueError, match="2 scores, 1 labels"):
        evaluator.update({1: {"scores": torch.ones(2), "labels": torch.zeros(1), "boxes": torch.zeros(1, 4)}})
    with pytest.raises(ValueError, match="label 7"):
        evaluator.update({1: {"scores": torch.ones(1), "labels": torch.tensor([7]), "boxes": torch.zeros(1, 4)}})
    with pytest.raises(ValueError, match="category ids"):
        CocoEvaluator(val_set.coco, [1, 2, 99])


def test_score_detections_and_the_training_loops_scorer(val_set):
    predictions = ground_truth_predictions(val_set, jitter=0.05)
    detections = [{"image_id": image_id, **prediction} for image_id, prediction in predictions.items()]
    metrics = score_detections(val_set, detections)
    expected = evaluate_detections(val_set.coco, val_set.label_to_category_id, predictions)
    assert metrics.stats == pytest.approx(expected.stats, nan_ok=True) and metrics.stats["AP"] < 1.0
    stats, table = coco_scorer(val_set)(detections)
    assert stats == pytest.approx(metrics.stats, nan_ok=True) and table == metrics.table


def test_the_table_and_metrics_json_use_the_0_to_1_scale_of_every_printed_ap():
    stats = dict.fromkeys(STAT_NAMES, 0.25) | {"AP": 0.5453, "AP_L": math.nan}
    metrics = CocoMetrics(stats=stats, per_class={"star": 0.6125})
    lines = metrics.table.splitlines()
    assert "AP       0.545" in lines and "AP_L       n/a" in lines and "  star         0.613" in lines
    assert "54.5" not in metrics.table  # the training log prints f"AP {0.5453:.3f}": the same "0.545"

    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    written = json.loads(metrics.stats_json(), parse_constant=refuse)  # NaN, Infinity would call refuse
    assert written["AP_L"] is None and written["AP"] == 0.5453 and list(written) == list(STAT_NAMES)
