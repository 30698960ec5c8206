"""The pages around the chapters: "before you start" (front matter) and the glossary and cheat
sheet (back matter). Stored without outputs, run in fast mode, and say what the issue asked for."""
from __future__ import annotations

import json
import re

import pytest

from test_chapters import BOOK, load_site_builder, needs_book_extra

SITE = load_site_builder()
PAGES = [BOOK / name for name in SITE.FRONT_MATTER + SITE.BACK_MATTER]
README = BOOK.parent / "README.md"


def text(path) -> str:
    """Every cell's source of a stored notebook, one string."""
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])


@pytest.mark.parametrize("path", PAGES, ids=[p.stem for p in PAGES])
def test_page_is_stored_without_outputs_and_reads_the_fast_flag(path):
    cells = json.loads(path.read_text())["cells"]
    assert not [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")]
    first_code = next("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert 'FAST = os.environ.get("DDETR_EDU_FAST", "0") == "1"' in first_code


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES, ids=[p.stem for p in PAGES])
def test_page_runs_in_fast_mode(path):
    needs_book_extra()
    nb = SITE.execute_chapter(path, fast=True)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    if path.stem == "cheat_sheet":
        tables = [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                  if "text/markdown" in o.get("data", {})]
        assert len(tables) == 1 and "| `memory` | N S C | (2, " in tables[0] and "`pred_boxes`" in tables[0]
        assert all(line.count(" | ") == 3 for line in tables[0].splitlines()[2:]), "a | inside a cell"
    else:
        assert "== nn.MultiheadAttention" in printed and "best of 120 tries" in printed


def test_before_you_start_points_to_each_prerequisite():
    page = text(BOOK / "before_you_start.ipynb")
    for prerequisite in ("## 1. Multi-head attention", "## 2. einops in one page", "## 3. The Hungarian algorithm"):
        section = page.split(prerequisite)[1].split("\n## ")[0]
        assert "**Read more.**" in section, f"{prerequisite}: no pointer to read more"
    for function in ("rearrange", "reduce", "repeat", "einsum"):
        assert f"`{function}(" in page, f"the einops primer lacks {function}"


def test_cheat_sheet_has_the_axis_letters_and_both_sets_of_numbers():
    page = text(BOOK / "cheat_sheet.ipynb")
    letters = re.findall(r"^\| `(\w)`(?:, `(\w)`)? \|", page, re.M)
    assert {x for pair in letters for x in pair if x} == set("nqsmlkdchw")
    # the paper's Table 1 and the official repository's released checkpoints, side by side
    for paper, released in (("43.8", "44.5"), ("45.4", "46.2"), ("46.2", "46.9")):
        assert re.search(rf"\| {re.escape(paper)} \| {re.escape(released)} \|", page), (paper, released)
    assert "total batch of 32" in page and "total batch of 16" in page


def test_the_readme_sends_the_axis_glossary_to_the_book():
    readme = README.read_text()
    assert "book/cheat_sheet.ipynb" in readme
    assert "| `s` | flattened tokens" not in readme, "the glossary lives in the book, not twice"
