"""``MSDeformAttn``: the paper's initialisation, the two reference formulas (points and boxes)
recomputed by hand from the module's Linear layers, the padding mask and odd head sizes."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ddetr_edu.ops import MSDeformAttn, level_start_index, ms_deform_attn, star_offsets

OFFICIAL_KEYS = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "official_keys" / "multiscale.tsv"
SHAPES = torch.tensor([[6, 8], [3, 4], [2, 2]], dtype=torch.int64)  # (L, 2) rows (H, W)
S = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())


def small_module(d_model=16, n_levels=3, n_heads=4, n_points=2, backend="einops", seed=0, randomise=True):
    """A module whose offset and logit layers are random (not the zero-weight init), so that
    every query samples its own points with its own weights; projection biases random too."""
    torch.manual_seed(seed)
    module = MSDeformAttn(d_model, n_levels, n_heads, n_points, backend=backend).double()
    if randomise:
        with torch.no_grad():
            module.sampling_offsets.weight.normal_(0, 0.5)
            module.attention_weights.weight.normal_(0, 0.5)
            module.attention_weights.bias.normal_(0, 0.5)
            module.value_proj.bias.normal_(0, 0.5)
            module.output_proj.bias.normal_(0, 0.5)
    return module


def test_submodules_have_the_official_names_and_shapes():
    module = MSDeformAttn()  # d_model 256, 4 levels, 8 heads, 4 points
    ours = {name: list(t.shape) for name, t in module.state_dict().items()}
    expected = {"sampling_offsets.weight": [256, 256], "sampling_offsets.bias": [256],
                "attention_weights.weight": [128, 256], "attention_weights.bias": [128],
                "value_proj.weight": [256, 256], "value_proj.bias": [256],
                "output_proj.weight": [256, 256], "output_proj.bias": [256]}
    assert ours == expected
    if OFFICIAL_KEYS.exists():  # the same, read from the official model's key list
        prefix = "transformer.encoder.layers.0.self_attn."
        official = {}
        for line in OFFICIAL_KEYS.read_text().splitlines():
            name, shape, _ = line.split("\t")
            if name.startswith(prefix):
                official[name[len(prefix):]] = [int(s) for s in shape.strip("[]").split(",")]
        assert official == expected


@pytest.mark.parametrize("n_heads,n_levels,n_points", [(8, 4, 4), (6, 2, 3), (3, 1, 1)])
def test_initial_offsets_are_the_paper_star(n_heads, n_levels, n_points):
    module = MSDeformAttn(d_model=12 * n_heads, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
    assert torch.equal(module.sampling_offsets.weight, torch.zeros_like(module.sampling_offsets.weight))
    bias = module.sampling_offsets.bias.detach().view(n_heads, n_levels, n_points, 2)  # (M, L, K, 2), official layout
    for m in range(n_heads):
        angle = 2 * math.pi * m / n_heads
        cos, sin = math.cos(angle), math.sin(angle)
        scale = max(abs(cos), abs(sin))  # largest coordinate of the unit direction becomes 1
        for l in range(n_levels):
            for k in range(n_points):
                expected = torch.tensor([cos / scale * (k + 1), sin / scale * (k + 1)])
                torch.testing.assert_close(bias[m, l, k], expected, rtol=1e-6, atol=1e-6)
        assert math.isclose(float(bias[m, 0, 0].abs().max()), 1.0, abs_tol=1e-6)
    torch.testing.assert_close(star_offsets(n_heads, n_levels, n_points), bias)


def test_initial_attention_is_uniform_and_projection_biases_are_zero():
    module = MSDeformAttn(d_model=32, n_levels=3, n_heads=4, n_points=2)
    for layer in (module.attention_weights, module.value_proj, module.output_proj):
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    assert torch.equal(module.attention_weights.weight, torch.zeros_like(module.attention_weights.weight))
    for proj in (module.value_proj, module.output_proj):  # Xavier-uniform: |w| <= sqrt(6 / (fan_in + fan_out))
        bound = math.sqrt(6 / (2 * 32))
        weight = proj.weight.detach()
        assert float(weight.abs().max()) <= bound and float(weight.std()) > 0.3 * bound
    query, value = torch.randn(2, 5, 32), torch.randn(2, S, 32)
    reference = torch.rand(2, 5, 3, 2)
    out, locations, weights = module(query, reference, value, SHAPES, return_sampling=True)
    assert torch.allclose(weights, torch.full_like(weights, 1 / (3 * 2)))  # 1 / (L K)
    # at init every query samples the star around its reference: offsets / (W_l, H_l)
    star = star_offsets(4, 3, 2)  # (M, L, K, 2) pixels
    size_wh = SHAPES.flip(-1).float()  # (L, 2) = (W_l, H_l)
    expected = reference[:, :, None, :, None, :] + star[None, None] / size_wh[None, None, None, :, None, :]
    torch.testing.assert_close(locations, expected)


def test_output_and_sampling_shapes():
    module = small_module()
    query, value = torch.randn(2, 7, 16, dtype=torch.float64), torch.randn(2, S, 16, dtype=torch.float64)
    out = module(query, torch.rand(2, 7, 3, 2, dtype=torch.float64), value, SHAPES, level_start_index(SHAPES))
    assert out.shape == (2, 7, 16)
    out, locations, weights = module(query, torch.rand(2, 7, 3, 4, dtype=torch.float64), value, SHAPES,
                                     return_sampling=True)
    assert out.shape == (2, 7, 16)
    assert locations.shape == (2, 7, 4, 3, 2, 2)  # (N, Lq, M, L, K, 2)
    assert weights.shape == (2, 7, 4, 3, 2)       # (N, Lq, M, L, K)
    torch.testing.assert_close(weights.sum(dim=(-2, -1)), torch.ones(2, 7, 4, dtype=torch.float64))


def locations_by_hand(module, query, reference):
    """Recompute (N, Lq, M, L, K, 2) locations and (N, Lq, M, L, K) weights with explicit index
    arithmetic on the official channel layout: offset channel ((m L + l) K + k) 2 + xy, logit
    channel (m L + l) K + k."""
    n_batch, n_queries, _ = query.shape
    m_, l_, k_ = module.n_heads, module.n_levels, module.n_points
    offsets = query @ module.sampling_offsets.weight.T + module.sampling_offsets.bias
    logits = query @ module.attention_weights.weight.T + module.attention_weights.bias
    locations = torch.zeros(n_batch, n_queries, m_, l_, k_, 2, dtype=query.dtype)
    weights = torch.zeros(n_batch, n_queries, m_, l_, k_, dtype=query.dtype)
    for n in range(n_batch):
        for q in range(n_queries):
            for m in range(m_):
                head_logits = logits[n, q, m * l_ * k_:(m + 1) * l_ * k_]
                head_weights = torch.exp(head_logits - head_logits.max())
                head_weights = head_weights / head_weights.sum()  # softmax over the L*K samples
                for l in range(l_):
                    h, w = (float(s) for s in SHAPES[l])
                    for k in range(k_):
                        j = (m * l_ + l) * k_ + k
                        dx, dy = offsets[n, q, 2 * j], offsets[n, q, 2 * j + 1]
                        ref = reference[n, q, l]
                        if reference.shape[-1] == 2:   # p = p_ref + dp / (W_l, H_l)
                            x, y = ref[0] + dx / w, ref[1] + dy / h
                        else:                          # p = (cx, cy) + dp / K * (w, h) / 2
                            x = ref[0] + dx / k_ * ref[2] * 0.5
                            y = ref[1] + dy / k_ * ref[3] * 0.5
                        locations[n, q, m, l, k] = torch.stack([x, y])
                        weights[n, q, m, l, k] = head_weights[l * k_ + k]
    return locations, weights


@pytest.mark.parametrize("reference_kind", ["points", "boxes"])
def test_locations_weights_and_output_recomputed_by_hand(reference_kind):
    module = small_module(seed=1)
    gen = torch.Generator().manual_seed(2)
    query = torch.randn(2, 3, 16, dtype=torch.float64, generator=gen)
    value = torch.randn(2, S, 16, dtype=torch.float64, generator=gen)
    width = 2 if reference_kind == "points" else 4
    reference = 0.1 + 0.8 * torch.rand(2, 3, 3, width, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        out, locations, weights = module(query, reference, value, SHAPES, return_sampling=True)
        expected_loc, expected_weights = locations_by_hand(module, query, reference)
        torch.testing.assert_close(locations, expected_loc, rtol=0, atol=1e-12)
        torch.testing.assert_close(weights, expected_weights, rtol=0, atol=1e-12)
        # the output: W_m [ sum A x(p) ] with the loop backend on the hand-made locations
        v = (value @ module.value_proj.weight.T + module.value_proj.bias).view(2, S, 4, 4)
        core = ms_deform_attn(v, SHAPES, expected_loc, expected_weights, backend="loop")
        expected_out = core @ module.output_proj.weight.T + module.output_proj.bias
        torch.testing.assert_close(out, expected_out, rtol=0, atol=1e-12)


def test_padding_mask_zeroes_padded_values():
    module = small_module(seed=3)
    gen = torch.Generator().manual_seed(4)
    query = torch.randn(2, 6, 16, dtype=torch.float64, generator=gen)
    value = torch.randn(2, S, 16, dtype=torch.float64, generator=gen)
    reference = torch.rand(2, 6, 3, 2, dtype=torch.float64, generator=gen)
    # image 0 padded on the right half of every level, image 1 not padded at all
    padding_mask = torch.zeros(2, S, dtype=torch.bool)
    for start, (h, w) in zip(level_start_index(SHAPES).tolist(), SHAPES.tolist()):
        cols = torch.arange(h * w) % w
        padding_mask[0, start:start + h * w] = cols >= w // 2
    changed = value.clone()
    changed[padding_mask] = 100 * torch.randn(int(padding_mask.sum()), 16, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        out = module(query, reference, value, SHAPES, padding_mask=padding_mask)
        out_changed = module(query, reference, changed, SHAPES, padding_mask=padding_mask)
        out_unmasked = module(query, reference, changed, SHAPES)
        out_zeroed = module(query, reference, changed.masked_fill(padding_mask[..., None], 0), SHAPES)
    torch.testing.assert_close(out, out_changed, rtol=0, atol=1e-12)
    # the mask zeroes the *projected* values (bias included): not the same as zeroing the input
    assert not torch.allclose(out, out_zeroed)
    assert float((out_unmasked - out).abs().max()) > 1.0  # the padded values are read without the mask


def test_backends_agree_inside_the_module():
    module = small_module(seed=5)
    query, value = torch.randn(1, 4, 16, dtype=torch.float64), torch.randn(1, S, 16, dtype=torch.float64)
    reference = torch.rand(1, 4, 3, 4, dtype=torch.float64)
    outs = {}
    for backend in ("einops", "loop", "grid_sample"):
        module.backend = backend
        outs[backend] = module(query, reference, value, SHAPES)
    torch.testing.assert_close(outs["loop"], outs["einops"], rtol=0, atol=1e-12)
    torch.testing.assert_close(outs["grid_sample"], outs["einops"], rtol=0, atol=1e-12)


def test_d_model_not_divisible_by_heads_is_rejected():
    with pytest.raises(ValueError, match=r"d_model \(100\).*n_heads \(8\)"):
        MSDeformAttn(d_model=100, n_heads=8)


def test_d_model_96_with_8_heads_works():
    """D = 12 channels per head: not a power of two."""
    torch.manual_seed(6)
    module = MSDeformAttn(d_model=96, n_levels=3, n_heads=8, n_points=2)
    with torch.no_grad():
        module.sampling_offsets.weight.normal_(0, 0.2)
    query = torch.randn(2, 5, 96, requires_grad=True)
    value = torch.randn(2, S, 96, requires_grad=True)
    out = module(query, torch.rand(2, 5, 3, 2), value, SHAPES)
    assert out.shape == (2, 5, 96)
    out.square().sum().backward()
    assert bool(torch.isfinite(query.grad).all()) and float(query.grad.abs().sum()) > 0
    assert float(module.sampling_offsets.weight.grad.abs().sum()) > 0
    reference = torch.rand(2, 5, 3, 2)
    with torch.no_grad():
        out_einops = module(query, reference, value, SHAPES)
        module.backend = "loop"
        out_loop = module(query, reference, value, SHAPES)
    torch.testing.assert_close(out_loop, out_einops, rtol=1e-5, atol=1e-5)
