"""DINO's mixed query selection (ModelConfig.mixed_query_selection): anchors from the proposals,
content learned. Off, the two-stage queries are today's (both halves from the chosen box)."""
from __future__ import annotations

import torch

from ddetr_edu.boxes import inverse_sigmoid
from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector, pad_images
from ddetr_edu.models.two_stage import proposal_position_embedding

torch.set_num_threads(2)


def _tiny(mixed: bool):
    torch.manual_seed(0)
    return build_detector(get_preset("shapes_cpu", small_cnn_channels=(16, 32, 32, 32), d_model=32, n_heads=2,
                                     enc_layers=1, dec_layers=2, dim_feedforward=16, num_queries=4, num_classes=3,
                                     attention_backend="einops", mixed_query_selection=mixed))


def _decoder_inputs(model, images, masks):
    """(output, the content, positional queries and reference boxes the decoder received)."""
    seen = {}
    hook = model.transformer.decoder.register_forward_pre_hook(
        lambda module, args: seen.update(tgt=args[0], query_pos=args[1], reference=args[2]))
    out = model(images, masks)
    hook.remove()
    return out, seen


def test_positions_come_from_the_boxes_and_the_content_is_learned():
    model = _tiny(True)
    t = model.transformer
    images, masks = pad_images([torch.randn(3, 64, 64), torch.randn(3, 48, 64)])
    out, seen = _decoder_inputs(model, images, masks)
    content = t.content_embed.weight  # (Q, C)
    assert torch.equal(seen["tgt"], content[None].expand(2, -1, -1))  # the same for both images
    code = proposal_position_embedding(inverse_sigmoid(seen["reference"]), num_feats=t.d_model // 2)
    torch.testing.assert_close(seen["query_pos"], t.pos_trans_norm(t.pos_trans(code)), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(seen["query_pos"][0], seen["query_pos"][1])  # per image, from its proposals
    out["pred_logits"].sum().backward()  # (the box heads start at zero: their loss would not reach it yet)
    assert t.content_embed.weight.grad.abs().sum() > 0


def test_off_keeps_todays_parameters_and_queries():
    off, on = _tiny(False), _tiny(True)
    keys_off, keys_on = set(off.state_dict()), set(on.state_dict())
    assert keys_on - keys_off == {"transformer.content_embed.weight"} and keys_off <= keys_on
    c = off.transformer.d_model
    assert off.transformer.pos_trans.out_features == 2 * c and on.transformer.pos_trans.out_features == c
    images, masks = pad_images([torch.randn(3, 64, 64)])
    _, seen = _decoder_inputs(off, images, masks)
    t = off.transformer
    code = proposal_position_embedding(inverse_sigmoid(seen["reference"]), num_feats=c // 2)
    query_pos, content = t.pos_trans_norm(t.pos_trans(code)).split(c, dim=-1)
    torch.testing.assert_close(seen["tgt"], content, atol=1e-4, rtol=1e-4)  # both halves from the box
    torch.testing.assert_close(seen["query_pos"], query_pos, atol=1e-4, rtol=1e-4)
