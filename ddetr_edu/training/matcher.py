"""Hungarian matching: which query answers for which ground-truth object.

DETR-style detectors predict a *set* of Q boxes and are trained against a set of T <= Q
objects. Before any loss can be computed each object is assigned to exactly one query
(one-to-one, so duplicates are penalised: the second query on the same object is matched to
nothing and pushed towards "no object"). The assignment minimises the total cost

    C[i, j] = w_class * C_class(i, j) + w_bbox * ||b_i - b_j||_1 + w_giou * (-GIoU(b_i, b_j))

over permutations; `scipy.optimize.linear_sum_assignment` (the Hungarian / Jonker-Volgenant
algorithm) solves it exactly per image. C_class is the focal-style cost of
:func:`ddetr_edu.training.focal.focal_class_cost`. Deformable DETR weights: class 2, L1 5,
GIoU 2. The matching itself is not differentiated (no gradient flows through an argmin).
"""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ddetr_edu.boxes import cxcywh_to_xyxy, generalized_box_iou
from ddetr_edu.training.focal import focal_class_cost


def _check_inputs(outputs: dict, targets: list[dict]) -> tuple[int, int]:
    """Validate the matcher's inputs; return (batch size n, queries q)."""
    for key in ("pred_logits", "pred_boxes"):
        if key not in outputs:
            raise ValueError(f"HungarianMatcher: outputs lacks the key {key!r}; got keys {sorted(outputs)}")
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    if logits.dim() != 3:
        raise ValueError(f"HungarianMatcher: pred_logits must be (n, q, num_classes), got shape {tuple(logits.shape)}")
    n, q, _ = logits.shape
    if tuple(boxes.shape) != (n, q, 4):
        raise ValueError(f"HungarianMatcher: pred_boxes must be (n, q, 4) = {(n, q, 4)}, got {tuple(boxes.shape)}")
    if len(targets) != n:
        raise ValueError(f"HungarianMatcher: expected {n} target dicts (one per image), got {len(targets)}")
    for i, target in enumerate(targets):
        for key in ("labels", "boxes"):
            if key not in target:
                raise ValueError(f"HungarianMatcher: targets[{i}] lacks the key {key!r}; got keys {sorted(target)}")
        t = target["labels"].shape[0]
        if target["labels"].dim() != 1 or tuple(target["boxes"].shape) != (t, 4):
            raise ValueError(
                f"HungarianMatcher: targets[{i}] needs labels (t,) and boxes (t, 4), got labels "
                f"{tuple(target['labels'].shape)} and boxes {tuple(target['boxes'].shape)}"
            )
    return n, q


def check_labels(targets: list[dict], num_classes: int) -> None:
    """Every target label lies in [0, num_classes); ValueError naming the image if not. Reads the
    labels: call it where they are on the CPU (a GPU tensor would make the host wait)."""
    for i, target in enumerate(targets):
        labels = target["labels"]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"HungarianMatcher: target labels must lie in [0, {num_classes - 1}], got "
                f"[{int(labels.min())}, {int(labels.max())}] in targets[{i}]"
            )


class HungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets, per image, minimising the weighted cost.

    Args:
        cost_class: weight of the focal class cost (Deformable DETR: 2).
        cost_bbox: weight of the L1 distance between cxcywh boxes (5).
        cost_giou: weight of -GIoU between the xyxy boxes (2).
        focal_alpha, focal_gamma: the focal cost's alpha and gamma (0.25, 2).
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: at least one of cost_class, cost_bbox, cost_giou must be non-zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def cost_matrices(self, outputs: dict, targets: list[dict]) -> list[Tensor]:
        """The weighted cost matrix of every image: list of n tensors (q, t_i), on the input device.

        Like the official code the costs are computed for the whole batch at once, every
        prediction of every image against every target of every image, (n*q, sum t_i), and then
        each image keeps its own block: one large tensor operation instead of n small ones.
        Inputs as in :meth:`forward`.
        """
        n, q = _check_inputs(outputs, targets)
        logits = outputs["pred_logits"].flatten(0, 1)  # (n*q, num_classes)
        boxes = outputs["pred_boxes"].flatten(0, 1)  # (n*q, 4) cxcywh
        # (non-blocking: a blocking copy to a GPU waits for it)
        tgt_labels = torch.cat([t["labels"] for t in targets]).to(logits.device, non_blocking=True)  # (T,)
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(boxes, non_blocking=True)  # (T, 4) cxcywh
        num_classes = logits.shape[-1]
        if tgt_labels.device.type == "cpu":  # on a GPU this check would wait for it: the engine
            check_labels(targets, num_classes)  # checks the batch on the CPU before moving it

        # C_class = alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p)), p of the target class
        cost_class = focal_class_cost(logits, tgt_labels, self.focal_alpha, self.focal_gamma)  # (n*q, T)
        # C_bbox = sum_k |b_ik - b_jk| on cx, cy, w, h
        cost_bbox = torch.cdist(boxes, tgt_boxes, p=1)  # (n*q, T)
        # C_giou = -GIoU(b_i, b_j) on x0, y0, x1, y1
        cost_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(tgt_boxes), check=False)  # (n*q, T)
        cost = self.cost_class * cost_class + self.cost_bbox * cost_bbox + self.cost_giou * cost_giou
        cost = cost.view(n, q, -1)  # (n, q, T)

        sizes = [len(t["labels"]) for t in targets]
        # image i keeps the columns of its own targets: block i of the split, row i of the batch
        return [block[i] for i, block in enumerate(cost.split(sizes, dim=-1))]

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
        """Match predictions to targets.

        Args:
            outputs: dict with
                ``pred_logits`` (n, q, num_classes) raw sigmoid logits (no "no-object" class);
                ``pred_boxes`` (n, q, 4) boxes (cx, cy, w, h) normalised to [0, 1] by the
                unpadded image size. Other keys (``aux_outputs`` ...) are ignored.
            targets: list of n dicts, one per image, with
                ``labels`` (t_i,) int64 class indices in [0, num_classes);
                ``boxes`` (t_i, 4) boxes (cx, cy, w, h) normalised like ``pred_boxes``.
                t_i = 0 (an image without objects) is allowed.

        Returns:
            list of n pairs ``(pred_idx, target_idx)``, both (min(q, t_i),) int64 on the CPU:
            query ``pred_idx[k]`` is matched to target ``target_idx[k]``. Pairs are sorted by
            ``pred_idx``; unmatched queries are simply absent.
        """
        return self.match_layers([(outputs, targets)])[0]

    @torch.no_grad()
    def match_layers(self, layers: list[tuple[dict, list[dict]]]) -> list[list[tuple[Tensor, Tensor]]]:
        """``forward`` for several (outputs, targets) pairs at once, e.g. every decoder layer of a
        step: all cost matrices travel to the CPU in one copy, the one host-device
        synchronisation that matching needs per training step."""
        costs = [self.cost_matrices(outputs, targets) for outputs, targets in layers]  # [layer][image] (q, t_i)
        flat = [c.float().flatten() for layer in costs for c in layer]
        host = torch.cat(flat).cpu() if flat else torch.zeros(0)  # the one copy
        blocks = iter(host.split([f.numel() for f in flat]))
        matches = []
        for layer_index, layer in enumerate(costs):
            layer_matches = []
            for i, cost in enumerate(layer):
                block = next(blocks).view(cost.shape)
                if not bool(torch.isfinite(block).all()):
                    raise ValueError(
                        f"HungarianMatcher: the cost matrix of image {i} (layer {layer_index}) has non-finite "
                        "entries; check pred_logits / pred_boxes for NaN or inf"
                    )
                pred_idx, target_idx = linear_sum_assignment(block.numpy())
                layer_matches.append((torch.as_tensor(pred_idx, dtype=torch.int64),
                                      torch.as_tensor(target_idx, dtype=torch.int64)))
            matches.append(layer_matches)
        return matches

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, cost_giou={self.cost_giou}, "
            f"focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}"
        )
