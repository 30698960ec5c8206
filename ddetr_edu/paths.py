"""One-line messages for a path that is not what an option expects: a folder given for a file,
or a file given for a folder (rather than "not found" for a path that exists)."""
from __future__ import annotations

import os
from pathlib import Path


def folder_given_for_file(path: str | os.PathLike, what: str, suffixes: tuple[str, ...] = ()) -> str | None:
    """``"<path> is a folder; expected <what> file (it holds a.pth, b.pth)"`` when ``path`` is a
    folder (the files it holds with one of ``suffixes`` shown, at most 3), else None."""
    path = Path(path)
    if not path.is_dir():
        return None
    inside = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    shown = f" (it holds {', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''})" if inside else ""
    return f"{path} is a folder; expected {what} file{shown}"


def file_given_for_folder(path: str | os.PathLike, what: str) -> str | None:
    """``"<path> is a file; expected <what> folder"`` when ``path`` is an existing non-folder, else None."""
    path = Path(path)
    return f"{path} is a file; expected {what} folder" if path.exists() and not path.is_dir() else None


__all__ = ["folder_given_for_file", "file_given_for_folder"]
