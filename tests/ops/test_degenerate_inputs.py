"""One rule for degenerate inputs, the same for every backend, forward and backward:

* N = 0 or Lq = 0: an empty (N, Lq, M*D) output, and gradients of the inputs' shapes (zeros);
* a NaN or +-inf sampling location reads zeros and gets zero gradient (location and weight),
  like a point far outside the maps; the other samples are untouched.

"cpu" is the CUDA kernel's arithmetic compiled for the CPU, reached through ``ms_deform_attn``;
"kernel" is the op ``ddetr_edu::ms_deform_attn`` called directly (its CPU implementation is that
build), with its registered autograd.
"""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.ops import MSDeformAttn, cpu_kernel_status, ms_deform_attn
from ddetr_edu.ops.cuda_backend import run_kernel_op
from ddetr_edu.ops.levels import as_levels

BACKENDS = ("einops", "loop", "grid_sample", "cpu", "kernel")
# (n, q, m, l, k, coordinate) of the non-finite entries put into one input, with their value
NON_FINITE = {(0, 0, 0, 0, 0, 0): float("nan"), (0, 1, 1, 2, 1, 1): float("nan"),
              (1, 2, 0, 1, 0, 0): float("inf"), (1, 2, 0, 1, 0, 1): float("nan"),
              (1, 3, 1, 0, 2, 1): float("-inf"), (0, 4, 0, 1, 2, 0): float("-inf")}


def core(backend: str):
    """The attention core of ``backend`` as f(value, spatial_shapes, locations, weights)."""
    if backend in ("cpu", "kernel") and not cpu_kernel_status()[0]:
        pytest.skip(f"CPU build of the kernel unavailable: {cpu_kernel_status()[1]}")
    if backend != "kernel":
        return lambda *args: ms_deform_attn(*args, backend=backend)
    return lambda value, shapes, loc, weights: run_kernel_op(value, as_levels(shapes), loc, weights)


def forward_backward(backend: str, inputs, grad_out=None):
    """(out, grad value, grad locations, grad weights) of ``backend`` for a loss <out, grad_out>."""
    value, shapes, loc, weights = (t.clone().requires_grad_(t.is_floating_point()) for t in inputs.args())
    out = core(backend)(value, shapes, loc, weights)
    grads = torch.autograd.grad(out, (value, loc, weights), torch.ones_like(out) if grad_out is None else grad_out)
    return out.detach(), *grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,lq", [(0, 5), (2, 0), (0, 0)])
def test_no_images_or_no_queries_give_an_empty_output_and_zero_gradients(core_inputs, backend, n, lq):
    inputs = core_inputs(n=n, lq=lq, m=2, d=3, k=3, seed=11)
    out, grad_value, grad_loc, grad_weights = forward_backward(backend, inputs)
    assert out.shape == (n, lq, 6) and out.dtype == inputs.value.dtype
    for grad, like in ((grad_value, inputs.value), (grad_loc, inputs.sampling_locations),
                       (grad_weights, inputs.attention_weights)):
        assert grad.shape == like.shape and not grad.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_finite_location_reads_zero_with_zero_gradient(core_inputs, backend):
    inputs = core_inputs(n=2, lq=5, m=2, d=3, k=3, seed=12)
    grad_out = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    samples = sorted({key[:5] for key in NON_FINITE})  # (n, q, m, l, k) of the samples hit
    for key, bad in NON_FINITE.items():
        inputs.sampling_locations[key] = bad
    # the expectation: the same backend with those samples' weights set to zero
    silenced = core_inputs(n=2, lq=5, m=2, d=3, k=3, seed=12)
    for sample in samples:
        silenced.attention_weights[sample] = 0.0
    got = forward_backward(backend, inputs, grad_out)
    want = list(forward_backward(backend, silenced, grad_out))
    for sample in samples:
        want[3][sample] = 0.0  # a non-finite sample has zero weight gradient too
    assert all(bool(t.isfinite().all()) for t in got)
    for name, g, w in zip(("out", "grad value", "grad locations", "grad weights"), got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12, msg=lambda m: f"{name}: {m}")
    for sample in samples:
        assert not got[2][sample].any() and got[3][sample] == 0
    assert got[3].abs().sum() > 0.1  # the other samples do get gradients


@pytest.mark.parametrize("backend", ["einops", "grid_sample", "cpu"])
def test_the_non_finite_rule_needs_no_host_read(core_inputs, backend):
    """Traced whole by torch.compile (fullgraph: a host read of the locations would break the
    graph), with a NaN location, and the same numbers as eager."""
    core(backend)  # skips "cpu" without its build
    inputs = core_inputs(n=1, lq=3, m=2, d=3, k=2, seed=13)
    inputs.sampling_locations[0, 1, 0, 0, 1, 0] = float("nan")
    value, shapes, loc, weights = inputs.args()
    sizes = [tuple(row) for row in shapes.tolist()]  # the level sizes as ints, as the detector has them
    compiled = torch.compile(lambda *args: ms_deform_attn(*args, backend=backend), backend="eager",
                             fullgraph=True)
    torch.testing.assert_close(compiled(value, sizes, loc, weights),
                               ms_deform_attn(value, sizes, loc, weights, backend=backend))


@pytest.mark.parametrize("backend", ["einops", "loop", "grid_sample", "cpu"])
def test_the_module_with_an_empty_batch_or_no_queries(backend):
    core(backend)  # skips "cpu" without its build
    torch.manual_seed(14)
    module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2, backend=backend).double()
    shapes = [(3, 4), (2, 2)]
    for n, lq in ((0, 3), (2, 0)):
        query = torch.randn(n, lq, 8, dtype=torch.float64, requires_grad=True)
        value = torch.randn(n, 16, 8, dtype=torch.float64, requires_grad=True)
        out = module(query, torch.rand(n, lq, 2, 2, dtype=torch.float64), value, shapes)
        assert out.shape == (n, lq, 8)
        out.sum().backward()
        assert query.grad.shape == query.shape and value.grad.shape == value.shape
