"""What the built book offers a reader besides its pages: launch buttons that open the
chapter on Binder, a download button for the notebook, and a search that finds the library's
function names.

The launch-button test builds a one-chapter book with ``book/book_config.py``'s config for a
repository address (the address is an example: the test reads the links, it follows none).
The search test reads the index of the stored book (``make book-stored``'s build).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from browser_helpers import build_book, stored_book

SearchEnglish = pytest.importorskip(
    "sphinx.search.en", reason="sphinx is not installed: make env").SearchEnglish

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTER = "04_ema_target_networks"
REPOSITORY = "https://github.com/example-org/maskvid-edu"


def _mini_book(root: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy2(BOOK / f"{CHAPTER}.ipynb", root)
    shutil.copy2(BOOK / "references.bib", root)
    (root / "intro.md").write_text("# A one-chapter book\n")
    (root / "_toc.yml").write_text(
        f"format: jb-book\nroot: intro\nchapters:\n  - file: {CHAPTER}\n")
    return root


def _hrefs(page: Path) -> list[str]:
    return [unquote(h) for h in re.findall(r'href="([^"]+)"', page.read_text(errors="replace"))]


def test_launch_and_download_buttons_point_at_the_chapter(tmp_path):
    html = build_book(_mini_book(tmp_path / "book"), tmp_path / "out", repository=REPOSITORY)
    links = _hrefs(html / f"{CHAPTER}.html")
    binder = [h for h in links if h.startswith("https://mybinder.org/")]
    assert binder, "no Binder launch button on the chapter"
    url = urlsplit(binder[0])
    assert url.path == "/v2/gh/example-org/maskvid-edu/main", url.path
    # the notebook, at its place in the repository, opened in JupyterLab
    assert parse_qs(url.query)["urlpath"] == [f"lab/tree/book/{CHAPTER}.ipynb"]
    download = [h for h in links if h.endswith(f"_sources/{CHAPTER}.ipynb")]
    assert download, "no download button for the notebook"
    notebook = json.loads((html / "_sources" / f"{CHAPTER}.ipynb").read_text())
    assert notebook["cells"], "the downloadable notebook is empty"
    # without an address, no button sends the reader to a wrong repository
    plain = build_book(tmp_path / "book", tmp_path / "plain")
    assert not [h for h in _hrefs(plain / f"{CHAPTER}.html") if "mybinder" in h]


def test_search_finds_the_library_functions_the_chapters_use(tmp_path):
    html, how = stored_book(BOOK, tmp_path / "book")
    text = (html / "searchindex.js").read_text()
    index = json.loads(text[text.index("(") + 1:text.rindex(")")])
    docs = index["docnames"]
    wanted = {"tube_mask": "01_tube_masking", "config_differences": "02_videomae",
              "recipe_schedule": "04_ema_target_networks", "train_or_load": "02_videomae",
              "render_memory_sweep": "07_scaling_up"}
    stem = SearchEnglish({}).stem  # the page's search stems a query the same way
    for word, chapter in wanted.items():
        hits = index["terms"].get(stem(word))
        assert hits is not None, f"the search index ({how}) has no entry for {word!r}"
        pages = {docs[i] for i in ([hits] if isinstance(hits, int) else hits)}
        assert chapter in pages, (word, sorted(pages))
