"""Every chapter of the book runs top to bottom, in its fast mode, as a test.

The chapters are stored without outputs; here each one is executed by a Jupyter kernel with
DDETR_EDU_FAST=1 and the book folder as working directory. A failing cell fails the test with
the cell's error. Running them needs the ``book`` extra (nbformat, nbclient, a Jupyter kernel);
without it those tests are skipped with the reason, and the checks of the stored files still run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[2] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 240


def test_the_book_has_chapters_in_order():
    numbers = [int(p.name[:2]) for p in CHAPTERS]
    assert numbers, "book/ has no chapters"
    assert numbers == sorted(set(numbers)), f"chapter numbers repeat or skip order: {numbers}"
    assert CHAPTERS[-1].name.endswith("full_training.ipynb") or not any(
        p.name.endswith("full_training.ipynb") for p in CHAPTERS), "full training must be the last chapter"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_is_stored_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    stored = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")]
    assert not stored, f"{path.name}: cells {stored} carry stored outputs; clear them before committing"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_in_fast_mode(path, monkeypatch):
    for module in ("nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(module, reason=f"running the book needs {module}: pip install -e \".[book]\"")
    import nbclient
    import nbformat

    monkeypatch.setenv("DDETR_EDU_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(BOOK)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
