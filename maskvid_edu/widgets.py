"""Pictures of masks and reconstructions, and the interactive explorers of the book.

Two layers, so that everything a reader sees can be tested:

- **render functions** take tensors and return either an RGB ``uint8`` numpy image
  (:func:`masked_frames`) or a ``matplotlib.figure.Figure`` (``render_*``). They draw nothing on
  screen, use no global pyplot state and keep images small (80 dpi by default).
- **widget factories** (:func:`mask_explorer`) return an ``ipywidgets`` object without displaying
  it. Its view is a PNG held by an ``ipywidgets.Image``; :func:`show` puts the controls on screen
  together with that PNG as an ordinary image output, which the controls keep up to date. A
  notebook saved after running therefore holds a plain ``<img>`` of the current view, and the
  static HTML book shows it even where widgets cannot run.

Pixels: videos arrive ImageNet-normalised (the data pipeline's convention); every function here
undoes that normalisation and clamps to [0, 1] before drawing, and the figures say so. Hidden
patches are *greyed*: a hidden pixel shows ``(1 − MASK_ALPHA) · pixel + MASK_ALPHA · MASK_GREY``,
so the reader still glimpses what the encoder does not see.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .baselines import copy_reconstruct, masked_psnr
from .data.transforms import denormalize
from .masking import _check_grid, check_mask, make_mask
from .patches import patchify, unpatchify

__all__ = [
    "MASK_GREY",
    "MASK_ALPHA",
    "STRATEGIES",
    "PIXELS_NOTE",
    "to_rgb",
    "mask_pixels",
    "masked_frames",
    "render_mask_grid",
    "render_strategies",
    "render_mask_view",
    "render_copy_baseline",
    "mask_explorer",
    "show",
]

MASK_GREY = 0.45  # grey level of a hidden pixel, in [0, 1]
MASK_ALPHA = 0.8  # share of grey in a hidden pixel (the rest is the true pixel)
STRATEGIES = ("random", "frame", "tube", "running_cell")
PIXELS_NOTE = "pixels shown after undoing the ImageNet normalisation; hidden patches greyed"
DPI = 80


# --------------------------------------------------------------------------------------------
# Pure image functions
# --------------------------------------------------------------------------------------------


def _clip(video: torch.Tensor, sample: int = 0) -> torch.Tensor:
    """``(C, T, H, W)`` or ``(B, C, T, H, W)`` → the ``(C, T, H, W)`` clip ``sample``."""
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"video must be a torch.Tensor (C, T, H, W) or (B, C, T, H, W), got {type(video).__name__}")
    if video.dim() == 5:
        if not 0 <= sample < video.shape[0]:
            raise ValueError(f"sample must index the batch of {video.shape[0]} clips, got {sample}")
        video = video[sample]
    if video.dim() != 4 or video.shape[0] != 3:
        raise ValueError(f"video must have shape (3, T, H, W) or (B, 3, T, H, W), got {tuple(video.shape)}")
    return video.detach().float().cpu()


def _units(clip: torch.Tensor, grid) -> tuple[int, int, int]:
    """Tubelet and patch sizes ``(tubelet, p_h, p_w)`` implied by a clip and its token grid."""
    t, h, w = _check_grid(grid)
    _, T, H, W = clip.shape
    if T % t or H % h or W % w:
        raise ValueError(f"grid {tuple(grid)} does not tile a clip of T, H, W = {(T, H, W)}")
    return T // t, H // h, W // w


def _mask_row(mask: torch.Tensor, num_tokens: int, sample: int = 0) -> torch.Tensor:
    """``(B, N)`` bool → the ``(N,)`` mask of ``sample``; an ``(N,)`` mask is every sample's."""
    if isinstance(mask, torch.Tensor) and mask.dim() == 1:
        mask, sample = mask.unsqueeze(0), 0
    check_mask(mask, num_tokens)
    if not 0 <= sample < mask.shape[0]:
        raise ValueError(f"sample must index the {mask.shape[0]} masks, got {sample}")
    return mask[sample].cpu()


def to_rgb(video: torch.Tensor, *, input_normalized: bool = True, sample: int = 0) -> np.ndarray:
    """A clip as displayable frames: ``(3, T, H, W)`` → ``uint8 (T, H, W, 3)``.

    Undoes the ImageNet normalisation when ``input_normalized``, clamps to [0, 1] and rounds
    ``255 · x`` to the nearest integer.
    """
    clip = _clip(video, sample)
    pixels = denormalize(clip, channel_dim=0) if input_normalized else clip
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def mask_pixels(mask: torch.Tensor, grid, tubelet: int, patch: int | tuple[int, int]) -> torch.Tensor:
    """Token mask ``(N,)`` → pixel mask bool ``(T, H, W)``: each token covers its tubelet."""
    t, h, w = _check_grid(grid)
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    m = mask.reshape(t, h, w)
    return m.repeat_interleave(tubelet, 0).repeat_interleave(ph, 1).repeat_interleave(pw, 2)  # (T, H, W)


def masked_frames(
    video: torch.Tensor,
    mask: torch.Tensor,
    grid,
    frames: Sequence[int] | None = None,
    *,
    input_normalized: bool = True,
    sample: int = 0,
) -> np.ndarray:
    """Frames with their hidden patches greyed: ``uint8 (F, H, W, 3)``.

    Args:
        video: ``(3, T, H, W)`` or ``(B, 3, T, H, W)``, ImageNet-normalised unless
            ``input_normalized=False`` (then pixels in [0, 1]).
        mask: bool ``(N,)`` or ``(B, N)``, True = hidden, ``N = t·h·w``.
        grid: token grid ``(t, h, w)``; tubelet and patch sizes follow from the clip's shape.
        frames: frame indices to draw (default: every frame).
        sample: which clip of a batch.
    """
    clip = _clip(video, sample)
    tubelet, ph, pw = _units(clip, grid)
    t, h, w = grid
    row = _mask_row(mask, t * h * w, sample)
    T = clip.shape[1]
    frames = list(range(T)) if frames is None else _check_frames(frames, T)
    pixels = denormalize(clip, channel_dim=0) if input_normalized else clip
    pixels = pixels.clamp(0, 1)[:, frames]  # (3, F, H, W)
    hidden = mask_pixels(row, grid, tubelet, (ph, pw))[frames]  # (F, H, W)
    shown = torch.where(hidden, (1 - MASK_ALPHA) * pixels + MASK_ALPHA * MASK_GREY, pixels)  # (3, F, H, W)
    return (shown * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def _check_frames(frames, T: int) -> list[int]:
    frames = [frames] if isinstance(frames, (int, np.integer)) else list(frames)
    if not frames or any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < T for f in frames):
        raise ValueError(f"frames must be frame indices in [0, {T - 1}], got {frames!r}")
    return [int(f) for f in frames]


def _draw_mask(strategy: str, grid, ratio: float, seed: int) -> torch.Tensor:
    """One mask ``(1, N)`` of ``strategy``, reproducible from ``seed`` alone."""
    return make_mask(strategy, 1, grid, ratio, generator=torch.Generator().manual_seed(int(seed)))


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _figure(width: float, height: float, dpi: int) -> Figure:
    if not 20 <= dpi <= 100:
        raise ValueError(f"dpi must be in [20, 100] to keep the book small, got {dpi}")
    return Figure(figsize=(width, height), dpi=dpi)


def _show_image(ax, image: np.ndarray, patch_hw: tuple[int, int] | None = None) -> None:
    ax.imshow(image, interpolation="nearest")
    if patch_hw is not None:  # faint patch boundaries, drawn over the picture (not in it)
        H, W = image.shape[:2]
        for y in range(patch_hw[0], H, patch_hw[0]):
            ax.axhline(y - 0.5, color="white", lw=0.4, alpha=0.35)
        for x in range(patch_hw[1], W, patch_hw[1]):
            ax.axvline(x - 0.5, color="white", lw=0.4, alpha=0.35)
    ax.set_xticks([])
    ax.set_yticks([])


def _default_frames(T: int, tubelet: int, at_most: int = 8) -> list[int]:
    """The first frame of evenly spaced temporal slots, at most ``at_most`` of them."""
    slots = T // tubelet
    picks = np.linspace(0, slots - 1, num=min(slots, at_most)).round().astype(int)
    return sorted({int(s) * tubelet for s in picks})


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
    clip = _clip(video, sample)
    tubelet, ph, pw = _units(clip, grid)
    T = clip.shape[1]
    frames = _default_frames(T, tubelet) if frames is None else _check_frames(frames, T)
    row = _mask_row(mask, int(np.prod(grid)), sample)  # (N,)
    images = masked_frames(clip, row, grid, frames, input_normalized=input_normalized)
    H, W = clip.shape[2:]
    fig = _figure(panel * len(frames), panel * H / W + 0.6, dpi)
    axes = fig.subplots(1, len(frames), squeeze=False)[0]
    for ax, f, image in zip(axes, frames, images):
        _show_image(ax, image, (ph, pw))
        ax.set_title(f"frame {f} (slot {f // tubelet})", fontsize=9)
    hidden = int(row.sum())
    fig.suptitle(title or f"{hidden} of {row.numel()} tokens hidden", fontsize=10)
    fig.text(0.5, 0.01, PIXELS_NOTE, ha="center", va="bottom", fontsize=8, color="0.35")
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
    clip = _clip(video, sample)
    _, T, H, W = clip.shape
    grid = (T // tubelet, H // patch, W // patch)
    _units(clip, grid)
    frames = _check_frames(frames, T)
    fig = _figure(panel * len(frames) + 1.1, (panel * H / W + 0.15) * len(strategies) + 0.5, dpi)
    axes = fig.subplots(len(strategies), len(frames), squeeze=False)
    for i, strategy in enumerate(strategies):
        rho = ratio.get(strategy, 0.9) if isinstance(ratio, Mapping) else ratio
        mask = _draw_mask(strategy, grid, rho, seed)[0]  # (N,)
        images = masked_frames(clip, mask, grid, frames, input_normalized=input_normalized)
        for j, (f, image) in enumerate(zip(frames, images)):
            ax = axes[i, j]
            _show_image(ax, image, (patch, patch))
            if i == 0:
                ax.set_title(f"frame {f} (slot {f // tubelet})", fontsize=9)
        axes[i, 0].set_ylabel(
            f"{strategy.replace('_', ' ')}\nρ = {rho:g}\n{int(mask.sum())}/{mask.numel()} hidden", fontsize=9
        )
    fig.text(0.5, 0.005, PIXELS_NOTE, ha="center", va="bottom", fontsize=8, color="0.35")
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
    clip = _clip(video, sample)
    tubelet, ph, pw = _units(clip, grid)
    t, h, w = grid
    frame = _check_frames(frame, clip.shape[1])[0]
    row = _mask_row(mask, t * h * w, sample)  # (N,)
    image = masked_frames(clip, row, grid, [frame], input_normalized=input_normalized)[0]
    cols = min(t, 4)
    rows = -(-t // cols)
    fig = _figure(6.0, 3.2, dpi)
    gs = fig.add_gridspec(rows, 1 + cols, width_ratios=[cols] + [1] * cols, wspace=0.12, hspace=0.35,
                          left=0.01, right=0.99, bottom=0.14, top=0.86)
    ax = fig.add_subplot(gs[:, 0])
    _show_image(ax, image, (ph, pw))
    ax.set_title(f"frame {frame} (slot {frame // tubelet})", fontsize=8)
    maps = row.view(t, h, w).float().numpy()
    for s in range(t):
        mx = fig.add_subplot(gs[s // cols, 1 + s % cols])
        mx.imshow(1 - 0.8 * maps[s], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        mx.set_xticks([])
        mx.set_yticks([])
        mx.set_title(f"slot {s}", fontsize=8, pad=2)
        current = s == frame // tubelet
        for spine in mx.spines.values():
            spine.set_color("red" if current else "0.6")
            spine.set_linewidth(2.0 if current else 0.5)
    fig.suptitle(title or f"{int(row.sum())} of {row.numel()} tokens hidden", fontsize=10)
    fig.text(0.01, 0.01, PIXELS_NOTE + "\nright: the mask of every slot (dark = hidden), red = the slot shown",
             fontsize=8, color="0.35")
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
    """What copying visible patches recovers under each strategy (:mod:`maskvid_edu.baselines`).

    One row per strategy: the frame as the encoder sees it (hidden patches greyed), the copy
    baseline's reconstruction (hidden patches copied from the nearest visible token in time,
    else in space), and the original. The row label gives the PSNR over the hidden pixels of
    the whole clip. ``video`` is ImageNet-normalised ``(3, T, H, W)`` or ``(B, 3, T, H, W)``.
    """
    clip = _clip(video, sample)
    _, T, H, W = clip.shape
    grid = (T // tubelet, H // patch, W // patch)
    _units(clip, grid)
    frame = _check_frames(frame, T)[0]
    original = to_rgb(clip)[frame]
    target = patchify(denormalize(clip, channel_dim=0).clamp(0, 1).unsqueeze(0), tubelet, patch)  # (1, N, D)
    fig = _figure(3 * panel + 1.1, (panel * H / W + 0.15) * len(strategies) + 0.8, dpi)
    axes = fig.subplots(len(strategies), 3, squeeze=False)
    for i, strategy in enumerate(strategies):
        mask = _draw_mask(strategy, grid, ratio, seed)  # (1, N)
        rec = copy_reconstruct(clip.unsqueeze(0), mask, tubelet, patch)
        score = float(masked_psnr(rec.patches, target, mask))
        rec_video = unpatchify(rec.patches, grid, tubelet, patch)[0]  # (3, T, H, W) in [0, 1]
        seen = masked_frames(clip, mask, grid, [frame])[0]
        copied = to_rgb(rec_video, input_normalized=False)[frame]
        for j, image in enumerate((seen, copied, original)):
            _show_image(axes[i, j], image, (patch, patch) if j < 2 else None)
        axes[i, 0].set_ylabel(f"{strategy}\n{score:.1f} dB", fontsize=9)
    for j, name in enumerate(("encoder sees", "copy baseline", "original")):
        axes[0, j].set_title(f"{name}" + (f" (frame {frame})" if j == 0 else ""), fontsize=9)
    fig.text(0.5, 0.005, f"ρ = {ratio:g}; PSNR over the hidden pixels of the clip\n" + PIXELS_NOTE,
             ha="center", va="bottom", fontsize=8, color="0.35")
    fig.subplots_adjust(left=1.0 / fig.get_figwidth(), right=0.99, bottom=0.5 / fig.get_figheight(),
                        top=1 - 0.3 / fig.get_figheight(), wspace=0.05, hspace=0.08)
    return fig


def _figure_to_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Encode a figure as PNG bytes at ``dpi`` (≤ 100 keeps the book small)."""
    if not 20 <= dpi <= 100:
        raise ValueError(f"dpi must be in [20, 100] to keep the book small, got {dpi}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------------


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

    clip = _clip(video, sample)
    _, T, H, W = clip.shape
    grid = (T // tubelet, H // patch, W // patch) if grid is None else _check_grid(grid)
    tubelet, ph, pw = _units(clip, grid)
    if strategy not in strategies:
        raise ValueError(f"strategy must be one of {list(strategies)}, got {strategy!r}")
    frame = _check_frames(frame, T)[0]

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
        image.value = _figure_to_png(fig, dpi)

    for control in controls.values():
        control.observe(render, names="value")
    render()
    box = widgets.VBox([widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")), image])
    box.controls = controls
    box.image = image
    return box


def show(explorer) -> None:
    """Display an explorer's controls and its current view as an ordinary PNG output.

    The PNG output carries a display id; every change of the explorer's image replaces it in
    place. In a live notebook the controls drive the picture; a saved notebook and the static
    HTML book hold the last picture as a plain image, so readers without a kernel see it too.
    """
    from IPython.display import Image, display

    image = getattr(explorer, "image", None)
    if image is None or not hasattr(image, "value"):
        raise ValueError("explorer must come from a widget factory of maskvid_edu.widgets (it has no .image)")
    display(explorer.children[0])
    handle = display(Image(data=bytes(image.value), format="png"), display_id=True)
    image.observe(lambda change: handle.update(Image(data=bytes(change["new"]), format="png")), names="value")

