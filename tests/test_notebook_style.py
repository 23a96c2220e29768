"""Style of the committed notebooks: code cells fit in 88 columns.

The HTML book clips code lines wider than its code column, so every line of every code
cell's source must be at most ``MAX_COLUMNS`` characters long.
"""

import json
from pathlib import Path

import pytest

MAX_COLUMNS = 88
BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def long_code_lines(notebook, max_columns=MAX_COLUMNS):
    """Return ``(cell_index, line_number, length, line)`` for each code line too long.

    ``notebook`` is a notebook as a dict (the parsed JSON); cells are counted from 0 over
    all cells, lines from 1 within the cell's source.
    """
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        for number, line in enumerate(source.splitlines(), start=1):
            if len(line) > max_columns:
                found.append((index, number, len(line), line))
    return found


def _cell(cell_type, lines):
    return {"cell_type": cell_type, "metadata": {}, "source": lines}


def test_long_code_lines_finds_an_89_character_line():
    long_line = "x = " + "1" * 85
    assert len(long_line) == 89
    notebook = {
        "cells": [
            _cell("markdown", ["# " + "word " * 40]),
            _cell("code", ["import math\n", "y = " + "2" * 84]),
            _cell("code", ["# NBVAL_CHECK_OUTPUT\n", long_line + "\n", "print(x)"]),
        ]
    }
    assert len(notebook["cells"][1]["source"][1]) == 88
    assert long_code_lines(notebook) == [(2, 2, 89, long_line)]


def test_long_code_lines_accepts_a_string_source():
    notebook = {"cells": [_cell("code", "a = 1\n" + "b" * 89 + "\nc = 3")]}
    assert long_code_lines(notebook) == [(0, 2, 89, "b" * 89)]
    assert long_code_lines(notebook, max_columns=89) == []


def test_the_book_has_notebooks():
    assert NOTEBOOKS, f"no notebooks found under {BOOK}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_code_cells_fit_in_88_columns(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    found = long_code_lines(notebook)
    report = "\n".join(
        f"{path.name}: cell {cell}, line {line}: {length} characters: {text}"
        for cell, line, length, text in found
    )
    assert not found, f"code lines longer than {MAX_COLUMNS} characters:\n{report}"
