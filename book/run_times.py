"""Write each chapter's measured run time into its first cell.

``make notebooks`` executes every chapter with ``jupyter nbconvert --execute``, which records
in each code cell's metadata when the kernel started and finished it
(``metadata.execution["iopub.execute_input"]`` and ``["iopub.status.idle"]``). This script
reads those stamps, takes the span from the first cell's start to the last cell's end, and
puts one line under the chapter's title::

    *Run time: about 45 s on a 2-core CPU (CPU preset), from the chapter's last execution.*

Usage: ``python book/run_times.py book/*.ipynb``. ``tests/test_notebook_style.py`` checks that
the line in every committed chapter agrees with the stamps its cells carry.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path

PREFIX = "*Run time: about "
LINE = re.compile(r"^\*Run time: about (?P<text>[^*]+?) on a 2-core CPU \(CPU preset\), "
                  r"from the chapter's last execution\.\*$", re.M)


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def measured_seconds(nb: dict) -> float:
    """Seconds from the first code cell's start to the last one's end, from the stamps."""
    spans = [c["metadata"]["execution"] for c in nb["cells"]
             if c["cell_type"] == "code" and "execution" in c.get("metadata", {})]
    if not spans:
        raise ValueError("no code cell carries execution stamps: execute the notebook with "
                         "`jupyter nbconvert --execute` first")
    start = min(_stamp(s["iopub.execute_input"]) for s in spans)
    end = max(_stamp(s["iopub.status.idle"]) for s in spans)
    return (end - start).total_seconds()


def format_run_time(seconds: float) -> str:
    """``42.3`` → ``"40 s"``; ``131`` → ``"2 min 10 s"`` (to the nearest 5 s, then 10 s)."""
    if seconds < 0:
        raise ValueError(f"a run time cannot be negative, got {seconds}")
    if seconds < 57.5:
        return f"{max(5, 5 * round(seconds / 5))} s"
    total = 10 * round(seconds / 10)
    minutes, rest = divmod(total, 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def run_time_line(nb: dict) -> str:
    return (f"{PREFIX}{format_run_time(measured_seconds(nb))} on a 2-core CPU (CPU preset), "
            "from the chapter's last execution.*")


def stated_run_time(nb: dict) -> str | None:
    """The run time the first cell states (``"40 s"``), or None."""
    match = LINE.search("".join(nb["cells"][0]["source"]))
    return match["text"] if match else None


def write_run_time(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = nb["cells"][0]
    if first["cell_type"] != "markdown":
        raise ValueError(f"{path}: the first cell must be the chapter's title (markdown)")
    line = run_time_line(nb)
    text = LINE.sub("", "".join(first["source"]))
    title, _, rest = text.partition("\n")
    first["source"] = f"{title}\n\n{line}\n\n{rest.lstrip(chr(10))}".splitlines(True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return line


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {write_run_time(Path(name))}")
