"""Random inputs of the attention core, shared by the ops tests.

Shapes follow the glossary: value (N, S, M, D), spatial_shapes (L, 2) rows (H, W),
sampling_locations (N, Lq, M, L, K, 2) normalised (x, y), attention_weights (N, Lq, M, L, K).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

torch.set_num_threads(min(2, torch.get_num_threads()))


@dataclass
class CoreInputs:
    value: Tensor               # (N, S, M, D)
    spatial_shapes: Tensor      # (L, 2) int64
    sampling_locations: Tensor  # (N, Lq, M, L, K, 2)
    attention_weights: Tensor   # (N, Lq, M, L, K)

    def args(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.value, self.spatial_shapes, self.sampling_locations, self.attention_weights


def random_core_inputs(n=2, lq=5, m=2, d=3, k=3, shapes=((4, 6), (3, 2), (1, 1)), low=-0.2, high=1.2,
                       dtype=torch.float64, seed=0) -> CoreInputs:
    """Locations uniform in [low, high)^2, so some points fall outside the maps; weights
    softmaxed over (L, K) per head, as the module makes them."""
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64)
    s = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    l = len(shapes)
    value = torch.randn(n, s, m, d, generator=gen, dtype=torch.float64)
    loc = low + (high - low) * torch.rand(n, lq, m, l, k, 2, generator=gen, dtype=torch.float64)
    logits = torch.randn(n, lq, m, l * k, generator=gen, dtype=torch.float64)
    weights = logits.softmax(-1).view(n, lq, m, l, k)
    return CoreInputs(value.to(dtype), spatial_shapes, loc.to(dtype), weights.to(dtype))


@pytest.fixture
def core_inputs():
    """The factory ``random_core_inputs``, as a fixture."""
    return random_core_inputs
