"""Checks of chapter 1's exercises (the cost of attention), against the FLOP formulas of
``experiments/attention_flops.py`` (the same the chapter checked against torch's FLOP counter)."""
from __future__ import annotations

import sys
from pathlib import Path

from . import assert_close, assert_equal, correct, unanswered

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: experiments/
from experiments.attention_flops import deformable_flops, dense_flops  # noqa: E402

C, M = 256, 8                                 # the paper's model channels and heads
STRIDE_16 = (50, 84)                          # the stride-16 map of an 800 x 1333 image
STRIDE_8 = (100, 167)                         # its stride-8 map
LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]  # its four levels (strides 8 to 64)


def check_1_1(answer) -> None:
    """answer: dense / deformable (library order) FLOPs of one encoder layer on STRIDE_16, K = 4."""
    if unanswered("1.1", answer):
        return
    tokens = STRIDE_16[0] * STRIDE_16[1]
    expected = dense_flops(tokens, tokens, C) / deformable_flops(tokens, tokens, C, M, 1, 4)
    assert_close("1.1", answer, expected, "dense FLOPs / deformable FLOPs", atol=1e-3, rtol=1e-4)
    correct("1.1")


def check_1_2(answer) -> None:
    """answer: the smallest K at which deformable attention on STRIDE_8 costs at least as much as
    dense attention."""
    if unanswered("1.2", answer):
        return
    tokens = STRIDE_8[0] * STRIDE_8[1]
    dense = dense_flops(tokens, tokens, C)
    expected = next(k for k in range(1, 100_000) if deformable_flops(tokens, tokens, C, M, 1, k) >= dense)
    assert_equal("1.2", answer, expected, "the break-even number of points K")
    correct("1.2")


def check_1_3(answer) -> None:
    """answer: the smallest number of queries N for which projecting per sample (2 N L K C^2)
    costs at least as much as projecting the S tokens of LEVELS (2 S C^2), L = K = 4."""
    if unanswered("1.3", answer):
        return
    tokens = sum(h * w for h, w in LEVELS)

    def per_sample(n):  # the library's count with the value projection moved onto the samples
        return deformable_flops(n, tokens, C, M, 4, 4) - 2 * tokens * C**2 + 2 * n * 4 * 4 * C**2

    expected = next(n for n in range(1, 10 * tokens) if per_sample(n) >= deformable_flops(n, tokens, C, M, 4, 4))
    assert_equal("1.3", answer, expected, "the break-even number of queries N")
    correct("1.3")
