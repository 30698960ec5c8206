"""A detector in three lines: boxes for a picture, no tensors prepared by hand.

    from ddetr_edu import load_detector
    detector = load_detector("runs/demo/checkpoint_best.pth")  # no argument: the shipped reference model
    detections = detector.detect("photo.jpg", score_threshold=0.3)
    # [Detection(class_name='cross', class_id=4, score=0.862, box=(16.3, 27.6, 38.5, 48.7)), ...]

``detect`` takes a file path, a PIL image, an (H, W, 3) uint8 array or a (3, H, W) tensor
(uint8 0..255, or float 0..1) and does what the model's evaluation did to its images:

1. the picture as 8-bit RGB, upright (:func:`ddetr_edu.data.load_image`: EXIF orientation,
   grayscale / palette / CMYK / alpha converted);
2. resized so that the short side is the checkpoint's evaluation scale (long side capped), and
   ImageNet-normalised (:func:`ddetr_edu.data.build_eval_transforms`);
3. the model in eval mode, without gradients, on the model's device;
4. every (query, class) pair is a candidate scored sigmoid(logit); the best ``top_k`` scoring at
   least ``score_threshold`` are kept (:func:`ddetr_edu.models.postprocess`), a candidate that
   overlaps a better one of the same class with IoU above ``duplicate_iou`` is dropped (the same
   object found twice), and boxes are mapped to the input picture's pixels, clipped to it.

``load_detector`` reads our training checkpoints and official Deformable DETR checkpoints (whose
class ids are COCO category ids, named "person", "car", ...; see
:mod:`ddetr_edu.viz.loading`), or, without an argument, the reference model shipped with the
package (:mod:`ddetr_edu.checkpoints.reference`, trained on the shapes dataset).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ddetr_edu.boxes import classwise_nms
from ddetr_edu.checkpoints import CheckpointKind
from ddetr_edu.data.images import load_image
from ddetr_edu.data.transforms import TransformConfig, build_eval_transforms
from ddetr_edu.models.postprocess import postprocess

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, Tensor]


@dataclass(frozen=True)
class Detection:
    """One detected object."""

    class_name: str  # e.g. "circle"; "class <i>" for a checkpoint that stores no names
    class_id: int  # the model's label: 0..C-1 for our checkpoints, the COCO category id for official ones
    score: float  # sigmoid(logit), in (0, 1)
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in the input picture's pixels, clipped to it


@dataclass
class Detector:
    """A detector ready to look at pictures: ``detect(image)``. Made by :func:`load_detector`."""

    model: nn.Module = field(repr=False)  # DeformableDETR, in eval mode
    kind: CheckpointKind  # "ddetr_edu" or "official": where the weights came from
    transforms: TransformConfig  # the evaluation resize of its training recipe (eval_scale, max_size)
    class_names: list[str] | None = None  # label i is named class_names[i]; None: "class <i>"

    def class_name(self, class_id: int) -> str:
        """The name of label ``class_id``."""
        if self.class_names is not None and 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return f"class {class_id}"

    def prepare(self, image: ImageInput) -> tuple[Tensor, tuple[int, int]]:
        """(the model input (3, h, w) float32, resized and normalised, on the CPU; the picture's
        (height, width) in pixels). Raises ValueError (one line) for an input it cannot read."""
        picture = as_picture(image)
        empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
        tensor, _ = build_eval_transforms(self.transforms)(picture, empty)
        return tensor, (picture.height, picture.width)

    @torch.no_grad()
    def detect(self, image: ImageInput, score_threshold: float = 0.3, top_k: int = 100,
               duplicate_iou: float = 0.7) -> list[Detection]:
        """The objects in ``image``, best first.

        Args:
            image: a file path, a PIL image, an (H, W, 3) uint8 array (RGB), or a (3, H, W) tensor
                (uint8 0..255 or float 0..1), not normalised: detect() resizes and normalises.
            score_threshold: smallest score kept, in [0, 1].
            top_k: at most this many detections.
            duplicate_iou: a detection overlapping a better one of the same class with IoU above
                this is dropped; 1.0 keeps every one.
        Returns:
            a list of :class:`Detection` (class_name, class_id, score, box xyxy in the input
            picture's pixels, clipped to it), scores descending; empty when nothing scores enough.
        """
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected a probability in [0, 1], got {score_threshold}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k: expected an int >= 1, got {top_k!r}")
        tensor, (height, width) = self.prepare(image)
        parameter = next(self.model.parameters())
        was_training = self.model.training
        self.model.eval()
        try:
            outputs = self.model(tensor[None].to(parameter.device, parameter.dtype))
        finally:
            self.model.train(was_training)
        (result,) = postprocess(outputs, torch.tensor([[height, width]]), top_k=top_k)  # boxes clipped
        keep = result["scores"] >= score_threshold
        scores, labels, boxes = (result[key][keep].float().cpu() for key in ("scores", "labels", "boxes"))
        order = classwise_nms(boxes, scores, labels, duplicate_iou)  # best first
        return [Detection(self.class_name(int(labels[i])), int(labels[i]), float(scores[i]),
                          tuple(float(v) for v in boxes[i])) for i in order.tolist()]


def as_picture(image: ImageInput) -> Image.Image:
    """Any input :meth:`Detector.detect` takes -> an upright 8-bit RGB PIL image."""
    if isinstance(image, (str, os.PathLike, Image.Image)):
        return load_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected an (H, W, 3) uint8 array (RGB, 0..255), got shape {image.shape} "
                             f"{image.dtype}")
        return Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image: expected a (3, H, W) tensor (one RGB image), got shape {tuple(image.shape)}")
        pixels = image.detach().cpu()
        if pixels.is_floating_point():
            low, high = float(pixels.min()), float(pixels.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(f"image: a float tensor must hold values in [0, 1] (not normalised: detect() "
                                 f"normalises), got values from {low:.3g} to {high:.3g}")
            pixels = (pixels * 255.0).round()
        elif pixels.dtype != torch.uint8:
            raise ValueError(f"image: expected a uint8 (0..255) or float (0..1) tensor, got {pixels.dtype}")
        array = pixels.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()  # (H, W, 3)
        return Image.fromarray(array, mode="RGB")
    raise ValueError(f"image: expected a file path, a PIL image, an (H, W, 3) uint8 array or a (3, H, W) "
                     f"tensor, got {type(image).__name__}")


def load_detector(checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Detector:
    """A :class:`Detector` from ``checkpoint``: one of our training checkpoints
    (``runs/x/checkpoint_best.pth``: its model, class names and evaluation resize) or an official
    Deformable DETR checkpoint (COCO names, COCO's resize: short side 800, long side <= 1333);
    None: the reference model shipped with the package. The model is put on ``device`` in eval
    mode. Raises FileNotFoundError or ValueError (one line) for a file that is neither."""
    from ddetr_edu.viz.loading import load_detector as load_checkpoint, load_reference_detector

    return load_reference_detector(device) if checkpoint is None else load_checkpoint(checkpoint, device)


__all__ = ["Detection", "Detector", "ImageInput", "as_picture", "load_detector"]
