"""One training run per folder: ``run.lock``, held with ``fcntl.flock`` while the run lives.

Two runs writing into one ``--out`` would interleave their logs and overwrite each other's
checkpoints. So a run (rank 0) first takes an exclusive, non-blocking ``flock`` on
``<run_dir>/run.lock`` and writes into it who holds it: ``{"pid", "host", "started"}``. A
second run finds the lock taken and stops with :class:`RunFolderBusy`, a one-line message
naming the holder. The operating system releases a ``flock`` when its process ends, however it
ends (a crash, ``kill -9``), so a lock file left behind by a dead run is simply taken over; the
run that takes it says so in one line, naming the run that left it.

The lock file is removed when the run ends (while still locked). A run that opened the old file
just before that holds a lock on a file that no longer has a name; it notices (the inode under
the name differs from its own) and tries again, so two runs never both believe they hold it.
On a system without ``fcntl`` (Windows) nothing is locked.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK = "run.lock"


class RunFolderBusy(ValueError):
    """Another live run holds the folder's lock; the message names it (pid, host, start time)."""


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a run that has not written its name yet"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def _read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", errors="replace")
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) else None


@dataclass
class RunLock:
    """The held lock of ``path``; :meth:`release` (or leaving a ``with`` block) gives it up."""

    path: Path
    fd: int | None
    taken_over: dict[str, Any] | None = None  # who held the lock file before us (a run that is gone)

    @property
    def takeover_message(self) -> str | None:
        """One line when the lock was left by a run that is gone, else None."""
        if self.taken_over is None:
            return None
        return f"{self.path}: took over the lock left by a run that is gone ({_holder_text(self.taken_over)})"

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still locked: nobody takes the name in between
        finally:
            os.close(self.fd)  # releases the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def busy_message(run_dir: str | os.PathLike) -> str | None:
    """The :class:`RunFolderBusy` message when a live run holds ``run_dir``'s lock, else None
    (a check before starting; :func:`acquire_run_lock` is what makes it sure)."""
    path = Path(run_dir) / LOCK
    if fcntl is None or not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _busy(path, _read_holder(fd))
    finally:
        os.close(fd)  # also releases the shared lock just taken
    return None


def _busy(path: Path, holder: dict[str, Any] | None) -> str:
    return (f"{path.parent} is in use by another run ({_holder_text(holder)}); wait for it to end, or choose "
            f"another --out")


def acquire_run_lock(run_dir: str | os.PathLike, attempts: int = 5) -> RunLock:
    """Lock ``run_dir`` (created if missing) for this process; :class:`RunFolderBusy` when a live
    run holds it."""
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return RunLock(path, None)
    for _ in range(attempts):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderBusy(_busy(path, holder)) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # its holder removed it as we locked it
            same_file = False
        if not same_file:
            os.close(fd)
            continue
        left_by = _read_holder(fd) if os.fstat(fd).st_size else None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
        return RunLock(path, fd, taken_over=left_by or None)
    raise RunFolderBusy(f"{path}: could not take the lock after {attempts} tries (other runs keep "
                        f"starting and ending in {path.parent}); choose another --out")


__all__ = ["LOCK", "RunFolderBusy", "RunLock", "busy_message", "acquire_run_lock"]
