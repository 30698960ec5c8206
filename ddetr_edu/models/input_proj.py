"""Input projections: every feature level becomes a d_model-channel map.

The backbone gives C3, C4, C5 with 512, 1024, 2048 channels (ResNet-50) at strides 8, 16, 32.
Each goes through a 1x1 conv + GroupNorm(32) to C = d_model channels. Extra levels (the paper's
C6, stride 64) come from a 3x3 stride-2 conv + GroupNorm on the *last backbone map* (C5) for the
first extra level and on the previous projected level for any further one. No FPN: the
multi-scale deformable attention exchanges information across levels by itself.

Parameter names match the official model: ``input_proj.<level>.0`` conv, ``input_proj.<level>.1``
GroupNorm.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def make_input_projections(backbone_channels: Sequence[int], d_model: int,
                           num_levels: int) -> nn.ModuleList:
    """ModuleList of ``num_levels`` (conv, GroupNorm) pairs.

    backbone_channels: channels of the backbone maps used (C3, C4, C5 or only C5).
    Levels beyond the backbone's are 3x3 stride-2 convs (C5 -> C6, C6 -> C7, ...).
    """
    if num_levels < len(backbone_channels):
        raise ValueError(f"num_levels ({num_levels}) must be >= the number of backbone maps "
                         f"({len(backbone_channels)})")
    projections = []
    for channels in backbone_channels:
        projections.append(nn.Sequential(nn.Conv2d(channels, d_model, kernel_size=1),
                                         nn.GroupNorm(32, d_model)))
    channels = backbone_channels[-1]
    for _ in range(num_levels - len(backbone_channels)):
        projections.append(nn.Sequential(
            nn.Conv2d(channels, d_model, kernel_size=3, stride=2, padding=1),
            nn.GroupNorm(32, d_model)))
        channels = d_model
    for projection in projections:
        nn.init.xavier_uniform_(projection[0].weight, gain=1)
        nn.init.zeros_(projection[0].bias)
    return nn.ModuleList(projections)


def project_levels(projections: nn.ModuleList, features: Sequence[Tensor]) -> list[Tensor]:
    """Backbone maps [(N, C_l, H_l, W_l)] -> projected maps [(N, C, H_l, W_l)] for every level.

    The first extra level reads the raw last backbone map; later extra levels read the
    previous projected map.
    """
    projected = [proj(feat) for proj, feat in zip(projections, features)]
    for level in range(len(features), len(projections)):
        source = features[-1] if level == len(features) else projected[-1]
        projected.append(projections[level](source))
    return projected
