"""The detector and its parts.

* ``build_detector(cfg)`` / ``DeformableDETR``: the whole model (``detector.py``);
* ``postprocess(outputs, target_sizes, top_k=100)``: top-k detections in pixels;
* parts, one idea per file: ``backbone`` + ``position`` (images -> maps, masks, positions),
  ``input_proj``, ``encoder``, ``decoder``, ``heads``, ``two_stage``, ``transformer``;
  ``denoising``: DN-DETR's self-attention mask (drawn in chapter 12, not trained with).
"""
from ddetr_edu.models.detector import DeformableDETR, build_detector
from ddetr_edu.models.inputs import pad_images
from ddetr_edu.models.postprocess import postprocess

__all__ = ["DeformableDETR", "build_detector", "pad_images", "postprocess"]
