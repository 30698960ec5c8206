"""What makes an executed chapter read offline (used by build_site.py before and after nbconvert).

* Formulas: every ``$...$``, ``$$...$$``, ``\\(...\\)`` and ``\\[...\\]`` of a markdown cell or a
  markdown output is converted to MathML at build time (``latex2mathml``, the ``book`` extra), so no
  page needs MathJax. Code spans and fenced code blocks are left alone (``$NODE_RANK`` in a shell
  line is not a formula). The formulas are swapped for plain placeholder words before nbconvert
  renders the markdown, and the MathML is put in their place afterwards.
* GIFs: nbconvert renders PNG, JPEG and SVG outputs only; an ``image/gif`` output becomes an
  ``<img>`` with the GIF as a data URL.
* Widgets: an ipywidgets output needs a running kernel (and a script from the network); it becomes
  a sentence saying how to use it in Jupyter, with the picture it showed when the page was built.
"""
from __future__ import annotations

import copy
import html
import re
from dataclasses import dataclass, field

GIF = "image/gif"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STILL_TYPES = ("image/png", "image/jpeg", GIF)
# fenced code blocks and inline code spans: no formula inside them
CODE = re.compile(r"^(```|~~~).*?^\1[ \t]*$|(`+).+?\2", re.S | re.M)
# display first ($$ before $), then inline (as MathJax reads them); an inline $...$ stays within one
# paragraph, and \$ is a dollar sign
FORMULA = re.compile(
    r"\$\$(?P<display>.+?)\$\$"
    r"|\\\[(?P<display2>.+?)\\\]"
    r"|(?<![\\$])\$(?P<inline>(?:[^$\n]|\n(?!\s*\n))+?)(?<!\\)\$"
    r"|\\\((?P<inline2>.+?)\\\)", re.S)
PLACEHOLDER = "ddetrformula{}x"
PLACEHOLDER_WORD = re.compile(r"ddetrformula(\d+)x")


@dataclass
class Formulas:
    """The formulas taken out of one notebook, in order; ``mathml[i]`` replaces placeholder ``i``."""
    mathml: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "latex: why" for each formula that did not convert

    def take(self, tex: str, display: bool) -> str:
        """The placeholder word for ``tex``, whose MathML is stored (or, failing that, the TeX in <code>)."""
        from latex2mathml.converter import convert

        try:
            rendered = convert(tex.strip(), display="block" if display else "inline")
            if re.search(r">\\[a-zA-Z]", rendered):  # a command latex2mathml does not know, kept as text
                raise ValueError("unknown command " + re.search(r">(\\[a-zA-Z]+)", rendered)[1])
        except Exception as error:  # latex2mathml raises its own exception types
            self.errors.append(f"{tex.strip()!r}: {error}")
            rendered = f'<code class="tex">{html.escape(tex.strip())}</code>'
        self.mathml.append(rendered)
        return PLACEHOLDER.format(len(self.mathml) - 1)

    def take_all(self, markdown: str) -> str:
        """``markdown`` with each formula outside code replaced by its placeholder word."""
        def formulas(text: str) -> str:
            return FORMULA.sub(lambda m: self.take(next(g for g in m.groups() if g is not None),
                                                   display=m["display"] is not None or m["display2"] is not None),
                               text)
        pieces, last = [], 0
        for code in CODE.finditer(markdown):
            pieces += [formulas(markdown[last:code.start()]), code[0]]
            last = code.end()
        return "".join(pieces + [formulas(markdown[last:])])

    def put_back(self, page: str) -> str:
        """The rendered page with every placeholder replaced by its MathML."""
        return PLACEHOLDER_WORD.sub(lambda m: self.mathml[int(m[1])], page)


def widget_stills(state: dict, model_id: str) -> list[dict]:
    """The image outputs held by Output widgets inside widget ``model_id`` (its children, recursively)."""
    found, todo, seen = [], [model_id], set()
    while todo:
        current = todo.pop(0)
        if current in seen or current not in state:
            continue
        seen.add(current)
        model = state[current].get("state", {})
        for output in model.get("outputs", []):
            data = output.get("data", {})
            found += [{kind: data[kind]} for kind in STILL_TYPES if kind in data][:1]
        text = repr(model)
        todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", text)
    return found


def image_html(kind: str, data) -> str:
    """An <img> holding ``data`` (base64 text, maybe split in lines) as a data URL."""
    data = "".join(data) if isinstance(data, list) else data
    return f'<img src="data:{kind};base64,{"".join(data.split())}" alt="picture">'


def widget_note(stills: list[dict], picture_in_cell: bool) -> str:
    """The sentence (and picture) that replaces an interactive widget on a page."""
    where = (" The picture in this cell's output is what they showed when this page was built."
             if picture_in_cell else "")
    pictures = "" if picture_in_cell else "".join(
        image_html(kind, data) for still in stills for kind, data in still.items())
    if pictures:
        where = " Below: what they showed when this page was built."
    return ('<div class="widget-still"><p><em>Interactive controls (ipywidgets) stand here when the '
            "chapter runs in Jupyter: open it with <code>jupyter lab book/</code> and run it from the top."
            f"{where}</em></p>{pictures}</div>")


def prepare_offline(nb) -> tuple[object, Formulas]:
    """A copy of the executed notebook ``nb`` ready for nbconvert: formulas out (placeholders), GIF
    and widget outputs as HTML, the widget state dropped. Returns (the copy, its formulas)."""
    nb = copy.deepcopy(nb)
    formulas = Formulas()
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = formulas.take_all(cell.source)
        if cell.cell_type != "code":
            continue
        has_picture = any(kind in output.get("data", {}) for output in cell.outputs for kind in STILL_TYPES)
        for output in cell.outputs:
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = formulas.take_all(data["text/markdown"])
            if GIF in data:
                output["data"] = {"text/html": image_html(GIF, data[GIF])}
            elif WIDGET_VIEW in data:
                stills = widget_stills(state, data[WIDGET_VIEW].get("model_id", ""))
                output["data"] = {"text/html": widget_note(stills, has_picture)}
    nb.metadata.pop("widgets", None)
    return nb, formulas
