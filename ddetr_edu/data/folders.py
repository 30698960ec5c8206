"""Where a dataset's files are, and the two datasets a training run reads from them.

Two folder layouts are recognised (:func:`find_data`):

* shapes (``ddetr_edu make-shapes``): ``train.json``, ``val.json``, ``images/{train,val}/``;
* COCO 2017: ``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``.

:func:`build_datasets` turns a folder and a training config into the training set (with the
config's augmentation) and the validation set (with the evaluation resize).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddetr_edu.data.coco import CocoDetection
from ddetr_edu.data.transforms import TransformConfig, build_eval_transforms, build_train_transforms

if TYPE_CHECKING:
    from ddetr_edu.training.config import TrainConfig


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


__all__ = ["DataPaths", "find_data", "transform_config", "build_datasets"]
