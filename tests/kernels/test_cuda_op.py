"""The torch registration of the kernel (``ddetr_edu::ms_deform_attn``), checked on the CPU.

The library implements the op for CUDA tensors only; here the kernel's code built for the CPU
(``kernels/kernel_on_cpu.py``) is registered as its CPU implementation, so the schema, the fake
(meta) implementation, the registered autograd and torch.compile tracing are all tested without a
GPU.
"""
from __future__ import annotations

import pytest
import torch

import kernel_on_cpu  # kernels/, on the path through pyproject.toml
from ddetr_edu.ops import cuda_backend, ms_deform_attn

needs_cpu_build = pytest.mark.skipif(not kernel_on_cpu.kernel_on_cpu_status()[0],
                                     reason="CPU build of the kernel unavailable (no C++ compiler?)")


@pytest.fixture(autouse=True)
def op_on_cpu():
    """The kernel's CPU build as the op's CPU implementation (for the rest of the process)."""
    if kernel_on_cpu.kernel_on_cpu_status()[0]:
        kernel_on_cpu.register_as_cpu_implementation()


SHAPES = [4, 6, 3, 3]  # the op's flattened level sizes: (H_0, W_0, H_1, W_1)
STARTS = [0, 24]


def small_inputs(dtype=torch.float64, seed=0):
    """value, spatial_shapes and level_start_index as the op takes them (ints), locations, weights."""
    gen = torch.Generator().manual_seed(seed)
    value = torch.randn(2, 33, 2, 3, dtype=dtype, generator=gen)
    loc = torch.rand(2, 3, 2, 2, 2, 2, dtype=dtype, generator=gen) * 1.4 - 0.2
    weights = torch.rand(2, 3, 2, 2, 2, dtype=dtype, generator=gen)
    return value, SHAPES, STARTS, loc, weights


def test_kernel_status_explains_why_not_available_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; tests/kernels/test_cuda_gpu.py covers it")
    available, reason = cuda_backend.kernel_status()
    assert available is False
    assert "CUDA" in reason


def test_cuda_backend_raises_with_reason_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    value, _, starts, loc, weights = small_inputs()
    _, reason = cuda_backend.kernel_status()
    with pytest.raises(RuntimeError, match="not available"):
        cuda_backend.ms_deform_attn_cuda(value, [(4, 6), (3, 3)], starts, loc, weights)
    with pytest.raises(RuntimeError, match=reason.split(" (")[0]):
        ms_deform_attn(value, [(4, 6), (3, 3)], loc, weights, backend="cuda")


def test_fake_implementation_gives_output_and_gradient_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        value = torch.empty(2, 1000, 8, 32)
        shapes, starts = [25, 25, 13, 13, 7, 7, 4, 4], [0, 625, 794, 843]
        loc, weights = torch.empty(2, 300, 8, 4, 4, 2), torch.empty(2, 300, 8, 4, 4)
        out = torch.ops.ddetr_edu.ms_deform_attn(value, shapes, starts, loc, weights)
        grads = torch.ops.ddetr_edu.ms_deform_attn_backward(value, shapes, starts, loc, weights, out)
    assert tuple(out.shape) == (2, 300, 256)
    assert [tuple(g.shape) for g in grads] == [(2, 1000, 8, 32), (2, 300, 8, 4, 4, 2), (2, 300, 8, 4, 4)]


@needs_cpu_build
def test_registered_autograd_passes_gradcheck():
    value, shapes, starts, loc, weights = small_inputs()
    leaves = [t.requires_grad_() for t in (value, loc, weights)]

    def op(v, p, a):
        return torch.ops.ddetr_edu.ms_deform_attn(v, shapes, starts, p, a)

    assert torch.autograd.gradcheck(op, leaves, eps=1e-6, atol=1e-7)


@needs_cpu_build
def test_opcheck_schema_fake_and_autograd_registration():
    value, shapes, starts, loc, weights = small_inputs()
    args = (value.requires_grad_(), shapes, starts, loc.requires_grad_(), weights.requires_grad_())
    results = torch.library.opcheck(torch.ops.ddetr_edu.ms_deform_attn.default, args)
    assert all(v == "SUCCESS" for v in results.values()), results


class CoreModule(torch.nn.Module):
    """A module using the op between two ordinary layers, as MSDeformAttn would."""

    def __init__(self, shapes: list[int], starts: list[int]):
        super().__init__()
        self.shapes, self.starts = shapes, starts
        self.proj = torch.nn.Linear(6, 6, dtype=torch.float64)

    def forward(self, value, loc, weights):
        out = torch.ops.ddetr_edu.ms_deform_attn(value, self.shapes, self.starts, loc, weights)
        return self.proj(out)


@needs_cpu_build
def test_torch_compile_traces_the_op_forward_and_backward():
    value, shapes, starts, loc, weights = small_inputs()
    module = CoreModule(shapes, starts)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    eager_leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    compiled_leaves = [t.clone().requires_grad_() for t in (value, loc, weights)]
    eager_out, compiled_out = module(*eager_leaves), compiled(*compiled_leaves)
    torch.testing.assert_close(compiled_out, eager_out)
    eager_out.square().sum().backward()
    compiled_out.square().sum().backward()
    for a, b in zip(compiled_leaves, eager_leaves):
        torch.testing.assert_close(a.grad, b.grad)


@needs_cpu_build
def test_op_on_cpu_equals_einops_including_half_inputs():
    value, shapes, starts, loc, weights = small_inputs(torch.float32)
    want = ms_deform_attn(value, [(4, 6), (3, 3)], loc, weights, backend="einops")
    got = torch.ops.ddetr_edu.ms_deform_attn(value, shapes, starts, loc, weights)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    bf16 = value.bfloat16()  # mixed precision: bf16 values, float32 locations and weights
    got16 = torch.ops.ddetr_edu.ms_deform_attn(bf16, shapes, starts, loc, weights)
    want16 = ms_deform_attn(bf16, [(4, 6), (3, 3)], loc, weights, backend="einops")
    assert got16.dtype == torch.bfloat16
    torch.testing.assert_close(got16.float(), want16.float(), atol=1e-2, rtol=1e-2)
