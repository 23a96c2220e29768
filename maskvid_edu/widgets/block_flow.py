"""Masks of the successors (chapter 8): V-JEPA's multi-block masks beside tube masks, and MGMAE's
flow-guided masks on a moving clip.

Two render functions, both pure (tensors in, a ``Figure`` out):

- :func:`render_mask_rows` — any named masks of one clip, one row each, the same frames in the
  columns, plus each mask's first slot as a small token map: multi-block against tube, or tube
  against flow-guided;
- :func:`render_flow_guided` — a base-frame mask carried along a flow field
  (:func:`maskvid_edu.masking.flow_guided_mask`) next to the same mask kept in place (a tube),
  with the flow drawn as arrows on the token grid.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..masking import flow_guided_mask
from ._core import (DPI, PIXELS_NOTE, as_clip, check_frames, clip_units, default_frames, mask_row, masked_frames,
                    new_figure, show_image)

__all__ = ["render_mask_rows", "render_flow_guided"]


def render_mask_rows(
    video: torch.Tensor,
    masks: Mapping[str, torch.Tensor],
    grid,
    frames: Sequence[int] | None = None,
    *,
    input_normalized: bool = True,
    sample: int = 0,
    title: str | None = None,
    note: str | None = None,
    panel: float = 1.2,
    dpi: int = DPI,
) -> Figure:
    """Several masks of one clip side by side: a row per mask, a column per frame.

    Args:
        video: ``(3, T, H, W)`` or ``(B, 3, T, H, W)``, ImageNet-normalised (undone for display).
        masks: ``{name: bool (N,) or (B, N)}``, True = hidden, on the token ``grid``.
        grid: token grid ``(t, h, w)``.
        frames: frame indices (default: the first frame of up to 8 slots).
        note: a line added under the figure (e.g. where a flow field came from).

    The last column is the mask of slot 0 as a token map (dark = hidden). Each row's label gives
    its hidden count, so equal counts (the library's convention) can be read off the figure.
    """
    if not masks:
        raise ValueError("masks must name at least one mask")
    clip = as_clip(video, sample)
    tubelet, ph, pw = clip_units(clip, grid)
    t, h, w = grid
    T, H, W = clip.shape[1:]
    frames = default_frames(T, tubelet) if frames is None else check_frames(frames, T)
    cols = len(frames) + 1
    fig = new_figure(panel * cols + 1.2, (panel * H / W + 0.2) * len(masks) + 0.7, dpi)
    axes = fig.subplots(len(masks), cols, squeeze=False)
    for i, (name, mask) in enumerate(masks.items()):
        row = mask_row(mask, t * h * w, sample)  # (N,)
        for j, (f, image) in enumerate(zip(frames, masked_frames(clip, row, grid, frames,
                                                                  input_normalized=input_normalized))):
            show_image(axes[i, j], image, (ph, pw))
            if i == 0:
                axes[i, j].set_title(f"frame {f} (slot {f // tubelet})", fontsize=9)
        ax = axes[i, -1]
        ax.imshow(1 - 0.8 * row.view(t, h, w)[0].float().numpy(), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.set_title("slot 0 mask", fontsize=9)
        axes[i, 0].set_ylabel(f"{name}\n{int(row.sum())}/{row.numel()} hidden", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    text = PIXELS_NOTE + ("\n" + note if note else "")
    fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=9, color="0.35")
    fig.subplots_adjust(left=1.1 / fig.get_figwidth(), right=0.99, bottom=0.45 / fig.get_figheight(),
                        top=1 - (0.45 if title else 0.25) / fig.get_figheight(), wspace=0.05, hspace=0.08)
    return fig


def render_flow_guided(
    video: torch.Tensor,
    base_mask: torch.Tensor,
    flow: torch.Tensor,
    grid,
    frames: Sequence[int] | None = None,
    *,
    seed: int = 0,
    flow_source: str = "flow given by the caller",
    input_normalized: bool = True,
    sample: int = 0,
    panel: float = 1.2,
    dpi: int = DPI,
) -> Figure:
    """MGMAE's motion-guided mask against a tube, with the flow that guides it.

    Args:
        video: ``(3, T, H, W)`` or ``(B, 3, T, H, W)``, ImageNet-normalised.
        base_mask: bool ``(h·w,)`` or ``(B, h·w)``, the mask of slot 0.
        flow: ``(t-1, 2, h, w)`` or ``(B, t-1, 2, h, w)`` in token units (see
            :func:`~maskvid_edu.masking.flow_guided_mask`).
        seed: the generator of the warp's ties and holes.
        flow_source: said under the figure (synthetic, constant, or an optical-flow method).

    Row 1: the base mask repeated in every slot (a tube). Row 2: the base mask carried along the
    flow, with the flow's arrows (token units, one per token) over the first frame shown.
    """
    clip = as_clip(video, sample)
    t, h, w = grid
    base = base_mask.reshape(-1, h * w)[sample if base_mask.dim() == 2 else 0][None].cpu()  # (1, h·w)
    field = (flow if flow.dim() == 5 else flow[None])[sample if flow.dim() == 5 else 0][None].float().cpu()
    if field.shape[1:] != (t - 1, 2, h, w):
        raise ValueError(f"flow must be (t-1, 2, h, w) = {(t - 1, 2, h, w)} for grid {tuple(grid)}, "
                         f"got {tuple(field.shape[1:])}")
    guided = flow_guided_mask(base, field, generator=torch.Generator().manual_seed(int(seed)))  # (1, N)
    tube = base.repeat(1, t)  # (1, N)
    fig = render_mask_rows(clip, {"tube (kept in place)": tube, "flow-guided": guided}, grid, frames,
                           input_normalized=input_normalized, note=f"arrows: {flow_source}, token units",
                           panel=panel, dpi=dpi)
    _, ph, pw = clip_units(clip, grid)
    ax = fig.axes[len(fig.axes) // 2]  # first frame of the second row
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    u, v = field[0, 0, 0].numpy(), field[0, 0, 1].numpy()
    ax.quiver((xs + 0.5) * pw - 0.5, (ys + 0.5) * ph - 0.5, u * pw, v * ph, color="yellow", angles="xy",
              scale_units="xy", scale=1.0, width=0.012)
    return fig
