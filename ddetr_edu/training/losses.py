"""The set loss of Deformable DETR: match, then score the matched pairs.

For one decoder layer with matches sigma (query sigma(j) <-> target j), B = num_boxes:

    L_cls  = (1/B) sum_{n,q,c} FL(x_nqc, y_nqc)              (focal, every query, every class)
    L_l1   = (1/B) sum_j ||b_sigma(j) - b_j||_1              (cxcywh, matched pairs only)
    L_giou = (1/B) sum_j (1 - GIoU(b_sigma(j), b_j))         (xyxy, matched pairs only)
    L      = 2 L_cls + 5 L_l1 + 2 L_giou

y_nqc = 1 when query q of image n is matched to a target of class c, else 0: an unmatched
query is negative for every class (there is no "no-object" class). The classification sum is
written the official way, ``FL.mean(over queries).sum() / B * Q``, which equals the sum above.

The same loss, each layer with its own matching, is added for the final decoder output, for
every earlier decoder layer (``aux_outputs``, deep supervision) and, with two-stage, for the
encoder proposals (``enc_outputs``), which are matched class-agnostically: every target label
is set to 0, so the proposal head learns "object here" in its class-0 column.

B is the number of target boxes in the batch, averaged over processes under
torch.distributed (every process then divides by the same number), and at least 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ddetr_edu.boxes import cxcywh_to_xyxy, generalized_box_iou
from ddetr_edu.training.focal import sigmoid_focal_loss
from ddetr_edu.training.matcher import HungarianMatcher

TERMS = ("cls", "l1", "giou")  # the weighted loss terms of every layer, in this order


@dataclass
class LossWeights:
    """Weights of the three loss terms (the same for every layer)."""

    cls: float = 2.0  # focal classification loss (official cls_loss_coef)
    l1: float = 5.0  # L1 distance of cxcywh boxes (bbox_loss_coef)
    giou: float = 2.0  # 1 - GIoU of xyxy boxes (giou_loss_coef)


def average_num_boxes(targets: list[dict], device: torch.device | str = "cpu") -> float | Tensor:
    """B: target boxes in this batch, averaged over processes when distributed, clamped to >= 1.

    Alone, B is counted on the host from the targets' lengths (no device work, no sync). With
    torch.distributed initialised and world_size > 1 the per-process counts are summed with
    ``all_reduce`` and divided by the world size, so every process normalises by the same
    number and the averaged gradients equal a single big batch's; B then stays a 0-d tensor on
    ``device`` (reading it would make the host wait for the GPU).
    """
    count = float(sum(len(t["labels"]) for t in targets))
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return max(count, 1.0)
    total = torch.tensor([count]).to(device, non_blocking=True)
    dist.all_reduce(total)  # sum over processes, in place
    return (total[0] / dist.get_world_size()).clamp(min=1.0)


def class_agnostic(targets: list[dict]) -> list[dict]:
    """Copies of the targets with every label set to 0 (how encoder proposals are trained)."""
    return [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]


class DetectionLoss(nn.Module):
    """Hungarian-matched focal + L1 + GIoU loss on the final, auxiliary and encoder outputs.

    Args:
        num_classes: width of ``pred_logits`` (labels lie in [0, num_classes)).
        matcher: the assignment; default ``HungarianMatcher()`` (costs 2, 5, 2).
        weights: loss weights; default ``LossWeights()`` (2, 5, 2).
        focal_alpha, focal_gamma: focal loss parameters (0.25, 2).

    Call ``criterion(outputs, targets)``:

    * ``outputs``: the detector's dict: ``pred_logits`` (n, q, num_classes) raw logits,
      ``pred_boxes`` (n, q, 4) cxcywh normalised to the unpadded image; optional
      ``aux_outputs``: list of such dicts for the earlier decoder layers; optional
      ``enc_outputs``: such a dict for the two-stage proposals, (n, s, num_classes) and (n, s, 4).
    * ``targets``: list of n dicts with ``labels`` (t_i,) int64 and ``boxes`` (t_i, 4) cxcywh
      normalised (see :class:`~ddetr_edu.training.matcher.HungarianMatcher`).

    Returns a dict of scalar tensors:

    * ``"loss"``: the weighted total sum_layer sum_term weight[term] * layer/term, with grad;
    * ``"<layer>/<term>"``, unweighted, for layer in ``final``, ``aux0`` ... ``aux{k-1}``
      (the decoder layers before the last, first layer first), ``enc``, and term in
      :data:`TERMS` (``cls``, ``l1``, ``giou``);
    * ``"final/class_error"``: 100 - top-1 accuracy (%) of the matched queries' classes of the
      final layer, detached, for logging only (0 when nothing is matched).
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        weights: LossWeights | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"DetectionLoss: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher()
        self.weights = weights if weights is not None else LossWeights()
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def layer_losses(
        self, outputs: dict, targets: list[dict], matches: list[tuple[Tensor, Tensor]],
        num_boxes: float | Tensor
    ) -> dict[str, Tensor]:
        """Unweighted ``cls``, ``l1``, ``giou`` of one layer for given matches (see the module docstring)."""
        logits = outputs["pred_logits"]  # (n, q, c)
        n, q, c = logits.shape
        device = logits.device
        # flat index of every matched pair: image, query, and the target it answers for
        # (the matches are on the CPU: copy them non-blocking, a blocking copy waits for the GPU)
        image_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(matches)]).to(device, non_blocking=True)  # (M,)
        query_idx = torch.cat([src for src, _ in matches]).to(device, non_blocking=True)  # (M,)
        target_idx = [tgt.to(t["labels"].device, non_blocking=True) for t, (_, tgt) in zip(targets, matches)]
        tgt_labels = torch.cat([t["labels"][tgt] for t, tgt in zip(targets, target_idx)]).to(device)  # (M,)
        tgt_boxes = torch.cat([t["boxes"][tgt] for t, tgt in zip(targets, target_idx)]).to(logits)  # (M, 4)

        # y_nqc: one-hot over classes for matched queries, all zeros for the rest
        onehot = torch.zeros_like(logits)  # (n, q, c)
        onehot[image_idx, query_idx, tgt_labels] = 1.0
        focal = sigmoid_focal_loss(logits, onehot, self.focal_alpha, self.focal_gamma)  # (n, q, c)
        # L_cls = FL.mean(q).sum() / B * Q   (the official normalisation)
        loss_cls = focal.mean(dim=1).sum() / num_boxes * q

        pred_boxes = outputs["pred_boxes"][image_idx, query_idx]  # (M, 4) cxcywh
        # L_l1 = sum_j ||b_sigma(j) - b_j||_1 / B
        loss_l1 = (pred_boxes - tgt_boxes).abs().sum() / num_boxes
        # L_giou = sum_j (1 - GIoU(b_sigma(j), b_j)) / B; the diagonal pairs prediction j with target j
        giou = torch.diag(generalized_box_iou(cxcywh_to_xyxy(pred_boxes), cxcywh_to_xyxy(tgt_boxes), check=False))  # (M,)
        loss_giou = (1 - giou).sum() / num_boxes
        return {"cls": loss_cls, "l1": loss_l1, "giou": loss_giou}

    def _check_layer(self, name: str, outputs: dict, n: int, num_classes: int | None) -> None:
        for key in ("pred_logits", "pred_boxes"):
            if key not in outputs:
                raise ValueError(f"DetectionLoss: {name} outputs lack the key {key!r}; got keys {sorted(outputs)}")
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        if logits.dim() != 3 or logits.shape[0] != n or (num_classes is not None and logits.shape[2] != num_classes):
            want = f"({n}, q, {num_classes if num_classes is not None else 'c'})"
            raise ValueError(f"DetectionLoss: {name} pred_logits must be {want}, got {tuple(logits.shape)}")
        if tuple(boxes.shape) != (*logits.shape[:2], 4):
            raise ValueError(
                f"DetectionLoss: {name} pred_boxes must be {(*logits.shape[:2], 4)}, got {tuple(boxes.shape)}"
            )

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        n = len(targets)
        # (layer name, its outputs, the targets it is matched against), final layer first
        layers: list[tuple[str, dict, list[dict]]] = [("final", outputs, targets)]
        for i, aux in enumerate(outputs.get("aux_outputs") or []):
            layers.append((f"aux{i}", aux, targets))
        if outputs.get("enc_outputs") is not None:
            layers.append(("enc", outputs["enc_outputs"], class_agnostic(targets)))
        for name, layer_outputs, _ in layers:
            self._check_layer(name, layer_outputs, n, None if name == "enc" else self.num_classes)

        num_boxes = average_num_boxes(targets, outputs["pred_logits"].device)
        weight = {"cls": self.weights.cls, "l1": self.weights.l1, "giou": self.weights.giou}
        result: dict[str, Tensor] = {}
        total = outputs["pred_logits"].new_zeros(())
        # every layer's matching in one go: one copy of all cost matrices to the CPU per step
        all_matches = self.matcher.match_layers([(o, t) for _, o, t in layers])
        for (name, layer_outputs, layer_targets), matches in zip(layers, all_matches):
            terms = self.layer_losses(layer_outputs, layer_targets, matches, num_boxes)
            for term in TERMS:
                result[f"{name}/{term}"] = terms[term]
                total = total + weight[term] * terms[term]
            if name == "final":
                result["final/class_error"] = _class_error(layer_outputs["pred_logits"], matches, layer_targets)
        result["loss"] = total
        return result

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, weights={self.weights}, "
            f"focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}"
        )


@torch.no_grad()
def _class_error(logits: Tensor, matches: list[tuple[Tensor, Tensor]], targets: list[dict]) -> Tensor:
    """100 - top-1 accuracy (%) of the matched queries: logits (n, q, c) -> scalar; 0 if no match."""
    predicted = torch.cat([logits[i, src.to(logits.device, non_blocking=True)].argmax(-1)
                           for i, (src, _) in enumerate(matches)])
    truth = torch.cat([t["labels"][tgt.to(t["labels"].device, non_blocking=True)]
                       for t, (_, tgt) in zip(targets, matches)]).to(logits.device)
    if truth.numel() == 0:
        return logits.new_zeros(())
    return 100.0 - 100.0 * (predicted == truth).float().mean()
