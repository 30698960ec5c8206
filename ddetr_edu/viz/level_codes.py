"""Can the attention tell the levels apart from their positional codes? A level-by-level picture.

A pixel of a coarse level and the pixel of a finer level under its centre lie at the same place of
the image, so the sine code (normalised coordinates) gives them almost the same vector; the learned
level embedding e_l is what separates them. :func:`same_place_cosine` measures this for every pair
of levels (the mean cosine similarity of the codes of same-place pixels) and
:func:`draw_similarity_matrix` draws the (L, L) result on a fixed -1..1 colour scale, each cell
written out.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from torch import Tensor
from torch.nn import functional


def same_place_pairs(fine: Tensor, coarse: Tensor, ratio: int) -> tuple[Tensor, Tensor]:
    """fine (C, H_a, W_a) and coarse (C, H_b, W_b) codes of two levels, the coarse one ``ratio``
    times coarser -> (C, P) each: every coarse pixel and the fine pixel nearest its centre (pixels
    whose partner falls off the other map are dropped)."""
    under = fine[:, ratio // 2::ratio, ratio // 2::ratio]  # (C, <= H_b, <= W_b)
    h, w = min(under.shape[1], coarse.shape[1]), min(under.shape[2], coarse.shape[2])
    return under[:, :h, :w].flatten(1), coarse[:, :h, :w].flatten(1)


def same_place_cosine(codes: Sequence[Tensor]) -> Tensor:
    """codes: per level (C, H_l, W_l), finest first, each level half the previous one's size ->
    (L, L): entry (a, b) the mean cosine similarity of the codes of same-place pixels of levels a
    and b (1 on the diagonal)."""
    levels = len(codes)
    similarity = torch.ones(levels, levels)
    for a in range(levels):
        for b in range(a + 1, levels):
            fine, coarse = same_place_pairs(codes[a], codes[b], 2 ** (b - a))
            similarity[a, b] = similarity[b, a] = functional.cosine_similarity(fine, coarse, dim=0).mean()
    return similarity


def draw_similarity_matrix(ax: Axes, similarity: Tensor, names: Sequence[str], title: str):
    """similarity (L, L) in [-1, 1] as a heat map with each value written in its cell; the image
    (for a colour bar)."""
    shown = ax.imshow(similarity.numpy(), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    for a in range(similarity.shape[0]):
        for b in range(similarity.shape[1]):
            value = float(similarity[a, b])
            ax.text(b, a, f"{value:.2f}", ha="center", va="center", fontsize=10,
                    color="white" if abs(value) > 0.6 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_title(title, fontsize=10)
    return shown


__all__ = ["same_place_pairs", "same_place_cosine", "draw_similarity_matrix"]
