"""Style of the committed notebooks: code cells fit in 88 columns, a cell's prints form one
output, each chapter states its measured run time and stays small.

The HTML book clips code lines wider than its code column, so every line of every code
cell's source must be at most ``MAX_COLUMNS`` characters long. Two stream outputs in a row
render as two boxes (a table's header in one, its rows in the next).
"""

import importlib.util
import json
from pathlib import Path

import pytest

MAX_COLUMNS = 88
BOOK = Path(__file__).resolve().parent.parent / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
MAX_BYTES = 3 * 2**20  # a chapter with its outputs
MAX_SECONDS = 150  # the CPU preset's budget per chapter (2 min), with room for a busy machine

_spec = importlib.util.spec_from_file_location("run_times", BOOK / "run_times.py")
run_times = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_times)


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


def split_streams(notebook):
    """``(cell_index, output_index)`` of each stream output that follows one of its kind."""
    found = []
    for index, cell in enumerate(notebook.get("cells", [])):
        outputs = cell.get("outputs", [])
        for k in range(1, len(outputs)):
            a, b = outputs[k - 1], outputs[k]
            if a["output_type"] == b["output_type"] == "stream" and a["name"] == b["name"]:
                found.append((index, k))
    return found


def test_split_streams_finds_two_prints_in_a_row():
    out = {"output_type": "stream", "name": "stdout", "text": "x\n"}
    err = {"output_type": "stream", "name": "stderr", "text": "y\n"}
    cell = {"cell_type": "code", "source": "", "outputs": [out, err, out, out]}
    assert split_streams({"cells": [_cell("markdown", []), cell]}) == [(1, 3)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_cell_prints_into_one_output(path):
    found = split_streams(json.loads(path.read_text(encoding="utf-8")))
    assert not found, (f"{path.name}: split stream outputs at (cell, output) {found}; run "
                       "`jupyter nbconvert --to notebook --inplace --coalesce-streams`")


def test_run_time_is_formatted_to_the_nearest_step():
    assert [run_times.format_run_time(s) for s in (2, 42.3, 61, 131)] == [
        "5 s", "40 s", "1 min", "2 min 10 s"]
    nb = {"cells": [_cell("code", [])]}
    nb["cells"][0]["metadata"]["execution"] = {
        "iopub.execute_input": "2026-01-01T00:00:00.000Z",
        "iopub.status.idle": "2026-01-01T00:01:31.000Z"}
    assert run_times.measured_seconds(nb) == 91.0
    with pytest.raises(ValueError, match="execution stamps"):
        run_times.measured_seconds({"cells": [_cell("code", [])]})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_chapter_states_its_measured_run_time(path):
    """The line under the title agrees with the stamps of the committed outputs, and the
    chapter keeps within the CPU preset's budget."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    seconds = run_times.measured_seconds(notebook)
    stated = run_times.stated_run_time(notebook)
    assert stated is not None, f"{path.name}: no run-time line; run `python book/run_times.py`"
    assert stated == run_times.format_run_time(seconds), (path.name, stated, seconds)
    assert seconds <= MAX_SECONDS, f"{path.name} ran {seconds:.0f} s on the CPU preset"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_chapter_stays_small(path):
    assert path.stat().st_size <= MAX_BYTES, f"{path.name}: {path.stat().st_size:,} bytes"
