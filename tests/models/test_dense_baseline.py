"""The DETR-style baseline (``attention="dense"``) and own-level attention (``cross_level_attention=False``)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ddetr_edu.config import ModelConfig, TransformerConfig, get_preset
from ddetr_edu.models import build_detector, pad_images
from ddetr_edu.models.attention_choice import OwnLevelMSDeformAttn, own_level_mask
from ddetr_edu.ops import Levels, MSDeformAttn
from ddetr_edu.training.fit import build_criterion

torch.set_num_threads(2)

TINY = dict(small_cnn_channels=(16, 32, 32, 32), d_model=64, n_heads=2, enc_layers=2, dec_layers=2,
            dim_feedforward=32, num_queries=5, num_classes=3, enc_n_points=2, dec_n_points=2,
            dropout=0.0, with_box_refine=False, two_stage=False, attention_backend="einops")


def tiny(**overrides):
    torch.manual_seed(0)
    return build_detector(get_preset("shapes_cpu", **{**TINY, **overrides}))


def dense(**overrides):
    return tiny(attention="dense", num_feature_levels=1, **overrides)


def _batch():
    torch.manual_seed(1)
    return pad_images([torch.randn(3, 160, 160), torch.randn(3, 128, 96)])


@pytest.mark.parametrize("refine", [False, True])
def test_dense_output_shapes(refine):
    model = dense(with_box_refine=refine).eval()
    images, masks = _batch()
    with torch.no_grad():
        out = model(images, masks, return_intermediates=True)
    n, q, c = 2, model.cfg.num_queries, model.cfg.num_classes
    assert out["pred_logits"].shape == (n, q, c) and out["pred_boxes"].shape == (n, q, 4)
    assert len(out["aux_outputs"]) == model.cfg.transformer.dec_layers - 1
    s = 5 * 5  # one level: C5 of a 160 px batch (stride 32)
    assert out["intermediates"]["memory"].shape == (n, s, 64)
    assert torch.isfinite(out["pred_logits"]).all()
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()


def test_dense_model_refuses_return_attention():
    model = dense().eval()
    images, masks = _batch()
    with pytest.raises(ValueError, match="return_attention"):
        model(images, masks, return_attention=True)


def _targets():
    boxes = [torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]]), torch.tensor([[0.5, 0.5, 0.5, 0.3]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    return [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]


def test_dense_loss_falls_on_a_tiny_batch():
    model = dense().train()
    criterion = build_criterion(model.cfg)
    images, masks = _batch()
    targets = _targets()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = criterion(model(images, masks), targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def _attention_part(name: str) -> bool:
    """The encoder's self-attention and the decoder's cross-attention, nothing else."""
    return (name.startswith("transformer.encoder.layers.") and ".self_attn." in name) or \
           (name.startswith("transformer.decoder.layers.") and ".cross_attn." in name)


def test_the_switch_changes_only_the_attention_parameters():
    deformable = dict(tiny(num_feature_levels=1).named_parameters())
    dense_params = dict(dense().named_parameters())
    changed = set(deformable) ^ set(dense_params)
    assert changed and all(_attention_part(name) for name in changed), sorted(changed)
    for name in set(deformable) & set(dense_params):
        assert deformable[name].shape == dense_params[name].shape, name
    assert any("in_proj_weight" in name for name in dense_params)
    assert any("sampling_offsets" in name for name in deformable)


def test_dense_cross_attention_reads_every_valid_token():
    """The gradient of one query's output reaches every unpadded memory token, and no padded one."""
    model = dense().eval()
    layer = model.transformer.decoder.layers[0]
    levels = Levels(((4, 5),))
    torch.manual_seed(2)
    tgt, query_pos = torch.randn(1, 3, 64), torch.randn(1, 3, 64)
    memory = torch.randn(1, 20, 64, requires_grad=True)
    padding = torch.zeros(1, 20, dtype=torch.bool)
    padding[0, -5:] = True  # the last row is padding
    reference = torch.rand(1, 3, 1, 2)
    out = layer(tgt, query_pos, reference, memory, levels, padding, memory_pos=torch.randn(1, 20, 64))
    (out[0, 0] * torch.randn(64)).sum().backward()  # (a plain sum of a LayerNorm output is constant)
    touched = memory.grad[0].abs().sum(-1) > 0  # (S,)
    assert touched[:15].all() and not touched[15:].any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(attention="dense", num_feature_levels=4), "num_feature_levels"),
    (dict(attention="dense", num_feature_levels=1, cross_level_attention=False), "cross_level_attention"),
    (dict(attention="sparse"), "attention"),
])
def test_bad_transformer_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**kwargs)


def test_dense_two_stage_is_refused():
    with pytest.raises(ValueError, match="two_stage"):
        ModelConfig(transformer=TransformerConfig(attention="dense", num_feature_levels=1),
                    with_box_refine=True, two_stage=True)


def test_the_switch_parses_from_strings():
    cfg = get_preset("singlescale", attention="dense", cross_level_attention="true")
    assert cfg.transformer.attention == "dense"
    with pytest.raises(ValueError, match="attention"):
        get_preset("singlescale", attention="sparse")


# ---- own-level attention (Table 2: multi-scale inputs without multi-scale attention) ----------

def test_own_level_mask():
    mask = own_level_mask(Levels(((2, 2), (1, 3))), torch.device("cpu"))
    assert mask.tolist() == [[True, False]] * 4 + [[False, True]] * 3


def test_own_level_weights_equal_a_softmax_masked_to_the_own_level():
    torch.manual_seed(3)
    module = OwnLevelMSDeformAttn(d_model=32, n_levels=3, n_heads=2, n_points=2, backend="einops")
    nn.init.normal_(module.attention_weights.weight)  # not the uniform start: distinct logits
    levels = Levels(((4, 4), (2, 2), (1, 1)))
    s = 21
    query, reference = torch.randn(2, s, 32), torch.rand(2, s, 3, 2)
    _, weights = module.sampling(query, reference, levels)  # (N, S, M, L, K)
    logits = module.attention_weights(query).view(2, s, 2, 3, 2)
    own = own_level_mask(levels, query.device)[None, :, None, :, None]  # (1, S, 1, L, 1)
    masked = logits.masked_fill(~own, float("-inf")).flatten(-2).softmax(-1).view_as(weights)
    torch.testing.assert_close(weights, masked)
    assert (weights[~own.expand_as(weights)] == 0).all()


def test_own_level_model_keeps_names_and_the_decoder_reads_every_level():
    cross = tiny(num_feature_levels=3)
    own = tiny(num_feature_levels=3, cross_level_attention=False)
    assert list(cross.state_dict()) == list(own.state_dict())
    assert all(isinstance(layer.self_attn, OwnLevelMSDeformAttn) for layer in own.transformer.encoder.layers)
    assert all(type(layer.cross_attn) is MSDeformAttn for layer in own.transformer.decoder.layers)
    own.load_state_dict(cross.state_dict())
    for model in (cross, own):  # distinct logits, so that the restriction matters
        for layer in model.transformer.encoder.layers:
            torch.manual_seed(4)
            nn.init.normal_(layer.self_attn.attention_weights.weight)
    images, masks = _batch()
    with torch.no_grad():
        out_cross = cross.eval()(images, masks, return_attention=True)
        out_own = own.eval()(images, masks, return_attention=True)
    starts = out_own["attention"]["level_start_index"].tolist()
    enc = out_own["attention"]["encoder"][0]["weights"]  # (N, S, M, L, K)
    assert (enc[:, : starts[1], :, 1:] == 0).all() and (enc[:, starts[2]:, :, :2] == 0).all()
    dec = out_own["attention"]["decoder"][0]["weights"]
    assert (dec.sum(-1) > 0).all()  # every level keeps weight in the decoder
    assert not torch.allclose(out_cross["pred_logits"], out_own["pred_logits"])
