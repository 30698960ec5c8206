"""What the book's tests share: where the chapters are, the site builder that runs them, and each
chapter executed once per test session in fast mode (the chapter tests and the exercise tests read
the same executed notebooks), and the exercise convention read from a chapter's cells."""
from __future__ import annotations

import functools
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[2] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def load_site_builder():
    """book/build_site.py as a module (book/ is not a package): its execute_chapter runs chapters."""
    if "book_build_site" not in sys.modules:
        spec = importlib.util.spec_from_file_location("book_build_site", BOOK / "build_site.py")
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules["book_build_site"]


def needs_book_extra():
    for module in ("nbformat", "nbclient", "ipykernel", "matplotlib_inline"):
        pytest.importorskip(module, reason=f"running the book needs {module}: pip install -e \".[book]\"")


@functools.cache
def run_in_fast_mode(path: Path):
    """(executed notebook or None, the error that stopped it or None): each chapter runs once a session."""
    try:
        return load_site_builder().execute_chapter(path, fast=True), None
    except Exception as error:  # nbclient's CellExecutionError and kin: the tests report it
        return None, error


# ---- the exercise convention (COMMON.md): "## Exercises", then per exercise N.k four cells
EXERCISE = re.compile(r"\*\*Exercise (\d+)\.(\d+)\*\*")


def source(cell) -> str:
    return "".join(cell["source"])


@dataclass
class Exercise:
    chapter: int
    k: int
    task: int        # cell indices: the task (markdown), the reader's answer, the check, the solution
    answer: int
    check: int
    solution: int

    @property
    def label(self) -> str:
        return f"{self.chapter}.{self.k}"


def exercise_section(cells) -> int | None:
    """Index of the markdown cell that starts with "## Exercises" (the last one), or None."""
    found = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and source(c).startswith("## Exercises")]
    return found[-1] if found else None


def exercises(cells) -> list[Exercise]:
    """Every exercise after the "## Exercises" cell: its task cell and the three cells after it."""
    start = exercise_section(cells)
    if start is None:
        return []
    found = []
    for i in range(start + 1, len(cells)):
        m = EXERCISE.match(source(cells[i])) if cells[i]["cell_type"] == "markdown" else None
        if m:
            found.append(Exercise(int(m[1]), int(m[2]), i, i + 1, i + 2, i + 3))
    return found


def convention_problems(cells, chapter: int) -> list[str]:
    """What a chapter's stored cells break of the exercise convention (empty when nothing)."""
    start = exercise_section(cells)
    if start is None:
        return ["no markdown cell starting with '## Exercises'"]
    found = exercises(cells)
    problems = [] if 3 <= len(found) <= 6 else [f"{len(found)} exercises, expected 3 to 6"]
    for k, ex in enumerate(found, start=1):
        where = f"exercise {ex.label} (cell {ex.task})"
        if (ex.chapter, ex.k) != (chapter, k):
            problems.append(f"{where}: expected **Exercise {chapter}.{k}**")
        if ex.solution >= len(cells) or any(cells[i]["cell_type"] != "code" for i in (ex.answer, ex.check, ex.solution)):
            problems.append(f"{where}: not followed by three code cells (answer, check, solution)")
            continue
        answer, check, solution = (cells[i] for i in (ex.answer, ex.check, ex.solution))
        call = f"check_{ex.chapter}_{ex.k}("
        if "None" not in source(answer) or call in source(answer):
            problems.append(f"{where}: the answer cell should hold None and no check")
        if call not in source(check):
            problems.append(f"{where}: the check cell does not call {call}...)")
        metadata = solution.get("metadata", {})
        if "solution" not in metadata.get("tags", []) or not metadata.get("jupyter", {}).get("source_hidden"):
            problems.append(f"{where}: the solution cell is not tagged 'solution' and hidden")
        if call not in source(solution):
            problems.append(f"{where}: the solution does not call {call}...)")
    if found and found[-1].solution != len(cells) - 1:
        problems.append("cells follow the last exercise's solution: the exercises end the chapter")
    between = [i for i in range(start + 1, found[0].task if found else len(cells)) if cells[i]["cell_type"] == "markdown"]
    if between:
        problems.append(f"cells {between}: markdown between '## Exercises' and the first exercise")
    return problems


def printed(cell) -> str:
    """What an executed code cell wrote to stdout."""
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
