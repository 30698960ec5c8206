"""The sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", 2017).

Deformable DETR scores every (query, class) pair with an independent sigmoid: there is no
"no-object" class, an unmatched query is simply negative for every class. Most of the
Q x num_classes pairs are easy negatives; the focal loss scales the binary cross-entropy by
(1 - p_t)^gamma so that they stop dominating the sum:

    p   = sigmoid(x)
    p_t = p      if y = 1 else 1 - p            (probability given to the true answer)
    a_t = alpha  if y = 1 else 1 - alpha        (class-balance weight)
    FL(x, y) = -a_t (1 - p_t)^gamma log(p_t) = a_t (1 - p_t)^gamma BCE(x, y)

With gamma = 0 and alpha < 0 (no balancing) it is the plain binary cross-entropy.
Deformable DETR uses alpha = 0.25, gamma = 2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss; no reduction.

    Args:
        logits: raw scores x, any shape, e.g. (n, q, num_classes).
        targets: same shape, 1.0 for the true (query, class) pairs and 0.0 elsewhere
            (soft targets in [0, 1] also work).
        alpha: weight of the positives, 1 - alpha for the negatives; a negative value turns
            the balancing off (a_t = 1).
        gamma: focusing exponent, >= 0.

    Returns:
        FL(x, y) with the shape of ``logits``.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"sigmoid_focal_loss: logits and targets must have the same shape, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if gamma < 0:
        raise ValueError(f"sigmoid_focal_loss: gamma must be >= 0, got {gamma}")
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    # BCE(x, y) = -log(p_t), computed from the logits for numerical stability
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    # p_t = p y + (1 - p)(1 - y)
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        # a_t = alpha y + (1 - alpha)(1 - y)
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


def focal_class_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Matching cost of giving each prediction each target's class, focal style.

    The cost is how much the focal loss would drop if the prediction were called positive
    for the target's class instead of negative (lower = better match):

        p    = sigmoid(x)                                  (probability of the target class)
        pos  = alpha (1 - p)^gamma (-log(p + 1e-8))        (loss if positive)
        neg  = (1 - alpha) p^gamma (-log(1 - p + 1e-8))    (loss if negative)
        cost = pos - neg

    Args:
        logits: (p, num_classes) raw class scores of p predictions.
        labels: (t,) int64 class index of each target.

    Returns:
        (p, t) cost; entry [i, j] uses prediction i's probability for target j's class.
    """
    if logits.dim() != 2:
        raise ValueError(f"focal_class_cost: logits must be (p, num_classes), got shape {tuple(logits.shape)}")
    if labels.dim() != 1:
        raise ValueError(f"focal_class_cost: labels must be (t,), got shape {tuple(labels.shape)}")
    prob = logits.sigmoid()[:, labels]  # (p, t)
    pos = alpha * (1 - prob) ** gamma * (-(prob + 1e-8).log())
    neg = (1 - alpha) * prob**gamma * (-(1 - prob + 1e-8).log())
    return pos - neg
