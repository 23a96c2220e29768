"""Masks on a clip (chapter 1, and the copy baseline of chapter 2): the hidden patches greyed,
the masking strategies side by side, what copying visible patches recovers, and the mask explorer.

Every mask here is drawn by :func:`maskvid_edu.masking.make_mask` from a seed alone, so a figure
and the explorer show the same mask for the same controls.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..analysis.baselines import copy_reconstruct, masked_psnr
from ..data.transforms import denormalize
from ..masking import make_mask
from ..patches import patchify, unpatchify
from ._core import (DPI, PIXELS_NOTE, as_clip, assemble, check_frames, check_grid, clip_units, default_frames,
                    figure_to_png, mask_row, masked_frames, new_figure, show_image, to_rgb)

__all__ = ["STRATEGIES", "render_mask_grid", "render_strategies", "render_mask_view", "render_copy_baseline",
           "mask_explorer"]

STRATEGIES = ("random", "frame", "tube", "running_cell")


def _draw_mask(strategy: str, grid, ratio: float, seed: int) -> torch.Tensor:
    """One mask ``(1, N)`` of ``strategy``, reproducible from ``seed`` alone."""
    return make_mask(strategy, 1, grid, ratio, generator=torch.Generator().manual_seed(int(seed)))


def render_mask_grid(
    video: torch.Tensor,
    mask: torch.Tensor,
    grid,
    frames: Sequence[int] | None = None,
    *,
    input_normalized: bool = True,
    sample: int = 0,
    title: str | None = None,
    panel: float = 1.5,
    dpi: int = DPI,
) -> Figure:
    """One row of frames with the hidden patches greyed (see :func:`masked_frames`).

    ``frames`` defaults to the first frame of up to 8 evenly spaced temporal slots. Each panel
    is ``panel`` inches wide; the caption states the hidden count and that pixels were
    un-normalised.
    """
    clip = as_clip(video, sample)
    tubelet, ph, pw = clip_units(clip, grid)
    T = clip.shape[1]
    frames = default_frames(T, tubelet) if frames is None else check_frames(frames, T)
    row = mask_row(mask, int(np.prod(grid)), sample)  # (N,)
    images = masked_frames(clip, row, grid, frames, input_normalized=input_normalized)
    H, W = clip.shape[2:]
    fig = new_figure(panel * len(frames), panel * H / W + 0.6, dpi)
    axes = fig.subplots(1, len(frames), squeeze=False)[0]
    for ax, f, image in zip(axes, frames, images):
        show_image(ax, image, (ph, pw))
        ax.set_title(f"frame {f} (slot {f // tubelet})", fontsize=9)
    hidden = int(row.sum())
    fig.suptitle(title or f"{hidden} of {row.numel()} tokens hidden", fontsize=10)
    fig.text(0.5, 0.01, PIXELS_NOTE, ha="center", va="bottom", fontsize=9, color="0.35")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.08, top=0.78, wspace=0.05)
    return fig


def render_strategies(
    video: torch.Tensor,
    strategies: Sequence[str] = STRATEGIES,
    ratio: float | Mapping[str, float] = 0.9,
    seed: int = 0,
    frames: int | Sequence[int] = 0,
    *,
    tubelet: int = 2,
    patch: int = 16,
    input_normalized: bool = True,
    sample: int = 0,
    panel: float = 1.3,
    dpi: int = DPI,
) -> Figure:
    """Masking strategies side by side: one row per strategy, one column per frame.

    Args:
        video: ``(3, T, H, W)`` or ``(B, 3, T, H, W)``, ImageNet-normalised.
        strategies: names understood by :func:`maskvid_edu.masking.make_mask`.
        ratio: one ratio for all, or ``{strategy: ratio}`` (missing strategies take 0.9).
        seed: each strategy's mask is drawn from ``torch.Generator().manual_seed(seed)``.
        frames: one frame index or several; several frames from different temporal slots show
            what each strategy does over time.
    """
    clip = as_clip(video, sample)
    _, T, H, W = clip.shape
    grid = (T // tubelet, H // patch, W // patch)
    clip_units(clip, grid)
    frames = check_frames(frames, T)
    fig = new_figure(panel * len(frames) + 1.1, (panel * H / W + 0.15) * len(strategies) + 0.5, dpi)
    axes = fig.subplots(len(strategies), len(frames), squeeze=False)
    for i, strategy in enumerate(strategies):
        rho = ratio.get(strategy, 0.9) if isinstance(ratio, Mapping) else ratio
        mask = _draw_mask(strategy, grid, rho, seed)[0]  # (N,)
        images = masked_frames(clip, mask, grid, frames, input_normalized=input_normalized)
        for j, (f, image) in enumerate(zip(frames, images)):
            ax = axes[i, j]
            show_image(ax, image, (patch, patch))
            if i == 0:
                ax.set_title(f"frame {f} (slot {f // tubelet})", fontsize=9)
        axes[i, 0].set_ylabel(
            f"{strategy.replace('_', ' ')}\nρ = {rho:g}\n{int(mask.sum())}/{mask.numel()} hidden", fontsize=9
        )
    fig.text(0.5, 0.005, PIXELS_NOTE, ha="center", va="bottom", fontsize=9, color="0.35")
    fig.subplots_adjust(left=1.0 / fig.get_figwidth(), right=0.99, bottom=0.35 / fig.get_figheight(),
                        top=1 - 0.3 / fig.get_figheight(), wspace=0.05, hspace=0.08)
    return fig


def render_mask_view(
    video: torch.Tensor,
    mask: torch.Tensor,
    grid,
    frame: int = 0,
    *,
    title: str | None = None,
    input_normalized: bool = True,
    sample: int = 0,
    dpi: int = DPI,
) -> Figure:
    """The mask explorer's view: one frame with hidden patches greyed, and the whole mask.

    Left: frame ``frame``. Right: the mask of every temporal slot as a small ``h × w`` map
    (dark = hidden), the slot of ``frame`` outlined in red — a tube mask repeats one map, a
    random mask changes from slot to slot, a frame mask blacks out whole slots.
    """
    clip = as_clip(video, sample)
    tubelet, ph, pw = clip_units(clip, grid)
    t, h, w = grid
    frame = check_frames(frame, clip.shape[1])[0]
    row = mask_row(mask, t * h * w, sample)  # (N,)
    image = masked_frames(clip, row, grid, [frame], input_normalized=input_normalized)[0]
    cols = min(t, 4)
    rows = -(-t // cols)
    fig = new_figure(6.0, 3.2, dpi)
    gs = fig.add_gridspec(rows, 1 + cols, width_ratios=[cols] + [1] * cols, wspace=0.12, hspace=0.35,
                          left=0.01, right=0.99, bottom=0.14, top=0.86)
    ax = fig.add_subplot(gs[:, 0])
    show_image(ax, image, (ph, pw))
    ax.set_title(f"frame {frame} (slot {frame // tubelet})", fontsize=9)
    maps = row.view(t, h, w).float().numpy()
    for s in range(t):
        mx = fig.add_subplot(gs[s // cols, 1 + s % cols])
        mx.imshow(1 - 0.8 * maps[s], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        mx.set_xticks([])
        mx.set_yticks([])
        mx.set_title(f"slot {s}", fontsize=9, pad=2)
        current = s == frame // tubelet
        for spine in mx.spines.values():
            spine.set_color("red" if current else "0.6")
            spine.set_linewidth(2.0 if current else 0.5)
    fig.suptitle(title or f"{int(row.sum())} of {row.numel()} tokens hidden", fontsize=10)
    fig.text(0.01, 0.01, PIXELS_NOTE + "\nright: the mask of every slot (dark = hidden), red = the slot shown",
             fontsize=9, color="0.35")
    return fig


def render_copy_baseline(
    video: torch.Tensor,
    strategies: Sequence[str] = ("random", "frame", "tube"),
    ratio: float = 0.9,
    seed: int = 0,
    frame: int = 0,
    *,
    tubelet: int = 2,
    patch: int = 16,
    sample: int = 0,
    panel: float = 1.5,
    dpi: int = DPI,
) -> Figure:
    """What copying visible patches recovers under each strategy (:mod:`maskvid_edu.analysis.baselines`).

    One row per strategy: the frame as the encoder sees it (hidden patches greyed), the copy
    baseline's reconstruction (hidden patches copied from the nearest visible token in time,
    else in space), and the original. The row label gives the PSNR over the hidden pixels of
    the whole clip. ``video`` is ImageNet-normalised ``(3, T, H, W)`` or ``(B, 3, T, H, W)``.
    """
    clip = as_clip(video, sample)
    _, T, H, W = clip.shape
    grid = (T // tubelet, H // patch, W // patch)
    clip_units(clip, grid)
    frame = check_frames(frame, T)[0]
    original = to_rgb(clip)[frame]
    target = patchify(denormalize(clip, channel_dim=0).clamp(0, 1).unsqueeze(0), tubelet, patch)  # (1, N, D)
    fig = new_figure(3 * panel + 1.1, (panel * H / W + 0.15) * len(strategies) + 0.8, dpi)
    axes = fig.subplots(len(strategies), 3, squeeze=False)
    for i, strategy in enumerate(strategies):
        mask = _draw_mask(strategy, grid, ratio, seed)  # (1, N)
        rec = copy_reconstruct(clip.unsqueeze(0), mask, tubelet, patch)
        score = float(masked_psnr(rec.patches, target, mask))
        rec_video = unpatchify(rec.patches, grid, tubelet, patch)[0]  # (3, T, H, W) in [0, 1]
        seen = masked_frames(clip, mask, grid, [frame])[0]
        copied = to_rgb(rec_video, input_normalized=False)[frame]
        for j, image in enumerate((seen, copied, original)):
            show_image(axes[i, j], image, (patch, patch) if j < 2 else None)
        axes[i, 0].set_ylabel(f"{strategy}\n{score:.1f} dB", fontsize=9)
    for j, name in enumerate(("encoder sees", "copy baseline", "original")):
        axes[0, j].set_title(f"{name}" + (f" (frame {frame})" if j == 0 else ""), fontsize=9)
    fig.text(0.5, 0.005, f"ρ = {ratio:g}; PSNR over the hidden pixels of the clip\n" + PIXELS_NOTE,
             ha="center", va="bottom", fontsize=9, color="0.35")
    fig.subplots_adjust(left=1.0 / fig.get_figwidth(), right=0.99, bottom=0.5 / fig.get_figheight(),
                        top=1 - 0.3 / fig.get_figheight(), wspace=0.05, hspace=0.08)
    return fig


def mask_explorer(
    video: torch.Tensor,
    grid=None,
    tubelet: int = 2,
    patch: int = 16,
    *,
    strategies: Sequence[str] = STRATEGIES,
    strategy: str = "tube",
    ratio: float = 0.9,
    seed: int = 0,
    frame: int = 0,
    input_normalized: bool = True,
    sample: int = 0,
    dpi: int = DPI,
):
    """An interactive view of masks on a clip; returned, not displayed.

    Controls: strategy (dropdown), ratio (slider 0.25–0.95), seed, frame (slider); sliders
    update on release (``continuous_update=False``). The view is :func:`render_mask_view` as
    PNG bytes in an ``ipywidgets.Image``. A ratio the strategy cannot use (e.g. a running cell
    needs ratio ≥ 0.25 and an even grid) shows the reason in the title instead of a mask.

    Returns an ``ipywidgets.VBox`` ``(controls, image)`` with two extra attributes:
    ``.controls`` (dict name → control widget) and ``.image`` (the ``ipywidgets.Image``). Put it on
    screen with :func:`show` so that saved notebooks and the HTML book keep the current view.
    """
    import ipywidgets as widgets

    clip = as_clip(video, sample)
    _, T, H, W = clip.shape
    grid = (T // tubelet, H // patch, W // patch) if grid is None else check_grid(grid)
    tubelet, ph, pw = clip_units(clip, grid)
    if strategy not in strategies:
        raise ValueError(f"strategy must be one of {list(strategies)}, got {strategy!r}")
    frame = check_frames(frame, T)[0]

    controls = {
        "strategy": widgets.Dropdown(options=list(strategies), value=strategy, description="strategy"),
        "ratio": widgets.FloatSlider(value=ratio, min=0.25, max=0.95, step=0.05, description="ratio ρ",
                                     continuous_update=False, readout_format=".2f"),
        "seed": widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                       layout=widgets.Layout(width="160px")),
        "frame": widgets.IntSlider(value=frame, min=0, max=T - 1, description="frame", continuous_update=False),
    }
    image = widgets.Image(format="png")

    def render(_change=None) -> None:
        s, rho = controls["strategy"].value, controls["ratio"].value
        f = controls["frame"].value
        try:
            mask = _draw_mask(s, grid, rho, controls["seed"].value)[0]  # (N,)
            title = f"{s.replace('_', ' ')} masking, ρ = {rho:.2f}: {int(mask.sum())} of {mask.numel()} tokens hidden"
        except ValueError as err:  # this strategy cannot mask at this ratio on this grid
            mask = torch.zeros(int(np.prod(grid)), dtype=torch.bool)
            title = f"{s}: {err}"
        fig = render_mask_view(clip, mask, grid, f, title=title, input_normalized=input_normalized, dpi=dpi)
        image.value = figure_to_png(fig, dpi)

    return assemble(controls, image, render)
