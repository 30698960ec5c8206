"""backend="triton" (the Triton kernels, run by Triton's interpreter on the CPU) equals the loop
oracle and the official fixture: the output and all three gradients, float32 within 1e-5,
float64 to rounding, and half-precision values within a few roundings of the output dtype.

Shapes: value (N, S, M, D), sampling_locations (N, Lq, M, L, K, 2), attention_weights
(N, Lq, M, L, K), output (N, Lq, M*D).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddetr_edu.ops import ms_deform_attn

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "reference" / "msda_core_fixture.pt"
FLOAT32 = dict(rtol=1e-5, atol=1e-5)
NAMES = ("output", "grad value", "grad locations", "grad weights")


def forward_backward(backend, value, shapes, loc, weights, upstream):
    """(output, grad value, grad locations, grad weights) of (output * upstream).sum()."""
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
    out = ms_deform_attn(leaves[0], shapes, leaves[1], leaves[2], backend=backend)
    grads = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), leaves)
    return (out.detach(), *grads)


def assert_all_close(got, want, **tolerance):
    for name, g, w in zip(NAMES, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        torch.testing.assert_close(g, w, **tolerance, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, FLOAT32), (torch.float64, dict(rtol=0, atol=1e-12))])
def test_forward_and_gradients_equal_the_loop_oracle(core_inputs, dtype, tolerance):
    inputs = core_inputs(n=2, lq=5, m=2, d=4, k=3, dtype=dtype, seed=21)
    upstream = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)
    got = forward_backward("triton", *inputs.args(), upstream)
    want = forward_backward("loop", *inputs.args(), upstream)
    assert_all_close(got, want, **tolerance)
    assert got[2].abs().sum() > 0.1 and got[3].abs().sum() > 0.1  # the gradients are not trivially zero


# (n, lq, m, d, k, level sizes): one odd thing each
ODD_SIZES = {
    "1x1 levels only": (2, 3, 2, 4, 2, ((1, 1), (1, 1))),
    "one point": (2, 4, 2, 4, 1, ((4, 5), (2, 3))),
    "one head": (2, 4, 1, 4, 2, ((4, 5), (2, 3))),
    "D = 3": (1, 4, 2, 3, 2, ((3, 5), (2, 2))),
    "D = 7, three heads": (1, 3, 3, 7, 2, ((3, 4),)),
    "D = 1": (1, 3, 2, 1, 2, ((3, 4), (1, 2))),
    "eight levels": (1, 3, 2, 2, 2, ((6, 5), (5, 4), (4, 3), (3, 3), (2, 3), (2, 2), (1, 2), (1, 1))),
    "more queries than a block": (1, 40, 2, 2, 1, ((3, 3),)),
}


@pytest.mark.parametrize("case", list(ODD_SIZES))
def test_odd_sizes_equal_einops(core_inputs, case):
    """einops (tested against the loop oracle in tests/ops) is quicker for the bigger cases."""
    n, lq, m, d, k, shapes = ODD_SIZES[case]
    inputs = core_inputs(n=n, lq=lq, m=m, d=d, k=k, shapes=shapes, dtype=torch.float32, seed=len(case))
    upstream = torch.randn(n, lq, m * d, generator=torch.Generator().manual_seed(2))
    got = forward_backward("triton", *inputs.args(), upstream)
    assert_all_close(got, forward_backward("einops", *inputs.args(), upstream), **FLOAT32)


@pytest.fixture(scope="module")
def fixture_cases():
    if not FIXTURE.exists():
        pytest.fail(f"reference fixture missing: {FIXTURE.resolve()}")
    return torch.load(FIXTURE, weights_only=True)["cases"]


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("case_index", [0, 1, 2])
def test_equals_the_official_fixture(fixture_cases, case_index, dtype, tolerance):
    """float64: to rounding; float32: the fixture's float64 numbers within 1e-5 (relative to
    the largest entry of each tensor: the location gradients are scaled by the map widths)."""
    case = fixture_cases[case_index]
    got = forward_backward("triton", case["value"].to(dtype), case["value_spatial_shapes"],
                           case["sampling_locations"].to(dtype), case["attention_weights"].to(dtype),
                           case["upstream"].to(dtype))
    keys = ("output", "grad_value", "grad_sampling_locations", "grad_attention_weights")
    for name, ours, key in zip(NAMES, got, keys):
        official = case[key]
        assert ours.shape == official.shape and ours.dtype == dtype, name
        error = float((ours.double() - official).abs().max())
        assert error <= tolerance * max(1.0, float(official.abs().max())), f"case {case_index} {name}: {error:.3g}"


UNIT = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}  # relative rounding of one number
# The output is rounded to value's dtype inside the kernel. On a GPU float32 -> bfloat16 rounds to
# nearest; Triton's interpreter truncates it (toward zero), up to one whole unit of bfloat16.
# float32 -> float16 rounds to nearest in both. So: one unit for float16, two for bfloat16.
OUTPUT_UNITS = {torch.bfloat16: 2, torch.float16: 1}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_value_with_float32_locations(core_inputs, dtype):
    """Mixed precision: half values, float32 locations and weights, float32 sums. Against float32
    einops on the same rounded values and the same (half-representable) upstream gradient:
    output within ``OUTPUT_UNITS`` roundings of its dtype, value gradient (summed in float32,
    rounded by torch) within one, both plus 1e-6; location and weight gradients (float32) within
    1e-5."""
    inputs = core_inputs(n=2, lq=5, m=2, d=4, k=2, dtype=torch.float32, seed=23)
    value = inputs.value.to(dtype)
    upstream = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(3)).to(dtype)
    got = forward_backward("triton", value, inputs.spatial_shapes, inputs.sampling_locations,
                           inputs.attention_weights, upstream)
    want = forward_backward("einops", value.float(), inputs.spatial_shapes, inputs.sampling_locations,
                            inputs.attention_weights, upstream.float())
    assert got[0].dtype == dtype and got[1].dtype == dtype
    assert got[2].dtype == torch.float32 and got[3].dtype == torch.float32
    for name, units, g, w in zip(NAMES[:2], (OUTPUT_UNITS[dtype], 1), got[:2], want[:2]):
        error = (g.float() - w).abs()
        assert bool((error <= units * UNIT[dtype] * w.abs() + 1e-6).all()), f"{name}: {float(error.max()):.3g}"
    for name, g, w in zip(NAMES[2:], got[2:], want[2:]):
        torch.testing.assert_close(g, w, **FLOAT32, msg=lambda m, name=name: f"{name}: {m}")


def test_all_bfloat16_inputs_are_summed_in_float32(core_inputs):
    """bf16 locations and weights too (allowed by the contract): computed in float32, as einops."""
    inputs = core_inputs(n=1, lq=4, m=2, d=4, k=2, dtype=torch.bfloat16, seed=24)
    upstream = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(4)).bfloat16()
    got = forward_backward("triton", *inputs.args(), upstream)
    want = forward_backward("einops", *inputs.args(), upstream)
    for name, g, w in zip(NAMES, got, want):
        assert g.dtype == torch.bfloat16, name
        torch.testing.assert_close(g.float(), w.float(), rtol=OUTPUT_UNITS[torch.bfloat16] * UNIT[torch.bfloat16],
                                   atol=1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")
