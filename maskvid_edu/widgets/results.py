"""Results with their intervals: accuracy against the number of labelled clips (chapter 6's
data-efficiency experiment, :mod:`maskvid_edu.analysis.data_efficiency`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from ._core import DPI, new_figure

__all__ = ["EFFICIENCY_NOTE", "render_data_efficiency"]

EFFICIENCY_NOTE = "mean over seeds, bars: 95 % t interval; dashed: chance"

_LABELS = {"pretrained": "pre-trained encoder", "random": "random init"}


def render_data_efficiency(rows: Sequence[dict], *, chance: float | None = 25.0, title: str = "",
                           dpi: int = DPI) -> Figure:
    """Test accuracy (%) against labelled clips (log axis), one line per init, with the
    interval of each mean; ``rows`` as :func:`~maskvid_edu.analysis.data_efficiency.summarise`
    returns them (an init without an interval at some size is left out at that size)."""
    if not rows:
        raise ValueError("render_data_efficiency needs at least one summary row")
    fig = new_figure(5.2, 3.2, dpi)
    ax = fig.add_subplot()
    for init, label in _LABELS.items():
        points = [(row["num_labelled"], row[init]) for row in rows if row.get(init) is not None]
        if not points:
            continue
        n = np.array([p[0] for p in points], dtype=float)
        mean = np.array([p[1].mean for p in points])
        err = np.array([[p[1].mean - p[1].low for p in points], [p[1].high - p[1].mean for p in points]])
        ax.errorbar(n, mean, yerr=err, marker="o", capsize=3, lw=1.5, label=label)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks([row["num_labelled"] for row in rows], [str(row["num_labelled"]) for row in rows])
    ax.set_xlabel("labelled training clips")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or EFFICIENCY_NOTE, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig
