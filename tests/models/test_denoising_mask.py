"""DN-DETR's self-attention mask (ddetr_edu/models/denoising.py), rule by rule."""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.models.denoising import denoising_attention_mask


@pytest.mark.parametrize("matching, groups, size", [(5, 3, 4), (2, 1, 6), (4, 0, 3)])
def test_every_rule_of_the_mask(matching, groups, size):
    mask = denoising_attention_mask(matching, groups, size)
    dn = groups * size
    assert mask.shape == (dn + matching, dn + matching) and mask.dtype == torch.bool
    assert mask[dn:, :dn].all(), "matching queries must not see any denoising query"
    assert not mask[:, dn:].any(), "every query may see the matching queries"
    for i in range(dn):
        for j in range(dn):
            assert bool(mask[i, j]) == (i // size != j // size), (i, j)


def test_a_blocked_query_gets_no_information_through_self_attention():
    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    mask = denoising_attention_mask(3, 2, 2)
    queries = torch.randn(1, 7, 8)
    changed = queries.clone()
    changed[0, :4] += torch.randn(4, 8)  # change every denoising query
    out, _ = attention(queries, queries, queries, attn_mask=mask)
    out_changed, _ = attention(changed, changed, changed, attn_mask=mask)
    torch.testing.assert_close(out_changed[0, 4:], out[0, 4:])  # the matching queries never noticed
    assert not torch.allclose(out_changed[0, :4], out[0, :4])


def test_bad_sizes_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match="num_matching"):
        denoising_attention_mask(0, 2, 2)
    with pytest.raises(ValueError, match="num_groups"):
        denoising_attention_mask(3, -1, 2)
