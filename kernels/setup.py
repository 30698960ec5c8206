"""Ahead-of-time build of the ddetr-edu CUDA kernel (optional; without it the kernel is built on
first use). Needs a CUDA build of torch and the matching CUDA toolkit (nvcc); torch must be the one
already installed, hence:

    pip install --no-build-isolation ./kernels

Choose the GPU architectures with TORCH_CUDA_ARCH_LIST, e.g. TORCH_CUDA_ARCH_LIST="8.0;9.0".
It installs one module, ``ddetr_edu_msda_cuda``, which ``ddetr_edu.ops.cuda_backend`` imports first.
The sources are the package's own, ``ddetr_edu/ops/csrc/`` (the ones the first-use build compiles).
"""
from pathlib import Path

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension

CSRC = Path(__file__).resolve().parents[1] / "ddetr_edu" / "ops" / "csrc"

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
