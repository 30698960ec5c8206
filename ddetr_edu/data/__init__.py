"""Data: the synthetic shapes dataset, COCO-format datasets, DETR's augmentations, batching
with padding masks, and COCO evaluation.

Typical use::

    paths = make_shapes_dataset("data/shapes", ShapesConfig())
    config = TransformConfig.shapes()
    train = CocoDetection(paths.train_images, paths.train_json, build_train_transforms(config))
    loader = build_dataloader(train, batch_size=4, shuffle=True, seed=0)
    images, masks, targets = next(iter(loader))  # (n, 3, H, W), (n, H, W) True = padding, [dict]
"""
from ddetr_edu.data.coco import CocoDetection, load_coco_annotations
from ddetr_edu.data.collate import build_dataloader, collate_detection, seed_worker
from ddetr_edu.data.evaluation import STAT_NAMES, CocoEvaluator, CocoMetrics, evaluate_detections
from ddetr_edu.data.images import load_rgb_image
from ddetr_edu.data.shapes import SHAPE_NAMES, ShapesConfig, ShapesPaths, draw_shapes_image, make_shapes_dataset
from ddetr_edu.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    RandomResize,
    RandomSelect,
    RandomSizeCrop,
    ToTensorNormalize,
    TransformConfig,
    build_eval_transforms,
    build_train_transforms,
    crop,
    hflip,
    resize,
)

__all__ = [
    "CocoDetection", "load_coco_annotations", "build_dataloader", "collate_detection", "seed_worker",
    "STAT_NAMES", "CocoEvaluator", "CocoMetrics", "evaluate_detections", "load_rgb_image",
    "SHAPE_NAMES", "ShapesConfig", "ShapesPaths", "draw_shapes_image", "make_shapes_dataset",
    "Compose", "RandomHorizontalFlip", "RandomResize", "RandomSelect", "RandomSizeCrop", "ToTensorNormalize",
    "TransformConfig", "build_eval_transforms", "build_train_transforms", "crop", "hflip", "resize",
]
