"""Box geometry: a handful of small pure functions.

Two formats are used everywhere in the project:

* ``cxcywh``: centre x, centre y, width, height. The model predicts and the losses compare
  boxes in this format, normalised to [0, 1] by the (unpadded) image width and height.
* ``xyxy``: left, top, right, bottom. IoU, GIoU, post-processing and COCO evaluation use it,
  normalised or in pixels.

Every function takes boxes with the 4 coordinates on the last axis and any leading shape.
"""
from __future__ import annotations

import torch
from torch import Tensor


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cx, cy, w, h -> (..., 4) x0, y0, x1, y1."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) x0, y0, x1, y1 -> (..., 4) cx, cy, w, h."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...) area; degenerate boxes give 0, never a negative area."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU of (A, 4) and (B, 4) xyxy boxes -> (iou (A, B), union (A, B)).

    IoU = |a ∩ b| / |a ∪ b|.
    """
    area_a, area_b = box_area(boxes_a), box_area(boxes_b)
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # (A, B, 2)
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # (A, B, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (A, B, 2)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes_a: Tensor, boxes_b: Tensor, check: bool = True) -> Tensor:
    """Pairwise GIoU of (A, 4) and (B, 4) xyxy boxes -> (A, B), values in [-1, 1].

    GIoU = IoU - |C \\ (a ∪ b)| / |C|, with C the smallest box enclosing a and b
    (Rezatofighi et al., 2019). Raises on inverted boxes (x1 < x0 or y1 < y0), which would
    silently give meaningless values. ``check=False`` skips that check, which reads the boxes
    (on a GPU: the host waits); the training loss passes it for the model's sigmoid boxes,
    whose NaNs the matcher reports on the CPU.
    """
    for name, boxes in (("boxes_a", boxes_a), ("boxes_b", boxes_b)) if check else ():
        if not bool((boxes[:, 2:] >= boxes[:, :2]).all()):
            raise ValueError(f"generalized_box_iou: {name} holds inverted boxes (x1 < x0 or y1 < y0)")
    iou, union = box_iou(boxes_a, boxes_b)
    top_left = torch.minimum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # (A, B, 2)
    bottom_right = torch.maximum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # (A, B, 2)
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x) = log(x / (1 - x)), with x clamped to [0, 1] and both terms to >= eps.

    The official code uses exactly this clamping; boxes are refined in this space.
    """
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def classwise_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression within each class -> indices (K,) of the boxes kept, best first.

    boxes (N, 4) xyxy, scores (N,), labels (N,) int. Going down the scores, a box is dropped when
    its IoU with an already kept box of the same label is above ``iou_threshold``; boxes of
    different labels never suppress each other. ``iou_threshold = 1`` keeps every box.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: expected a value in [0, 1], got {iou_threshold}")
    if not boxes.shape[0] == scores.shape[0] == labels.shape[0]:
        raise ValueError(f"classwise_nms: boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)} and labels "
                         f"{tuple(labels.shape)} must have the same length N")
    iou, _ = box_iou(boxes, boxes)  # (N, N); NaN for two empty boxes, which then do not suppress
    suppresses = (iou > iou_threshold) & (labels[:, None] == labels[None, :])  # (N, N)
    kept: list[int] = []
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        if not bool(suppresses[i, kept].any()):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)
