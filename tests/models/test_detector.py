"""Behaviour of the whole detector on a tiny configuration (CPU, fast)."""
from __future__ import annotations

import math

import pytest
import torch

from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector, pad_images, postprocess

torch.set_num_threads(2)


def tiny(**overrides):
    base = dict(small_cnn_channels=(16, 32, 32, 32), d_model=64, n_heads=2, enc_layers=1,
                dec_layers=2, dim_feedforward=32, num_queries=5, num_classes=3, enc_n_points=2,
                dec_n_points=2, dropout=0.0, with_box_refine=False, two_stage=False,
                attention_backend="einops")
    base.update(overrides)
    torch.manual_seed(0)
    return build_detector(get_preset("shapes_cpu", **base))


VARIANTS = {
    "plain": dict(with_box_refine=False),
    "refine": dict(with_box_refine=True),
    "two_stage": dict(with_box_refine=True, two_stage=True),
    "single_level": dict(with_box_refine=False, num_feature_levels=1),
}


def _batch():
    torch.manual_seed(1)
    return pad_images([torch.randn(3, 64, 96), torch.randn(3, 48, 64)])


@pytest.mark.parametrize("name", VARIANTS)
def test_output_shapes_and_attention_contract(name):
    model = tiny(**VARIANTS[name]).eval()
    images, masks = _batch()
    with torch.no_grad():
        out = model(images, masks, return_attention=True)
    cfg, t = model.cfg, model.cfg.transformer
    n, q, c = 2, cfg.num_queries, cfg.num_classes
    assert out["pred_logits"].shape == (n, q, c) and out["pred_boxes"].shape == (n, q, 4)
    assert len(out["aux_outputs"]) == t.dec_layers - 1
    assert ("enc_outputs" in out) == cfg.two_stage
    att = out["attention"]
    shapes = att["spatial_shapes"]
    s, lv = int((shapes[:, 0] * shapes[:, 1]).sum()), t.num_feature_levels
    assert shapes.shape == (lv, 2) and att["valid_ratios"].shape == (n, lv, 2)
    assert att["level_start_index"].tolist() == [0] + (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1].tolist()
    assert len(att["encoder"]) == t.enc_layers and len(att["decoder"]) == t.dec_layers
    m, ke, kd = t.n_heads, t.enc_n_points, t.dec_n_points
    assert att["encoder"][0]["locations"].shape == (n, s, m, lv, ke, 2)
    assert att["encoder"][0]["weights"].shape == (n, s, m, lv, ke)
    assert att["decoder"][1]["locations"].shape == (n, q, m, lv, kd, 2)
    # softmax over the L*K samples of each head
    sums = att["decoder"][0]["weights"].sum(dim=(-1, -2))
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    refs = att["decoder_references"]
    first = 4 if cfg.two_stage else 2
    assert refs[0].shape == (n, q, first)
    assert refs[1].shape == (n, q, 4 if cfg.with_box_refine else 2)
    if cfg.with_box_refine:  # the second layer refines the first layer's box
        assert torch.allclose(refs[1], out["aux_outputs"][0]["pred_boxes"])
    assert all(torch.isfinite(v).all() for v in (out["pred_logits"], out["pred_boxes"]))


def test_initial_heads_follow_the_paper():
    model = tiny(with_box_refine=False)
    prior = -math.log((1 - 0.01) / 0.01)
    assert torch.allclose(model.class_embed[0].bias, torch.full((3,), prior))
    last = model.bbox_embed[0].layers[-1]
    assert torch.count_nonzero(last.weight) == 0 and last.bias.tolist() == [0, 0, -2, -2]
    images, masks = _batch()
    with torch.no_grad():
        out = model.eval()(images, masks, return_attention=True)
    # zero last layer: the box is the reference point with w = h = sigmoid(-2)
    boxes, ref = out["pred_boxes"], out["attention"]["decoder_references"][-1]
    assert torch.allclose(boxes[..., :2], ref, atol=1e-5)
    assert torch.allclose(boxes[..., 2:], torch.full_like(boxes[..., 2:], torch.sigmoid(torch.tensor(-2.0))))


def test_list_input_equals_padded_tensor_and_none_mask_equals_false_mask():
    model = tiny(with_box_refine=True).eval()
    torch.manual_seed(2)
    a, b = torch.randn(3, 64, 96), torch.randn(3, 48, 64)
    images, masks = pad_images([a, b])
    assert masks[1, 48:].all() and masks[1, :, 64:].all() and not masks[0].any()
    with torch.no_grad():
        from_list = model([a, b])
        from_tensor = model(images, masks)
        single_none = model(a[None])
        single_false = model(a[None], torch.zeros(1, 64, 96, dtype=torch.bool))
    assert torch.equal(from_list["pred_logits"], from_tensor["pred_logits"])
    assert torch.equal(single_none["pred_boxes"], single_false["pred_boxes"])


@pytest.mark.parametrize("images, match", [
    (torch.randn(1, 1, 32, 32), "3 channels"),
    (torch.randn(1, 4, 32, 32), "3 channels"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
    (torch.randn(3, 32, 32), "4 dimensions"),
    (torch.randn(1, 3, 32, 32, dtype=torch.float64), "expected torch.float32, the dtype of the model's weights"),
    (torch.randn(1, 3, 1, 1), "at least 32 pixels"),
    (torch.randn(1, 3, 20, 200), "at least 32 pixels"),
])
def test_bad_images_raise(images, match):
    for model in (tiny(), tiny().eval()):
        with pytest.raises(ValueError, match=match) as error:
            model(images)
        assert "\n" not in str(error.value)  # one line


def test_bad_masks_raise():
    model = tiny()
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(1, 3, 32, 32), torch.zeros(1, 16, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        model(torch.randn(1, 3, 32, 32), torch.zeros(1, 32, 32))


def test_two_stage_too_many_queries_raises():
    model = tiny(with_box_refine=True, two_stage=True, num_queries=500).eval()
    with pytest.raises(ValueError, match="num_queries"):
        model(torch.randn(1, 3, 64, 64))  # 8*8 + 4*4 + 2*2 + 1 = 85 proposals < 500


def test_refined_reference_is_detached():
    """Gradients of the last layer's box reach its own head, never the first layer's box head."""
    model = tiny(with_box_refine=True).train()
    images, masks = _batch()
    out = model(images, masks)
    out["pred_boxes"].sum().backward()
    first_head = [p.grad for p in model.bbox_embed[0].parameters()]
    last_head = [p.grad for p in model.bbox_embed[1].parameters()]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in first_head)
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in last_head)
    # the rest of the network is trained through the queries
    assert model.transformer.encoder.layers[0].linear1.weight.grad is not None


def test_postprocess_topk_and_pixels():
    logits = torch.full((1, 2, 3), -10.0)
    logits[0, 1, 2], logits[0, 0, 0] = 3.0, 1.0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]])
    (res,) = postprocess({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[100, 200]]), top_k=100)
    assert res["scores"].shape == (6,)  # capped at Q * K
    assert res["labels"][:2].tolist() == [2, 0]
    assert torch.allclose(res["scores"][0], torch.sigmoid(torch.tensor(3.0)))
    assert torch.allclose(res["boxes"][0], torch.tensor([0.0, 50.0, 100.0, 100.0]))  # x by 200, y by 100
    assert torch.allclose(res["boxes"][1], torch.tensor([80.0, 30.0, 120.0, 70.0]))


def test_postprocess_clips_boxes_to_the_image():
    """A box reaching past the border (y = -2 px, x beyond the width) is clipped to [0, w] x [0, h]."""
    logits = torch.zeros(1, 2, 1)
    boxes = torch.tensor([[[0.1, 0.02, 0.3, 0.08], [0.95, 0.5, 0.2, 0.2]]])  # y0 = -0.02, x1 = 1.05
    (res,) = postprocess({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[100, 200]]))
    by_query = sorted(res["boxes"].tolist(), key=lambda b: b[0])
    assert by_query[0] == pytest.approx([0.0, 0.0, 50.0, 6.0], abs=1e-4)  # unclipped x0 = -10, y0 = -2 px
    assert by_query[1] == pytest.approx([170.0, 40.0, 200.0, 60.0], abs=1e-4)  # unclipped x1 = 210 px


def test_float64_images_run_with_a_float64_model():
    model = tiny().double().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32, dtype=torch.float64))
    assert out["pred_logits"].dtype == torch.float64


def test_forward_has_a_real_docstring():
    from ddetr_edu.models.detector import DeformableDETR

    doc = DeformableDETR.forward.__doc__
    for words in ("(N, 3, H, W)", "ImageNet-normalised", "masks", "pred_logits", "pred_boxes", "cxcywh", "ValueError"):
        assert words in doc, words
