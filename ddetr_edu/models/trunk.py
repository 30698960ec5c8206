"""What ``ResNet`` and ``SmallCNN`` share: a CNN trunk as the backbone uses it.

A trunk is a stem followed by four stages ``layer1..layer4`` with strides 4, 8, 16, 32 (16 for the
last one with dilation); the backbone asks for some of the stage outputs by number, 1..4 (2..4
are C3..C5). A subclass builds the layers, sets ``stage_channels`` and ``stage_strides`` and
says what its stem does (``run_stem``); running the stages is the same for both.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class Trunk(nn.Module):
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module
    stage_channels: tuple[int, int, int, int]  # channels of each stage's output
    stage_strides: tuple[int, int, int, int]  # stride of each stage's output

    def run_stem(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def init_convs(self) -> None:
        """He (Kaiming) init for every conv, as torchvision (the norms start as the identity)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor, return_levels: Sequence[int] = (1, 2, 3, 4)) -> list[Tensor]:
        """images (N, 3, H, W) -> [stage output (N, stage_channels[i-1], H / s_i, W / s_i) for i in
        return_levels]; the stages after the last one asked for are not run."""
        x = self.run_stem(images)
        outputs: dict[int, Tensor] = {}
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        for level, stage in enumerate(stages[:max(return_levels)], start=1):
            x = stage(x)
            outputs[level] = x
        return [outputs[level] for level in return_levels]
