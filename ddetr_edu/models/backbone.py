"""The detector's backbone: a CNN trunk that returns multi-scale feature maps with padding masks.

A batch holds images of different sizes padded bottom/right to one (N, 3, H, W) tensor; the mask
(N, H, W) is True on padding. Every returned feature map gets the mask brought to its own size
by nearest-neighbour interpolation, exactly as the official code does:

    mask_l = interpolate(mask[None].float(), size=(H_l, W_l)).bool()[0]        # (N, H_l, W_l)

Deformable DETR reads C3, C4, C5 (strides 8, 16, 32) of a ResNet-50: ``return_levels=(2, 3, 4)``,
numbered like torchvision's ``layer1..layer4``. Single-scale DETR-style models read C5 only:
``return_levels=(4,)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddetr_edu.config import BackboneConfig
from ddetr_edu.models.inputs import check_images
from ddetr_edu.models.resnet import RESNET_SPECS, ResNet, load_pretrained_backbone
from ddetr_edu.models.small_cnn import SmallCNN


def downsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, H, W) bool True=padding -> (N, h, w) bool, nearest-neighbour as the official code."""
    # the batch axis is used as the channel axis of a single "image": (1, N, H, W)
    return F.interpolate(mask[None].float(), size=size).to(torch.bool)[0]


class Backbone(nn.Module):
    """images (N, 3, H, W) float + masks (N, H, W) bool or None -> list over the returned levels of
    (feature (N, C_l, H_l, W_l), mask (N, H_l, W_l) bool True=padding).

    Attributes:
        body: the trunk (``ResNet`` with torchvision names or ``SmallCNN``); an official checkpoint's
            ``backbone.0.body.*`` keys map to ``<this module>.body.*``.
        strides: stride of each returned level, e.g. [8, 16, 32].
        num_channels: channels of each returned level, e.g. [512, 1024, 2048] for ResNet-50.
    """

    def __init__(self, cfg: BackboneConfig | None = None,
                 return_levels: tuple[int, ...] = (2, 3, 4)) -> None:
        """cfg: which CNN (``ddetr_edu.config.BackboneConfig``); return_levels: its stages to
        return, numbered like torchvision's layer1..layer4: (2, 3, 4) = C3, C4, C5; (4,) = C5."""
        super().__init__()
        cfg = BackboneConfig() if cfg is None else cfg
        levels = tuple(return_levels)
        if not levels or any(lv not in (1, 2, 3, 4) for lv in levels) or list(levels) != sorted(set(levels)):
            raise ValueError(f"return_levels: expected increasing distinct stage numbers in 1..4 "
                             f"(e.g. (2, 3, 4) or (4,)), got {return_levels!r}")
        self.cfg = cfg
        self.return_levels = levels
        if cfg.arch in RESNET_SPECS:
            self.body: ResNet | SmallCNN = ResNet(cfg.arch, dilation=cfg.dilation)
            if cfg.pretrained_path is not None:
                load_pretrained_backbone(self.body, cfg.pretrained_path)
        elif cfg.arch == "small_cnn":
            if cfg.pretrained_path is not None:
                raise ValueError("pretrained_path: ImageNet weights exist only for ResNets, "
                                 f"got a path for arch='small_cnn': {cfg.pretrained_path!r}")
            self.body = SmallCNN(cfg.small_cnn_channels, dilation=cfg.dilation)
        else:
            raise ValueError(f"arch: expected one of {sorted(RESNET_SPECS) + ['small_cnn']}, got {cfg.arch!r}")
        self.strides = [self.body.stage_strides[lv - 1] for lv in levels]
        self.num_channels = [self.body.stage_channels[lv - 1] for lv in levels]
        self._set_trainable(cfg.train_backbone)

    def _set_trainable(self, train_backbone: bool) -> None:
        # Official recipe: with lr_backbone > 0 only layer2..layer4 of the ResNet are trained (the
        # stem and layer1 keep their ImageNet weights); with lr_backbone = 0 nothing is trained.
        # The small CNN starts from random weights, so all of it trains.
        for name, param in self.body.named_parameters():
            early = name.startswith(("conv1.", "bn1.", "layer1."))
            trainable = train_backbone and not (isinstance(self.body, ResNet) and early)
            param.requires_grad_(trainable)

    def forward(self, images: Tensor, masks: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        masks = check_images(images, masks)  # (N, H, W) bool, all False when None
        features = self.body(images, self.return_levels)  # [(N, C_l, H_l, W_l)]
        return [(f, downsample_mask(masks, tuple(f.shape[-2:]))) for f in features]


def build_backbone(cfg: BackboneConfig, return_levels: tuple[int, ...] = (2, 3, 4)) -> Backbone:
    """Builder used by the detector (takes the config object, never an argparse namespace)."""
    return Backbone(cfg, return_levels)
