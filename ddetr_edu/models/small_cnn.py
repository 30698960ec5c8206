"""A small CNN backbone (~0.8M parameters) for training from scratch on the CPU.

A ``Trunk`` like ``ResNet``: four stages with strides 4, 8, 16, 32 (stage 2..4 play the role of
C3..C5), ``stage_channels``, ``stage_strides`` and ``forward(images, return_levels)``.
Every conv is followed by GroupNorm and ReLU: GroupNorm's statistics are per image, so they work
with the tiny batches a detector trains with (BatchNorm would need large batches, FrozenBN needs
pre-trained statistics, and this network starts from random weights).

    stem   : conv3x3/2                      -> c1/2  (stride 2)
    stage 1: conv3x3/2                      -> c1    (stride 4)
    stage 2: conv3x3/2, conv3x3             -> c2    (stride 8,  "C3")
    stage 3: conv3x3/2, conv3x3             -> c3    (stride 16, "C4")
    stage 4: conv3x3/2 (or dilated), conv3x3 -> c4   (stride 32, "C5"; 16 with dilation)
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ddetr_edu.models.trunk import Trunk


def _conv_gn_relu(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.GroupNorm(min(8, c_out), c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(Trunk):
    """images (N, 3, H, W) -> requested stage outputs (N, channels[i-1], H / s_i, W / s_i)."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 192), dilation: bool = False) -> None:
        super().__init__()
        if len(channels) != 4 or any(int(c) < 8 or int(c) % 8 for c in channels):
            raise ValueError(f"channels: expected 4 multiples of 8 (GroupNorm uses 8 groups), "
                             f"got {tuple(channels)}")
        c1, c2, c3, c4 = (int(c) for c in channels)
        self.name = "small_cnn"
        self.dilation = dilation
        self.stem = _conv_gn_relu(3, c1 // 2, stride=2)
        self.layer1 = nn.Sequential(_conv_gn_relu(c1 // 2, c1, stride=2))
        self.layer2 = nn.Sequential(_conv_gn_relu(c1, c2, stride=2), _conv_gn_relu(c2, c2))
        self.layer3 = nn.Sequential(_conv_gn_relu(c2, c3, stride=2), _conv_gn_relu(c3, c3))
        self.layer4 = nn.Sequential(  # DC5-style: trade the last stride for dilation 2
            _conv_gn_relu(c3, c4, stride=1 if dilation else 2),
            _conv_gn_relu(c4, c4, dilation=2 if dilation else 1),
        )
        self.stage_channels = (c1, c2, c3, c4)
        self.stage_strides = (4, 8, 16, 16 if dilation else 32)
        self.init_convs()

    def run_stem(self, images: Tensor) -> Tensor:
        return self.stem(images)  # (N, c1/2, H/2, W/2)
