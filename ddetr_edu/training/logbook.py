"""The run's logbook: one JSON object per line (``log.jsonl``).

Each line is a record with a ``kind``:

* ``{"kind": "train", "epoch", "step", "global_step", "lr", "loss", <loss terms>...}`` every
  ``log_every`` steps, each term the mean over the steps since the previous line;
* ``{"kind": "epoch", "epoch", "train_loss", "seconds", ...}`` at the end of each epoch;
* ``{"kind": "eval", "epoch", "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"}`` after evaluation.

Appending one line at a time keeps every complete line valid after a crash; a process killed
mid-write can leave a partial last line, which reading drops with a warning naming the file. A
resumed run keeps the records written up to its checkpoint (``records=`` below) and appends; so
the log of an interrupted and resumed run holds each step, epoch and evaluation once. Its curves
as pictures: :mod:`ddetr_edu.viz.curves`.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from ddetr_edu.disk_full import disk_full_error

AP_KEYS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")


class Logbook:
    """Append-only JSONL log at ``path`` (its folder is created).

    ``records``: the file starts with exactly these (``[]``: a new, empty log; a resumed run: the
    records its checkpoint had seen); ``None``: the records already in the file are kept.
    ``count`` is the number of records in the file.
    """

    def __init__(self, path: str | Path, enabled: bool = True, records: list[dict[str, Any]] | None = None):
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero ranks: they log nothing
        self.count = 0
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = read_log(self.path) if records is None else records
            self.count = len(kept)
            _rewrite(self.path, kept)  # also ends the file cleanly after a partial last line

    def write(self, kind: str, **values: Any) -> None:
        """Append ``{"kind": kind, **values}`` as one line (floats that are not finite become null);
        a full disk is a :class:`~ddetr_edu.disk_full.DiskFullError` (the partial line removed)."""
        if not self.enabled:
            return
        record = {"kind": kind, **{k: _jsonable(v) for k, v in values.items()}}
        line = (json.dumps(record) + "\n").encode("utf-8")
        with self.path.open("ab", buffering=0) as file:  # unbuffered: each write is one system call
            size = file.tell()
            try:
                done = 0
                while done < len(line):
                    done += file.write(line[done:])
            except OSError as error:  # a full disk: cut the partial line off again
                file.truncate(size)
                full = disk_full_error(error, self.path, f"its {self.count} complete records are intact")
                if full is not None:
                    raise full from None
                raise
        self.count += 1

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every record (of one ``kind``), in order."""
        return read_log(self.path, kind)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # 0-d tensors and numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """``path`` holds exactly ``records``, one per line (written to a temporary file, then renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    except OSError as error:
        tmp.unlink(missing_ok=True)
        full = disk_full_error(error, path, f"{path.name} is unchanged")
        if full is not None:
            raise full from None
        raise
    os.replace(tmp, path)


def read_log(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Parse ``log.jsonl``; ``kind`` keeps only records of that kind. A missing file gives [].

    A partial last line (a process killed mid-write) is dropped with a warning; any other line
    that is not JSON is a ValueError naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                warnings.warn(f"{path}: dropped its partial last line {number} (a process stopped while "
                              f"writing it)", stacklevel=2)
                break
            raise ValueError(f"{path}, line {number}: not a JSON record ({error})") from None
    return [r for r in records if kind is None or r.get("kind") == kind]


__all__ = ["AP_KEYS", "Logbook", "read_log"]
