"""FrozenBatchNorm2d: batch normalisation whose statistics and affine are constants.

A detector is trained with 2 images per GPU; BatchNorm statistics from such tiny batches are
noise, so (as in DETR and Deformable DETR) the ImageNet statistics are frozen and BatchNorm becomes
a fixed per-channel affine map:

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias,      eps = 1e-5

All four tensors are *buffers*, not parameters: they are saved in the state dict (under the same
names as ``nn.BatchNorm2d``) but the optimiser never sees them. ``num_batches_tracked`` has no
meaning here and is dropped when a ``BatchNorm2d`` state dict (e.g. torchvision's) is loaded.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class FrozenBatchNorm2d(nn.Module):
    """Per-channel affine map built from frozen BatchNorm statistics; input/output (N, C, H, W)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        # identity map until real statistics are loaded
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # a BatchNorm2d state dict carries a step counter that a frozen layer does not need
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H, W)
        # fold the four constants into one scale and one shift per channel:
        # scale = weight * rsqrt(var + eps),  shift = bias - mean * scale,  y = x * scale + shift
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # (C,)
        shift = self.bias - self.running_mean * scale  # (C,)
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"
