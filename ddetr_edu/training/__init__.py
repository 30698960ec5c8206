"""Training: the set loss (Hungarian matching, focal loss) and the loop that fits a detector.

* ``ddetr_edu.training.matcher``: :class:`HungarianMatcher`, one-to-one assignment of queries
  to ground-truth boxes (focal class cost + L1 + GIoU, solved with scipy per image).
* ``ddetr_edu.training.focal``: :func:`sigmoid_focal_loss`, the element-wise focal loss.
* ``ddetr_edu.training.losses``: :class:`DetectionLoss` and :class:`LossWeights`, the set loss
  on the final decoder layer, every auxiliary layer and the two-stage encoder proposals.

The names above are also reachable as ``ddetr_edu.training.<Name>``. The training loop itself
is in ``fit`` (:func:`~ddetr_edu.training.fit.fit`), ``loop``, ``engine``, ``optim`` and ``config``.
"""
from ddetr_edu.training.focal import sigmoid_focal_loss
from ddetr_edu.training.losses import DetectionLoss, LossWeights
from ddetr_edu.training.matcher import HungarianMatcher

__all__ = ["DetectionLoss", "HungarianMatcher", "LossWeights", "sigmoid_focal_loss"]
