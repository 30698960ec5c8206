"""Every chapter of the book runs top to bottom, in its fast mode, and shows the figures it names.

The chapters are stored without outputs; here each one is executed once (a module-scoped fixture)
by a Jupyter kernel with DDETR_EDU_FAST=1, the inline matplotlib backend and the book folder as
working directory, by the function `make book` uses (book/build_site.py). A failing cell fails
the test with the cell's error. The executed notebook is then checked against the figure
convention: a markdown cell starting with ``**Figure N.k**`` (N = the chapter's number, k = 1, 2,
... in order) follows the code cell that output the figure, and every "Figure N.k" the text names
has its caption. The chapters of FULL_MODE_CHAPTERS (about a minute or less in full mode) also run in full
mode. Running them needs the ``book`` extra (nbformat, nbclient, a Jupyter kernel); without it
those tests are skipped with the reason, and the checks of the stored files still run.
"""
from __future__ import annotations

import json
import re

import pytest

from book_helpers import BOOK, CHAPTERS, load_site_builder, needs_book_extra, run_in_fast_mode
# Chapters whose full mode takes under about a minute on 2 quiet cores (chapter 11's full mode
# trains its live rerun for minutes and runs in fast mode only; `make book` runs every chapter in full mode).
FULL_MODE_CHAPTERS = ["02_bilinear_sampling.ipynb", "07_matching_losses.ipynb", "09_kernel.ipynb",
                      "10_what_the_model_looks_at.ipynb"]
CAPTION = re.compile(r"\*\*Figure (\d+)\.(\d+)\*\*")
MENTION = re.compile(r"Figure (\d+)\.(\d+)")
IMAGE_TYPES = ("image/png", "image/gif", "image/svg+xml", "image/jpeg")


def captions(cells) -> list[tuple[int, int, int]]:
    """(cell index, N, k) of every markdown cell that starts with **Figure N.k**."""
    found = []
    for i, cell in enumerate(cells):
        m = CAPTION.match("".join(cell["source"])) if cell["cell_type"] == "markdown" else None
        if m:
            found.append((i, int(m[1]), int(m[2])))
    return found


def stored_captions() -> set[tuple[int, int]]:
    """(N, k) of every caption in the stored chapters: what a chapter may name of another one."""
    return {(n, k) for p in CHAPTERS for _, n, k in captions(json.loads(p.read_text())["cells"])}


def shows_an_image(cell) -> bool:
    return cell["cell_type"] == "code" and any(
        kind in output.get("data", {}) for output in cell.get("outputs", []) for kind in IMAGE_TYPES)


def figure_problems(cells, chapter: int) -> list[str]:
    """What an executed chapter's cells break of the figure convention (empty when nothing)."""
    found = captions(cells)
    problems = [] if found else ["no **Figure N.k** caption at all"]
    for k, (i, n, k_found) in enumerate(found, start=1):
        if (n, k_found) != (chapter, k):
            problems.append(f"cell {i}: caption Figure {n}.{k_found}, expected Figure {chapter}.{k}")
        if i == 0 or not shows_an_image(cells[i - 1]):
            problems.append(f"cell {i}: the code cell before Figure {n}.{k_found} output no image")
    named = {(int(n), int(k)) for c in cells if c["cell_type"] == "markdown"
             for n, k in MENTION.findall("".join(c["source"]))}
    here = {(n, k) for _, n, k in found}
    elsewhere = stored_captions()
    for n, k in sorted(named):
        if (n, k) not in (here if n == chapter else elsewhere):
            problems.append(f"the text names Figure {n}.{k}, which has no caption")
    return problems


def test_the_book_has_chapters_in_order():
    numbers = [int(p.name[:2]) for p in CHAPTERS]
    assert numbers, "book/ has no chapters"
    assert numbers == sorted(set(numbers)), f"chapter numbers repeat or skip order: {numbers}"
    assert CHAPTERS[-1].name.endswith("full_training.ipynb") or not any(
        p.name.endswith("full_training.ipynb") for p in CHAPTERS), "full training must be the last chapter"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_opens_with_its_numbered_title(path):
    """The first line is ``# Chapter N: title`` with N the file's number (the site's index and
    every page show it)."""
    first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    heading = "".join(first["source"]).splitlines()[0]
    assert re.fullmatch(rf"# Chapter {int(path.name[:2])}: \S.*", heading), f"{path.name}: {heading!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_is_stored_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    stored = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")]
    assert not stored, f"{path.name}: cells {stored} carry stored outputs; clear them before committing"


@pytest.fixture(scope="module", params=CHAPTERS, ids=[p.stem for p in CHAPTERS])
def fast_run(request):
    """(path, executed notebook or None, the error that stopped it or None), once per chapter and
    session (book_helpers.run_in_fast_mode: the exercise tests read the same run)."""
    needs_book_extra()
    return (request.param, *run_in_fast_mode(request.param))


def test_chapter_runs_in_fast_mode(fast_run):
    path, _, error = fast_run
    assert error is None, f"{path.name} fails in fast mode: {error}"


def test_chapter_shows_the_figures_its_text_names(fast_run):
    path, nb, error = fast_run
    if error is not None:
        pytest.fail(f"{path.name} did not run in fast mode (see test_chapter_runs_in_fast_mode)")
    problems = figure_problems(nb.cells, int(path.name[:2]))
    assert not problems, f"{path.name} (fast mode): " + "; ".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_MODE_CHAPTERS)
def test_chapter_runs_in_full_mode_with_its_figures(name):
    needs_book_extra()
    path = BOOK / name
    nb = load_site_builder().execute_chapter(path, fast=False)
    problems = figure_problems(nb.cells, int(path.name[:2]))
    assert not problems, f"{path.name} (full mode): " + "; ".join(problems)


def test_figure_check_names_each_breach_of_the_convention():
    def md(text):
        return {"cell_type": "markdown", "source": text}

    def code(*kinds):
        return {"cell_type": "code", "source": "", "outputs": [{"output_type": "display_data",
                                                             "data": {k: "" for k in kinds}}]}
    good = [md("# 4."), code("image/png", "text/plain"), md("**Figure 4.1** A map, see Figure 4.2."),
            code("image/gif"), md("**Figure 4.2** A film.")]
    assert figure_problems(good, 4) == []
    assert figure_problems(good, 5)[0].startswith("cell 2: caption Figure 4.1, expected Figure 5.1")
    no_image = good[:3] + [code("text/plain")] + good[4:]
    assert figure_problems(no_image, 4) == ["cell 4: the code cell before Figure 4.2 output no image"]
    skipped = good[:4] + [md("**Figure 4.3** A film.")]
    assert figure_problems(skipped, 4) == ["cell 4: caption Figure 4.3, expected Figure 4.2",
                                           "the text names Figure 4.2, which has no caption"]
    assert figure_problems([md("# 4."), code("image/png")], 4) == ["no **Figure N.k** caption at all"]
