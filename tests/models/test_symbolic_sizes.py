"""Level sizes stay symbolic under torch.export: one traced program for every image size.

The model reads its level sizes off the feature maps as Python ints (``Levels``). Under
``torch.export`` with a dynamic height and width they are ``SymInt`` s; anything that turned them
into ints (``int(h)``, ``torch.linspace(0.5, h - 0.5, h)``) fixed the program to the example's
size. Small functions of the model are traced here at one size and run at others.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ddetr_edu.models.encoder import encoder_reference_points
from ddetr_edu.models.two_stage import encoder_proposals
from ddetr_edu.ops import Levels


class LevelGeometry(nn.Module):
    """x (N, C, H, W) -> the reference points and two-stage proposals of two levels (H, W), (H/2, W/2)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        maps = [x, x[:, :, ::2, ::2]]
        levels = Levels.from_maps(maps)
        n = x.shape[0]
        ratios = torch.ones(n, len(levels), 2)  # no padding
        memory = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)  # (N, S, C)
        padding = torch.zeros(memory.shape[:2], dtype=torch.bool)  # (N, S)
        _, proposals = encoder_proposals(memory, padding, levels)
        return encoder_reference_points(levels, ratios), proposals


def test_reference_points_and_proposals_trace_once_for_every_size():
    dynamic = torch.export.Dim.DYNAMIC
    program = torch.export.export(LevelGeometry(), (torch.zeros(2, 4, 12, 18),),
                                  dynamic_shapes={"x": {0: dynamic, 2: dynamic, 3: dynamic}})
    traced = program.module()
    for shape in [(1, 4, 8, 8), (3, 4, 10, 30), (2, 4, 31, 7)]:
        x = torch.randn(shape)
        for ours, expected in zip(traced(x), LevelGeometry()(x)):
            assert ours.shape == expected.shape and torch.equal(ours, expected), shape

