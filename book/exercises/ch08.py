"""Checks of chapter 8's exercises (data and COCO evaluation): the AP of a tiny case by hand, the
shift at which IoU falls to 0.5 and the padding of a batch, against pycocotools (through
``evaluate_detections``), ``box_iou`` and ``pad_images``."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ddetr_edu.boxes import box_iou
from ddetr_edu.data import evaluate_detections, load_coco_annotations
from ddetr_edu.models import pad_images

from . import assert_close, assert_equal, correct, unanswered

# exercise 8.1: one 100 x 100 image, two objects of one class (xyxy pixels), three detections
OBJECTS = [(10.0, 10.0, 40.0, 40.0), (60.0, 50.0, 90.0, 95.0)]
DETECTIONS = [((11.0, 10.0, 40.0, 41.0), 0.9),     # on object 0
              ((50.0, 0.0, 70.0, 20.0), 0.8),      # on nothing
              ((60.0, 52.0, 88.0, 95.0), 0.7)]     # on object 1
IMAGE_SIZES = [(100, 150), (120, 90)]              # exercise 8.3: (h, w) of the two images


def ap50_of_tiny_case() -> float:
    """pycocotools' AP at IoU 0.5 of DETECTIONS on OBJECTS."""
    coco = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "tiny.png"}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)}
                            for i, (x0, y0, x1, y1) in enumerate(OBJECTS)]}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny.json"
        path.write_text(json.dumps(coco))
        gt = load_coco_annotations(path)
        predictions = {1: {"boxes": torch.tensor([box for box, _ in DETECTIONS]),
                           "scores": torch.tensor([score for _, score in DETECTIONS]),
                           "labels": torch.zeros(len(DETECTIONS), dtype=torch.int64)}}
        return evaluate_detections(gt, [1], predictions).stats["AP50"]


def check_8_1(answer) -> None:
    """answer: AP50 (101-point interpolated) of the tiny case."""
    if unanswered("8.1", answer):
        return
    assert_close("8.1", answer, ap50_of_tiny_case(), "AP50", atol=1e-6)
    correct("8.1")


def check_8_2(answer) -> None:
    """answer: the shift s (a fraction of the side) of a square box along x at which its IoU with
    the unshifted box is 0.5."""
    if unanswered("8.2", answer):
        return
    s = float(answer)
    iou, _ = box_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64),
                     torch.tensor([[s, 0.0, 1.0 + s, 1.0]], dtype=torch.float64))
    assert_close("8.2", float(iou), 0.5, f"IoU after a shift of {s}", atol=1e-6)
    correct("8.2")


def check_8_3(answer) -> None:
    """answer: the number of padding pixels of the second image of a batch of IMAGE_SIZES."""
    if unanswered("8.3", answer):
        return
    _, masks = pad_images([torch.zeros(3, h, w) for h, w in IMAGE_SIZES])    # (2, H, W) True = padding
    assert_equal("8.3", answer, int(masks[1].sum()), "the padding pixels of image 1")
    correct("8.3")
