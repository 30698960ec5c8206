"""The backends compute one operator: einops, loop and grid_sample agree on random inputs,
and half precision works."""
from __future__ import annotations

import warnings

import pytest
import torch

from ddetr_edu.ops import cpu_backend, cpu_kernel_status, ms_deform_attn


def forward_backward(inputs, backend, upstream):
    """-> (output, grad value, grad locations, grad weights) of (output * upstream).sum()."""
    leaves = [t.detach().clone().requires_grad_() for t in (inputs.value, inputs.sampling_locations,
                                                            inputs.attention_weights)]
    out = ms_deform_attn(leaves[0], inputs.spatial_shapes, leaves[1], leaves[2], backend=backend)
    grads = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), leaves)
    return (out.detach(), *grads)


@pytest.mark.parametrize("d", [4, 5])
def test_einops_loop_and_grid_sample_agree_in_float32(core_inputs, d):
    inputs = core_inputs(n=2, lq=6, m=3, d=d, k=2, shapes=((5, 7), (3, 4), (2, 1)), dtype=torch.float32, seed=d)
    upstream = torch.randn(2, 6, 3 * d)
    results = {b: forward_backward(inputs, b, upstream) for b in ("einops", "loop", "grid_sample")}
    assert results["einops"][0].shape == (2, 6, 3 * d)
    names = ("output", "grad value", "grad locations", "grad weights")
    for other in ("loop", "grid_sample"):
        for name, a, b in zip(names, results["einops"], results[other]):
            assert a.dtype == torch.float32 and a.shape == b.shape
            # locations gradients are scaled by the map size (up to 7 here): a looser absolute tolerance
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 if "locations" in name else 1e-5,
                                       msg=f"einops vs {other}: {name}")


def test_backends_agree_with_one_head_one_level_one_point(core_inputs):
    inputs = core_inputs(n=1, lq=4, m=1, d=2, k=1, shapes=((3, 3),), dtype=torch.float64, seed=11)
    outs = [ms_deform_attn(*inputs.args(), backend=b) for b in ("einops", "loop", "grid_sample")]
    for out in outs[1:]:
        torch.testing.assert_close(outs[0], out, rtol=0, atol=1e-12)


def test_head_major_channel_order(core_inputs):
    """Output channel m*D + d belongs to head m: zeroing head 1's values leaves head 0 unchanged
    and zeroes channels D..2D-1."""
    inputs = core_inputs(n=1, lq=3, m=2, d=4, k=2, shapes=((4, 4),), low=0.1, high=0.9, seed=2)
    out = ms_deform_attn(*inputs.args(), backend="einops")
    value = inputs.value.clone()
    value[:, :, 1] = 0
    out_masked = ms_deform_attn(value, *inputs.args()[1:], backend="einops")
    torch.testing.assert_close(out_masked[..., :4], out[..., :4])
    assert torch.equal(out_masked[..., 4:], torch.zeros_like(out[..., 4:]))
    assert bool((out[..., 4:] != 0).any())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_work(core_inputs, dtype):
    inputs = core_inputs(n=2, lq=8, m=2, d=8, k=3, dtype=torch.float32, seed=4)
    half = [t.to(dtype) for t in (inputs.value, inputs.sampling_locations, inputs.attention_weights)]
    leaves = [t.clone().requires_grad_() for t in half]
    out = ms_deform_attn(leaves[0], inputs.spatial_shapes, leaves[1], leaves[2], backend="einops")
    assert out.dtype == dtype and out.shape == (2, 8, 16)
    out.float().sum().backward()
    for leaf in leaves:
        assert leaf.grad.dtype == dtype and bool(torch.isfinite(leaf.grad).all())
    # the float32 result on the same (rounded) inputs, rounded once more at the output
    reference = ms_deform_attn(*(t.float() for t in half[:1]), inputs.spatial_shapes,
                               half[1].float(), half[2].float(), backend="einops")
    unit = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11  # relative rounding of the output
    out = out.detach()
    error = (out.float() - reference).abs()
    assert bool((error <= unit * reference.abs() + 1e-6).all()), float(error.max())
    # and close to the full-precision inputs, within the rounding of the inputs themselves
    full = ms_deform_attn(*inputs.args(), backend="einops")
    assert float((out.float() - full).abs().max()) <= 16 * unit * float(full.abs().max())


def test_auto_on_cpu_is_the_cpu_kernel_when_it_builds_without_warning(core_inputs):
    inputs = core_inputs(seed=6)
    usable, _ = cpu_kernel_status()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = ms_deform_attn(*inputs.args(), backend="auto")
        default = ms_deform_attn(*inputs.args())
    chosen = ms_deform_attn(*inputs.args(), backend="cpu" if usable else "grid_sample")
    assert torch.equal(auto, chosen) and torch.equal(default, chosen)


def test_auto_on_cpu_without_the_cpu_kernel_is_grid_sample_with_one_warning(core_inputs, monkeypatch):
    inputs = core_inputs(seed=6)
    monkeypatch.setattr(cpu_backend, "kernel_status", lambda: (False, "no C++ compiler found (install g++ or set CXX)"))
    with pytest.warns(RuntimeWarning, match="falling back to the grid_sample backend: no C\\+\\+ compiler"):
        auto = ms_deform_attn(*inputs.args(), backend="auto")
    assert torch.equal(auto, ms_deform_attn(*inputs.args(), backend="grid_sample"))
    with pytest.raises(RuntimeError, match="backend='cpu' is not available: no C"):
        ms_deform_attn(*inputs.args(), backend="cpu")
