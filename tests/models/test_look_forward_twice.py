"""DINO's look-forward-twice (ModelConfig.look_forward_twice): the same numbers, one more gradient path.

Off, the decoder must be today's refinement (each layer's box loss stops at its own box head);
on, layer i's box loss also reaches layer i-1's box head and decoder layer, and no further.
Both are checked against a by-hand loop of the formulas in ``ddetr_edu/models/decoder.py``.
"""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.boxes import inverse_sigmoid
from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector, pad_images
from ddetr_edu.models.decoder import DeformableDecoder
from ddetr_edu.models.heads import LayerHeads, make_heads
from ddetr_edu.ops import Levels

torch.set_num_threads(2)
C, LAYERS, N, Q = 32, 3, 2, 5
LEVELS = Levels(((4, 4), (2, 2)))


def _decoder_and_inputs(look_forward_twice: bool):
    torch.manual_seed(0)
    decoder = DeformableDecoder(LAYERS, look_forward_twice=look_forward_twice, d_model=C, dim_feedforward=16,
                                dropout=0.0, n_levels=2, n_heads=2, n_points=2, backend="einops")
    class_heads, box_heads = make_heads(C, 3, LAYERS, with_box_refine=True, two_stage=True)
    with torch.no_grad():  # random box heads: the zero-initialised last layer would hide gradients
        for p in box_heads.parameters():
            p.normal_(0.0, 0.3)
    heads = LayerHeads(class_heads, box_heads, refine=True)
    inputs = dict(tgt=torch.randn(N, Q, C), query_pos=torch.randn(N, Q, C),
                  reference=torch.rand(N, Q, 4) * 0.6 + 0.2, memory=torch.randn(N, 20, C), levels=LEVELS,
                  ratios=torch.ones(N, 2, 2), padding_mask=None)
    return decoder, heads, inputs


def _by_hand(decoder, heads, tgt, query_pos, reference, memory, levels, ratios, padding_mask, twice):
    """The refinement loop written out: b'_i = sigmoid(d_i + s^-1(b_{i-1})), b_{i-1} detached; the
    supervised box is b'_i, or with ``twice`` sigmoid(d_i + s^-1(b'_{i-1})). -> supervised (N, Q, 4) per layer."""
    supervised, previous = [], reference
    for i, layer in enumerate(decoder.layers):
        on_levels = reference[:, :, None] * torch.cat([ratios, ratios], -1)[:, None]  # (N, Q, L, 4)
        tgt = layer(tgt, query_pos, on_levels, memory, levels, padding_mask)
        offset = heads.box_heads[i](tgt)  # (N, Q, 4)
        box = (offset + inverse_sigmoid(reference)).sigmoid()
        supervised.append((offset + inverse_sigmoid(previous if twice else reference)).sigmoid())
        previous, reference = box, box.detach()
    return supervised


def _grads(loss, modules):
    grads = torch.autograd.grad(loss, [p for m in modules for p in m.parameters()], allow_unused=True)
    return [torch.zeros(()) if g is None else g for g in grads]


@pytest.mark.parametrize("twice", [False, True])
def test_decoder_matches_the_by_hand_loop_in_values_and_gradients(twice):
    decoder, heads, inputs = _decoder_and_inputs(twice)
    boxes = [p.boxes for p in decoder(**inputs, heads=heads)]
    expected = _by_hand(decoder, heads, **inputs, twice=twice)
    weights = torch.randn(LAYERS, N, Q, 4)  # a different loss weight per layer and coordinate
    loss = sum((w * b).sum() for w, b in zip(weights, boxes))
    loss_expected = sum((w * b).sum() for w, b in zip(weights, expected))
    modules = [decoder, heads.box_heads]
    for got, want in zip(_grads(loss, modules), _grads(loss_expected, modules)):
        torch.testing.assert_close(got, want)
    for got, want in zip(boxes, expected):
        torch.testing.assert_close(got, want)


def _run(twice: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    decoder, heads, inputs = _decoder_and_inputs(twice)
    return [(p.logits, p.boxes) for p in decoder(**inputs, heads=heads)]


def test_same_numbers_on_and_off():
    for (logits_off, boxes_off), (logits_on, boxes_on) in zip(_run(False), _run(True)):
        torch.testing.assert_close(logits_on, logits_off, rtol=0, atol=0)
        torch.testing.assert_close(boxes_on, boxes_off, rtol=1e-6, atol=1e-7)


def _tiny_detector(look_forward_twice: bool):
    torch.manual_seed(0)
    cfg = get_preset("shapes_cpu", small_cnn_channels=(16, 32, 32, 32), d_model=32, n_heads=2, enc_layers=1,
                     dec_layers=LAYERS, dim_feedforward=16, num_queries=4, num_classes=3, enc_n_points=2,
                     dec_n_points=2, attention_backend="einops", look_forward_twice=look_forward_twice)
    model = build_detector(cfg)
    with torch.no_grad():
        for p in model.bbox_embed.parameters():
            p.normal_(0.0, 0.3)
    return model


def _box_head_gradient_norms(model) -> list[float]:
    """Norm of d(last layer's L1 box loss)/d(box head i) for every decoder layer i."""
    images, masks = pad_images([torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))])
    out = model(images, masks)
    loss = (out["pred_boxes"] - 0.5).abs().sum()
    grads = _grads(loss, list(model.bbox_embed)[:LAYERS])
    sizes = [len(list(h.parameters())) for h in list(model.bbox_embed)[:LAYERS]]
    starts = [sum(sizes[:i]) for i in range(LAYERS)]
    return [float(sum(g.norm() ** 2 for g in grads[s:s + n]) ** 0.5) for s, n in zip(starts, sizes)]


def test_last_layer_box_loss_reaches_the_previous_box_head_only_when_on():
    off, on = _box_head_gradient_norms(_tiny_detector(False)), _box_head_gradient_norms(_tiny_detector(True))
    last, previous, before = LAYERS - 1, LAYERS - 2, LAYERS - 3
    assert off[last] > 0 and off[previous] == 0 and off[before] == 0
    assert on[previous] > 0, "look-forward-twice: layer i's box loss must reach layer i-1's head"
    assert on[before] == 0, "twice, not three times: layer i-2's head must get nothing"
    assert on[last] == pytest.approx(off[last], rel=1e-5)  # its own head sees the same offset gradient


def test_option_off_by_default_in_every_preset():
    from ddetr_edu.config import PRESET_NAMES
    assert not any(get_preset(name).look_forward_twice for name in PRESET_NAMES)
