"""Render the book, executed, as a static HTML site that can be read without running anything.

    python book/build_site.py [--fast] [--out build/book] [--only 02 05]

writes ``index.html`` (the table of contents: each chapter's title and its line from the table in
book/README.md) and one page per chapter, ``NN_name.html``, with links to the previous chapter, the
index and the next chapter at its top and bottom. Every chapter is executed first by a Jupyter
kernel in the book folder, with the inline matplotlib backend so that each figure becomes a PNG
embedded in the page; ``--fast`` sets DDETR_EDU_FAST=1 (seconds per chapter instead of minutes).
`make book` runs this script (`FAST=1 make book` for the fast mode). The tests execute the chapters
with `execute_chapter` below. Needs the ``book`` extra (nbclient, nbconvert, ipykernel).
"""
from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BOOK = Path(__file__).resolve().parent
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
CELL_TIMEOUT_S = 240
README_ROW = re.compile(r"^\|\s*\[(?P<stem>\d\d_[^\]]+)\]\([^)]*\)\s*\|\s*(?P<text>.*?)\s*\|\s*$")
NAV_STYLE = ("<style>nav.book-nav{display:flex;justify-content:space-between;gap:1em;"
             "max-width:1100px;margin:1em auto;padding:0.6em 1em;font:15px sans-serif;"
             "background:#f3f5f8;border-radius:6px}nav.book-nav a{text-decoration:none}</style>")


@dataclass(frozen=True)
class Chapter:
    """One notebook of the book: its file, its title (first heading) and its one-line description."""
    path: Path
    title: str
    description: str

    @property
    def page(self) -> str:
        return self.path.stem + ".html"

    @property
    def name(self) -> str:
        return self.title or self.path.stem


def chapter_paths(book: Path = BOOK) -> list[Path]:
    """The chapters, ``NN_name.ipynb``, in reading order."""
    return sorted(book.glob("[0-9][0-9]_*.ipynb"))


def readme_descriptions(readme: Path) -> dict[str, str]:
    """The chapter table of a book README: ``{stem: description}`` from rows ``| [stem](...) | text |``."""
    if not readme.is_file():
        return {}
    rows = (README_ROW.match(line) for line in readme.read_text().splitlines())
    return {m["stem"]: m["text"] for m in rows if m}


def chapter_title(nb) -> str:
    """The first markdown heading of a notebook, without its '#' marks ('' when there is none)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def execute_chapter(path: Path, fast: bool, timeout_s: int = CELL_TIMEOUT_S):
    """Run a chapter top to bottom in a fresh kernel, the chapter's folder as working directory.

    Returns the executed notebook (nbformat NotebookNode). DDETR_EDU_FAST is "1" or "0"; the inline
    matplotlib backend turns every shown figure into an image/png output. A failing cell raises
    nbclient's CellExecutionError naming the cell and its error.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "DDETR_EDU_FAST": "1" if fast else "0", "MPLBACKEND": INLINE_BACKEND}
    client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)
    return nb


def navigation(chapters: list[Chapter], i: int) -> str:
    """The bar of links of chapter ``i``: previous chapter, contents, next chapter."""
    def link(j: int, rel: str, label: str) -> str:
        if not 0 <= j < len(chapters):
            return "<span></span>"
        return f'<a rel="{rel}" href="{chapters[j].page}">{label.format(html.escape(chapters[j].name))}</a>'
    return (f'<nav class="book-nav">{link(i - 1, "prev", "&larr; {}")}'
            f'<a rel="index" href="index.html">Contents</a>{link(i + 1, "next", "{} &rarr;")}</nav>')


def chapter_page(nb, chapters: list[Chapter], i: int) -> str:
    """An executed notebook as one HTML page, outputs and markdown images embedded, navigation added."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(embed_images=True)
    resources = {"metadata": {"name": chapters[i].title, "path": str(chapters[i].path.parent)}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    nav = navigation(chapters, i)
    body = re.sub(r"(<body[^>]*>)", lambda m: m[1] + NAV_STYLE + nav, body, count=1)
    return body.replace("</body>", nav + "</body>", 1)


def inline_code(text: str) -> str:
    """A line of markdown as HTML text: escaped, with `code` spans kept as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def index_page(chapters: list[Chapter], mode: str) -> str:
    """The table of contents: every chapter's link, title and description."""
    items = "\n".join(
        f'<li><a href="{c.page}">{html.escape(c.name)}</a><p>{inline_code(c.description)}</p></li>'
        for c in chapters)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>The ddetr-edu book</title>"
        "<style>body{max-width:900px;margin:2em auto;font:16px/1.5 sans-serif;padding:0 1em}"
        "li{margin-bottom:0.8em}li p{margin:0.2em 0;color:#444}</style></head><body>\n"
        "<h1>The ddetr-edu book</h1>\n<p>Deformable DETR (Zhu et al., ICLR 2021), one idea per "
        f"chapter; every chapter executed ({html.escape(mode)}) with its outputs and figures.</p>\n"
        f"<ol start=\"0\" style=\"list-style:none;padding:0\">\n{items}\n</ol>\n</body></html>\n")


def build_site(paths: list[Path], out: Path, fast: bool, readme: Path | None = None) -> list[Path]:
    """Execute ``paths`` in order and write the site into ``out``; returns the pages written."""
    import nbformat

    if not paths:
        raise ValueError("build_site: paths is empty; expected at least one chapter notebook")
    descriptions = readme_descriptions(readme or paths[0].parent / "README.md")
    notebooks = [nbformat.read(p, as_version=4) for p in paths]
    chapters = [Chapter(p, chapter_title(nb), descriptions.get(p.stem, ""))
                for p, nb in zip(paths, notebooks)]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, chapter in enumerate(chapters):
        start = time.perf_counter()
        executed = execute_chapter(chapter.path, fast)
        page = out / chapter.page
        page.write_text(chapter_page(executed, chapters, i), encoding="utf-8")
        written.append(page)
        print(f"{chapter.page}: executed and rendered in {time.perf_counter() - start:.0f} s", flush=True)
    index = out / "index.html"
    index.write_text(index_page(chapters, "fast mode" if fast else "full mode"), encoding="utf-8")
    return [index, *written]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/book"), help="folder of the site")
    parser.add_argument("--fast", action="store_true", help="execute with DDETR_EDU_FAST=1")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only these chapter numbers, e.g. 02 05")
    args = parser.parse_args(argv)
    paths = chapter_paths()
    if args.only:
        paths = [p for p in paths if p.name[:2] in {n.zfill(2) for n in args.only}]
        if not paths:
            parser.error(f"--only {' '.join(args.only)}: no such chapter in {BOOK}")
    pages = build_site(paths, args.out, args.fast)
    print(f"wrote {len(pages)} pages; open {pages[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
