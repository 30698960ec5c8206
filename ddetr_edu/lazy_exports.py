"""Package attributes that import their submodule on first use (PEP 562 ``__getattr__``).

    __getattr__ = lazy_exports(__name__, {"SamplingRecorder": "recording", ...})

keeps ``import ddetr_edu.viz`` cheap (no matplotlib) while ``ddetr_edu.viz.SamplingRecorder``
still works.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves ``name`` from ``package.<table[name]>``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["lazy_exports"]
