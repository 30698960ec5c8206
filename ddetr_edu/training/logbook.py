"""The run's logbook: one JSON object per line (``log.jsonl``).

Each line is a record with a ``kind``:

* ``{"kind": "train", "epoch", "step", "global_step", "lr", "loss", <loss terms>...}`` every
  ``log_every`` steps, each term the mean over the steps since the previous line;
* ``{"kind": "epoch", "epoch", "train_loss", "seconds", ...}`` at the end of each epoch;
* ``{"kind": "eval", "epoch", "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"}`` after evaluation.

Appending one line at a time keeps the file valid after a crash; a resumed run appends to the
same file. Its curves as pictures: :mod:`ddetr_edu.viz.curves`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

AP_KEYS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")


class Logbook:
    """Append-only JSONL log at ``path`` (its folder is created)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero ranks: they log nothing
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **values: Any) -> None:
        """Append ``{"kind": kind, **values}`` as one line (floats that are not finite become null)."""
        if not self.enabled:
            return
        record = {"kind": kind, **{k: _jsonable(v) for k, v in values.items()}}
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

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


def read_log(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Parse ``log.jsonl``; ``kind`` keeps only records of that kind. A missing file gives []."""
    path = Path(path)
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


__all__ = ["AP_KEYS", "Logbook", "read_log"]
