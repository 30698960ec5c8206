"""Where a dataset's files are, and the datasets a training run or an evaluation reads from them.

Two folder layouts are recognised (:func:`find_data`):

* shapes (``ddetr_edu make-shapes``): ``train.json``, ``val.json``, ``images/{train,val}/``;
* COCO 2017: ``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``.

Training needs both splits; evaluation (``find_data(root, train=False)``) only the validation
split, so a folder with COCO's ``val2017/`` and its annotation file alone is enough.

:func:`build_datasets` turns a folder and a training config into the training set (with the
config's augmentation) and the validation set (with the evaluation resize); their categories
must be the same, since label i must mean the same class in both. :func:`build_val_dataset`
builds the validation set alone. A split without images is an error naming its annotation file
(:mod:`ddetr_edu.data.coco`): a run that evaluates on nothing would claim a "best" checkpoint
it never measured.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddetr_edu.data.coco import CocoDetection
from ddetr_edu.data.errors import DataFileError
from ddetr_edu.data.transforms import TransformConfig, build_eval_transforms, build_train_transforms

if TYPE_CHECKING:
    from ddetr_edu.training.config import TrainConfig


@dataclass(frozen=True)
class DataPaths:
    """Image folders and COCO annotation files of the splits (the train ones None when absent
    and not asked for)."""

    train_images: Path | None
    train_annotations: Path | None
    val_images: Path
    val_annotations: Path


def _layouts(root: Path) -> dict[str, DataPaths]:
    """Every known layout's paths under ``root``."""
    return {
        "shapes": DataPaths(root / "images" / "train", root / "train.json",
                            root / "images" / "val", root / "val.json"),
        "COCO 2017": DataPaths(root / "train2017", root / "annotations" / "instances_train2017.json",
                               root / "val2017", root / "annotations" / "instances_val2017.json"),
    }


def find_data(root: str | os.PathLike, *, train: bool = True) -> DataPaths:
    """The splits under ``root`` (shapes or COCO 2017 layout); ``FileNotFoundError`` otherwise
    (``ValueError`` when ``root`` is a file).

    ``train=False``: only the validation split must exist (evaluation); the train paths of the
    result are None when the training split is missing.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file; expected a dataset folder")
    layouts = _layouts(root)
    for paths in layouts.values():
        has_train = paths.train_images.exists() and paths.train_annotations.exists()  # type: ignore[union-attr]
        if paths.val_images.exists() and paths.val_annotations.exists() and (has_train or not train):
            return paths if has_train else dataclasses.replace(paths, train_images=None, train_annotations=None)
    needed = slice(0 if train else 2, None)  # the DataPaths fields that must exist
    expected = "; ".join(f"{name}: {', '.join(str(p.relative_to(root)) for p in dataclasses.astuple(paths)[needed])}"
                         for name, paths in layouts.items())
    split = "" if train else " (validation split)"
    raise FileNotFoundError(f"no dataset{split} found under {root}; expected one of these layouts: {expected}")


def transform_config(cfg: TrainConfig) -> TransformConfig:
    """The augmentation recipe of ``cfg`` as the data pipeline's :class:`TransformConfig`."""
    recipe = TransformConfig.coco() if cfg.augmentation == "coco" else TransformConfig.shapes(cfg.image_size)
    changes: dict[str, Any] = {"crop_prob": cfg.crop_prob, "flip_prob": cfg.flip_prob}
    if not cfg.scale_jitter:
        changes["train_scales"] = (recipe.eval_scale,)
    return dataclasses.replace(recipe, **changes)


def build_val_dataset(data_root: str | os.PathLike, cfg: TrainConfig) -> CocoDetection:
    """The validation set under ``data_root`` with the evaluation resize of ``cfg``."""
    paths = find_data(data_root, train=False)
    return CocoDetection(paths.val_images, paths.val_annotations, build_eval_transforms(transform_config(cfg)))


def build_datasets(data_root: str | os.PathLike, cfg: TrainConfig) -> tuple[CocoDetection, CocoDetection]:
    """(train set with augmentation, validation set with the evaluation resize); a
    :class:`~ddetr_edu.data.errors.DataFileError` when their categories differ."""
    paths = find_data(data_root)
    train_set = CocoDetection(paths.train_images, paths.train_annotations,  # type: ignore[arg-type]
                              build_train_transforms(transform_config(cfg)))
    val_set = build_val_dataset(data_root, cfg)
    if (train_set.label_to_category_id, train_set.class_names) != (val_set.label_to_category_id,
                                                                   val_set.class_names):
        differ = sorted(set(zip(train_set.label_to_category_id, train_set.class_names))
                        ^ set(zip(val_set.label_to_category_id, val_set.class_names)))
        raise DataFileError(f"{train_set.ann_file} and {val_set.ann_file} list different categories "
                            f"(id, name) {differ}; both splits need the same")
    return train_set, val_set


__all__ = ["DataPaths", "find_data", "transform_config", "build_val_dataset", "build_datasets"]
