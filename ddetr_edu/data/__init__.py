"""Data: the synthetic shapes dataset, COCO-format datasets and their folders, DETR's
augmentations, batching with padding masks, the data loader, and COCO evaluation.

Typical use::

    paths = make_shapes_dataset("data/shapes", ShapesConfig())
    config = TransformConfig.shapes()
    train = CocoDetection(paths.train_images, paths.train_json, build_train_transforms(config))
    loader = build_dataloader(train, batch_size=4, shuffle=True, seed=0)
    images, masks, targets = next(iter(loader))  # (n, 3, H, W), (n, H, W) True = padding, [dict]
"""
from ddetr_edu.data.coco import CocoDetection, load_coco_annotations, read_annotation_file, read_class_names
from ddetr_edu.data.collate import collate_detection
from ddetr_edu.data.evaluation import (STAT_NAMES, CocoEvaluator, CocoMetrics, coco_scorer, evaluate_detections,
                                       score_detections)
from ddetr_edu.data.errors import DataFileError, DataFileNotFoundError
from ddetr_edu.data.folders import (DataPaths, build_datasets, build_val_dataset, find_data,
                                    transform_config)
from ddetr_edu.data.images import load_image, load_rgb_image
from ddetr_edu.data.loader import SkipFirst, build_dataloader
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
    "CocoDetection", "load_coco_annotations", "read_annotation_file", "read_class_names", "collate_detection",
    "STAT_NAMES", "CocoEvaluator", "CocoMetrics",
    "coco_scorer", "evaluate_detections", "score_detections", "DataPaths", "build_datasets", "find_data",
    "build_val_dataset", "DataFileError", "DataFileNotFoundError",
    "transform_config", "load_image", "load_rgb_image", "SkipFirst", "build_dataloader",
    "SHAPE_NAMES", "ShapesConfig", "ShapesPaths", "draw_shapes_image", "make_shapes_dataset",
    "Compose", "RandomHorizontalFlip", "RandomResize", "RandomSelect", "RandomSizeCrop", "ToTensorNormalize",
    "TransformConfig", "build_eval_transforms", "build_train_transforms", "crop", "hflip", "resize",
]
