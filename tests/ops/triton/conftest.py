"""The Triton kernels on CPU tensors, under Triton's interpreter.

``triton.jit`` reads ``TRITON_INTERPRET`` when a kernel is decorated, so the variable is set while
``ddetr_edu.ops.triton_kernels`` is imported here, at collection, before any test runs, and then
restored: Inductor and other Triton users in the same pytest process are not switched to the
interpreter. (Triton's own ``@jit`` helpers such as ``tl.zeros`` and ``tl.sum`` were decorated
for the GPU when torch imported Triton; the kernels avoid them, see ``triton_kernels.py``.) The
tests skip (with the reason) only when Triton is not installed.
"""
from __future__ import annotations

import os

import pytest

from ddetr_edu.ops import triton_backend

_previous = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
try:
    TRITON_USABLE, TRITON_REASON = triton_backend.triton_status()  # imports the kernels, interpreted
finally:
    if _previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _previous


@pytest.fixture(autouse=True)
def triton_interpreter():
    """Skip without Triton; fail if the kernels were imported before the interpreter was set."""
    if not TRITON_USABLE:
        pytest.skip(f"Triton unavailable: {TRITON_REASON}")
    assert triton_backend.interpreted(), (
        "ddetr_edu.ops.triton_kernels was imported before this conftest set TRITON_INTERPRET=1")
