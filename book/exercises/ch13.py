"""Checks of chapter 13's exercises (Your own data). Each ``check_13_k(answer, ...)`` prints
"not answered yet" for None, raises AssertionError saying what is wrong, or prints "correct".
The expected values are computed here from the chapter's own files, never stored."""
from __future__ import annotations

import json
from pathlib import Path


def _unanswered(answer) -> bool:
    if answer is None:
        print("not answered yet")
        return True
    return False


def check_13_1(answer, ann_file) -> None:
    """``answer``: the sorted ids of the annotations of ``ann_file`` that training drops (no
    area left inside their image; crowd regions are left out separately and do not count)."""
    if _unanswered(answer):
        return
    content = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    sizes = {image["id"]: (image["width"], image["height"]) for image in content["images"]}
    expected = []
    for ann in content["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        width, height = sizes[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        inside_w = min(x + w, width) - max(x, 0)
        inside_h = min(y + h, height) - max(y, 0)
        if inside_w <= 0 or inside_h <= 0:
            expected.append(ann["id"])
    assert isinstance(answer, (list, tuple)), f"expected a list of annotation ids, got {type(answer).__name__}"
    assert sorted(answer) == sorted(expected), (
        f"got ids {sorted(answer)}; look for boxes with zero width or height, or entirely outside their image "
        f"(crowd boxes are left out for another reason)")
    print("correct")


def check_13_2(answer, ann_file) -> None:
    """``answer``: the label (0..C-1) the model uses for category id 12 of ``ann_file``."""
    if _unanswered(answer):
        return
    ids = sorted(category["id"] for category in json.loads(Path(ann_file).read_text(encoding="utf-8"))["categories"])
    assert answer == ids.index(12), (f"got {answer}; the labels number the categories 0, 1, ... in the order of their "
                                     f"ids {ids}, whatever gaps the ids have")
    print("correct")


def check_13_3(answer) -> None:
    """``answer``: a function ``(bbox [x, y, w, h] in pixels, width, height) -> [cx, cy, w, h]``
    normalised by the image size, as the dataset's targets hold boxes (a stub returning None: not
    answered yet)."""
    if _unanswered(answer if answer is None else answer([0, 0, 1, 1], 2, 2)):
        return
    for bbox, width, height in [([10, 20, 30, 40], 100, 80), ([0, 0, 64, 48], 64, 48), ([5.5, 2, 1, 3], 11, 7)]:
        x, y, w, h = bbox
        expected = [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]
        got = [float(v) for v in answer(bbox, width, height)]
        assert all(abs(a - b) < 1e-6 for a, b in zip(got, expected)) and len(got) == 4, (
            f"for bbox {bbox} in a {width}x{height} image got {got}; the centre is (x + w/2, y + h/2), and x, w "
            f"divide by the width, y, h by the height")
    print("correct")


def check_13_4(answer, report) -> None:
    """``answer``: how many of the model's tensors come from the reference when it is fine-tuned
    to the chapter's classes; ``report``: the InitReport of that load."""
    if _unanswered(answer):
        return
    assert answer == len(report.loaded), (
        f"got {answer}; every tensor whose name and shape match is loaded, all but the class heads "
        f"(class_embed.*: {len(report.reinitialised)} tensors) out of {report.total}")
    print("correct")
