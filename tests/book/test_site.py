"""`make book`'s site builder (book/build_site.py): the index, the navigation and the embedded figures.

The site is built in fast mode from two tiny synthetic chapters in a temporary folder, so that the
test takes seconds; the real chapters are only read (their titles and README lines).
"""
from __future__ import annotations

import json
import re

import pytest

from test_chapters import BOOK, CHAPTERS, load_site_builder, needs_book_extra

SITE = load_site_builder()


def tiny_chapter(title: str, colour: str) -> dict:
    """A notebook with a heading, a figure cell that reads DDETR_EDU_FAST, and its caption."""
    def cell(kind, source, **extra):
        return {"cell_type": kind, "metadata": {}, "source": source, **extra}
    plot = ("import os\nimport matplotlib.pyplot as plt\n"
            "print('fast=' + os.environ.get('DDETR_EDU_FAST', ''))\n"
            f"plt.plot([0, 1], [1, 0], color='{colour}')\nplt.show()")
    return {"nbformat": 4, "nbformat_minor": 4,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [cell("markdown", f"# {title}\n\nA chapter."),
                      cell("code", plot, execution_count=None, outputs=[]),
                      cell("markdown", f"**Figure {title[0]}.1** A line.")]}


def test_every_chapter_has_a_line_in_the_book_readme():
    described = SITE.readme_descriptions(BOOK / "README.md")
    missing = [p.stem for p in CHAPTERS if not described.get(p.stem)]
    assert not missing, f"book/README.md's table has no description for {missing}"


def test_site_has_an_index_navigation_and_embedded_figures(tmp_path):
    needs_book_extra()
    pytest.importorskip("nbconvert", reason="rendering the book needs nbconvert: pip install -e \".[book]\"")
    book = tmp_path / "book"
    book.mkdir()
    paths = []
    for name, title, colour in (("01_first", "1. First", "red"), ("02_second", "2. Second", "blue")):
        paths.append(book / f"{name}.ipynb")
        paths[-1].write_text(json.dumps(tiny_chapter(title, colour)))
    (book / "README.md").write_text("| chapter | what it covers |\n|---|---|\n"
                                    "| [01_first](01_first.ipynb) | The first `idea`. |\n"
                                    "| [02_second](02_second.ipynb) | The second idea. |\n")

    pages = SITE.build_site(paths, tmp_path / "site", fast=True)

    index, first, second = (page.read_text() for page in pages)
    assert [p.name for p in pages] == ["index.html", "01_first.html", "02_second.html"]
    assert 'href="01_first.html"' in index and 'href="02_second.html"' in index
    assert "The first <code>idea</code>." in index and "The second idea." in index
    assert 'rel="next" href="02_second.html"' in first and 'rel="prev"' not in first
    assert 'rel="prev" href="01_first.html"' in second and 'rel="next"' not in second
    for page in (first, second):
        assert page.count('rel="index" href="index.html"') == 2, "navigation at the top and the bottom"
        assert re.search(r'<img[^>]+src="data:image/png;base64,', page), "the figure is embedded"
        assert "fast=1" in page, "fast mode sets DDETR_EDU_FAST=1"


def test_site_builder_refuses_an_empty_chapter_list(tmp_path):
    with pytest.raises(ValueError, match="paths"):
        SITE.build_site([], tmp_path, fast=True)
