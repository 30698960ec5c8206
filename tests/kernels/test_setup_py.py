"""``kernels/setup.py`` (the ahead-of-time build) on a machine that cannot build the kernel: one
line saying what is missing and a non-zero exit, not setuptools' "CUDA_HOME is not set" traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SETUP = Path(__file__).resolve().parents[2] / "kernels" / "setup.py"


def run_setup(tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_HOME=str(tmp_path / "no_cuda"))  # a CUDA_HOME without nvcc
    env.pop("CUDA_PATH", None)
    return subprocess.run([sys.executable, str(SETUP), "build_ext", "--build-temp", str(tmp_path / "build")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


def test_without_nvcc_it_says_so_in_one_line(tmp_path):
    result = run_setup(tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot build the CUDA kernel, missing" in lines[0] and "nvcc" in lines[0] and "CUDA_HOME" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.version.cuda is not None, reason="torch here is a CUDA build")
def test_a_cpu_only_torch_is_named(tmp_path):
    result = run_setup(tmp_path)
    assert result.returncode != 0
    assert f"a CUDA build of torch (the installed torch {torch.__version__} is CPU-only)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
