"""`make book`'s site builder (book/build_site.py) and its browser check (book/check_site.py).

One small site is built in fast mode from tiny synthetic chapters in a temporary folder (a
module-scoped fixture, seconds): a chapter with a figure, formulas, a GIF, a widget and a folded
solution, a second one, and one that fails. The tests read its pages; where Chromium and
chromedriver are installed, the browser check opens them too. The real chapters are only read
(their titles and README lines).
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_chapters import BOOK, CHAPTERS, load_site_builder, needs_book_extra

SITE = load_site_builder()
ROOT = BOOK.parent
GIF_CELL = ("import io\nfrom PIL import Image as Picture\nfrom IPython.display import Image, display\n"
            "frames = [Picture.new('RGB', (96, 64), colour) for colour in ('red', 'blue')]\n"
            "buffer = io.BytesIO()\n"
            "frames[0].save(buffer, format='GIF', save_all=True, append_images=frames[1:], duration=200, loop=0)\n"
            "display(Image(data=buffer.getvalue(), format='gif'))")
FORMULAS = ("The cost is $\\mathcal{O}(N_q C^2)$ and\n\n$$\\mathrm{Attn}(q) = \\sum_{k=1}^{K} A_{qk}\\, W x_k,$$\n\n"
            "an inline \\(\\frac{a}{b}\\) too; `echo $HOME` in code stays as it is.")


def cell(kind, source, **extra):
    cell = {"cell_type": kind, "metadata": extra.pop("metadata", {}), "source": source, **extra}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def tiny_chapter(title: str, colour: str, *extra_cells) -> dict:
    """A notebook with a heading, a figure cell that reads DDETR_EDU_FAST, its caption, and ``extra_cells``."""
    plot = ("import os\nimport matplotlib.pyplot as plt\n"
            "print('fast=' + os.environ.get('DDETR_EDU_FAST', ''))\n"
            f"plt.plot([0, 1], [1, 0], color='{colour}')\nplt.show()")
    return {"nbformat": 4, "nbformat_minor": 4,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [cell("markdown", f"# {title}\n\nA chapter."), cell("code", plot),
                      cell("markdown", f"**Figure {title[0]}.1** A line."), *extra_cells]}


OFFLINE_CELLS = (
    cell("markdown", FORMULAS),
    cell("code", GIF_CELL),
    cell("code", "import ipywidgets\nipywidgets.IntSlider(value=3, description='k')"),
    cell("code", "answer = 6 * 7\nprint('solution printed', answer)",
         metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}}),
)
BROKEN_CELLS = (cell("code", "raise ValueError('broken on purpose: no such file data/x.json')"),
                cell("markdown", "Never reached."))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(folder, SiteBuild) of a fast-mode site of three tiny chapters, the last of which fails."""
    needs_book_extra()
    for module in ("nbconvert", "latex2mathml", "ipywidgets", "PIL"):
        pytest.importorskip(module, reason=f"rendering the book needs {module}: pip install -e \".[book]\"")
    root = tmp_path_factory.mktemp("site")
    book = root / "book"
    book.mkdir()
    chapters = (("01_first", "1. First", "red", OFFLINE_CELLS), ("02_second", "2. Second", "blue", ()),
                ("03_broken", "3. Broken", "green", BROKEN_CELLS))
    paths = []
    for name, title, colour, extra in chapters:
        paths.append(book / f"{name}.ipynb")
        paths[-1].write_text(json.dumps(tiny_chapter(title, colour, *extra)))
    (book / "README.md").write_text("| chapter | what it covers |\n|---|---|\n"
                                    "| [01_first](01_first.ipynb) | The first `idea`. |\n"
                                    "| [02_second](02_second.ipynb) | The second idea. |\n")
    lines = []
    build = SITE.build_site(paths, root / "site", fast=True, report=lines.append)
    assert len(lines) == 3 and "FAILED" in lines[2], lines
    return root / "site", build


def test_every_chapter_has_a_line_in_the_book_readme():
    described = SITE.readme_descriptions(BOOK / "README.md")
    missing = [p.stem for p in SITE.book_paths() if not described.get(p.stem)]
    assert not missing, f"book/README.md's table has no description for {missing}"


def test_the_book_pages_are_the_front_matter_the_chapters_and_the_back_matter():
    pages = SITE.book_paths()
    assert pages[len(SITE.FRONT_MATTER):len(pages) - len(SITE.BACK_MATTER)] == CHAPTERS
    assert [p.name for p in pages[:len(SITE.FRONT_MATTER)]] == list(SITE.FRONT_MATTER)
    assert [p.name for p in pages[len(pages) - len(SITE.BACK_MATTER):]] == list(SITE.BACK_MATTER)


@pytest.mark.slow
def test_site_has_an_index_navigation_and_embedded_figures(site):
    folder, build = site
    assert [p.name for p in build.pages] == ["index.html", "01_first.html", "02_second.html", "03_broken.html"]
    index, first, second, _ = (page.read_text() for page in build.pages)
    assert 'href="01_first.html"' in index and 'href="02_second.html"' in index
    assert "The first <code>idea</code>." in index and "The second idea." in index
    assert 'rel="next" href="02_second.html"' in first and 'rel="prev"' not in first
    assert 'rel="prev" href="01_first.html"' in second and 'rel="next" href="03_broken.html"' in second
    for page in (first, second):
        assert page.count('rel="index" href="index.html"') == 2, "navigation at the top and the bottom"
        assert re.search(r'<img[^>]+src="data:image/png;base64,', page), "the figure is embedded"
        assert "fast=1" in page, "fast mode sets DDETR_EDU_FAST=1"
    assert set(build.seconds) == {"01_first", "02_second", "03_broken"}


@pytest.mark.slow
def test_a_failing_chapter_is_written_and_listed_on_the_index(site):
    folder, build = site
    last_line = "ValueError: broken on purpose: no such file data/x.json"
    assert build.failures == {"03_broken": last_line}
    index = (folder / "index.html").read_text()
    assert "1 chapter(s) failed to build" in index and last_line in index
    broken = (folder / "03_broken.html").read_text()
    assert "This chapter failed" in broken and last_line in broken
    assert re.search(r'<img[^>]+src="data:image/png;base64,', broken), "outputs before the failure are kept"
    assert "first" not in build.failures and "This chapter failed" not in (folder / "01_first.html").read_text()


@pytest.mark.slow
def test_pages_read_offline(site):
    folder, _ = site
    first = (folder / "01_first.html").read_text()
    for page in folder.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"https?:", text), f"{page.name} loads a file"
        assert not re.search(r"cdnjs|unpkg|jsdelivr|mathjax|require\.min\.js|mermaid", text, re.I), page.name
    assert first.count("<math") == 3 and 'display="block"' in first
    assert "$$" not in first and "\\(" not in first and "\\frac" not in first
    assert "echo $HOME" in first, "code spans keep their dollars"
    assert re.search(r'<img[^>]+src="data:image/gif;base64,R0lGOD', first), "the GIF is embedded"
    assert "IPython.core.display.Image object" not in first
    assert "widget-view+json" not in first and "widget-state" not in first
    assert "Interactive controls (ipywidgets)" in first and "jupyter lab book/" in first, "the widget's sentence"


@pytest.mark.slow
def test_solution_cells_are_folded(site):
    first = (site[0] / "01_first.html").read_text()
    folded = re.search(r'<details class="solution"><summary>Solution</summary>(.*?)</details>', first, re.S)
    assert folded, "a cell tagged solution is inside <details>"
    assert "answer" in folded[1] and "solution printed" in folded[1]
    assert first.count("<details") == 1


def test_formulas_of_every_page_become_mathml():
    """Every formula of the book converts (a formula latex2mathml cannot read would show as TeX)."""
    pytest.importorskip("latex2mathml", reason="rendering formulas needs latex2mathml: pip install -e \".[book]\"")
    import nbformat

    from site_offline import Formulas

    counts = {}
    for path in SITE.book_paths():
        formulas = Formulas()
        for md in (c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"):
            left = formulas.take_all(md.source)
            prose = re.sub(r"```.*?```|`[^`]*`", "", left, flags=re.S)
            assert "$" not in prose.replace("\\$", "") and "\\(" not in prose, f"{path.name}: {prose[:200]}"
        assert not formulas.errors, f"{path.name}: " + "; ".join(formulas.errors)
        counts[path.stem] = len(formulas.mathml)
    assert sum(counts.values()) > 100, counts


def test_site_builder_refuses_an_empty_chapter_list(tmp_path):
    with pytest.raises(ValueError, match="paths"):
        SITE.build_site([], tmp_path, fast=True)


def test_the_fast_mode_is_read_from_the_environment_too(monkeypatch):
    monkeypatch.setenv("DDETR_EDU_FAST", "1")
    assert SITE.fast_from_environment()
    monkeypatch.setenv("DDETR_EDU_FAST", "0")
    assert not SITE.fast_from_environment()
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for variable in ("FAST=1", "DDETR_EDU_FAST=1", "FAST=0"):
        dry = subprocess.run(["make", "-n", "-o", ".venv/.installed", "book", variable], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        line = next(line for line in dry.splitlines() if "build_site.py" in line)
        assert line.endswith("--fast") == (variable != "FAST=0"), (variable, line)


@pytest.mark.slow
def test_a_chapter_past_its_budget_stops(tmp_path):
    needs_book_extra()
    path = tmp_path / "01_slow.ipynb"
    path.write_text(json.dumps(tiny_chapter("1. Slow", "red", cell("code", "import time\ntime.sleep(120)"))))
    start = time.monotonic()
    with pytest.raises(Exception, match="timed out"):
        SITE.execute_chapter(path, fast=True, timeout_s=600, budget_s=4)
    assert time.monotonic() - start < 100, "the chapter budget, not the cell timeout, stopped it"


def load_checker():
    """book/check_site.py as a module (book/ is not a package)."""
    if "book_check_site" not in sys.modules:
        spec = importlib.util.spec_from_file_location("book_check_site", BOOK / "check_site.py")
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules["book_check_site"]


def test_link_check_names_missing_pages_and_anchors(tmp_path):
    checker = load_checker()
    (tmp_path / "a.html").write_text('<h2 id="there">x</h2>')
    page = tmp_path / "b.html"
    page.write_text("")
    problems, external = checker.link_problems(
        page, ["a.html", "a.html#there", "a.html#gone", "c.html", "#here", "https://arxiv.org/abs/2010.04159"],
        {"here"})
    assert external == 1
    assert problems == ["link 'a.html#gone': no element with id 'gone' in a.html",
                        "link 'c.html': c.html is not in the site"]


@pytest.mark.slow
def test_every_page_in_a_real_browser(site, tmp_path):
    """Headless Chromium: no raw TeX, every image loaded, every link resolves, no network; screenshots."""
    checker = load_checker()
    chromium = checker.find_chromium()
    if chromium is None:
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    reports = checker.check_site(site[0], tmp_path / "shots", chromium)
    assert [r.page for r in reports] == ["01_first.html", "02_second.html", "03_broken.html", "index.html"]
    problems = [f"{r.page}: {p}" for r in reports for p in r.problems]
    assert not problems, problems
    first = reports[0]
    assert first.formulas == 3 and first.images == 2, (first.formulas, first.images)
    assert {p.name for p in first.shots} == {"01_first.png", "01_first.formula.png", "01_first.gif.png",
                                             "01_first.widget.png", "01_first.solution.png"}
    assert all(p.stat().st_size > 200 and p.read_bytes()[:4] == b"\x89PNG" for p in first.shots)


def test_the_browser_check_finds_raw_tex_and_a_broken_image(tmp_path):
    checker = load_checker()
    chromium = checker.find_chromium()
    if chromium is None:
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    site = tmp_path / "site"
    site.mkdir()
    markdown_cell = '<div class="jp-MarkdownCell"><div class="jp-InputArea"><p>cost $N_q$ here</p></div></div>'
    code_cell = '<div class="jp-CodeCell"><div class="jp-InputArea"><span>x = "$$ \\\\frac"</span></div></div>'
    (site / "bad.html").write_text(f'<html><body>{markdown_cell}{code_cell}<img src="missing.png">'
                                   '<a href="gone.html">x</a></body></html>')
    (report,) = checker.check_site(site, tmp_path / "shots", chromium)
    raw = [p for p in report.problems if p.startswith("raw TeX")]
    assert len(raw) == 1 and "cost $N_q$ here" in raw[0], report.problems  # the code cell's source is not text
    assert any(p.startswith("image 0 did not load") for p in report.problems), report.problems
    assert "link 'gone.html': gone.html is not in the site" in report.problems


def test_make_book_exits_non_zero_when_a_chapter_failed(tmp_path, monkeypatch, capsys):
    """main() passes the mode and the budgets on, and exits 1 when build_site reports a failure."""
    book = tmp_path / "book"
    book.mkdir()
    for name in ("01_first.ipynb", "02_second.ipynb"):
        (book / name).write_text(json.dumps(tiny_chapter("1. First", "red")))
    calls = []

    def fake_build(paths, out, fast, timeout_s, budget_s):
        calls.append(([p.name for p in paths], fast, timeout_s, budget_s))
        failures = {"02_second": "ValueError: broken"} if len(calls) == 1 else {}
        return SITE.SiteBuild(pages=[out / "index.html"], failures=failures)

    monkeypatch.setattr(SITE, "build_site", fake_build)
    monkeypatch.setenv("DDETR_EDU_FAST", "1")
    assert SITE.main(["--book", str(book), "--out", str(tmp_path / "site"), "--cell-timeout", "5"]) == 1
    assert "1 of 2 notebook(s) failed: 02_second" in capsys.readouterr().err
    assert calls[0] == (["01_first.ipynb", "02_second.ipynb"], True, 5, SITE.CHAPTER_BUDGET_S)
    monkeypatch.setenv("DDETR_EDU_FAST", "0")
    assert SITE.main(["--book", str(book), "--out", str(tmp_path / "site"), "--only", "2"]) == 0
    assert calls[1] == (["02_second.ipynb"], False, SITE.CELL_TIMEOUT_S, SITE.CHAPTER_BUDGET_S)
    with pytest.raises(SystemExit) as stop:
        SITE.main(["--book", str(tmp_path), "--out", str(tmp_path / "site")])
    assert stop.value.code == 2 and "no notebook" in capsys.readouterr().err
