"""Peak host memory of a piece of code, from the kernel's own accounting.

Linux keeps the high-water mark of a process's resident memory (VmHWM in /proc/self/status);
writing "5" to /proc/self/clear_refs resets it to the current resident size. The peak of a call
is then VmHWM after it minus VmRSS before it. Large tensors are mmap-ed and returned to the
system when freed, so this follows the tensors that are alive, provided glibc's adaptive mmap
threshold is fixed first (``fix_mmap_threshold``): otherwise, after the first large free, blocks
are served from the heap and kept, and a later peak reads low. Fixing it also makes every large
allocation a fresh mmap, which slows code with many temporaries: measure memory in a separate
process from time. It needs Linux.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def fix_mmap_threshold(bytes_: int = 128 * 1024) -> None:
    """Blocks of at least ``bytes_`` are always mmap-ed, so freeing them returns the memory."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, bytes_)
    except (OSError, AttributeError) as err:
        raise RuntimeError(f"peak memory needs glibc's mallopt: {err}") from err

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in {_STATUS}")


def available() -> bool:
    return _STATUS.exists() and _CLEAR.exists()


class PeakMemory:
    """with PeakMemory() as peak: ...; then peak.mib is the peak extra resident memory."""

    def __enter__(self):
        _CLEAR.write_text("5")
        self.start_kib = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        self.mib = max(_status_kib("VmHWM") - self.start_kib, 0) / 1024
        return False
