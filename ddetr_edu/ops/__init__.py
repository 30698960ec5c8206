"""Multi-scale deformable attention: the core operator, its backends and the module.

- ``ms_deform_attn``: the core (sampling + weighted sum) with backends "einops" (readable),
  "loop" (teaching oracle), "grid_sample" (the original reference formulation), "cuda"
  (the optional kernel, sources in ``csrc/``, see ``kernels/README.md``), "cpu" (the same
  kernel arithmetic compiled for the CPU), "triton" (the same arithmetic as Triton kernels, no
  build step; ``triton_kernels.py``) and "auto".
- ``MSDeformAttn``: projections, offsets, attention weights around the core.
- ``Levels``: the level sizes and starts of the flattened token axis, as Python ints.
"""
from .bilinear import bilinear_corners
from .cpu_backend import kernel_status as cpu_kernel_status  # (usable, reason); builds on first call
from .cuda_backend import kernel_status as cuda_kernel_status  # (usable, reason)
from .dispatch import BACKENDS, ms_deform_attn
from .levels import Levels, level_start_index
from .msdeformattn import MSDeformAttn, star_offsets
from .triton_backend import triton_status  # (usable, reason)

__all__ = ["BACKENDS", "Levels", "MSDeformAttn", "bilinear_corners", "cpu_kernel_status", "cuda_kernel_status",
           "level_start_index", "ms_deform_attn", "star_offsets", "triton_status"]
