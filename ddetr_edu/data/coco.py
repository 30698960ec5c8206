"""A detection dataset for any COCO-format annotation file (pycocotools underneath).

Classes come from the file's ``categories``, sorted by id and mapped to contiguous labels
0..C-1 (COCO's ids run 1..90 with gaps); ``label_to_category_id`` keeps the way back for
evaluation. Each item is ``(image (3, h, w) float32, target)`` with this target, the
contract between the data, the losses and the evaluation:

    boxes      (T, 4) float32  cxcywh, normalised by the transformed image's (w, h)
    labels     (T,)   int64    contiguous 0..C-1
    image_id   int             the image's COCO id
    orig_size  (2,)   int64    (h, w) of the file
    size       (2,)   int64    (h, w) after the transforms

Annotation clean-up, done once when the file is read:

* ``bbox`` [x, y, w, h] is clipped to the image; boxes with no area left (zero or negative
  width/height, or entirely outside) are dropped. Both are counted and reported in ONE warning
  per dataset.
* ``iscrowd = 1`` regions are left out of the targets (as DETR does); COCO evaluation still
  uses them from the annotation file, as "ignore" regions.
* Images without annotations stay in the dataset as negatives (an empty (0, 4) target).
* A ``category_id`` that is not in ``categories`` is a ``ValueError`` naming the file and the id.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from ddetr_edu.data.images import load_rgb_image
from ddetr_edu.data.transforms import ToTensorNormalize


def load_coco_annotations(ann_file: str | os.PathLike) -> COCO:
    """Read a COCO annotation file into a pycocotools ``COCO`` (quietly), with clear errors."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    try:
        content = json.loads(ann_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"annotation file {ann_file} is not valid JSON: {error}") from error
    if not isinstance(content, dict) or not isinstance(content.get("images"), list):
        raise ValueError(f"annotation file {ann_file}: expected a JSON object with an 'images' list")
    content.setdefault("annotations", [])
    content.setdefault("categories", [])
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """Images under `image_root` (``file_name`` is relative to it) and boxes from `ann_file`.

    `transforms` maps (PIL image, target with xyxy pixel boxes) to (tensor, the target of the
    module docstring); None means `ToTensorNormalize` only (no resizing). `load_raw(i)` gives
    the untransformed PIL image and xyxy pixel boxes, for drawing.
    """

    def __init__(self, image_root: str | os.PathLike, ann_file: str | os.PathLike,
                 transforms: Callable | None = None):
        self.image_root = Path(image_root)
        self.ann_file = Path(ann_file)
        self.transforms = transforms if transforms is not None else ToTensorNormalize()
        self.coco = load_coco_annotations(self.ann_file)
        categories = sorted(self.coco.dataset["categories"], key=lambda c: c["id"])
        self.label_to_category_id: list[int] = [int(c["id"]) for c in categories]
        self.category_id_to_label: dict[int, int] = {cid: i for i, cid in enumerate(self.label_to_category_id)}
        self.class_names: list[str] = [str(c.get("name", c["id"])) for c in categories]
        self.image_ids: list[int] = sorted(self.coco.imgs)
        self._boxes, self._labels = self._clean_annotations()

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category_id)

    def _clean_annotations(self) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
        """Per image: (T, 4) xyxy pixel boxes clipped to the image, (T,) contiguous labels."""
        boxes_per_image: dict[int, list] = {i: [] for i in self.image_ids}
        labels_per_image: dict[int, list] = {i: [] for i in self.image_ids}
        clipped = dropped = 0
        for ann in self.coco.dataset["annotations"]:
            category_id = ann.get("category_id")
            if category_id not in self.category_id_to_label:
                raise ValueError(
                    f"annotation file {self.ann_file}: annotation {ann.get('id')} has category_id "
                    f"{category_id!r}, which is not in 'categories' (ids {self.label_to_category_id})"
                )
            image_id = ann.get("image_id")
            if image_id not in self.coco.imgs:
                raise ValueError(f"annotation file {self.ann_file}: annotation {ann.get('id')} refers to "
                                 f"image_id {image_id!r}, which is not in 'images'")
            if ann.get("iscrowd", 0):
                continue
            bbox = ann.get("bbox")
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
                raise ValueError(f"annotation file {self.ann_file}: annotation {ann.get('id')} has bbox {bbox!r}; "
                                 "expected [x, y, w, h]")
            info = self.coco.imgs[image_id]
            if "width" not in info or "height" not in info:
                raise ValueError(f"annotation file {self.ann_file}: image {image_id} has no width/height")
            x, y, w, h = (float(v) for v in bbox)
            x0, y0 = min(max(x, 0.0), info["width"]), min(max(y, 0.0), info["height"])
            x1, y1 = min(max(x + w, 0.0), info["width"]), min(max(y + h, 0.0), info["height"])
            if x1 <= x0 or y1 <= y0:
                dropped += 1
                continue
            clipped += (x0, y0, x1, y1) != (x, y, x + w, y + h)
            boxes_per_image[image_id].append([x0, y0, x1, y1])
            labels_per_image[image_id].append(self.category_id_to_label[category_id])
        if clipped or dropped:
            warnings.warn(f"{self.ann_file}: {clipped} boxes clipped to their image and {dropped} boxes "
                          "dropped (no area inside the image)", stacklevel=3)
        boxes = {i: torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for i, b in boxes_per_image.items()}
        labels = {i: torch.tensor(lab, dtype=torch.int64) for i, lab in labels_per_image.items()}
        return boxes, labels

    def __len__(self) -> int:
        return len(self.image_ids)

    def load_raw(self, index: int) -> tuple[Image.Image, dict]:
        """(PIL RGB image, target) before transforms; target["boxes"] is (T, 4) xyxy in pixels."""
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_root / info["file_name"]
        image = load_rgb_image(path)
        if (image.width, image.height) != (info["width"], info["height"]):
            raise ValueError(f"image file {path} is {image.width}x{image.height} (w x h) but {self.ann_file} "
                             f"says {info['width']}x{info['height']} for image {image_id}")
        size = torch.tensor([image.height, image.width], dtype=torch.int64)
        target = {"boxes": self._boxes[image_id].clone(), "labels": self._labels[image_id].clone(),
                  "image_id": int(image_id), "orig_size": size, "size": size.clone()}
        return image, target

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        return self.transforms(*self.load_raw(index))
