"""Open every page of the built book in headless Chromium, take a screenshot and check what a reader sees.

    python book/check_site.py [build/book] [--shots build/book_shots]

For each ``*.html`` of the site folder the page is loaded from disk (``file://``, no server, no
network) and checked:

* no raw TeX in the text a reader sees outside code: no ``$$``, ``$...$``, ``\\(``, ``\\[`` nor a TeX
  command such as ``\\frac`` (the formulas must have become MathML), and every ``<math>`` has a size;
* every image loaded (``complete`` and ``naturalWidth > 0``);
* every link resolves: a relative link names a file of the site (and, with ``#id``, an element of
  that page); a link to another site is counted, not followed (the check runs offline);
* the page asked the network for nothing (its resource timing entries are all ``file:`` or ``data:``).

Screenshots go to ``--shots``: ``<page>.png`` (the top of the page) and, when the page has them,
``<page>.formula.png`` (the first displayed formula), ``<page>.gif.png`` (the first GIF),
``<page>.widget.png`` (a widget's still) and ``<page>.solution.png`` (the first solution, opened).
Exits 1 and prints one line per problem when a check fails, 2 when Chromium cannot be started.

Chromium is driven through chromedriver's WebDriver HTTP interface with the standard library only
(Debian: ``apt-get install chromium chromium-driver``).
"""
from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1000"]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# what a reader sees, outside code: raw TeX means a formula was not rendered
PAGE_FACTS = r"""
const shown = document.body.cloneNode(true);
shown.querySelectorAll('pre, code, script, style, .jp-CodeCell .jp-InputArea, .highlight').forEach(e => e.remove());
const text = shown.textContent;
const raw = [];
for (const pattern of [/\$\$/g, /\$[^\s$][^$]*\$/g, /\\\(/g, /\\\[/g, /\\(frac|sum|mathrm|hat|cdot|times|sqrt|alpha|mathcal)\b/g]) {
  for (const m of text.matchAll(pattern)) {
    raw.push(text.slice(Math.max(0, m.index - 40), m.index + 40).replace(/\s+/g, ' '));
    if (raw.length > 5) break;
  }
}
const images = Array.from(document.images).map((img, i) => ({
  index: i, ok: img.complete && img.naturalWidth > 0, src: img.getAttribute('src').slice(0, 60)}));
const formulas = Array.from(document.querySelectorAll('math'));
const emptyFormulas = formulas.filter(m => m.getBoundingClientRect().width <= 0).length;
const ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id);
const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));
const requested = performance.getEntriesByType('resource').map(r => r.name)
  .filter(n => !n.startsWith('file:') && !n.startsWith('data:'));
return {raw, images, formulas: formulas.length, emptyFormulas, ids, links, requested,
        height: document.documentElement.scrollHeight};
"""
SHOTS = {"formula": "math[display=block]", "gif": "img[src^='data:image/gif']",
         "widget": ".widget-still", "solution": "details.solution"}


@dataclass
class PageReport:
    """What the browser found on one page."""
    page: str
    problems: list[str] = field(default_factory=list)
    images: int = 0
    formulas: int = 0
    external_links: int = 0
    shots: list[Path] = field(default_factory=list)


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is not installed."""
    browser = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class IdCollector(HTMLParser):
    """Every id="..." of an HTML page (the anchors a link may name)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)


def page_ids(path: Path) -> set[str]:
    collector = IdCollector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector.ids


def link_problems(page: Path, links: list[str], ids_here: set[str]) -> tuple[list[str], int]:
    """The links of ``page`` that do not resolve, and the number of links to other sites."""
    problems, external = [], 0
    for href in links:
        parts = urlsplit(href)
        if parts.scheme in ("http", "https", "mailto"):
            external += 1
            continue
        if parts.scheme or parts.netloc:
            problems.append(f"link {href!r}: not a file of the site")
            continue
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not target.is_file():
            problems.append(f"link {href!r}: {target.name} is not in the site")
            continue
        anchor = unquote(parts.fragment)
        if anchor and anchor not in (ids_here if target == page else page_ids(target)):
            problems.append(f"link {href!r}: no element with id {anchor!r} in {target.name}")
    return problems, external


class Browser:
    """Headless Chromium behind chromedriver (the WebDriver protocol: JSON over HTTP on localhost)."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.driver = subprocess.Popen([chromedriver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                self.call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        options = {"binary": chromium, "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]}
        reply = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        self.session = f"/session/{reply['sessionId']}"

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"chromedriver {method} {path}: {error.read().decode()[:300]}") from None

    def open(self, url: str) -> None:
        self.call("POST", self.session + "/url", {"url": url})

    def run(self, script: str, *args):
        return self.call("POST", self.session + "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path: Path, selector: str | None = None) -> bool:
        """The viewport (or the first element matching ``selector``) as a PNG; False when there is none."""
        if selector is None:
            shot = self.call("GET", self.session + "/screenshot")
        else:
            found = self.call("POST", self.session + "/elements", {"using": "css selector", "value": selector})
            if not found:
                return False
            element = next(iter(found[0].values()))
            self.run("arguments[0].scrollIntoView(); if (arguments[0].tagName === 'DETAILS') arguments[0].open = true;",
                     found[0])
            shot = self.call("GET", f"{self.session}/element/{element}/screenshot")
        path.write_bytes(base64.b64decode(shot))
        return True

    def close(self) -> None:
        try:
            self.call("DELETE", self.session)
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)


def check_page(browser: Browser, page: Path, shots: Path) -> PageReport:
    """Load ``page``, check it and take its screenshots."""
    report = PageReport(page.name)
    browser.open(page.resolve().as_uri())
    browser.run("return document.fonts.ready.then(() => true);")
    facts = browser.run(PAGE_FACTS)
    report.problems += [f"raw TeX in the text: ...{snippet}..." for snippet in facts["raw"]]
    report.problems += [f"image {i['index']} did not load ({i['src']}...)" for i in facts["images"] if not i["ok"]]
    if facts["emptyFormulas"]:
        report.problems.append(f"{facts['emptyFormulas']} of {facts['formulas']} formulas have no size")
    report.problems += [f"asked the network for {url}" for url in facts["requested"]]
    broken, report.external_links = link_problems(page, facts["links"], set(facts["ids"]))
    report.problems += broken
    report.images, report.formulas = len(facts["images"]), facts["formulas"]
    stem = page.stem
    if browser.screenshot(shots / f"{stem}.png"):
        report.shots.append(shots / f"{stem}.png")
    for kind, selector in SHOTS.items():
        target = shots / f"{stem}.{kind}.png"
        if browser.screenshot(target, selector):
            report.shots.append(target)
    return report


def check_site(site: Path, shots: Path, chromium: tuple[str, str]) -> list[PageReport]:
    """Every page of ``site`` checked in one browser; screenshots written into ``shots``."""
    pages = sorted(site.glob("*.html"))
    if not pages:
        raise ValueError(f"{site}: no *.html page; build the site first (make book)")
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="check_site_profile_") as profile:
        browser = Browser(*chromium, Path(profile))
        try:
            return [check_page(browser, page, shots) for page in pages]
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", type=Path, default=Path("build/book"), help="the site's folder")
    parser.add_argument("--shots", type=Path, help="folder of the screenshots (default: SITE_shots)")
    args = parser.parse_args(argv)
    if not args.site.is_dir():
        parser.error(f"{args.site}: no such folder; build the site first (make book)")
    chromium = find_chromium()
    if chromium is None:
        print("check_site: chromium and chromedriver are needed (Debian: apt-get install chromium "
              "chromium-driver)", file=sys.stderr)
        return 2
    shots = args.shots or args.site.with_name(args.site.name + "_shots")
    reports = check_site(args.site, shots, chromium)
    for report in reports:
        status = "ok" if not report.problems else f"{len(report.problems)} problem(s)"
        print(f"{report.page}: {status}; {report.images} images, {report.formulas} formulas, "
              f"{report.external_links} links to other sites (not followed), {len(report.shots)} screenshots")
        for problem in report.problems:
            print(f"  {problem}")
    failed = [r.page for r in reports if r.problems]
    print(f"{len(reports)} pages checked, {len(failed)} with problems; screenshots in {shots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
