"""Every backend equals the official pure-PyTorch core on the shared float64 fixture.

The fixture (tests/fixtures/reference/msda_core_fixture.pt, its README section 3) holds the official
``ms_deform_attn_core_pytorch`` output and the gradients of ``(output * upstream).sum()`` for
three cases, about 30% of the points outside the maps.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddetr_edu.ops import Levels, cpu_kernel_status, level_start_index, ms_deform_attn

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "msda_core_fixture.pt"
TOLERANCE = 1e-10  # float64; the backends differ from the official one by summation order only


@pytest.fixture(scope="module")
def fixture():
    if not FIXTURE.exists():
        pytest.fail(f"reference fixture missing: {FIXTURE.resolve()}")
    data = torch.load(FIXTURE, weights_only=True)
    assert data["format_version"] == 1 and data["dtype"] == "float64"
    assert len(data["cases"]) == 3
    return data


@pytest.mark.parametrize("case_index", [0, 1, 2])
@pytest.mark.parametrize("backend", ["einops", "loop", "grid_sample", pytest.param("cpu", marks=pytest.mark.skipif(
    not cpu_kernel_status()[0], reason="CPU kernel unavailable"))])
def test_backend_matches_official_forward_and_backward(fixture, backend, case_index):
    case = fixture["cases"][case_index]
    value = case["value"].clone().requires_grad_()                         # (N, S, M, D)
    locations = case["sampling_locations"].clone().requires_grad_()      # (N, Lq, M, L, K, 2)
    weights = case["attention_weights"].clone().requires_grad_()         # (N, Lq, M, L, K)
    out = ms_deform_attn(value, case["value_spatial_shapes"], locations, weights, backend=backend)
    assert out.shape == (case["N"], case["Lq"], case["M"] * case["D"])
    assert out.dtype == torch.float64
    (out * case["upstream"]).sum().backward()
    pairs = {"output": (out.detach(), case["output"]),
             "grad_value": (value.grad, case["grad_value"]),
             "grad_sampling_locations": (locations.grad, case["grad_sampling_locations"]),
             "grad_attention_weights": (weights.grad, case["grad_attention_weights"])}
    for name, (ours, official) in pairs.items():
        assert ours.shape == official.shape, name
        error = float((ours - official).abs().max())
        assert error <= TOLERANCE, f"{backend} case {case_index}: {name} differs by {error:.3g}"


def test_fixture_level_start_index_matches_ours(fixture):
    for case in fixture["cases"]:
        assert torch.equal(level_start_index(case["value_spatial_shapes"]), case["value_level_start_index"])
        levels = Levels.from_official(case["value_spatial_shapes"], case["value_level_start_index"])  # checked
        assert list(levels.starts) == case["value_level_start_index"].tolist()


def test_fixture_has_points_outside_the_maps(fixture):
    """The parity above covers zero padding only if some points do fall outside."""
    loc = torch.cat([c["sampling_locations"].flatten() for c in fixture["cases"]])
    assert bool((loc < 0).any()) and bool((loc > 1).any())
