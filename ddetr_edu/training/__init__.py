"""Training: Hungarian matching and the detection losses.

Nothing heavy is imported here; import the submodule you need:

* ``ddetr_edu.training.matcher``: :class:`HungarianMatcher`, one-to-one assignment of queries
  to ground-truth boxes (focal class cost + L1 + GIoU, solved with scipy per image).
* ``ddetr_edu.training.focal``: :func:`sigmoid_focal_loss`, the element-wise focal loss.
* ``ddetr_edu.training.losses``: :class:`DetectionLoss` and :class:`LossWeights`, the set loss
  on the final decoder layer, every auxiliary layer and the two-stage encoder proposals.

The names above are also reachable as ``ddetr_edu.training.<Name>``; the submodule is imported
on first access.
"""
from __future__ import annotations

from ddetr_edu.lazy_exports import lazy_exports

_LAZY = {
    "HungarianMatcher": "matcher",
    "sigmoid_focal_loss": "focal",
    "DetectionLoss": "losses",
    "LossWeights": "losses",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
