"""Peak host memory of a piece of code, from the kernel's own accounting.

Linux keeps the high-water mark of a process's resident memory (VmHWM in /proc/self/status);
writing "5" to /proc/self/clear_refs resets it to the current resident size. The peak of a call
is then VmHWM after it minus VmRSS before it. Large tensors are mmap-ed and returned to the
system when freed, so this follows the tensors that are alive. It needs Linux.
"""
from __future__ import annotations

from pathlib import Path

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
