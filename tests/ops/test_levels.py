"""``Levels``: the level sizes and starts as Python ints, from feature maps or from the official
arguments, checked against each other; and the module and the core taking one."""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.ops import Levels, MSDeformAttn, ms_deform_attn
from ddetr_edu.ops.levels import as_levels

SHAPES = torch.tensor([[6, 8], [3, 4], [1, 5]], dtype=torch.int64)  # (L, 2) rows (H, W)


def test_official_tensor_and_pairs_give_the_same_levels():
    from_tensor = Levels.from_official(SHAPES)
    from_pairs = Levels.from_official([(6, 8), [3, 4], (1, 5)])
    assert from_tensor == from_pairs
    counts = SHAPES[:, 0] * SHAPES[:, 1]
    assert from_tensor.sizes == ((6, 8), (3, 4), (1, 5))
    assert list(from_tensor.starts) == (counts.cumsum(0) - counts).tolist()  # exclusive cumsum
    assert from_tensor.num_tokens == int(counts.sum()) and len(from_tensor) == 3
    assert list(from_tensor) == [(6, 8), (3, 4), (1, 5)]  # iterating gives the sizes
    assert all(type(x) is int for x in (*from_tensor.starts, *from_tensor.flat_sizes))


def test_from_maps_reads_shapes_only():
    maps = [torch.empty(2, 16, h, w, device="meta") for h, w in SHAPES.tolist()]  # no data to read
    assert Levels.from_maps(maps) == Levels.from_official(SHAPES)


def test_official_round_trip():
    levels = Levels.from_official(SHAPES)
    spatial_shapes, start_index = levels.official(torch.device("cpu"))
    assert torch.equal(spatial_shapes, SHAPES) and start_index.dtype == torch.int64
    assert Levels.from_official(spatial_shapes, start_index) == levels


@pytest.mark.parametrize("start_index", [torch.tensor([0, 48, 60]), [0, 48, 60]])
def test_a_matching_level_start_index_is_accepted(start_index):
    assert Levels.from_official(SHAPES, start_index).starts == (0, 48, 60)
    assert as_levels(Levels.from_official(SHAPES), start_index).starts == (0, 48, 60)


@pytest.mark.parametrize("make", [lambda bad: Levels.from_official(SHAPES, bad),
                                  lambda bad: as_levels(Levels.from_official(SHAPES), bad)],
                         ids=["official", "levels"])
def test_a_wrong_level_start_index_is_a_value_error_not_ignored(make):
    with pytest.raises(ValueError, match=r"level_start_index \[0, 48, 59\] does not match .*expected \[0, 48, 60\]"):
        make(torch.tensor([0, 48, 59]))


@pytest.mark.parametrize("bad, message", [([], r"at least one level"), ([(2, 0)], r"must be positive"),
                                          ([(2, 3, 4)], r"list of \(H, W\) pairs")])
def test_bad_sizes_are_value_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        Levels.from_official(bad)


def test_module_and_core_take_levels_or_the_official_arguments_alike():
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2, backend="einops").double()
    with torch.no_grad():
        module.sampling_offsets.weight.normal_(0, 0.5)
    s = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    query, value = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, s, 16, dtype=torch.float64)
    reference = torch.rand(2, 5, 3, 2, dtype=torch.float64)
    padding = torch.rand(2, s) < 0.2
    official = module(query, reference, value, SHAPES, torch.tensor([0, 48, 60]), padding)  # positional
    levels = Levels.from_official(SHAPES)
    assert torch.equal(module(query, reference, value, levels, padding_mask=padding), official)
    with pytest.raises(ValueError, match="level_start_index"):
        module(query, reference, value, levels, [0, 48, 61], padding)
    v = value.view(2, s, 4, 4)
    loc, weights = torch.rand(2, 5, 4, 3, 2, 2, dtype=torch.float64), torch.rand(2, 5, 4, 3, 2, dtype=torch.float64)
    assert torch.equal(ms_deform_attn(v, levels, loc, weights, backend="einops"),
                       ms_deform_attn(v, SHAPES, loc, weights, backend="einops", level_start_index=[0, 48, 60]))
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn(v, SHAPES, loc, weights, backend="einops", level_start_index=[0, 47, 60])
