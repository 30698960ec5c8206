"""Bad input to the attention core and the module: a ValueError that names the argument (and
says what was expected), never a shape error from deep inside a backend."""
from __future__ import annotations

import pytest
import torch

from ddetr_edu.ops import MSDeformAttn, cuda_kernel_status, ms_deform_attn

SHAPES = torch.tensor([[4, 6], [3, 2]], dtype=torch.int64)  # S = 30


def good(n=2, lq=3, m=2, d=4, l=2, k=2, dtype=torch.float32):
    """value (N, S, M, D), spatial_shapes, locations (N, Lq, M, L, K, 2), weights (N, Lq, M, L, K)."""
    return (torch.randn(n, 30, m, d, dtype=dtype), SHAPES, torch.rand(n, lq, m, l, k, 2, dtype=dtype),
            torch.rand(n, lq, m, l, k, dtype=dtype))


def replaced(index, new):
    args = list(good())
    args[index] = new
    return args


def test_good_inputs_pass():
    assert ms_deform_attn(*good(), backend="einops").shape == (2, 3, 8)


BAD_CORE_INPUTS = {
    # wrong rank
    "value rank 3": (replaced(0, torch.randn(2, 30, 8)), r"value must have 4 dimensions \(N, S, M, D\), got shape \(2, 30, 8\)"),
    "locations rank 5": (replaced(2, torch.rand(2, 3, 2, 2, 2)), r"sampling_locations must have 6 dimensions"),
    "weights rank 4": (replaced(3, torch.rand(2, 3, 2, 4)), r"attention_weights must have 5 dimensions"),
    "spatial_shapes rank 1": (replaced(1, torch.tensor([4, 6])), r"spatial_shapes must have shape \(L, 2\) .*got \(2,\)"),
    "spatial_shapes not pairs": (replaced(1, [4, 6]), r"spatial_shapes must be \(L, 2\)"),
    "value not a tensor": (replaced(0, [[1.0]]), r"value must be a torch.Tensor"),
    # wrong shape
    "spatial_shapes (L, 3)": (replaced(1, torch.tensor([[4, 6, 1], [3, 2, 1]])), r"spatial_shapes must have shape \(L, 2\)"),
    "sum H*W != S": (replaced(1, torch.tensor([[4, 6], [3, 3]])), r"spatial_shapes .*is 33, but value has S = 30"),
    "non-positive shape": (replaced(1, torch.tensor([[5, 6], [0, 2]])), r"spatial_shapes must be positive"),
    "locations last axis 3": (replaced(2, torch.rand(2, 3, 2, 2, 2, 3)), r"sampling_locations .*must be 2 \(\(x, y\)\)"),
    "batch disagrees": (replaced(2, torch.rand(1, 3, 2, 2, 2, 2)), r"sampling_locations .*axis 0 .*must be 2 \(N of value\)"),
    # L or M disagreeing
    "L of locations": (replaced(2, torch.rand(2, 3, 2, 3, 2, 2)), r"sampling_locations .*must be 2 \(L = rows of spatial_shapes\)"),
    "M of locations": (replaced(2, torch.rand(2, 3, 4, 2, 2, 2)), r"sampling_locations .*must be 2 \(M of value\)"),
    "L of weights": (replaced(3, torch.rand(2, 3, 2, 3, 2)), r"attention_weights must have shape \(N, Lq, M, L, K\) = \(2, 3, 2, 2, 2\)"),
    "M of weights": (replaced(3, torch.rand(2, 3, 1, 2, 2)), r"attention_weights must have shape .* got \(2, 3, 1, 2, 2\)"),
    "K of weights": (replaced(3, torch.rand(2, 3, 2, 2, 3)), r"attention_weights must have shape"),
    # dtypes and devices
    "float64 locations, float32 value": (replaced(2, torch.rand(2, 3, 2, 2, 2, 2, dtype=torch.float64)),
                                         r"attention_weights has dtype torch.float32 but sampling_locations has torch.float64"),
    "float64 locations and weights, float32 value": (
        [torch.randn(2, 30, 2, 4), SHAPES, torch.rand(2, 3, 2, 2, 2, 2, dtype=torch.float64),
         torch.rand(2, 3, 2, 2, 2, dtype=torch.float64)],
        r"value has dtype torch.float32 but sampling_locations torch.float64"),
    "bfloat16 value, float64 locations": (
        [torch.randn(2, 30, 2, 4, dtype=torch.bfloat16), SHAPES, torch.rand(2, 3, 2, 2, 2, 2, dtype=torch.float64),
         torch.rand(2, 3, 2, 2, 2, dtype=torch.float64)],
        r"value has dtype torch.bfloat16 but sampling_locations torch.float64; use one dtype, or float16/bfloat16"),
    "bfloat16 locations, float32 value": (
        replaced(2, torch.rand(2, 3, 2, 2, 2, 2, dtype=torch.bfloat16)),
        r"attention_weights has dtype torch.float32 but sampling_locations has torch.bfloat16"),
    "float64 weights": (replaced(3, torch.rand(2, 3, 2, 2, 2, dtype=torch.float64)), r"attention_weights has dtype"),
    "integer value": (replaced(0, torch.ones(2, 30, 2, 4, dtype=torch.int64)), r"value must be a floating point tensor"),
    "locations on meta": (replaced(2, torch.empty(2, 3, 2, 2, 2, 2, device="meta")),
                          r"sampling_locations is on meta but value is on cpu"),
    "float spatial_shapes": (replaced(1, SHAPES.float()), r"spatial_shapes must be an integer tensor"),
    "bool spatial_shapes": (replaced(1, SHAPES > 0), r"spatial_shapes must be an integer tensor"),
}


@pytest.mark.parametrize("backend", ["einops", "loop"])
@pytest.mark.parametrize("case", list(BAD_CORE_INPUTS), ids=list(BAD_CORE_INPUTS))
def test_bad_core_input_is_a_value_error_naming_the_argument(case, backend):
    args, message = BAD_CORE_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        ms_deform_attn(*args, backend=backend)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match=r"backend must be one of .*'einops'.* got 'tensorflow'"):
        ms_deform_attn(*good(), backend="tensorflow")


def test_cuda_backend_without_a_kernel_says_why():
    usable, reason = cuda_kernel_status()
    if usable:
        pytest.skip("the CUDA kernel is usable here (tests/kernels covers it)")
    assert reason  # the status explains itself
    with pytest.raises(RuntimeError, match=r"backend='cuda' is not available: .+"):
        ms_deform_attn(*good(), backend="cuda")


def module_inputs(n=2, lq=3, c=16):
    return dict(query=torch.randn(n, lq, c), reference_points=torch.rand(n, lq, 2, 2),
                value=torch.randn(n, 30, c), spatial_shapes=SHAPES)


BAD_MODULE_INPUTS = {
    "query channels": ({"query": torch.randn(2, 3, 12)}, r"query has shape \(2, 3, 12\) .*must be 16 \(d_model\)"),
    "query rank": ({"query": torch.randn(3, 16)}, r"query must have 3 dimensions"),
    "value channels": ({"value": torch.randn(2, 30, 8)}, r"value has shape .*must be 16 \(d_model\)"),
    "value batch": ({"value": torch.randn(1, 30, 16)}, r"value .*must be 2 \(N of query\)"),
    "reference last axis 3": ({"reference_points": torch.rand(2, 3, 2, 3)}, r"reference_points must end in 2 .* or 4"),
    "reference levels": ({"reference_points": torch.rand(2, 3, 3, 2)}, r"reference_points .*must be 2 \(n_levels\)"),
    "reference queries": ({"reference_points": torch.rand(2, 4, 2, 2)}, r"reference_points .*must be 3 \(Lq of query\)"),
    "spatial_shapes levels": ({"spatial_shapes": torch.tensor([[5, 6]])}, r"spatial_shapes has 1 levels .*n_levels = 2"),
    "spatial_shapes sum": ({"spatial_shapes": torch.tensor([[5, 6], [3, 2]])}, r"spatial_shapes .*is 36, but value has S = 30"),
    "padding_mask shape": ({"padding_mask": torch.zeros(2, 29, dtype=torch.bool)}, r"padding_mask must have shape \(N, S\) = \(2, 30\)"),
    "padding_mask dtype": ({"padding_mask": torch.zeros(2, 30)}, r"padding_mask must be bool"),
}


@pytest.mark.parametrize("case", list(BAD_MODULE_INPUTS), ids=list(BAD_MODULE_INPUTS))
def test_bad_module_input_is_a_value_error_naming_the_argument(case):
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    change, message = BAD_MODULE_INPUTS[case]
    inputs = module_inputs() | change
    with pytest.raises(ValueError, match=message):
        module(**inputs)


BAD_MODULE_ARGUMENTS = {
    "no heads": (dict(n_heads=0), r"^n_heads must be a positive int, got 0$"),
    "no points": (dict(n_points=0), r"^n_points must be a positive int, got 0$"),
    "no levels": (dict(n_levels=0), r"^n_levels must be a positive int, got 0$"),
    "negative d_model": (dict(d_model=-16), r"^d_model must be a positive int, got -16$"),
    "float heads": (dict(n_heads=2.0), r"^n_heads must be a positive int, got 2.0$"),
    "d_model not divisible": (dict(d_model=30, n_heads=4), r"^d_model \(30\) must be divisible by n_heads \(4\)$"),
    "unknown backend": (dict(backend="nope"), r"^backend must be one of \(.*'einops'.*\), got 'nope'$"),
}


@pytest.mark.parametrize("case", list(BAD_MODULE_ARGUMENTS), ids=list(BAD_MODULE_ARGUMENTS))
def test_bad_module_arguments_are_a_one_line_value_error_at_construction(case):
    change, message = BAD_MODULE_ARGUMENTS[case]
    arguments = dict(d_model=16, n_levels=2, n_heads=2, n_points=2, backend="einops") | change
    with pytest.raises(ValueError, match=message) as error:
        MSDeformAttn(**arguments)
    assert "\n" not in str(error.value)
