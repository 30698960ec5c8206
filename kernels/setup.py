"""Ahead-of-time build of the ddetr-edu CUDA kernel (optional; without it the kernel is built on
first use). Needs a CUDA build of torch and the matching CUDA toolkit (nvcc); torch must be the one
already installed, hence:

    pip install --no-build-isolation ./kernels

Choose the GPU architectures with TORCH_CUDA_ARCH_LIST, e.g. TORCH_CUDA_ARCH_LIST="8.0;9.0".
It installs one module, ``ddetr_edu_msda_cuda``, which ``ddetr_edu.ops.cuda_backend`` imports first.
The sources are the package's own, ``ddetr_edu/ops/csrc/`` (the ones the first-use build compiles).
Where torch is a CPU build or nvcc is missing it stops at once with one line saying which.
"""
import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

CSRC = Path(__file__).resolve().parents[1] / "ddetr_edu" / "ops" / "csrc"


def _nvcc() -> str | None:
    """nvcc where torch's extension builder looks: $CUDA_HOME (or $CUDA_PATH), PATH, /usr/local/cuda."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [Path(home, "bin", "nvcc")] if home else [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    return next((str(c) for c in candidates if c and Path(c).is_file()), None)


def missing_for_a_cuda_build() -> list[str]:
    """What building the kernel needs and this environment lacks (empty: everything is there)."""
    try:
        import torch
    except ImportError:
        return ["torch (install ddetr-edu first: --no-build-isolation builds against the installed torch)"]
    missing = []
    if torch.version.cuda is None:
        missing.append(f"a CUDA build of torch (the installed torch {torch.__version__} is CPU-only)")
    if _nvcc() is None:
        missing.append("nvcc from the CUDA toolkit (put it on PATH or set CUDA_HOME)")
    return missing


_missing = missing_for_a_cuda_build()
if _missing:
    sys.exit("ddetr-edu kernel: cannot build the CUDA kernel, missing " + " and ".join(_missing)
             + "; ddetr-edu runs without it (the other backends)")

from torch.utils.cpp_extension import BuildExtension, CUDAExtension  # noqa: E402  (needs CUDA torch)

setup(
    name="ddetr-edu-msda-cuda",
    version="0.1.0",
    description="CUDA kernel of multi-scale deformable attention for ddetr-edu",
    ext_modules=[
        CUDAExtension(
            name="ddetr_edu_msda_cuda",
            sources=[str(CSRC / "msda_binding.cpp"), str(CSRC / "msda_kernel.cu")],
            include_dirs=[str(CSRC)],
            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]},
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
