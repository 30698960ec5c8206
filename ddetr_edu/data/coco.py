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

What the file must hold (:func:`read_annotation_file` checks it when the file is read, so that a
bad value stops the run at once instead of deep in the loss or the evaluation); anything else is
a :class:`~ddetr_edu.data.errors.DataFileError` (a ``ValueError``) naming the file and, for an
annotation, its id:

* ``images``: a non-empty list; each image has a unique int ``id``, a ``file_name`` and a
  positive ``width`` and ``height``; every file must exist (:func:`check_image_files`, when the
  dataset is built);
* ``annotations``: a list (it may be empty: every image a negative); each has a unique int
  ``id``, an ``image_id`` and a ``category_id`` listed in the file, a ``bbox`` [x, y, w, h] and an
  ``area`` of finite numbers (NaN, inf and strings are errors);
* ``categories``: a non-empty list of unique int ``id`` s (and ``name`` s).

Clean-up, done once when the file is read:

* ``bbox`` is clipped to the image; boxes with no area left (zero or negative width/height, or
  entirely outside) are dropped. Both are counted and reported in ONE warning per dataset.
* ``iscrowd = 1`` regions are left out of the targets (as DETR does); COCO evaluation still
  uses them from the annotation file, as "ignore" regions.
* Images without annotations stay in the dataset as negatives (an empty (0, 4) target).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from ddetr_edu.data.errors import DataFileError, DataFileNotFoundError
from ddetr_edu.data.images import load_image
from ddetr_edu.data.transforms import ToTensorNormalize


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, a string, NaN or inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _listed(value: Any, ids: set[int]) -> bool:
    """``value`` is one of the int ``ids`` (a list or a string never is)."""
    return isinstance(value, int) and value in ids


def _unique_int_ids(where: str, entries: list, what: str) -> set[int]:
    """The ``id`` s of ``entries`` (dicts), each an int seen once; ``where`` names the file."""
    ids: set[int] = set()
    for position, entry in enumerate(entries):
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry_id, int) or isinstance(entry_id, bool):
            raise DataFileError(f"{where}: {what} number {position} has id {entry_id!r}; expected a JSON "
                                "object with an int 'id'")
        if entry_id in ids:
            raise DataFileError(f"{where}: {what} id {entry_id} appears twice")
        ids.add(entry_id)
    return ids


def _check_images(where: str, images: list) -> set[int]:
    """The image ids; every image needs a ``file_name`` and a positive ``width`` / ``height``."""
    if not images:
        raise DataFileError(f"{where}: 'images' is empty; a dataset needs at least one image")
    ids = _unique_int_ids(where, images, "image")
    for image in images:
        if not isinstance(image.get("file_name"), str) or not all(
                _is_number(image.get(side)) and image[side] > 0 for side in ("width", "height")):
            raise DataFileError(f"{where}: image {image['id']} has file_name {image.get('file_name')!r}, width "
                                f"{image.get('width')!r}, height {image.get('height')!r}; expected a file name "
                                "and a positive width and height in pixels")
    return ids


def _check_annotations(where: str, annotations: list, image_ids: set[int], category_ids: set[int]) -> None:
    """Every annotation refers to a known image and category and has finite ``bbox`` and ``area``."""
    _unique_int_ids(where, annotations, "annotation")
    for ann in annotations:
        if not _listed(ann.get("category_id"), category_ids):
            raise DataFileError(f"{where}: annotation {ann['id']} has category_id {ann.get('category_id')!r}, "
                                f"which is not in 'categories' (ids {sorted(category_ids)})")
        if not _listed(ann.get("image_id"), image_ids):
            raise DataFileError(f"{where}: annotation {ann['id']} refers to image_id {ann.get('image_id')!r}, "
                                "which is not in 'images'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DataFileError(f"{where}: annotation {ann['id']} has bbox {bbox!r}; expected [x, y, w, h], "
                                "four finite numbers")
        if not (_is_number(ann.get("area")) and ann["area"] >= 0):
            raise DataFileError(f"{where}: annotation {ann['id']} has area {ann.get('area')!r}; expected a "
                                "finite number >= 0 (COCO evaluation sorts objects by it; w * h will do)")


def read_annotation_file(ann_file: str | os.PathLike) -> dict[str, Any]:
    """The JSON object of a COCO annotation file, checked as the module docstring says."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DataFileNotFoundError(f"annotation file not found: {ann_file}")
    where = f"annotation file {ann_file}"
    try:
        content = json.loads(ann_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFileError(f"{where} is not valid JSON: {error}") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(content, dict) or not isinstance(content.get(key), list):
            found = f"keys {sorted(content)}" if isinstance(content, dict) else f"a {type(content).__name__}"
            raise DataFileError(f"{where}: expected a JSON object with an {key!r} list; found {found}")
    if not content["categories"]:
        raise DataFileError(f"{where}: 'categories' is empty; a detection dataset needs at least one class")
    category_ids = _unique_int_ids(where, content["categories"], "category")
    _check_annotations(where, content["annotations"], _check_images(where, content["images"]), category_ids)
    return content


def sorted_categories(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's categories in label order (by id): label i is entry i."""
    return sorted(content["categories"], key=lambda c: c["id"])


def read_class_names(ann_file: str | os.PathLike) -> list[str]:
    """The class names of an annotation file in label order (0..C-1); an unnamed class is its id."""
    return [str(c.get("name", c["id"])) for c in sorted_categories(read_annotation_file(ann_file))]


def load_coco_annotations(ann_file: str | os.PathLike) -> COCO:
    """A checked COCO annotation file (:func:`read_annotation_file`) as a pycocotools ``COCO``, quietly."""
    coco = COCO()
    coco.dataset = read_annotation_file(ann_file)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def check_image_files(image_root: Path, ann_file: Path, file_names: list[str], shown: int = 3) -> None:
    """Every image the annotation file names is a file under ``image_root``: checked when the
    dataset is built, before a run writes anything, so that a missing image never stops a run
    halfway (or goes unnoticed by a short one). A
    :class:`~ddetr_edu.data.errors.DataFileNotFoundError` gives the count and the first few."""
    missing = [name for name in file_names if not (image_root / name).is_file()]
    if not missing:
        return
    first = ", ".join(missing[:shown]) + (", ..." if len(missing) > shown else "")
    folders = [name for name in missing if (image_root / name).is_dir()]
    folder_note = f" ({folders[0]} is a folder)" if folders else ""
    raise DataFileNotFoundError(f"{ann_file}: {len(missing)} of the {len(file_names)} images it names are missing "
                                f"under {image_root}{folder_note}: {first}")


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
        categories = sorted_categories(self.coco.dataset)
        self.label_to_category_id: list[int] = [int(c["id"]) for c in categories]
        self.category_id_to_label: dict[int, int] = {cid: i for i, cid in enumerate(self.label_to_category_id)}
        self.class_names: list[str] = [str(c.get("name", c["id"])) for c in categories]
        self.image_ids: list[int] = sorted(self.coco.imgs)
        check_image_files(self.image_root, self.ann_file, [self.coco.imgs[i]["file_name"] for i in self.image_ids])
        self._boxes, self._labels = self._clean_annotations()

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category_id)

    def _clean_annotations(self) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
        """Per image: (T, 4) xyxy pixel boxes clipped to the image, (T,) contiguous labels."""
        boxes_per_image: dict[int, list] = {i: [] for i in self.image_ids}
        labels_per_image: dict[int, list] = {i: [] for i in self.image_ids}
        clipped: list[int] = []  # annotation ids
        dropped: list[int] = []
        for ann in self.coco.dataset["annotations"]:
            if ann.get("iscrowd", 0):
                continue
            info = self.coco.imgs[ann["image_id"]]
            x, y, w, h = (float(v) for v in ann["bbox"])
            x0, y0 = min(max(x, 0.0), info["width"]), min(max(y, 0.0), info["height"])
            x1, y1 = min(max(x + w, 0.0), info["width"]), min(max(y + h, 0.0), info["height"])
            if x1 <= x0 or y1 <= y0:
                dropped.append(ann["id"])
                continue
            if (x0, y0, x1, y1) != (x, y, x + w, y + h):
                clipped.append(ann["id"])
            boxes_per_image[ann["image_id"]].append([x0, y0, x1, y1])
            labels_per_image[ann["image_id"]].append(self.category_id_to_label[ann["category_id"]])
        if clipped or dropped:
            def ids(found: list[int]) -> str:
                shown = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
                return f" (annotation ids {shown})" if found else ""

            warnings.warn(f"{self.ann_file}: {len(clipped)} boxes clipped to their image{ids(clipped)} and "
                          f"{len(dropped)} boxes dropped (no area inside the image){ids(dropped)}", stacklevel=3)
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
        image = load_image(path)
        if (image.width, image.height) != (info["width"], info["height"]):
            raise DataFileError(f"image file {path} is {image.width}x{image.height} (w x h) but "
                                f"{self.ann_file} says {info['width']}x{info['height']} for image {image_id}")
        size = torch.tensor([image.height, image.width], dtype=torch.int64)
        target = {"boxes": self._boxes[image_id].clone(), "labels": self._labels[image_id].clone(),
                  "image_id": int(image_id), "orig_size": size, "size": size.clone()}
        return image, target

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        return self.transforms(*self.load_raw(index))
