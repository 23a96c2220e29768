"""Pictures of what scaling costs (chapter 7): activation memory against the batch, and the
measured step time against the FLOPs of each model size.

The numbers come from :mod:`maskvid_edu.measure.scaling`; these functions only draw them.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from ..measure.flops import ASSUMED_MFU
from ._core import DPI, new_figure

__all__ = ["render_memory_sweep", "render_step_times"]


def render_memory_sweep(rows: list[dict], title: str = "", dpi: int = DPI) -> Figure:
    """Activation memory against batch size, one line per mask ratio.

    rows: :func:`~maskvid_edu.measure.scaling.memory_sweep` rows (``batch``, ``ratio``,
    ``activations`` in bytes).
    """
    if not rows:
        raise ValueError("render_memory_sweep needs at least one row of memory_sweep")
    fig = new_figure(5.5, 3.4, dpi)
    ax = fig.add_subplot()
    for ratio in sorted({r["ratio"] for r in rows}):
        pts = sorted((r["batch"], r["activations"] / 2**20) for r in rows if r["ratio"] == ratio)
        ax.plot(*zip(*pts), marker="o", label=f"mask ratio {ratio:g}")
    ax.set_xlabel("clips per batch")
    ax.set_ylabel("activations saved for backward (MiB)")
    ax.set_title(title or "memory grows with the batch and with the visible share")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def render_step_times(sizes: list[dict], measured: dict[str, float], peak_flops: float, *,
                      mfus=(1.0, ASSUMED_MFU), title: str = "", dpi: int = DPI) -> Figure:
    """Step FLOPs per clip (x) against seconds per clip (y), log–log: the measured sizes as
    points, and the lines ``t = FLOPs / (peak · MFU)`` that the unmeasured sizes would follow.

    sizes: :func:`~maskvid_edu.measure.scaling.model_sizes` rows (batch 1);
    measured: ``{name: seconds per clip}``; peak_flops: the FLOP/s that 100 % MFU means.
    """
    if not sizes:
        raise ValueError("render_step_times needs at least one row of model_sizes")
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be > 0 FLOP/s, got {peak_flops}")
    fig = new_figure(5.8, 3.6, dpi)
    ax = fig.add_subplot()
    flops = [r["step_flops"] for r in sizes]
    span = [min(flops) / 2, max(flops) * 2]
    for m in mfus:
        ax.plot(span, [f / (peak_flops * m) for f in span], ls="--", lw=1,
                label=f"{m:.0%} of the measured peak")
    for r in sizes:
        ax.axvline(r["step_flops"], color="0.85", lw=0.8, zorder=0)
        ax.text(r["step_flops"], 0.97, r["name"].replace("videomae_", ""),
                transform=ax.get_xaxis_transform(), fontsize=9, rotation=90, va="top", ha="right")
    xs = [r["step_flops"] for r in sizes if r["name"] in measured]
    ys = [measured[r["name"]] for r in sizes if r["name"] in measured]
    ax.scatter(xs, ys, color="k", zorder=3, label="measured here")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs of one training step, per clip")
    ax.set_ylabel("seconds per clip")
    ax.set_title(title or "step time follows the FLOPs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig
