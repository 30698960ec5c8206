"""Deformable DETR: backbone -> input projections -> deformable transformer -> heads.

Input: images (N, 3, H, W) float (ImageNet-normalised), padded bottom/right to a common size,
with masks (N, H, W) bool, True on padding (or None: no padding). A list of (3, H_i, W_i) images
of different sizes is padded here.

Output (the official keys):

* ``pred_logits`` (N, Q, num_classes): raw sigmoid logits of the last decoder layer;
* ``pred_boxes`` (N, Q, 4): cxcywh in [0, 1] relative to each *unpadded* image;
* ``aux_outputs``: [{pred_logits, pred_boxes}] of the earlier decoder layers (if aux_loss);
* ``enc_outputs``: {pred_logits (N, S, num_classes), pred_boxes (N, S, 4)} (two-stage only);
* ``attention`` (``return_attention=True``): per-layer sampling locations / weights of the
  encoder and decoder (normalised to the padded maps), the reference each decoder layer used
  (normalised to the unpadded image), ``spatial_shapes``, ``level_start_index``, ``valid_ratios``;
  deformable attention only: the dense (DETR-style) model raises a ValueError, it samples nothing;
* ``intermediates`` (``return_intermediates=True``, for debugging and the book): ``memory``
  (N, S, C), ``hs`` (dec_layers, N, Q, C), ``init_reference`` (N, Q, 2|4), ``inter_references``
  (dec_layers, N, Q, 2|4) (the reference after each layer), ``spatial_shapes``,
  ``level_start_index``, ``valid_ratios``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ddetr_edu.config import ModelConfig
from ddetr_edu.models.backbone import Backbone, downsample_mask
from ddetr_edu.models.heads import LayerHeads, make_heads
from ddetr_edu.models.input_proj import make_input_projections, project_levels
from ddetr_edu.models.inputs import check_images, check_model_input, pad_images
from ddetr_edu.models.position import PositionEmbeddingSine
from ddetr_edu.models.transformer import DeformableTransformer


class DeformableDETR(nn.Module):
    """The detector. Build it with ``build_detector(cfg)``; ``help(DeformableDETR.forward)`` gives
    its inputs and outputs. To detect objects in a picture without preparing tensors by hand:
    ``ddetr_edu.load_detector(...).detect(image)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        t = cfg.transformer
        self.cfg = cfg
        self.backbone = Backbone(cfg.backbone, return_levels=(4,) if cfg.num_backbone_levels == 1 else (2, 3, 4))
        self.position = PositionEmbeddingSine(num_pos_feats=t.d_model // 2,
                                              temperature=t.position_temperature,
                                              scale=t.position_scale)
        self.input_proj = make_input_projections(self.backbone.num_channels, t.d_model,
                                                 t.num_feature_levels)
        self.transformer = DeformableTransformer(cfg)
        self.class_embed, self.bbox_embed = make_heads(t.d_model, cfg.num_classes, t.dec_layers,
                                                       cfg.with_box_refine, cfg.two_stage)
        if not cfg.two_stage:
            # learned queries: positional part and content part, (Q, 2C)
            self.query_embed = nn.Embedding(cfg.num_queries, 2 * t.d_model)

    def forward(self, images: Tensor | Sequence[Tensor], masks: Tensor | None = None,
                return_attention: bool = False, return_intermediates: bool = False) -> dict:
        """Detect objects in a batch of images.

        Args:
            images: (N, 3, H, W) float tensor in the dtype of the model's weights (float32 unless
                converted), RGB, ImageNet-normalised ((x / 255 - mean) / std with mean (0.485,
                0.456, 0.406), std (0.229, 0.224, 0.225)); images of different sizes padded
                bottom/right to one H x W. Or a list of N (3, H_i, W_i) tensors, padded here.
                H and W are at least 32 pixels (the backbone's coarsest stride).
            masks: (N, H, W) bool, True on padding; None: no padding (and with a list input).
            return_attention: also return the sampling locations and weights of every layer.
            return_intermediates: also return memory, decoder states and references.

        Returns:
            dict with ``pred_logits`` (N, Q, num_classes), raw logits (score = sigmoid);
            ``pred_boxes`` (N, Q, 4), cxcywh in [0, 1] relative to each unpadded image; and
            ``aux_outputs``, ``enc_outputs``, ``attention``, ``intermediates`` as the module
            docstring says. ``ddetr_edu.models.postprocess`` turns the first two into
            detections in pixels.

        Raises:
            ValueError (one line) for a wrong shape, dtype or mask, an image smaller than 32
            pixels, or (two-stage) fewer proposals than queries.
        """
        if not isinstance(images, Tensor):
            if masks is not None:
                raise ValueError("masks: must be None when images is a list (the padding is computed)")
            images, masks = pad_images(images)
        masks = check_images(images, masks)  # (N, H, W) bool
        check_model_input(images, next(self.backbone.parameters()).dtype, min_side=self.backbone.strides[-1])

        # backbone levels (C3..C5 or C5), then extra stride-2 levels on top
        backbone_levels = self.backbone(images, masks)  # [(feature, mask)]
        features = [f for f, _ in backbone_levels]
        maps = project_levels(self.input_proj, features)  # L x (N, C, H_l, W_l)
        level_masks = [m for _, m in backbone_levels]
        level_masks += [downsample_mask(masks, tuple(m.shape[-2:])) for m in maps[len(features):]]
        positions = [self.position(m).to(x.dtype) for x, m in zip(maps, level_masks)]

        query_embed = None if self.cfg.two_stage else self.query_embed.weight
        heads = LayerHeads(self.class_embed, self.bbox_embed, refine=self.cfg.with_box_refine)
        out = self.transformer(maps, level_masks, positions, query_embed, heads, return_attention)

        if return_attention or return_intermediates:  # the official tensors, for the visualizer
            spatial_shapes, start_index = out.levels.official(out.memory.device)  # (L, 2), (L,)
            geometry = {"spatial_shapes": spatial_shapes, "level_start_index": start_index}
        last = out.layers[-1]
        result: dict = {"pred_logits": last.logits, "pred_boxes": last.boxes}
        if self.cfg.aux_loss:
            result["aux_outputs"] = [{"pred_logits": p.logits, "pred_boxes": p.boxes}
                                     for p in out.layers[:-1]]
        if self.cfg.two_stage:
            result["enc_outputs"] = {"pred_logits": out.enc_logits, "pred_boxes": out.enc_boxes}
        if return_attention:
            result["attention"] = {
                "encoder": out.encoder_attention,
                "decoder": [p.sampling for p in out.layers],
                "decoder_references": [p.reference for p in out.layers],
                **geometry,
                "valid_ratios": out.valid_ratios,
            }
        if return_intermediates:
            refined = [p.boxes.detach() if self.cfg.with_box_refine else p.reference
                       for p in out.layers]
            result["intermediates"] = {
                "memory": out.memory,
                "hs": torch.stack([p.hidden for p in out.layers]),
                "init_reference": out.init_reference,
                "inter_references": torch.stack(refined),
                **geometry,
                "valid_ratios": out.valid_ratios,
            }
        return result


def build_detector(cfg: ModelConfig) -> DeformableDETR:
    """The detector described by ``cfg`` (a ``ddetr_edu.config.ModelConfig``)."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg: expected a ddetr_edu.config.ModelConfig, got {type(cfg).__name__} "
                        "(use ddetr_edu.config.get_preset(name) or ModelConfig(...))")
    return DeformableDETR(cfg)
