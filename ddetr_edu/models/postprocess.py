"""From raw outputs to detections in pixels.

Every (query, class) pair is a candidate with score sigmoid(logit); the top-k pairs over all
Q x num_classes candidates of an image are kept (one query may give several classes). Boxes go
from normalised cxcywh to xyxy pixels of ``target_sizes`` (usually the original image size) and
are clipped to that image: x in [0, w], y in [0, h]. (A predicted box may reach past the border,
e.g. y = -2 px; the official PostProcess leaves it there.)
"""
from __future__ import annotations

import torch
from torch import Tensor

from ddetr_edu.boxes import cxcywh_to_xyxy


@torch.no_grad()
def postprocess(outputs: dict, target_sizes: Tensor, top_k: int = 100) -> list[dict[str, Tensor]]:
    """
    Args:
        outputs: model output with ``pred_logits`` (N, Q, K) and ``pred_boxes`` (N, Q, 4).
        target_sizes: (N, 2) int (h, w) per image, the pixel size to scale boxes to.
        top_k: detections per image (capped at Q * K).
    Returns:
        per image {"scores" (top_k,), "labels" (top_k,) int64 in 0..K-1,
        "boxes" (top_k, 4) xyxy pixels clipped to the image}, scores descending.
    """
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    n, q, k = logits.shape
    if tuple(target_sizes.shape) != (n, 2):
        raise ValueError(f"target_sizes: expected shape (N, 2) = {(n, 2)} rows (h, w), "
                         f"got {tuple(target_sizes.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k: expected >= 1, got {top_k}")
    top_k = min(top_k, q * k)
    probs = logits.sigmoid().reshape(n, q * k)  # (N, Q*K), index = query * K + class
    scores, flat = torch.topk(probs, top_k, dim=1)  # (N, top_k)
    query = torch.div(flat, k, rounding_mode="floor")
    labels = flat % k
    xyxy = torch.gather(cxcywh_to_xyxy(boxes), 1, query[..., None].expand(-1, -1, 4))  # (N, top_k, 4)
    h, w = target_sizes.unbind(1)
    scale = torch.stack([w, h, w, h], dim=1).to(xyxy.dtype)  # (N, 4)
    xyxy = torch.minimum(xyxy * scale[:, None, :], scale[:, None, :]).clamp(min=0)  # inside [0, w] x [0, h]
    return [{"scores": s, "labels": l, "boxes": b} for s, l, b in zip(scores, labels, xyxy)]
