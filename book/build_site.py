"""Render the book, executed, as a static HTML site that can be read without running anything.

    python book/build_site.py [--fast] [--out build/book] [--only 02 05] [--cell-timeout S] [--chapter-budget S]

writes ``index.html`` (the table of contents: each page's title and its line from the table in
book/README.md) and one page per notebook, ``NN_name.html``, with links to the previous page, the
index and the next page at its top and bottom. The pages are the front matter
(``before_you_start.ipynb``), the chapters ``NN_*.ipynb`` in order, then the back matter
(``cheat_sheet.ipynb``). Every notebook is executed first by a Jupyter kernel in the book folder,
with the inline matplotlib backend so that each figure becomes a PNG embedded in the page;
``--fast`` (or DDETR_EDU_FAST=1 in the environment) sets DDETR_EDU_FAST=1 for the chapters
(seconds per chapter instead of minutes). `make book` runs this script (`FAST=1 make book` or
`DDETR_EDU_FAST=1 make book` for the fast mode).

Each chapter has a time budget: ``--cell-timeout`` seconds per cell and ``--chapter-budget``
seconds for the whole chapter. A chapter that fails or runs out of time is still written, with its
outputs up to the failing cell and the error at the top; the index lists it with the last line of
its error, and the script exits with 1 after writing every other page and the index. The pages
read offline: formulas are pre-rendered to MathML and no page loads anything from the network
(site_offline.py); code cells tagged ``solution`` are folded (site_template/book_page.html.j2).
The tests execute the chapters with `execute_chapter` below. Needs the ``book`` extra (nbclient,
nbconvert, ipykernel, latex2mathml).
"""
from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BOOK = Path(__file__).resolve().parent
if str(BOOK) not in sys.path:  # site_offline.py, beside this file, also when loaded by the tests
    sys.path.insert(0, str(BOOK))
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
TEMPLATE_DIR = BOOK / "site_template"
FRONT_MATTER = ("before_you_start.ipynb",)  # pages before chapter 0, in this order
BACK_MATTER = ("cheat_sheet.ipynb",)  # pages after the last chapter
# Per cell and per chapter (seconds). The longest cell of the book is the full-training chapter's
# live run (the demo's quick run in full mode); book/README.md gives the measured times.
CELL_TIMEOUT_S = 1200
CHAPTER_BUDGET_S = 2400
README_ROW = re.compile(r"^\|\s*\[(?P<stem>\w+)\]\([^)]*\.ipynb\)\s*\|\s*(?P<text>.*?)\s*\|\s*$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
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


@dataclass
class SiteBuild:
    """What build_site wrote: the pages (index first), the seconds each notebook took, and the
    notebooks that failed with the last line of their error."""
    pages: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def chapter_paths(book: Path = BOOK) -> list[Path]:
    """The chapters, ``NN_name.ipynb``, in reading order."""
    return sorted(book.glob("[0-9][0-9]_*.ipynb"))


def book_paths(book: Path = BOOK) -> list[Path]:
    """Every page of the book in reading order: front matter, the chapters, back matter (those there)."""
    front = [book / name for name in FRONT_MATTER if (book / name).is_file()]
    back = [book / name for name in BACK_MATTER if (book / name).is_file()]
    return front + chapter_paths(book) + back


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


def fast_from_environment() -> bool:
    """True when DDETR_EDU_FAST=1 is set (`DDETR_EDU_FAST=1 make book` asks for the fast mode)."""
    return os.environ.get("DDETR_EDU_FAST", "0") == "1"


def execute_chapter(path: Path, fast: bool, timeout_s: int = CELL_TIMEOUT_S,
                    budget_s: float | None = None, nb=None):
    """Run a chapter top to bottom in a fresh kernel, the chapter's folder as working directory.

    Returns the executed notebook (nbformat NotebookNode). DDETR_EDU_FAST is "1" or "0"; the inline
    matplotlib backend turns every shown figure into an image/png output. Each cell may take
    ``timeout_s`` seconds and, with ``budget_s``, all cells together ``budget_s`` seconds (from the
    start of the first cell). A failing cell raises nbclient's CellExecutionError naming the cell
    and its error, a cell past its time CellTimeoutError; ``nb``, when given, is the notebook
    executed in place, so that the outputs before the failure stay in it.
    """
    import nbclient
    import nbformat

    nb = nb if nb is not None else nbformat.read(path, as_version=4)
    env = {**os.environ, "DDETR_EDU_FAST": "1" if fast else "0", "MPLBACKEND": INLINE_BACKEND}
    deadline = []  # the budget's end, set when the first cell starts (the kernel's start-up is not counted)

    def cell_timeout(cell) -> int:
        if budget_s is None:
            return timeout_s
        if not deadline:
            deadline.append(time.monotonic() + budget_s)
        return max(1, min(timeout_s, int(deadline[0] - time.monotonic())))

    client = nbclient.NotebookClient(nb, timeout=timeout_s, timeout_func=cell_timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)
    return nb


def last_line(error: BaseException) -> str:
    """The last non-empty line of an error's message, without terminal colours (what the index shows)."""
    lines = [line.strip() for line in ANSI.sub("", str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def navigation(chapters: list[Chapter], i: int) -> str:
    """The bar of links of chapter ``i``: previous chapter, contents, next chapter."""
    def link(j: int, rel: str, label: str) -> str:
        if not 0 <= j < len(chapters):
            return "<span></span>"
        return f'<a rel="{rel}" href="{chapters[j].page}">{label.format(html.escape(chapters[j].name))}</a>'
    return (f'<nav class="book-nav">{link(i - 1, "prev", "&larr; {}")}'
            f'<a rel="index" href="index.html">Contents</a>{link(i + 1, "next", "{} &rarr;")}</nav>')


def chapter_page(nb, chapters: list[Chapter], i: int, failure: str | None = None) -> str:
    """An executed notebook as one HTML page that reads offline: outputs and markdown images
    embedded, formulas in MathML, GIFs shown, widgets replaced by a still, solutions folded, links
    to other notebooks of the book sent to their pages, navigation added; ``failure``: the error
    that stopped the chapter, shown at the top."""
    from nbconvert import HTMLExporter

    from site_offline import prepare_offline

    offline, formulas = prepare_offline(nb)
    exporter = HTMLExporter(embed_images=True, extra_template_paths=[str(TEMPLATE_DIR)],
                            template_file="book_page.html.j2")
    resources = {"metadata": {"name": chapters[i].title, "path": str(chapters[i].path.parent)}}
    body, _ = exporter.from_notebook_node(offline, resources=resources)
    body = formulas.put_back(body)
    pages = {c.path.stem for c in chapters}  # a link to another notebook of the book goes to its page
    body = re.sub(r'href="(\w+)\.ipynb(#[^"]*)?"',
                  lambda m: f'href="{m[1]}.html{m[2] or ""}"' if m[1] in pages else m[0], body)
    nav = navigation(chapters, i)
    banner = "" if failure is None else (
        f'<div class="build-failure" style="max-width:1100px;margin:1em auto;padding:0.6em 1em;'
        f'background:#fde8e8;border-left:4px solid #c0392b;font:15px sans-serif">This chapter failed '
        f'while the site was built; the outputs stop at the failing cell. Error: <code>{html.escape(failure)}'
        f'</code></div>')
    body = re.sub(r"(<body[^>]*>)", lambda m: m[1] + NAV_STYLE + nav + banner, body, count=1)
    return body.replace("</body>", nav + "</body>", 1)


def inline_code(text: str) -> str:
    """A line of markdown as HTML text: escaped, with `code` spans kept as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def index_page(chapters: list[Chapter], mode: str, failures: dict[str, str] | None = None) -> str:
    """The table of contents: every chapter's link, title and description; failed chapters marked."""
    failures = failures or {}

    def item(c: Chapter) -> str:
        failed = failures.get(c.path.stem)
        mark = "" if failed is None else (f'<p class="failed">failed to build: <code>{html.escape(failed)}'
                                          "</code></p>")
        return f'<li><a href="{c.page}">{html.escape(c.name)}</a><p>{inline_code(c.description)}</p>{mark}</li>'
    items = "\n".join(item(c) for c in chapters)
    summary = "" if not failures else (
        f'<div class="failures"><h2>{len(failures)} chapter(s) failed to build</h2><ul>'
        + "".join(f'<li><a href="{c.page}">{html.escape(c.name)}</a>: <code>{html.escape(failures[c.path.stem])}'
                  "</code></li>" for c in chapters if c.path.stem in failures) + "</ul></div>\n")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>The ddetr-edu book</title>"
        "<style>body{max-width:900px;margin:2em auto;font:16px/1.5 sans-serif;padding:0 1em}"
        "li{margin-bottom:0.8em}li p{margin:0.2em 0;color:#444}p.failed{color:#c0392b}"
        ".failures{background:#fde8e8;border-left:4px solid #c0392b;padding:0.2em 1em}</style></head><body>\n"
        "<h1>The ddetr-edu book</h1>\n<p>Deformable DETR (Zhu et al., ICLR 2021), one idea per "
        f"chapter; every chapter executed ({html.escape(mode)}) with its outputs and figures.</p>\n"
        f"{summary}<ol style=\"list-style:none;padding:0\">\n{items}\n</ol>\n</body></html>\n")


def build_site(paths: list[Path], out: Path, fast: bool, readme: Path | None = None,
               timeout_s: int = CELL_TIMEOUT_S, budget_s: float = CHAPTER_BUDGET_S,
               report=print) -> SiteBuild:
    """Execute ``paths`` in order and write the site into ``out``: every page, failed ones included,
    then the index. ``report`` gets one line per page."""
    import nbformat

    if not paths:
        raise ValueError("build_site: paths is empty; expected at least one chapter notebook")
    descriptions = readme_descriptions(readme or paths[0].parent / "README.md")
    notebooks = [nbformat.read(p, as_version=4) for p in paths]
    chapters = [Chapter(p, chapter_title(nb), descriptions.get(p.stem, ""))
                for p, nb in zip(paths, notebooks)]
    out.mkdir(parents=True, exist_ok=True)
    build = SiteBuild(pages=[out / "index.html"])
    for i, (chapter, nb) in enumerate(zip(chapters, notebooks)):
        start = time.perf_counter()
        failure = None
        try:
            execute_chapter(chapter.path, fast, timeout_s, budget_s, nb=nb)
        except Exception as error:  # nbclient's CellExecutionError, CellTimeoutError, DeadKernelError
            failure = build.failures[chapter.path.stem] = last_line(error)
        page = out / chapter.page
        try:
            text = chapter_page(nb, chapters, i, failure)
        except Exception as error:  # a page that cannot be rendered still gets its navigation and error
            failure = build.failures[chapter.path.stem] = f"rendering failed: {last_line(error)}"
            text = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(chapter.name)}"
                    f"</title></head><body>{NAV_STYLE}{navigation(chapters, i)}<h1>{html.escape(chapter.name)}</h1>"
                    f"<p>This page could not be rendered: <code>{html.escape(failure)}</code></p></body></html>\n")
        page.write_text(text, encoding="utf-8")
        build.pages.append(page)
        build.seconds[chapter.path.stem] = time.perf_counter() - start
        status = "executed and rendered" if failure is None else f"FAILED ({failure}), rendered"
        report(f"{chapter.page}: {status} in {build.seconds[chapter.path.stem]:.0f} s")
    build.pages[0].write_text(index_page(chapters, "fast mode" if fast else "full mode", build.failures),
                              encoding="utf-8")
    return build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/book"), help="folder of the site")
    parser.add_argument("--book", type=Path, default=BOOK, help="folder of the notebooks (default: book/)")
    parser.add_argument("--fast", action="store_true",
                        help="execute with DDETR_EDU_FAST=1 (also when DDETR_EDU_FAST=1 is set)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only these chapter numbers, e.g. 02 05")
    parser.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT_S, metavar="S",
                        help=f"seconds a cell may run (default {CELL_TIMEOUT_S})")
    parser.add_argument("--chapter-budget", type=float, default=CHAPTER_BUDGET_S, metavar="S",
                        help=f"seconds a chapter may run, all cells together (default {CHAPTER_BUDGET_S:.0f})")
    args = parser.parse_args(argv)
    if args.cell_timeout <= 0 or args.chapter_budget <= 0:
        parser.error("--cell-timeout and --chapter-budget: expected a number of seconds > 0")
    paths = book_paths(args.book)
    if args.only:
        paths = [p for p in chapter_paths(args.book) if p.name[:2] in {n.zfill(2) for n in args.only}]
        if not paths:
            parser.error(f"--only {' '.join(args.only)}: no such chapter in {args.book}")
    if not paths:
        parser.error(f"--book {args.book}: no notebook NN_name.ipynb there")
    fast = args.fast or fast_from_environment()
    start = time.perf_counter()
    build = build_site(paths, args.out, fast, timeout_s=args.cell_timeout, budget_s=args.chapter_budget)
    print(f"wrote {len(build.pages)} pages ({'fast' if fast else 'full'} mode) in "
          f"{time.perf_counter() - start:.0f} s; open {build.pages[0]}")
    if build.failures:
        print(f"{len(build.failures)} of {len(paths)} notebook(s) failed: {', '.join(build.failures)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
