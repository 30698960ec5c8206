"""The Triton op's registration and its edges, under the interpreter: the degenerate-input rule,
torch.compile(fullgraph=True) forward and backward, torch.library.opcheck, and its errors."""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.ops import Levels, ms_deform_attn, triton_backend

# (n, q, m, l, k, coordinate) of the non-finite entries put into one input, with their value
NON_FINITE = {(0, 0, 0, 0, 0, 0): float("nan"), (0, 1, 1, 2, 1, 1): float("nan"),
              (1, 2, 0, 1, 0, 0): float("inf"), (1, 2, 0, 1, 0, 1): float("nan"),
              (1, 3, 1, 0, 2, 1): float("-inf"), (0, 4, 0, 1, 2, 0): float("-inf")}


def forward_backward(inputs, grad_out=None):
    """(out, grad value, grad locations, grad weights) of backend="triton" for <out, grad_out>."""
    value, shapes, loc, weights = (t.clone().requires_grad_(t.is_floating_point()) for t in inputs.args())
    out = ms_deform_attn(value, shapes, loc, weights, backend="triton")
    grads = torch.autograd.grad(out, (value, loc, weights), torch.ones_like(out) if grad_out is None else grad_out)
    return out.detach(), *grads


@pytest.mark.parametrize("n,lq", [(0, 5), (2, 0), (0, 0)])
def test_no_images_or_no_queries_give_an_empty_output_and_zero_gradients(core_inputs, n, lq):
    inputs = core_inputs(n=n, lq=lq, m=2, d=3, k=3, seed=11)
    out, grad_value, grad_loc, grad_weights = forward_backward(inputs)
    assert out.shape == (n, lq, 6) and out.dtype == inputs.value.dtype
    for grad, like in ((grad_value, inputs.value), (grad_loc, inputs.sampling_locations),
                       (grad_weights, inputs.attention_weights)):
        assert grad.shape == like.shape and grad.dtype == like.dtype and not grad.any()


def test_a_non_finite_location_reads_zero_with_zero_gradient(core_inputs):
    """The expectation: the same inputs with those samples' weights set to zero (and a zero
    weight gradient for them), as in tests/ops/test_degenerate_inputs.py."""
    inputs = core_inputs(n=2, lq=5, m=2, d=3, k=3, seed=12)
    grad_out = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    samples = sorted({key[:5] for key in NON_FINITE})  # (n, q, m, l, k) of the samples hit
    for key, bad in NON_FINITE.items():
        inputs.sampling_locations[key] = bad
    silenced = core_inputs(n=2, lq=5, m=2, d=3, k=3, seed=12)
    for sample in samples:
        silenced.attention_weights[sample] = 0.0
    got = forward_backward(inputs, grad_out)
    want = list(forward_backward(silenced, grad_out))
    for sample in samples:
        want[3][sample] = 0.0
    assert all(bool(t.isfinite().all()) for t in got)
    for name, g, w in zip(("out", "grad value", "grad locations", "grad weights"), got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
    for sample in samples:
        assert not got[2][sample].any() and got[3][sample] == 0
    assert got[3].abs().sum() > 0.1  # the other samples do get gradients


class CoreLayer(torch.nn.Module):
    """The core between two ordinary layers, as in MSDeformAttn: value projection, core, output."""

    def __init__(self, levels: Levels, channels: int):
        super().__init__()
        self.levels = levels
        self.value_proj = torch.nn.Linear(channels, channels)
        self.output_proj = torch.nn.Linear(channels, channels)

    def forward(self, value, loc, weights):  # value (N, S, M*D) -> (N, Lq, M*D)
        n, s, _ = value.shape
        m = loc.shape[2]
        projected = self.value_proj(value).view(n, s, m, -1)
        return self.output_proj(ms_deform_attn(projected, self.levels, loc, weights, backend="triton"))


def test_torch_compile_fullgraph_traces_forward_and_backward(core_inputs):
    """aot_eager: Dynamo captures the whole function (fullgraph: no break at the op), AOTAutograd
    traces the forward and the registered backward with the fake implementations, and the
    captured graphs run the interpreted kernels."""
    inputs = core_inputs(n=1, lq=4, m=2, d=3, k=2, dtype=torch.float32, seed=31)
    levels = Levels(tuple(tuple(hw) for hw in inputs.spatial_shapes.tolist()))
    torch.manual_seed(0)
    layer = CoreLayer(levels, 6)
    value = torch.randn(1, levels.num_tokens, 6)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    results = []
    for run in (layer, compiled):
        leaves = [t.clone().requires_grad_() for t in (value, inputs.sampling_locations, inputs.attention_weights)]
        out = run(*leaves)
        out.square().sum().backward()
        results.append((out.detach(), *(t.grad for t in leaves)))
    for eager, traced in zip(*results):
        torch.testing.assert_close(traced, eager, rtol=1e-6, atol=1e-6)
    assert results[1][2].abs().sum() > 0  # gradients reach the locations through the compiled graph


def test_opcheck_schema_fake_and_autograd_registration(core_inputs):
    inputs = core_inputs(n=1, lq=3, m=2, d=3, k=2, shapes=((3, 4), (2, 2)), seed=32)
    args = (inputs.value.requires_grad_(), [3, 4, 2, 2], [0, 12], inputs.sampling_locations.requires_grad_(),
            inputs.attention_weights.requires_grad_())
    results = torch.library.opcheck(torch.ops.ddetr_edu.ms_deform_attn_triton.default, args)
    assert all(v == "SUCCESS" for v in results.values()), results


def test_more_levels_than_the_kernel_takes_is_a_value_error(core_inputs):
    from ddetr_edu.ops import triton_kernels
    assert triton_backend.MAX_LEVELS == triton_kernels.MAX_LEVELS  # the two modules agree
    shapes = tuple((1, 1) for _ in range(triton_backend.MAX_LEVELS + 1))
    inputs = core_inputs(n=1, lq=2, m=1, d=2, k=1, shapes=shapes, seed=33)
    with pytest.raises(ValueError, match=r"at most 8 levels, got 9 .*backend='grid_sample'"):
        ms_deform_attn(*inputs.args(), backend="triton")


def test_cpu_tensors_without_the_interpreter_are_refused_with_the_reason(core_inputs, monkeypatch):
    monkeypatch.setattr(triton_backend, "interpreted", lambda: False)
    with pytest.raises(RuntimeError, match=r"CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1"):
        ms_deform_attn(*core_inputs(seed=34).args(), backend="triton")


def test_the_module_with_the_triton_backend_equals_einops():
    """MSDeformAttn(backend="triton"): forward and the gradients of its input and its offset layer."""
    from ddetr_edu.ops import MSDeformAttn

    shapes = [(3, 4), (2, 2)]
    results = []
    for backend in ("triton", "einops"):
        torch.manual_seed(5)
        module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2, backend=backend)
        query = torch.randn(2, 3, 8, requires_grad=True)
        value = torch.randn(2, 16, 8, requires_grad=True)
        out = module(query, torch.rand(2, 3, 2, 2), value, shapes)
        out.square().sum().backward()
        results.append((out.detach(), query.grad, value.grad, module.sampling_offsets.weight.grad))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
