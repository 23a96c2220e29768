"""Training curves (every chapter that trains, and ``maskvid-edu pretrain``'s ``loss_curve.png``):
the metrics of one or several trainer histories against the optimizer step, and a viewer.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ._core import DPI, assemble, figure_to_png, new_figure

__all__ = ["CURVE_NOTE", "curve_metrics", "render_training_curves", "training_curve_viewer"]

CURVE_NOTE = "each point: mean over one log interval of the trainer's metrics.jsonl"


def _as_runs(runs) -> dict[str, list[dict]]:
    """``history`` (list of metric rows) or ``{name: history}`` → ``{name: history}``."""
    if isinstance(runs, Mapping):
        out = {str(k): list(v) for k, v in runs.items()}
    else:
        out = {"run": list(runs)}
    if not out or not all(out.values()):
        raise ValueError("runs must be a non-empty history (list of metric rows) or a dict of them")
    for name, rows in out.items():
        if not all(isinstance(r, Mapping) and "step" in r for r in rows):
            raise ValueError(f"run {name!r}: every metric row must be a dict with a 'step' (the trainer's history)")
    return out


def curve_metrics(runs) -> list[str]:
    """The plottable metrics of ``runs``: ``loss`` first, then the loss terms, then the rest."""
    keys: list[str] = []
    for rows in _as_runs(runs).values():
        for k, v in rows[0].items():
            if k not in keys and k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    return sorted(keys, key=lambda k: (k != "loss", not k.startswith("loss_"), k))


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < 2:
        return values
    kernel = np.ones(min(window, len(values))) / min(window, len(values))
    padded = np.pad(values, (len(kernel) - 1, 0), mode="edge")  # causal: a point never sees the future
    return np.convolve(padded, kernel, mode="valid")


def render_training_curves(
    runs,
    metrics: Sequence[str] | None = None,
    *,
    smooth: int = 1,
    log_y: bool | None = None,
    title: str = "",
    dpi: int = DPI,
) -> Figure:
    """Metrics of one or several runs against the optimizer step.

    Args:
        runs: a trainer history (list of metric rows, as :func:`maskvid_edu.train.train` returns)
            or ``{name: history}`` to compare runs.
        metrics: which metrics (default: ``loss`` and every ``loss_*`` term that differs from
            the total loss).
        smooth: causal moving average over this many log points (1 = raw).
        log_y: log scale (default: when every plotted value is positive).
    """
    runs = _as_runs(runs)
    available = curve_metrics(runs)
    if metrics is None:
        metrics = [k for k in available if k == "loss" or k.startswith("loss_")]
        first = next(iter(runs.values()))
        metrics = [k for k in metrics if k == "loss" or not np.allclose([r.get(k, np.nan) for r in first],
                                                                        [r["loss"] for r in first])]
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise ValueError(f"metrics {unknown} are not in these runs; available: {available}")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be a positive int (points in the moving average), got {smooth!r}")
    fig = new_figure(6.0, 3.4, dpi)
    ax = fig.add_subplot()
    plotted = []
    for name, rows in runs.items():
        steps = np.array([r["step"] for r in rows])
        for k in metrics:
            values = np.array([r.get(k, np.nan) for r in rows], dtype=float)
            label = k if len(runs) == 1 else f"{name}: {k}"
            ax.plot(steps, _smooth(values, smooth), label=label, lw=1.6 if k == "loss" else 1.0)
            plotted.append(values[np.isfinite(values)])
    values = np.concatenate(plotted) if plotted else np.array([])
    if log_y is None:
        log_y = values.size > 0 and bool((values > 0).all())
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metrics[0] if len(metrics) == 1 else "value")
    ax.set_title(title or CURVE_NOTE, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def training_curve_viewer(runs, *, metric: str = "loss", smooth: int = 1, dpi: int = DPI):
    """An interactive view of training curves; returned, not displayed (use :func:`show`).

    Controls: the metric (dropdown over :func:`curve_metrics`), smoothing window (slider) and a
    log-scale switch. Every run of ``runs`` is drawn for the chosen metric.
    """
    import ipywidgets as widgets

    runs = _as_runs(runs)
    options = curve_metrics(runs)
    if metric not in options:
        raise ValueError(f"metric must be one of {options}, got {metric!r}")
    longest = max(len(rows) for rows in runs.values())
    controls = {
        "metric": widgets.Dropdown(options=options, value=metric, description="metric"),
        "smooth": widgets.IntSlider(value=smooth, min=1, max=max(1, longest // 2), description="smooth",
                                    continuous_update=False),
        "log": widgets.Checkbox(value=metric.startswith("loss"), description="log scale"),
    }
    image = widgets.Image(format="png")

    def render(_change=None) -> None:
        fig = render_training_curves(runs, [controls["metric"].value], smooth=controls["smooth"].value,
                                     log_y=controls["log"].value, dpi=dpi)
        image.value = figure_to_png(fig, dpi)

    return assemble(controls, image, render)
