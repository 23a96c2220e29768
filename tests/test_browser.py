"""What a reader sees, in a real browser: the mask explorer live in JupyterLab, and the HTML book.

Both tests drive Debian's Chromium (``apt-get install chromium``) through Playwright; they skip
when it is missing. No request leaves the machine: everything not addressed to 127.0.0.1 is
aborted and counted; the HTML book must read offline (its MathJax is served from the book itself), so
there any blocked request is a failure.
Screenshots go to ``$MASKVID_TEST_ARTIFACTS`` when set, else to the test's ``tmp_path``.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import nbformat
import pytest
import yaml

from browser_helpers import (
    LOCAL_HOSTS,
    JupyterLab,
    browser_context,
    cells_needed,
    copy_notebook,
    html_ids,
    require_chromium,
    static_server,
    stored_book,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTER = BOOK / "01_tube_masking.ipynb"
EXPLORER_CALL = "mask_explorer("


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MASKVID_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _blocked_summary(blocked: list[str]) -> str:
    hosts = collections.Counter(urlsplit(u).hostname for u in blocked)
    return ", ".join(f"{h} ×{n}" for h, n in hosts.most_common()) or "none"


# --------------------------------------------------------------------------------------------
# (a) the mask explorer, live in JupyterLab
# --------------------------------------------------------------------------------------------

_TINY_CELLS = [
    "from maskvid_edu import widgets\nfrom maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset",
    "video = SyntheticVideoDataset(SyntheticConfig(num_frames=8, size=64, num_samples=1))[0][\"video\"]",
    "explorer = widgets.mask_explorer(video, strategy=\"tube\", ratio=0.9, seed=0)\nwidgets.show(explorer)",
]


def _lab_notebook(root: Path) -> tuple[Path, int, list[int]]:
    """The chapter with the mask explorer (copied), or a tiny notebook while the chapter is missing.

    Returns ``(path, explorer_cell, cells_to_run)``: only the cells the explorer needs are run
    (the chapter's measurements would take most of a minute on two cores).
    """
    if CHAPTER.exists():
        path = copy_notebook(CHAPTER, root)
        cells = nbformat.read(path, as_version=4).cells
        hits = [i for i, c in enumerate(cells) if c.cell_type == "code" and EXPLORER_CALL in c.source]
        assert hits, f"{CHAPTER.name} has no cell calling widgets.{EXPLORER_CALL}...)"
        return path, hits[0], cells_needed(cells, hits[0])
    root.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in _TINY_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = root / "explorer.ipynb"
    nbformat.write(nb, path)
    return path, 2, [0, 1, 2]


_APP_READY = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  return !!(panel && panel.content && panel.content.widgets && panel.content.widgets.length > 0
            && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel
            && panel.sessionContext.session.kernel.status === 'idle');
}"""

# Run one cell through JupyterLab's own "Run Selected Cell" command; resolves once it has run.
_RUN_CELL = """async ([index, ms]) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  panel.content.activeCellIndex = index;
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('cell ' + index + ' still running after ' + ms + ' ms')), ms));
  await Promise.race([app.commands.execute('notebook:run-cell'), timeout]);
  const outputs = panel.content.widgets[index].model.outputs.toJSON();
  const error = outputs.find(o => o.output_type === 'error');
  return error ? error.ename + ': ' + error.evalue + '\\n' + (error.traceback || []).join('\\n') : null;
}"""

_MARK_CELL = """(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const node = panel.content.widgets[index].node;
  node.setAttribute('data-maskvid', 'explorer');
  node.scrollIntoView({block: 'start'});
}"""

_VIEW = "[data-maskvid=explorer] .jp-OutputArea-output.jp-RenderedImage img"

_VIEW_CHANGED = """(old) => {
  const img = document.querySelector('""" + _VIEW + """');
  return !!img && img.src !== old && img.complete && img.naturalWidth > 0;
}"""


def _png(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,"), f"the explorer's view is not an inline PNG: {src[:60]}"
    data = base64.b64decode(src.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def test_mask_explorer_reacts_to_its_ratio_slider_in_jupyterlab(tmp_path):
    require_chromium()
    start = time.monotonic()
    notebook, explorer, to_run = _lab_notebook(tmp_path / "root")
    artifacts = _artifacts(tmp_path)
    with JupyterLab(tmp_path / "root", tmp_path / "state") as lab, browser_context() as (context, blocked):
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(lab.lab_url(notebook.name), wait_until="domcontentloaded")
        page.wait_for_function(_APP_READY, timeout=45_000, polling=250)
        for index in to_run:
            error = page.evaluate(_RUN_CELL, [index, 45_000])
            assert error is None, f"cell {index} of {notebook.name} failed in JupyterLab:\n{error}"

        page.evaluate(_MARK_CELL, explorer)
        cell = page.locator("[data-maskvid=explorer]")
        ratio = cell.locator(".widget-hslider").filter(has_text="ratio")
        ratio.locator(".noUi-handle").wait_for(state="visible", timeout=30_000)  # the live widget, not its text repr
        view = page.locator(_VIEW)
        view.wait_for(state="visible")
        before = view.get_attribute("src")
        readout = ratio.locator(".widget-readout")
        assert readout.inner_text().strip() == "0.90"
        page.screenshot(path=str(artifacts / "lab_explorer_before.png"))

        # move the ratio slider with the keyboard, as a reader would: focus the handle, one step left
        ratio.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(_VIEW_CHANGED, arg=before, timeout=30_000, polling=200)
        after = view.get_attribute("src")
        assert readout.inner_text().strip() == "0.85"
        cell.screenshot(path=str(artifacts / "lab_explorer_after.png"))
        page.screenshot(path=str(artifacts / "lab_explorer.png"))

        old, new = _png(before), _png(after)
        assert hashlib.sha256(old).digest() != hashlib.sha256(new).digest(), "the view did not change"
        external = list(blocked)
    assert lab.process.returncode is not None, "JupyterLab is still running after shutdown"
    elapsed = time.monotonic() - start
    print(f"\nexplorer in {notebook.name} (cells {to_run}): view {len(old)} → {len(new)} bytes; "
          f"blocked external requests: {_blocked_summary(external)}; {elapsed:.1f} s; screenshots in {artifacts}")


# --------------------------------------------------------------------------------------------
# (b) the HTML book: images load, chapters show a picture, internal links resolve
# --------------------------------------------------------------------------------------------

_IMAGES = """async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done); img.addEventListener('error', done); setTimeout(done, 10000);
  })));
  return imgs.map(img => ({src: img.getAttribute('src') || '', url: img.currentSrc || img.src,
                          width: img.naturalWidth, inMain: !!img.closest('main, article')}));
}"""

_REFRESH = re.compile(r'<meta[^>]+http-equiv="refresh"[^>]+content="[^"]*url=([^"]+)"', re.IGNORECASE)

_LINKS = "() => Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href])"


def _chapters() -> list[str]:
    """Pages of the book built from notebooks, from the table of contents."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]
    stack = list(toc.get("chapters", [])) + [e for part in toc.get("parts", []) for e in part.get("chapters", [])]
    while stack:
        entry = stack.pop(0)
        if "file" in entry:
            files.append(entry["file"])
        stack.extend(entry.get("sections", []))
    return [f for f in files if (BOOK / f"{f}.ipynb").exists()]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_html_book_images_load_and_internal_links_resolve(tmp_path):
    require_chromium()
    html, how = stored_book(BOOK, tmp_path / "book")
    pages = sorted(p.name for p in html.glob("*.html"))
    chapters = _chapters()
    assert "index.html" in pages and all(f"{c}.html" in pages for c in chapters), (pages, chapters)
    artifacts = _artifacts(tmp_path)

    broken_images, bad_responses, links = [], [], {}
    images_per_page = {}
    with static_server(html) as base, browser_context() as (context, blocked):
        page = context.new_page()
        page.set_default_timeout(20_000)

        def on_response(response):
            if urlsplit(response.url).hostname in LOCAL_HOSTS and response.status >= 400:
                bad_responses.append(f"{response.status} {response.url}")

        def on_failed(request):
            if urlsplit(request.url).hostname in LOCAL_HOSTS:
                bad_responses.append(f"failed {request.url}: {request.failure}")

        page.on("response", on_response)
        page.on("requestfailed", on_failed)
        for name in pages:
            refresh = _REFRESH.search((html / name).read_text(errors="replace"))
            if refresh:  # a redirect page (index.html → the root chapter): follow it, check its target
                target = urljoin(f"{base}/{name}", refresh.group(1))
                page.goto(f"{base}/{name}", wait_until="load")
                page.wait_for_url(target)
                links.setdefault(target, name)
                continue
            page.goto(f"{base}/{name}", wait_until="load")
            images = page.evaluate(_IMAGES)
            broken_images += [f"{name}: {img['src'][:80]}" for img in images if img["width"] <= 0]
            images_per_page[name] = sum(1 for img in images if img["inMain"] and img["width"] > 0)
            for href, absolute in page.evaluate(_LINKS):
                if urlsplit(absolute).hostname in LOCAL_HOSTS and not href.startswith(("mailto:", "javascript:")):
                    links.setdefault(absolute, name)
            if name.removesuffix(".html") in chapters:
                page.screenshot(path=str(artifacts / f"book_{name.removesuffix('.html')}.png"), full_page=False)
        external = list(blocked)

        assert not broken_images, f"images that did not load: {broken_images}"
        assert not bad_responses, f"local requests that failed: {bad_responses}"
        for chapter in chapters:
            assert images_per_page[f"{chapter}.html"] >= 1, (
                f"{chapter}.html shows no image: the chapter's stored outputs (figures, the widgets' static "
                f"views) are missing — run `make notebooks` and commit {chapter}.ipynb with its outputs")

        # every internal link: the page answers 200, and a #fragment names an element of that page
        unresolved = []
        for url, source in sorted(links.items()):
            target, fragment = urldefrag(url)
            status = _status(target)
            if status != 200:
                unresolved.append(f"{source} → {url}: HTTP {status}")
                continue
            path = html / urlsplit(target).path.lstrip("/")
            if fragment and path.suffix == ".html" and fragment not in html_ids(path):
                unresolved.append(f"{source} → {url}: no element with id {fragment!r}")
        assert not unresolved, "internal links that do not resolve:\n" + "\n".join(unresolved)

    print(f"\nHTML book ({how}): {len(pages)} pages, {len(links)} internal links, images per chapter "
          f"{ {c: images_per_page[f'{c}.html'] for c in chapters} }; blocked external requests: "
          f"{len(external)} ({_blocked_summary(external)})")


# --------------------------------------------------------------------------------------------
# (c) the HTML book reads offline: formulas typeset by the book's own MathJax, nothing fetched
# --------------------------------------------------------------------------------------------

_MATH = r"""() => {
  const main = document.querySelector('main') || document.body;
  const raw = [];
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement.closest('script, style, pre, code, mjx-container, mjx-assistive-mml')) continue;
    const text = node.textContent;
    if (/\\\(|\\\[|\\begin\{/.test(text)) raw.push(text.trim().slice(0, 60));
  }
  return {spans: document.querySelectorAll('.math').length,
          typeset: document.querySelectorAll('mjx-container').length, raw: raw};
}"""


def test_html_book_reads_offline_with_typeset_formulas(tmp_path):
    """Every page with formulas shows them typeset, with the network blocked.

    MathJax comes from ``_static/mathjax`` of the built book; the test waits for MathJax's own
    startup promise, then counts its output elements (``mjx-container``) and looks for TeX
    delimiters left as text. Any request for a non-local address fails the test.
    """
    require_chromium()
    html, how = stored_book(BOOK, tmp_path / "book")
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists(), "the built book has no MathJax of its own"
    pages = sorted(p.name for p in html.glob("*.html") if p.name not in ("genindex.html", "search.html"))
    artifacts = _artifacts(tmp_path)
    results = {}
    with static_server(html) as base, browser_context() as (context, blocked):
        page = context.new_page()
        page.set_default_timeout(30_000)
        for name in pages:
            if _REFRESH.search((html / name).read_text(errors="replace")):
                continue
            page.goto(f"{base}/{name}", wait_until="load")
            has_math = page.evaluate("() => document.querySelectorAll('.math').length") > 0
            if has_math:
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
                page.evaluate("() => MathJax.startup.promise")
            results[name] = page.evaluate(_MATH)
            if name in ("notation.html", "02_videomae.html"):
                page.screenshot(path=str(artifacts / f"offline_{name.removesuffix('.html')}.png"), full_page=False)
        external = list(blocked)

    assert not external, f"pages asked for {len(external)} non-local resources: {_blocked_summary(external)}"
    with_math = {n: r for n, r in results.items() if r["spans"]}
    assert "notation.html" in with_math, sorted(results)
    untypeset = {n: r for n, r in with_math.items() if r["typeset"] < r["spans"]}
    assert not untypeset, f"formulas left untypeset (math spans vs MathJax outputs): {untypeset}"
    raw = {n: r["raw"][:3] for n, r in results.items() if r["raw"]}
    assert not raw, f"raw TeX left in the text: {raw}"
    print(f"\nHTML book offline ({how}): formulas typeset per page "
          f"{ {n: r['typeset'] for n, r in with_math.items()} }")
