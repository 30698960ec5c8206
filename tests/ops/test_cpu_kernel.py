"""The CPU backend (the CUDA kernel's arithmetic compiled for the CPU, ``ddetr_edu/ops/cpu_backend.py``).

It equals the loop oracle, forward and the three gradients, in float64 to 1e-10 for odd sizes
(1x1 levels, one point, one head, D not a power of two, more channels than one step, 20 levels);
its result does not depend on the number of threads (no atomics: bit-identical); the build is
cached and explains itself when it cannot happen. The official fixture, the degenerate inputs
and half precision are in test_parity_official.py, test_degenerate_inputs.py and
test_mixed_precision.py (backend "cpu" there), the op's registration in tests/kernels/.
"""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.ops import cpu_backend, cpu_kernel_status, ms_deform_attn

usable, reason = cpu_kernel_status()  # builds once per session (cached on disk)
pytestmark = pytest.mark.skipif(not usable, reason=f"CPU kernel unavailable: {reason}")

ODD_SIZES = {
    "one 1x1 level, K=1, M=1, D=7": dict(n=1, lq=3, m=1, d=7, k=1, shapes=((1, 1),)),
    "1x1, 1-wide and 1-high levels, D=6": dict(n=2, lq=4, m=3, d=6, k=2, shapes=((1, 1), (2, 3), (5, 1))),
    "D=64: two steps of 32 channels": dict(n=2, lq=5, m=2, d=64, k=4, shapes=((6, 5), (3, 3))),
    "20 levels, D=33": dict(n=1, lq=2, m=2, d=33, k=3, shapes=tuple((h, h % 4 + 1) for h in range(1, 21))),
}


def forward_backward(backend, inputs, upstream):
    """(out, grad value, grad locations, grad weights) of (out * upstream).sum()."""
    leaves = [t.detach().clone().requires_grad_() for t in (inputs.value, inputs.sampling_locations,
                                                            inputs.attention_weights)]
    out = ms_deform_attn(leaves[0], inputs.spatial_shapes, leaves[1], leaves[2], backend=backend)
    grads = torch.autograd.grad((out * upstream).sum(), leaves)
    return (out.detach(), *grads)


@pytest.mark.parametrize("case", ODD_SIZES)
def test_float64_equals_the_loop_oracle(core_inputs, case):
    sizes = ODD_SIZES[case]
    inputs = core_inputs(**sizes, low=-0.3, high=1.3, seed=len(case))
    upstream = torch.randn(sizes["n"], sizes["lq"], sizes["m"] * sizes["d"], dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))
    names = ("out", "grad value", "grad locations", "grad weights")
    for name, got, want in zip(names, forward_backward("cpu", inputs, upstream),
                               forward_backward("loop", inputs, upstream)):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert float(want.abs().max()) > 0.01, f"{name} is trivially small"
        error = float((got - want).abs().max())
        assert error <= 1e-10, f"{case}: {name} differs from the loop oracle by {error:.3g}"


def test_float32_equals_the_loop_oracle_within_rounding(core_inputs):
    inputs = core_inputs(n=2, lq=7, m=2, d=32, k=4, shapes=((8, 6), (4, 3), (2, 2), (1, 1)),
                         dtype=torch.float32, seed=5)
    upstream = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(2))
    for got, want in zip(forward_backward("cpu", inputs, upstream), forward_backward("loop", inputs, upstream)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_the_result_does_not_depend_on_the_number_of_threads(core_inputs):
    """Every output and gradient element is written by one thread only: bit-identical results."""
    inputs = core_inputs(n=2, lq=300, m=4, d=8, k=2, shapes=((9, 7), (4, 4)), dtype=torch.float32, seed=6)
    upstream = torch.randn(2, 300, 32, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = forward_backward("cpu", inputs, upstream)
        torch.set_num_threads(2)
        double = forward_backward("cpu", inputs, upstream)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(single, double):
        assert torch.equal(a, b)


def test_every_channel_group_is_the_largest_power_of_two_up_to_32_dividing_d():
    assert [cpu_backend.cpu_group(d) for d in (32, 256, 64, 48, 12, 7, 6, 1)] == [32, 32, 32, 16, 4, 1, 2, 1]


def test_the_op_on_cpu_tensors_checks_the_level_geometry(core_inputs):
    inputs = core_inputs()
    value, _, loc, weights = inputs.args()
    with pytest.raises(ValueError, match="sum of H\\*W over the levels is 32 but value has S = 31"):
        torch.ops.ddetr_edu.ms_deform_attn(value, [4, 6, 3, 2, 1, 2], [0, 24, 30], loc, weights)
    with pytest.raises(ValueError, match="level 1: size 3 x 2 must be positive and start at 24"):
        torch.ops.ddetr_edu.ms_deform_attn(value, [4, 6, 3, 2, 1, 1], [0, 23, 30], loc, weights)


def test_the_library_is_cached_under_a_key_of_sources_and_torch():
    path = cpu_backend.library_path()
    assert cpu_backend.is_built() and path.exists()
    assert path.parent.name == cpu_backend._build_key(cpu_backend._compiler())


def test_without_a_compiler_the_reason_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DDETR_EDU_KERNEL_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    library, why = cpu_backend._library.__wrapped__()  # the uncached loader: a fresh attempt
    assert library is None and "no-such-compiler" in why and "\n" not in why
    assert capsys.readouterr().err.count("\n") == 1  # the one "building ..." line
    monkeypatch.setenv("DDETR_EDU_CPU_KERNEL", "0")
    assert cpu_backend._library.__wrapped__() == (None, "disabled by DDETR_EDU_CPU_KERNEL=0")
