"""Checks of chapter 11's exercises (the paper in miniature): the tokens of the miniature, why
attention starts uniform (entropies) and what dense attention on all levels would cost, against the
runner's configurations (``experiments/claims_setup.py``) and the library."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from ddetr_edu.ops import MSDeformAttn
from ddetr_edu.viz.architecture_shapes import level_sizes

from . import assert_close, assert_equal, correct, unanswered

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: experiments/
from experiments import claims_setup as setup  # noqa: E402
from experiments.attention_flops import dense_flops  # noqa: E402


def tokens(name: str) -> int:
    """The encoder's tokens of configuration ``name`` on the miniature's square images."""
    size = setup.SHAPES.image_size
    return sum(h * w for h, w in level_sizes(setup.model_config(name), size, size))


def check_11_1(answer) -> None:
    """answer: the tokens of `deformable_multi` (four levels) on one image of the miniature."""
    if unanswered("11.1", answer):
        return
    assert_equal("11.1", answer, tokens("deformable_multi"), "the number of tokens")
    correct("11.1")


def check_11_2(answer) -> None:
    """answer: (entropy of uniform dense attention over detr_dense's tokens, entropy of a fresh
    MSDeformAttn head of deformable_multi), natural log."""
    if unanswered("11.2", answer):
        return
    t = setup.model_config("deformable_multi").transformer
    fresh = MSDeformAttn(d_model=t.d_model, n_levels=t.num_feature_levels, n_heads=t.n_heads, n_points=t.enc_n_points)
    with torch.no_grad():
        _, _, weights = fresh(torch.zeros(1, 1, t.d_model), torch.full((1, 1, t.num_feature_levels, 2), 0.5),
                              torch.zeros(1, t.num_feature_levels, t.d_model), [(1, 1)] * t.num_feature_levels,
                              return_sampling=True)                     # (1, 1, M, L, K)
    head = weights[0, 0, 0].flatten().double()
    expected = (math.log(tokens("detr_dense")), float(-(head * head.log()).sum()))
    assert_close("11.2", answer, expected, "the two entropies", atol=1e-5)
    correct("11.2")


def check_11_3(answer) -> None:
    """answer: how many times the FLOPs of one dense encoder self-attention over deformable_multi's
    tokens exceed those over detr_dense's (the same d_model)."""
    if unanswered("11.3", answer):
        return
    c = setup.model_config("detr_dense").transformer.d_model
    many, few = tokens("deformable_multi"), tokens("detr_dense")
    expected = dense_flops(many, many, c) / dense_flops(few, few, c)
    assert_close("11.3", answer, expected, "the FLOP ratio", atol=1e-3, rtol=1e-5)
    correct("11.3")
