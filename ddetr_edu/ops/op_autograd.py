"""The autograd formula of the attention core's custom ops, shared by the C++ kernel's op
(``cuda_backend.py``, CUDA and CPU) and the Triton kernels' op (``triton_backend.py``).

Both ops take ``(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)``
with the level geometry as Python ints, and each has a backward op of the same inputs plus
``grad_out`` that returns the gradients of value (N, S, M, D), sampling_locations
(N, Lq, M, L, K, 2) and attention_weights (N, Lq, M, L, K). The geometry gets no gradient.
"""
from __future__ import annotations


def register_backward_op(op, backward_op) -> None:
    """Make ``backward_op`` the gradient of the custom op ``op`` (``torch.library.custom_op``)."""

    def setup_context(ctx, inputs, output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = inputs
        ctx.save_for_backward(value, sampling_locations, attention_weights)
        ctx.spatial_shapes, ctx.level_start_index = spatial_shapes, level_start_index

    def backward(ctx, grad_out):
        value, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_loc, grad_attn = backward_op(
            value, ctx.spatial_shapes, ctx.level_start_index, sampling_locations, attention_weights, grad_out)
        needs = ctx.needs_input_grad
        return (grad_value if needs[0] else None, None, None,
                grad_loc if needs[3] else None, grad_attn if needs[4] else None)

    op.register_autograd(backward, setup_context=setup_context)
