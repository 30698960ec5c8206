"""Multi-scale deformable attention: the core operator, its backends and the module.

- ``ms_deform_attn``: the core (sampling + weighted sum) with backends "einops" (readable),
  "loop" (teaching oracle), "grid_sample" (the original reference formulation), "cuda"
  (optional kernel, see ``kernels/``) and "auto".
- ``MSDeformAttn``: projections, offsets, attention weights around the core.
"""
from .bilinear import bilinear_corners
from .cuda_backend import kernel_status as cuda_kernel_status  # (usable, reason)
from .dispatch import BACKENDS, ms_deform_attn
from .levels import LevelSizes, level_sizes, level_start_index, level_starts
from .msdeformattn import MSDeformAttn, star_offsets

__all__ = ["BACKENDS", "LevelSizes", "MSDeformAttn", "bilinear_corners", "cuda_kernel_status", "level_sizes",
           "level_start_index", "level_starts", "ms_deform_attn", "star_offsets"]
