"""Checks of chapter 13's exercises (Your own data).

Exercises 13.1 and 13.2 read :data:`ANNOTATIONS`, a small COCO annotation file with the slips a
hand-made file has (gapped category ids, a zero-width box, a box outside its image, a crowd
region), so that they run on their own, without the chapter's folder. Each check computes what it
expects from that file or from the library, never from a stored number.
"""
from __future__ import annotations

from exercises import assert_close, assert_equal, correct, unanswered

ANNOTATIONS = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 160, "height": 120},
               {"id": 2, "file_name": "b.jpg", "width": 128, "height": 128}],
    "categories": [{"id": 3, "name": "coin"}, {"id": 7, "name": "tile"}, {"id": 12, "name": "flag"}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 12, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 12, "bbox": [140, 40, 40, 30], "area": 1200, "iscrowd": 0},
        {"id": 12, "image_id": 1, "category_id": 7, "bbox": [60, 70, 0, 25], "area": 0, "iscrowd": 0},
        {"id": 13, "image_id": 2, "category_id": 7, "bbox": [130, 5, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 14, "image_id": 2, "category_id": 3, "bbox": [0, 0, 128, 128], "area": 16384, "iscrowd": 1},
        {"id": 15, "image_id": 2, "category_id": 12, "bbox": [30, 40, 50, 44], "area": 2200, "iscrowd": 0},
    ],
}


def _no_area_inside(ann: dict, sizes: dict[int, tuple[int, int]]) -> bool:
    width, height = sizes[ann["image_id"]]
    x, y, w, h = ann["bbox"]
    return min(x + w, width) <= max(x, 0) or min(y + h, height) <= max(y, 0)


def check_13_1(answer) -> None:
    """``answer``: the sorted ids of the annotations of :data:`ANNOTATIONS` that training drops
    because no area of their box lies inside their image (crowd regions are left out for another
    reason and do not count)."""
    if unanswered("13.1", answer):
        return
    sizes = {image["id"]: (image["width"], image["height"]) for image in ANNOTATIONS["images"]}
    expected = sorted(ann["id"] for ann in ANNOTATIONS["annotations"]
                      if not ann["iscrowd"] and _no_area_inside(ann, sizes))
    assert isinstance(answer, (list, tuple)), f"Exercise 13.1: expected a list of annotation ids, got {answer!r}"
    assert_equal("13.1", sorted(answer), expected, "the dropped annotation ids (zero width or height, or "
                 "entirely outside the image; crowd boxes do not count)")
    correct("13.1")


def check_13_2(answer) -> None:
    """``answer``: the label (0..C-1) the dataset gives category id 12 of :data:`ANNOTATIONS`."""
    if unanswered("13.2", answer):
        return
    ids = sorted(category["id"] for category in ANNOTATIONS["categories"])
    assert_equal("13.2", answer, ids.index(12), "the label of category id 12 (labels number the categories "
                 "0, 1, ... in the order of their ids, whatever gaps the ids have)")
    correct("13.2")


BOX, IMAGE_WIDTH, IMAGE_HEIGHT = [10, 20, 30, 40], 100, 80  # exercise 13.3's COCO bbox [x, y, w, h] and image


def check_13_3(answer) -> None:
    """``answer``: the target the losses see for the COCO ``bbox`` :data:`BOX` of an image of
    :data:`IMAGE_WIDTH` x :data:`IMAGE_HEIGHT`: ``[cx, cy, w, h]`` normalised by the image size,
    computed here with the library's ``xyxy_to_cxcywh``."""
    if unanswered("13.3", answer):
        return
    import torch

    from ddetr_edu.boxes import xyxy_to_cxcywh

    x, y, w, h = BOX
    corners = torch.tensor([x / IMAGE_WIDTH, y / IMAGE_HEIGHT, (x + w) / IMAGE_WIDTH, (y + h) / IMAGE_HEIGHT],
                           dtype=torch.float64)
    assert_close("13.3", answer, xyxy_to_cxcywh(corners), "[cx, cy, w, h] (the centre is (x + w/2, y + h/2); "
                 "x and w divide by the width, y and h by the height)")
    correct("13.3")


def check_13_4(answer) -> None:
    """``answer``: how many of the model's tensors come from the reference model when it is
    fine-tuned to 3 classes (the library's :func:`check_fits` report says)."""
    if unanswered("13.4", answer):
        return
    from ddetr_edu.checkpoints.init_weights import check_fits, init_model_config, read_init_weights

    reference = read_init_weights("reference")
    report = check_fits(init_model_config(reference, 3), reference, ["coin", "tile", "flag"])
    assert_equal("13.4", answer, len(report.loaded), "the number of tensors loaded from the reference (every "
                 "tensor whose name and shape match: all but the class heads class_embed.*)")
    correct("13.4")
