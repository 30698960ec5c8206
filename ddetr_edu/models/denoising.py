"""DN-DETR's attention mask for denoising queries (Li et al. 2022), used by the book's chapter 12.

Denoising training adds, beside the Q matching queries, P groups of G queries each: every group
holds a noised copy of the image's ground-truth boxes and labels (DINO's contrastive denoising puts
a positive and a negative copy of each object in a group, G = 2 x objects). Their targets are
known, so they are reconstructed with a loss and need no Hungarian matching. The decoder's
self-attention then needs a mask, laid out with the P * G denoising queries first:

* a matching query may not see any denoising query (at test time there are none, and they would
  tell it where the objects are);
* a denoising query may not see another group's queries (each group reconstructs the objects on
  its own);
* everything else is allowed: inside a group, and from a denoising query to the matching ones.

The library does not train with denoising queries; this builds the mask, to draw and test it.
"""
from __future__ import annotations

import torch
from torch import Tensor


def denoising_attention_mask(num_matching: int, num_groups: int, group_size: int) -> Tensor:
    """The self-attention mask (P*G + Q, P*G + Q) bool, True where query i may NOT attend to key j
    (``nn.MultiheadAttention``'s ``attn_mask`` convention); rows and columns: the P groups of G
    denoising queries, then the Q matching queries."""
    if num_matching < 1:
        raise ValueError(f"num_matching: expected >= 1, got {num_matching}")
    if num_groups < 0 or group_size < 0:
        raise ValueError(f"num_groups, group_size: expected >= 0, got {num_groups}, {group_size}")
    denoising = num_groups * group_size
    total = denoising + num_matching
    group = torch.arange(total) // max(group_size, 1)  # (T,) group index; matching rows get >= P
    is_denoising = torch.arange(total) < denoising  # (T,)
    other_group = group[:, None] != group[None, :]  # (T, T)
    # key j is a denoising query, and query i is in another group or is a matching query
    return is_denoising[None, :] & (other_group | ~is_denoising[:, None])  # (T, T)
