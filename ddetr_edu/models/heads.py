"""Prediction heads: a class logit per category and a box as an offset from a reference.

Classification is a single linear layer giving one *sigmoid* logit per class (focal loss; there
is no "no object" class). Its bias starts at -log((1 - pi) / pi) with prior pi = 0.01, so that at
the start every query predicts "background" with probability 0.99 and the focal loss is not
swamped by the many easy negatives.

The box head is a 3-layer MLP whose output is an offset in inverse-sigmoid space:

    b = sigmoid(MLP(h) + sigmoid^-1(r))

where r is the reference: a point (cx, cy) (then only the centre is offset and w, h come from
the MLP alone) or a box (cx, cy, w, h). Its last layer starts at zero, so the first prediction is
the reference itself (with w = h = sigmoid(-2) ~ 0.12 for point references).

The detector owns the heads (parameters ``class_embed.*`` and ``bbox_embed.*``, as official);
``LayerHeads`` is how the decoder and the two-stage proposals call them.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ddetr_edu.boxes import inverse_sigmoid

FOCAL_PRIOR = 0.01  # initial foreground probability of every class logit


class MLP(nn.Module):
    """Linear -> ReLU -> ... -> Linear; parameter names ``layers.i.{weight,bias}`` as official."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, num_layers: int) -> None:
        super().__init__()
        widths = [d_in] + [d_hidden] * (num_layers - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:  # (..., d_in) -> (..., d_out)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def make_class_head(d_model: int, num_classes: int) -> nn.Linear:
    """Linear (C -> num_classes) with the focal prior in its bias."""
    head = nn.Linear(d_model, num_classes)
    nn.init.constant_(head.bias, -math.log((1 - FOCAL_PRIOR) / FOCAL_PRIOR))
    return head


def make_box_head(d_model: int) -> MLP:
    """3-layer MLP (C -> C -> C -> 4) with a zero last layer: the first box is the reference."""
    head = MLP(d_model, d_model, 4, 3)
    nn.init.zeros_(head.layers[-1].weight)
    nn.init.zeros_(head.layers[-1].bias)
    return head


def make_heads(d_model: int, num_classes: int, dec_layers: int, with_box_refine: bool,
               two_stage: bool) -> tuple[nn.ModuleList, nn.ModuleList]:
    """(class heads, box heads) as ModuleLists.

    * no refinement: one head of each kind, shared by every decoder layer;
    * refinement: one independent head per decoder layer (same initial values), plus, for
      two-stage, one more at index ``dec_layers`` (the last) that scores the encoder proposals.

    Box-head bias init as official: for point references the first head's w, h bias is -2
    (boxes start at ~0.12 of the image); for two-stage every head starts at 0 (the references
    are already boxes).
    """
    class_head, box_head = make_class_head(d_model, num_classes), make_box_head(d_model)
    if not with_box_refine:
        nn.init.constant_(box_head.layers[-1].bias[2:], -2.0)
        return nn.ModuleList([class_head]), nn.ModuleList([box_head])
    count = dec_layers + 1 if two_stage else dec_layers
    class_heads = nn.ModuleList(copy.deepcopy(class_head) for _ in range(count))
    box_heads = nn.ModuleList(copy.deepcopy(box_head) for _ in range(count))
    if not two_stage:
        nn.init.constant_(box_heads[0].layers[-1].bias[2:], -2.0)
    return class_heads, box_heads


def predict_boxes(box_head: nn.Module, hidden: Tensor, reference: Tensor) -> Tensor:
    """b = sigmoid(MLP(h) + sigmoid^-1(r)) on the coordinates r has.

    hidden (N, Q, C); reference (N, Q, 2) points or (N, Q, 4) boxes, cxcywh in [0, 1]
    -> boxes (N, Q, 4) cxcywh in [0, 1].
    """
    return refine_boxes(box_head(hidden), reference)


def refine_boxes(offset: Tensor, reference: Tensor) -> Tensor:
    """b = sigmoid(offset + sigmoid^-1(r)) on the coordinates r has; the rest of b is sigmoid(offset).

    offset (N, Q, 4) a box head's output; reference (N, Q, 2) points or (N, Q, 4) boxes, cxcywh in
    [0, 1] -> boxes (N, Q, 4) cxcywh in [0, 1].
    """
    r = reference.shape[-1]
    if r not in (2, 4):
        raise ValueError(f"reference: expected last axis 2 (points) or 4 (boxes), got shape "
                         f"{tuple(reference.shape)}")
    unactivated = torch.cat([offset[..., :r] + inverse_sigmoid(reference), offset[..., r:]], dim=-1)
    return unactivated.sigmoid()


@dataclass(frozen=True)
class LayerHeads:
    """The detector's heads as the decoder calls them: which head serves which decoder layer.

    Not a module: it holds the detector's own ``ModuleList``s (``make_heads``), so the parameters
    keep their official names ``class_embed.*`` / ``bbox_embed.*``. ``refine``: one head per
    layer, and each layer's box becomes the next layer's reference (iterative box refinement);
    otherwise every layer shares head 0.
    """

    class_heads: nn.ModuleList
    box_heads: nn.ModuleList
    refine: bool

    def predict(self, layer: int, hidden: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
        """Decoder layer ``layer``: hidden (N, Q, C), its reference (N, Q, 2|4)
        -> logits (N, Q, num_classes), boxes (N, Q, 4) cxcywh in [0, 1]."""
        i = layer if self.refine else 0
        return self.class_heads[i](hidden), predict_boxes(self.box_heads[i], hidden, reference)

    def predict_looking_twice(self, layer: int, hidden: Tensor, reference: Tensor, previous: Tensor
                              ) -> tuple[Tensor, Tensor, Tensor]:
        """DINO's look-forward-twice, with refinement: one box offset applied to two starts.

        hidden (N, Q, C); reference (N, Q, 2|4) the previous layer's box, detached (what this layer
        attended around); previous (N, Q, 2|4) the same numbers before the detach
        -> logits (N, Q, num_classes),
           boxes (N, Q, 4) sigmoid(offset + sigmoid^-1(reference)): the next layer's start,
           supervised (N, Q, 4) sigmoid(offset + sigmoid^-1(previous)): equal numbers, but the loss
           on it also reaches the previous layer's box head and decoder layer.
        """
        if not self.refine:
            raise ValueError("predict_looking_twice: needs refine=True (one box head per layer)")
        offset = self.box_heads[layer](hidden)  # (N, Q, 4)
        return (self.class_heads[layer](hidden), refine_boxes(offset, reference),
                refine_boxes(offset, previous))

    def score_proposals(self, memory: Tensor, proposals: Tensor) -> tuple[Tensor, Tensor]:
        """Two-stage, with the extra (last) heads: memory (N, S, C), proposals (N, S, 4)
        unactivated -> logits (N, S, num_classes), refined proposals (N, S, 4) unactivated."""
        return self.class_heads[-1](memory), self.box_heads[-1](memory) + proposals
