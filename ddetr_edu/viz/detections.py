"""Which detections a picture shows: confident ones, one per object.

A detector with Q queries predicts Q boxes for every image; most of them score near 0 (empty
background) and a few objects are found by two queries at once. The figures show a detection
(query q, its last-layer box and best class c_q = argmax_c sigmoid(logit_qc)) only when

* its score s_q = max_c sigmoid(logit_qc) is at least ``score_threshold``
  (default :data:`DEFAULT_SCORE_THRESHOLD`), and
* no better-scoring shown detection of the same class overlaps it with IoU above
  ``duplicate_iou`` (default :data:`DUPLICATE_IOU`): class-wise non-maximum suppression,
  :func:`ddetr_edu.boxes.classwise_nms`.

At most ``top_k`` of them, best first. When none is left, the figures say so.
"""
from __future__ import annotations

from torch import Tensor

from ddetr_edu.boxes import classwise_nms, cxcywh_to_xyxy
from ddetr_edu.viz.attention import ImageAttention

DEFAULT_SCORE_THRESHOLD = 0.3  # a detection below this is background more often than not
DUPLICATE_IOU = 0.7  # same class and IoU above this: the same object found twice


def select_detections(attention: ImageAttention, top_k: int = 5,
                      score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                      duplicate_iou: float = DUPLICATE_IOU) -> Tensor:
    """Query indices (k,) of the detections to draw, best first (see the module docstring)."""
    if top_k < 1:
        raise ValueError(f"top_k: expected >= 1, got {top_k}")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold: expected a probability in [0, 1], got {score_threshold}")
    candidates = (attention.scores >= score_threshold).nonzero().flatten()  # (n,)
    boxes = cxcywh_to_xyxy(attention.layer_boxes[-1, candidates])  # (n, 4) valid-normalised
    kept = classwise_nms(boxes, attention.scores[candidates], attention.labels[candidates], duplicate_iou)
    return candidates[kept][:top_k]


__all__ = ["DEFAULT_SCORE_THRESHOLD", "DUPLICATE_IOU", "select_detections"]
