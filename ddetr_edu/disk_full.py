"""A full disk (or an exhausted quota) while writing a run's files, told in one line.

``torch.save`` into a full disk fails with ``OSError: [Errno 28] No space left on device`` from
the file's ``write``, and then, while its zip writer is torn down, with a second error
(``RuntimeError: [enforce fail at inline_container.cc] ... unexpected pos``) that hides the first
one in its ``__context__``. :func:`disk_full_cause` looks through that chain; the writers of
checkpoints and logs raise :class:`DiskFullError` instead, which names the file and says that
the previous version of it is intact. The command line prints it as one line and exits with 1.
"""
from __future__ import annotations

import errno
import os

DISK_FULL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


class DiskFullError(OSError):
    """The disk (or the user's quota) is full; the message names the file being written.
    ``str()`` is the message alone (no "[Errno 28]" prefix)."""

    def __str__(self) -> str:
        return str(self.strerror)


def disk_full_cause(error: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT ``OSError`` in ``error``'s chain (itself, its cause or context), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        if "No space left on device" in str(current):  # a wrapper that kept only the text
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        current = current.__cause__ or current.__context__
    return None


def disk_full_error(error: BaseException, path: str | os.PathLike, kept: str) -> DiskFullError | None:
    """A :class:`DiskFullError` for a failed write of ``path`` when ``error`` comes from a full
    disk (else None); ``kept`` says what is left intact."""
    cause = disk_full_cause(error)
    if cause is None:
        return None
    return DiskFullError(cause.errno, f"{DISK_FULL_ERRNOS[cause.errno]} while writing {os.fspath(path)}; {kept}")


__all__ = ["DISK_FULL_ERRNOS", "DiskFullError", "disk_full_cause", "disk_full_error"]
