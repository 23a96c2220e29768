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
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..baselines import copy_reconstruct, masked_psnr
from ..data.transforms import denormalize
from ..masking import _check_grid, check_mask, make_mask
from ..patches import patchify, unpatchify

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


def _assemble(controls: dict, image, render):
    """Wire every control to ``render``, draw the first view and box them: the layout that
    :func:`show` and every explorer of this module share.

    ``render(change=None)`` must set ``image.value`` (PNG bytes). Returns an ``ipywidgets.VBox``
    ``(controls row, image)`` with ``.controls`` (name → control) and ``.image``.
    """
    import ipywidgets as widgets

    for control in controls.values():
        control.observe(render, names="value")
    render()
    row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
    box = widgets.VBox([row, image])
    box.controls = controls
    box.image = image
    return box


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

    return _assemble(controls, image, render)


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



# --------------------------------------------------------------------------------------------
# Mask-pattern dissipation (chapter 3): curves, maps and a viewer
# --------------------------------------------------------------------------------------------


def render_dissipation(
    profiles: Mapping[str, Mapping[str, Sequence[dict]]],
    *,
    metric: str = "reached",
    title: str | None = None,
    dpi: int = DPI,
) -> Figure:
    """Share of hidden sites reached by visible content, layer by layer: one panel per encoder.

    Args:
        profiles: ``{encoder name: {variant: profile}}`` where a profile is the list returned by
            :func:`maskvid_edu.sparse.dissipation_profile` (e.g. variants ``"dense"`` and
            ``"sparse"`` of the same weights).
        metric: ``"reached"`` or ``"nonzero"`` (keys of the profile rows).
    """
    if metric not in ("reached", "nonzero"):
        raise ValueError(f"metric must be 'reached' or 'nonzero', got {metric!r}")
    if not profiles or not all(isinstance(v, Mapping) and v for v in profiles.values()):
        raise ValueError("profiles must map each encoder name to a non-empty {variant: profile} mapping")
    fig = _figure(4.2 * len(profiles), 3.2, dpi)
    axes = fig.subplots(1, len(profiles), squeeze=False)[0]
    styles = {"dense": dict(color="tab:red", marker="o"), "sparse": dict(color="tab:blue", marker="s")}
    for ax, (encoder, variants) in zip(axes, profiles.items()):
        names = None
        for variant, rows in variants.items():
            rows = list(rows)
            if names is None:
                names = [r["name"] for r in rows]
            elif [r["name"] for r in rows] != names:
                raise ValueError(f"profiles of {encoder!r} do not list the same layers")
            ax.plot(range(len(rows)), [100 * r[metric] for r in rows], label=variant, lw=1.4, ms=3.5,
                    **styles.get(variant, {}))
        strides = [r["stride"] for r in next(iter(variants.values()))]
        starts = [0] + [i for i in range(1, len(strides)) if strides[i] != strides[i - 1]] + [len(strides)]
        for a, b in zip(starts[:-1], starts[1:]):  # a thin line and a label per stride
            if a > 0:
                ax.axvline(a - 0.5, color="0.8", lw=0.8)
            ax.text((a + b - 1) / 2, 101, f"/{strides[a]}", ha="center", va="bottom", fontsize=6.5, color="0.4")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(-4, 110)
        ax.set_ylabel(f"hidden sites {metric} (%)", fontsize=8)
        ax.set_title(encoder, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="center right")
    fig.suptitle(title or "mask-pattern dissipation: hidden sites whose activation depends on visible pixels",
                 fontsize=9)
    fig.tight_layout()
    return fig


def _overlay(pixels: np.ndarray, hidden: np.ndarray, reached: np.ndarray) -> np.ndarray:
    """Visible pixels as they are; hidden ones grey, or red where content reached them."""
    out = pixels.copy()
    grey = (1 - MASK_ALPHA) * pixels + MASK_ALPHA * MASK_GREY
    red = 0.35 * pixels + 0.65 * np.array([0.85, 0.1, 0.1])
    out[hidden & ~reached] = grey[hidden & ~reached]
    out[hidden & reached] = red[hidden & reached]
    return out


def render_dissipation_maps(
    image: torch.Tensor,
    mask: torch.Tensor,
    rows: Mapping[str, dict],
    *,
    input_normalized: bool = True,
    title: str | None = None,
    dpi: int = DPI,
) -> Figure:
    """The input with its hidden patches, and where visible content has leaked after one layer.

    Args:
        image: ``(3, H, W)`` (ImageNet-normalised unless ``input_normalized=False``).
        mask: bool ``(h·w,)`` or ``(1, h·w)``, True = hidden 32-pixel patch.
        rows: ``{variant: profile row}``, rows of :func:`maskvid_edu.sparse.dissipation_profile`
            computed with ``return_maps=True`` (their ``"map"`` is ``(B, H', W')``; sample 0 is drawn).
    Hidden sites are grey where still empty and red where visible content reached them.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a (3, H, W) tensor, got {getattr(image, 'shape', type(image))}")
    H, W = image.shape[1:]
    grid = (1, H // 32, W // 32)
    row = _mask_row(mask, grid[1] * grid[2])
    pixels = denormalize(image.detach().float().cpu(), channel_dim=0) if input_normalized else image.detach().float().cpu()
    pixels = pixels.clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, 3)
    hidden = mask_pixels(row, grid, 1, 32)[0].numpy()  # (H, W)
    fig = _figure(1.9 * (1 + len(rows)), 2.5, dpi)
    axes = fig.subplots(1, 1 + len(rows), squeeze=False)[0]
    _show_image(axes[0], _overlay(pixels, hidden, np.zeros_like(hidden)), (32, 32))
    axes[0].set_title(f"input: {int(row.sum())} of {row.numel()} patches hidden", fontsize=8)
    for ax, (variant, r) in zip(axes[1:], rows.items()):
        if "map" not in r:
            raise ValueError(f"row {variant!r} has no 'map': compute the profile with return_maps=True")
        m = r["map"][0]  # (H', W')
        s = H // m.shape[0]
        reached = m.repeat_interleave(s, 0).repeat_interleave(s, 1).numpy()  # (H, W)
        _show_image(ax, _overlay(pixels, hidden, reached), (32, 32))
        ax.set_title(f"{variant}: {100 * r['reached']:.0f} % reached", fontsize=8)
    name = next(iter(rows.values()))
    fig.suptitle(title or f"after {name['name']} (stride {name['stride']})", fontsize=9)
    fig.text(0.5, 0.01, "red: hidden sites already carrying visible content; grey: still empty\n" + PIXELS_NOTE,
             ha="center", va="bottom", fontsize=6.5, color="0.35")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.16, top=0.8, wspace=0.05)
    return fig


def dissipation_viewer(
    image: torch.Tensor,
    encoders: Mapping[str, "torch.nn.Module"],
    *,
    ratio: float = 0.75,
    seed: int = 0,
    layer: int = 0,
    encoder: str | None = None,
    input_normalized: bool = True,
    dpi: int = DPI,
):
    """An interactive view of mask-pattern dissipation; returned, not displayed.

    Controls: encoder (dropdown over ``encoders``), layer (slider over the encoder's
    :func:`~maskvid_edu.sparse.dissipation_layers`), ratio (share of 32-pixel patches hidden,
    0.25–0.9), seed. The view is :func:`render_dissipation_maps` for the dense and the sparse run
    of the same weights. Display it with :func:`show`.

    Args:
        image: ``(3, H, W)``, H and W multiples of 32.
        encoders: ``{name: encoder}`` built from :mod:`maskvid_edu.sparse` layers.
    """
    import ipywidgets as widgets

    from ..sparse import dissipation_layers, dissipation_profile

    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or image.shape[1] % 32 \
            or image.shape[2] % 32:
        raise ValueError(f"image must be (3, H, W) with H and W multiples of 32, got {getattr(image, 'shape', None)}")
    if not encoders:
        raise ValueError("encoders must name at least one encoder")
    names = list(encoders)
    encoder = names[0] if encoder is None else encoder
    if encoder not in encoders:
        raise ValueError(f"encoder must be one of {names}, got {encoder!r}")
    depth = {n: len(dissipation_layers(e)) for n, e in encoders.items()}
    if not 0 <= layer < depth[encoder]:
        raise ValueError(f"layer must be in [0, {depth[encoder] - 1}] for {encoder!r}, got {layer}")
    h, w = image.shape[1] // 32, image.shape[2] // 32
    x = image.detach().float().cpu().unsqueeze(0)  # (1, 3, H, W)

    controls = {
        "encoder": widgets.Dropdown(options=names, value=encoder, description="encoder"),
        "layer": widgets.IntSlider(value=layer, min=0, max=depth[encoder] - 1, description="layer",
                                   continuous_update=False),
        "ratio": widgets.FloatSlider(value=ratio, min=0.25, max=0.9, step=0.05, description="ratio ρ",
                                     continuous_update=False, readout_format=".2f"),
        "seed": widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                       layout=widgets.Layout(width="160px")),
    }
    image_widget = widgets.Image(format="png")
    cache: dict = {}

    def profiles(name: str, rho: float, s: int):
        key = (name, round(rho, 4), s)
        if key not in cache:
            mask = make_mask("random", 1, (1, h, w), rho, generator=torch.Generator().manual_seed(int(s)))  # (1, h·w)
            cache[key] = (mask, {v: dissipation_profile(encoders[name], x, mask, sparse=v == "sparse", return_maps=True)
                                 for v in ("dense", "sparse")})
        return cache[key]

    def render(_change=None) -> None:
        name = controls["encoder"].value
        if controls["layer"].max != depth[name] - 1:
            controls["layer"].max = depth[name] - 1  # may clamp the value, which re-renders
        mask, prof = profiles(name, controls["ratio"].value, controls["seed"].value)
        i = min(controls["layer"].value, depth[name] - 1)
        fig = render_dissipation_maps(image, mask[0], {v: p[i] for v, p in prof.items()},
                                      input_normalized=input_normalized,
                                      title=f"{name}, layer {i}: {prof['dense'][i]['name']} "
                                            f"(stride {prof['dense'][i]['stride']})", dpi=dpi)
        image_widget.value = _figure_to_png(fig, dpi)

    return _assemble(controls, image_widget, render)


__all__ += ["render_dissipation", "render_dissipation_maps", "dissipation_viewer"]


# --------------------------------------------------------------------------------------------
# Motion targets and the convergence race (chapter 5): RGB differences, targets side by side,
# probe curves, and a motion viewer
# --------------------------------------------------------------------------------------------

MOTION_NOTE = ("difference d = next − current frame in [0, 1] pixels, shown as 0.5 + gain·d "
               "(grey: no change)")


def _motion_pixels(video: torch.Tensor, input_normalized: bool, sample: int) -> torch.Tensor:
    """``(3, F, H, W)`` clip in [0, 1] pixels (not clamped) with at least two frames."""
    clip = _clip(video, sample)
    if clip.shape[1] < 2:
        raise ValueError(f"video needs at least 2 frames to show a difference, got {clip.shape[1]}")
    return denormalize(clip, channel_dim=0) if input_normalized else clip


def _motion_check(threshold: float, gain: float) -> None:
    if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be a number in (0, 1] (pixel units), got {threshold!r}")
    if not (isinstance(gain, (int, float)) and not isinstance(gain, bool) and gain > 0):
        raise ValueError(f"gain must be a positive number, got {gain!r}")


def difference_image(diff: torch.Tensor, gain: float = 2.0) -> np.ndarray:
    """A signed RGB difference ``(3, H, W)`` as an image: ``uint8 (H, W, 3)`` of ``0.5 + gain·d``.

    Grey (128) is "no change"; brighter where a channel grew, darker where it fell.
    """
    if not isinstance(diff, torch.Tensor) or diff.dim() != 3 or diff.shape[0] != 3:
        raise ValueError(f"diff must be a (3, H, W) tensor, got {getattr(diff, 'shape', type(diff).__name__)}")
    _motion_check(0.5, gain)
    shown = (0.5 + gain * diff.detach().float().cpu()).clamp(0, 1)  # (3, H, W)
    return (shown * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def still_map(diff: torch.Tensor, threshold: float = 0.02) -> np.ndarray:
    """Bool ``(H, W)``: pixels whose difference ``(3, H, W)`` is below ``threshold`` in every channel."""
    if not isinstance(diff, torch.Tensor) or diff.dim() != 3:
        raise ValueError(f"diff must be a (C, H, W) tensor, got {getattr(diff, 'shape', type(diff).__name__)}")
    _motion_check(threshold, 1.0)
    return (diff.detach().float().abs().amax(dim=0) < threshold).cpu().numpy()


def render_motion_targets(
    video: torch.Tensor,
    frames: Sequence[int] | None = None,
    threshold: float = 0.02,
    *,
    gain: float = 2.0,
    input_normalized: bool = True,
    sample: int = 0,
    title: str | None = None,
    panel: float = 1.4,
    dpi: int = DPI,
) -> Figure:
    """What an RGB-difference target keeps: one column per frame ``i``, three rows.

    Rows: frame ``i``; the difference ``d_i = x_{i+1} − x_i`` (:func:`difference_image`);
    its *still* pixels (``max_c |d_i| < threshold``, black) against the moving ones (white),
    with their share in the column title.

    Args:
        video: ``(3, F, H, W)`` or ``(B, 3, F, H, W)``, ImageNet-normalised unless
            ``input_normalized=False``; ``F ≥ 2``.
        frames: indices ``i`` in ``[0, F − 2]`` (default: up to 4, evenly spaced).
        threshold: in [0, 1] pixel units. gain: display gain of the difference.
    """
    _motion_check(threshold, gain)
    pixels = _motion_pixels(video, input_normalized, sample)  # (3, F, H, W)
    F = pixels.shape[1]
    if frames is None:
        frames = sorted({int(i) for i in np.linspace(0, F - 2, num=min(4, F - 1)).round()})
    frames = _check_frames(frames, F - 1)
    H, W = pixels.shape[2:]
    fig = _figure(panel * len(frames) + 0.9, (panel * H / W + 0.25) * 3 + 0.6, dpi)
    axes = fig.subplots(3, len(frames), squeeze=False)
    for j, i in enumerate(frames):
        diff = pixels[:, i + 1] - pixels[:, i]  # (3, H, W)
        still = still_map(diff, threshold)
        frame = (pixels[:, i].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        _show_image(axes[0, j], frame)
        axes[0, j].set_title(f"frame {i}", fontsize=9)
        _show_image(axes[1, j], difference_image(diff, gain))
        axes[2, j].imshow(~still, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[2, j].set_xticks([])
        axes[2, j].set_yticks([])
        axes[2, j].set_title(f"{100 * still.mean():.0f} % still", fontsize=9)
    for row, name in enumerate(("frame i", f"d_i (gain {gain:g})", f"still: |d| < {threshold:g}")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, MOTION_NOTE + "\nbottom: black = still pixel, white = moving pixel",
             ha="center", va="bottom", fontsize=7.5, color="0.35")
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.99, bottom=0.45 / fig.get_figheight(),
                        top=1 - (0.45 if title else 0.25) / fig.get_figheight(), wspace=0.05, hspace=0.25)
    return fig


def _code_colors(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Categorical colours for code indices ``(h, w)`` → ``float (h, w, 3)`` (a fixed random palette)."""
    palette = np.random.default_rng(12345).uniform(0.1, 0.95, size=(codebook_size, 3))
    return palette[codes]


def render_target_views(
    videos,
    tokenizer=None,
    frame: int = 0,
    *,
    tubelet: int = 2,
    patch: int = 16,
    gain: float = 2.0,
    input_normalized: bool = True,
    panel: float = 1.4,
    dpi: int = DPI,
) -> Figure:
    """The targets of one frame side by side, the same tokens seen three ways.

    Columns: the input frame ``i``; VideoMAE's target (pixels normalised per patch,
    ``make_targets(kind="pixels_norm")``, shown as ``0.5 + 0.2·value``); with a ``tokenizer``,
    MAM2's appearance target — the VQ code of every ``f × f`` cell (a colour per code) and those
    codes decoded back to pixels when the tokenizer can decode; and MAM2's motion target
    ``d_i = x_{i+1} − x_i`` (``motion_targets(normalization="none")``; the default ``"scale"``
    target is this divided by the ImageNet std of each channel).

    Args:
        videos: one clip ``(3, F, H, W)`` or ``{name: clip}`` (one row each); ImageNet-normalised
            unless ``input_normalized=False``; ``F ≥ frame + 2`` frames, ``F − 1`` a multiple of
            ``tubelet`` (the model's ``T + 1``-frame clips).
        tokenizer: a :class:`~maskvid_edu.tokenizers.VQTokenizer`, or None (no code columns).
        frame: the frame ``i`` shown.
    """
    from ..data.transforms import normalize
    from ..targets import make_targets

    _motion_check(0.5, gain)
    if isinstance(videos, torch.Tensor):
        videos = {"": videos}
    if not isinstance(videos, Mapping) or not videos:
        raise ValueError("videos must be a (3, F, H, W) tensor or a non-empty {name: clip} mapping")
    decodes = tokenizer is not None and getattr(tokenizer, "can_decode", False)
    if tokenizer is not None:
        if not callable(getattr(tokenizer, "encode", None)) or not hasattr(tokenizer, "codebook_size"):
            raise ValueError(f"tokenizer must be a VQTokenizer (encode, codebook_size), got {type(tokenizer).__name__}")
        device = next((t.device for t in tokenizer.parameters()), torch.device("cpu"))
    names = ["input frame", "pixel target\n(VideoMAE)"]
    if tokenizer is not None:
        names.append("VQ codes\n(MAM2 appearance)")
        if decodes:
            names.append("codes decoded")
    names.append("RGB difference\n(MAM2 motion)")
    rows = list(videos.items())
    first = _clip(rows[0][1])
    H, W = first.shape[2:]
    fig = _figure(panel * len(names) + 0.9, (panel * H / W + 0.15) * len(rows) + 0.85, dpi)
    axes = fig.subplots(len(rows), len(names), squeeze=False)
    for r, (name, video) in enumerate(rows):
        clip = _clip(video)
        pixels = denormalize(clip, channel_dim=0) if input_normalized else clip  # (3, F, H, W)
        F, (h, w) = clip.shape[1], clip.shape[2:]
        T = F - 1
        if T < 1 or T % tubelet or h % patch or w % patch:
            raise ValueError(f"clip {name!r} of shape {tuple(clip.shape)} must have T + 1 frames with T a multiple of "
                             f"tubelet={tubelet} and H, W multiples of patch={patch}")
        i = _check_frames(frame, T)[0]
        batch = pixels.unsqueeze(0)  # (1, 3, F, H, W) in [0, 1]
        grid = (T // tubelet, h // patch, w // patch)
        pix = make_targets(batch, "pixels_norm", tubelet, patch, input_normalized=False, num_frames=T)  # (1, N, P)
        pix = unpatchify(pix, grid, tubelet, patch)[0, :, i]  # (3, H, W)
        mot = make_targets(batch, "motion", tubelet, patch, normalization="none", input_normalized=False)  # (1, N, P)
        mot = unpatchify(mot, grid, tubelet, patch)[0, :, i]  # (3, H, W)
        images = [(pixels[:, i].clamp(0, 1).permute(1, 2, 0).numpy()),
                  (0.5 + 0.2 * pix).clamp(0, 1).permute(1, 2, 0).numpy()]
        if tokenizer is not None:
            x = normalize(pixels[:, i].unsqueeze(0), channel_dim=1).to(device)  # (1, 3, H, W) normalised
            codes = tokenizer.encode(x)  # (1, h', w')
            images.append(_code_colors(codes[0].cpu().numpy(), tokenizer.codebook_size))
            if decodes:
                recon = denormalize(tokenizer.decode(codes).float().cpu(), channel_dim=1)[0]  # (3, H, W)
                images.append(recon.clamp(0, 1).permute(1, 2, 0).numpy())
            n_codes = int(codes.unique().numel())
        images.append(difference_image(mot, gain))
        for c, image in enumerate(images):
            _show_image(axes[r, c], image)
            if r == 0:
                axes[r, c].set_title(names[c], fontsize=8.5)
        label = f"{name}\nframe {i}" if name else f"frame {i}"
        if tokenizer is not None:
            label += f"\n{n_codes} codes"
        axes[r, 0].set_ylabel(label, fontsize=8.5)
    fig.text(0.5, 0.005, f"pixels after undoing the ImageNet normalisation; pixel target shown as 0.5 + 0.2·value; "
             f"\nmotion shown as 0.5 + {gain:g}·d (grey: no change); code colours are arbitrary, one per code",
             ha="center", va="bottom", fontsize=7.5, color="0.35")
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.99, bottom=0.4 / fig.get_figheight(),
                        top=1 - 0.45 / fig.get_figheight(), wspace=0.05, hspace=0.1)
    return fig


def render_probe_curves(
    result,
    metrics: Sequence[str] = ("accuracy", "knn_accuracy"),
    *,
    title: str | None = None,
    dpi: int = DPI,
) -> Figure:
    """Probe accuracy against pre-training step, one line per method (mean over seeds, error
    bars ± one standard deviation, one faint dot per seed), chance dashed.

    Args:
        result: a :class:`~maskvid_edu.compare.ComparisonResult`.
        metrics: one panel each, from ``"accuracy"`` (linear probe, test), ``"train_accuracy"``,
            ``"knn_accuracy"``.
    """
    names = {"accuracy": "linear probe (test)", "train_accuracy": "linear probe (train)",
             "knn_accuracy": "k-NN (test)"}
    metrics = list(metrics)
    if not metrics or any(m not in names for m in metrics):
        raise ValueError(f"metrics must be a non-empty list from {list(names)}, got {metrics!r}")
    for attr in ("summary", "methods", "checkpoints", "seeds", "num_classes"):
        if not hasattr(result, attr):
            raise ValueError(f"result must be a ComparisonResult (it has no {attr!r})")
    fig = _figure(3.6 * len(metrics) + 0.4, 3.5, dpi)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    steps = list(result.checkpoints)
    span = (max(steps) - min(steps)) or 1
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, metric in zip(axes, metrics):
        rows = result.summary(metric)
        for k, method in enumerate(result.methods):
            mine = [r for r in rows if r["method"] == method]
            if not mine:
                continue
            shift = (k - (len(result.methods) - 1) / 2) * 0.012 * span  # keep error bars apart
            xs = [r["step"] + shift for r in mine]
            color = colors[k % len(colors)]
            ax.errorbar(xs, [100 * r["mean"] for r in mine], yerr=[100 * r["std"] for r in mine], color=color,
                        marker="o", ms=4, lw=1.4, capsize=3, label=method)
            for x, r in zip(xs, mine):
                ax.scatter([x] * len(r["values"]), [100 * v for v in r["values"]], s=10, color=color, alpha=0.45,
                           linewidths=0)
        if result.num_classes:
            ax.axhline(100 / result.num_classes, color="0.4", ls="--", lw=1, label="chance")
        ax.set_xticks(steps)
        ax.set_xlabel("pre-training step")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(names[metric], fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7.5, frameon=False)
    n = len(result.seeds)
    fig.suptitle(title or f"mean ± std over {n} seed{'s' if n != 1 else ''} (dots: single seeds)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def render_motion_view(
    video: torch.Tensor,
    frame: int = 0,
    threshold: float = 0.02,
    *,
    gain: float = 2.0,
    input_normalized: bool = True,
    sample: int = 0,
    title: str | None = None,
    dpi: int = DPI,
) -> Figure:
    """The motion explorer's view: frame ``i``, its difference ``d_i`` and its still pixels, side by side."""
    _motion_check(threshold, gain)
    pixels = _motion_pixels(video, input_normalized, sample)  # (3, F, H, W)
    i = _check_frames(frame, pixels.shape[1] - 1)[0]
    diff = pixels[:, i + 1] - pixels[:, i]  # (3, H, W)
    still = still_map(diff, threshold)
    fig = _figure(6.0, 2.6, dpi)
    axes = fig.subplots(1, 3)
    _show_image(axes[0], (pixels[:, i].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    axes[0].set_title(f"frame {i}", fontsize=9)
    _show_image(axes[1], difference_image(diff, gain))
    axes[1].set_title(f"d_{i} = frame {i + 1} − frame {i}", fontsize=9)
    axes[2].imshow(~still, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_title(f"{100 * still.mean():.0f} % still (|d| < {threshold:g})", fontsize=9)
    fig.suptitle(title or "what the motion target keeps", fontsize=10)
    fig.text(0.01, 0.01, MOTION_NOTE.replace("gain", f"gain {gain:g}", 1) + "; right: black = still",
             fontsize=7.5, color="0.35")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.1, top=0.82, wspace=0.05)
    return fig


def motion_explorer(
    video: torch.Tensor,
    frame: int = 0,
    threshold: float = 0.02,
    *,
    gain: float = 2.0,
    input_normalized: bool = True,
    sample: int = 0,
    dpi: int = DPI,
):
    """An interactive view of RGB-difference targets on a clip; returned, not displayed.

    Controls: frame (slider over ``[0, F − 2]``), still threshold (slider 0.005–0.2, pixel
    units), display gain (slider 1–8); sliders update on release. The view is
    :func:`render_motion_view` as PNG bytes in an ``ipywidgets.Image``. Returns an
    ``ipywidgets.VBox`` with ``.controls`` and ``.image``; put it on screen with :func:`show`.
    """
    import ipywidgets as widgets

    _motion_check(threshold, gain)
    pixels = _motion_pixels(video, input_normalized, sample)  # (3, F, H, W)
    frame = _check_frames(frame, pixels.shape[1] - 1)[0]
    controls = {
        "frame": widgets.IntSlider(value=frame, min=0, max=pixels.shape[1] - 2, description="frame i",
                                   continuous_update=False),
        "threshold": widgets.FloatSlider(value=threshold, min=0.005, max=0.2, step=0.005, description="still <",
                                         continuous_update=False, readout_format=".3f"),
        "gain": widgets.FloatSlider(value=gain, min=1.0, max=8.0, step=0.5, description="gain",
                                    continuous_update=False, readout_format=".1f"),
    }
    image = widgets.Image(format="png")

    def render(_change=None) -> None:
        fig = render_motion_view(pixels, controls["frame"].value, controls["threshold"].value,
                                 gain=controls["gain"].value, input_normalized=False, dpi=dpi)
        image.value = _figure_to_png(fig, dpi)

    return _assemble(controls, image, render)


__all__ += ["MOTION_NOTE", "difference_image", "still_map", "render_motion_targets", "render_target_views",
            "render_probe_curves", "render_motion_view", "motion_explorer"]



# --------------------------------------------------------------------------------------------
# Reconstructions of a pre-trained VideoMAE (chapter 2): figures and an explorer
# --------------------------------------------------------------------------------------------

PATTERN_NOTE = ("* normalised view: the prediction normalised per patch and channel (VideoMAE's target), "
                "drawn with the TRUE patch's mean and std")
RECON_COLUMNS = ("encoder sees", "model (pixels)", "normalised view*", "copy baseline", "original")


def _recon_image(video: torch.Tensor, frame: int, sample: int) -> np.ndarray:
    """``(B, 3, T, H, W)`` in [0, 1] → ``uint8 (H, W, 3)`` of one frame."""
    return (video[sample, :, frame].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _recon_check(recs) -> list:
    recs = [recs] if not isinstance(recs, (list, tuple)) else list(recs)
    needed = ("original", "mask", "pixels", "pattern", "copy", "psnr_pixels", "psnr_pattern", "psnr_copy", "grid",
              "tubelet", "patch")
    if not recs or any(not all(hasattr(r, k) for k in needed) for r in recs):
        raise ValueError("recs must be one or more maskvid_edu.reconstruct.Reconstruction objects")
    return recs


def render_reconstructions(
    recs,
    frame: int = 0,
    *,
    sample: int = 0,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    panel: float = 1.35,
    dpi: int = DPI,
) -> Figure:
    """Reconstructions side by side: one row per :class:`~maskvid_edu.reconstruct.Reconstruction`.

    Columns: the frame as the encoder sees it (hidden patches greyed), the model's prediction in
    pixels, the normalised view (prediction per-patch normalised, drawn with the *true* patch's
    mean and std), the copy baseline, the original. Under each reconstruction: its PSNR over the
    clip's hidden tubelets. Rows are labelled with the mask (strategy, ratio, visible tokens)
    unless ``labels`` are given.

    Args:
        recs: one Reconstruction or a sequence of them (same clip size).
        frame: frame index to draw; sample: which clip of each Reconstruction's batch.
    """
    recs = _recon_check(recs)
    if labels is not None and len(labels) != len(recs):
        raise ValueError(f"labels must give one label per reconstruction ({len(recs)}), got {len(labels)}")
    T, H, W = recs[0].original.shape[2:]
    frame = _check_frames(frame, T)[0]
    fig = _figure(panel * len(RECON_COLUMNS) + 1.2, (panel * H / W + 0.32) * len(recs) + 0.95, dpi)
    axes = fig.subplots(len(recs), len(RECON_COLUMNS), squeeze=False)
    for i, r in enumerate(recs):
        if not 0 <= sample < r.original.shape[0]:
            raise ValueError(f"sample must index the batch of {r.original.shape[0]} clips, got {sample}")
        seen = masked_frames(r.original[sample], r.mask[sample], r.grid, [frame], input_normalized=False)[0]
        images = (seen, _recon_image(r.pixels, frame, sample), _recon_image(r.pattern, frame, sample),
                  _recon_image(r.copy, frame, sample), _recon_image(r.original, frame, sample))
        scores = (None, r.psnr_pixels[sample], r.psnr_pattern[sample], r.psnr_copy[sample], None)
        for j, (image, score) in enumerate(zip(images, scores)):
            ax = axes[i, j]
            _show_image(ax, image, (r.patch, r.patch) if j < 4 else None)
            if score is not None:
                ax.set_xlabel(f"{float(score):.1f} dB", fontsize=8, labelpad=1)
        visible = int((~r.mask[sample]).sum())
        label = labels[i] if labels is not None else (
            f"{getattr(r, 'strategy', '')} ρ = {getattr(r, 'ratio', r.mask[sample].float().mean()):.2f}\n"
            f"{visible}/{r.mask.shape[1]} visible")
        axes[i, 0].set_ylabel(label, fontsize=8)
    for j, name in enumerate(RECON_COLUMNS):
        axes[0, j].set_title(name + (f" (frame {frame})" if j == 0 else ""), fontsize=8)
    note = "PSNR over the hidden tubelets of the clip; " + PIXELS_NOTE + "\n" + PATTERN_NOTE
    if any(getattr(r, "borrowed", False) for r in recs):
        note += "\nthe model predicts a normalised target: its pixel view borrows the true patch statistics too"
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=6.5, color="0.3")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=1.0 / fig.get_figwidth(), right=0.99, bottom=0.62 / fig.get_figheight(),
                        top=1 - (0.45 if title else 0.25) / fig.get_figheight(), wspace=0.05, hspace=0.3)
    return fig


def reconstruction_explorer(
    views: Mapping,
    *,
    clip: str | None = None,
    strategy: str = "tube",
    ratio: float = 0.9,
    frame: int = 0,
    dpi: int = DPI,
):
    """An interactive view of precomputed reconstructions; returned, not displayed.

    ``views`` is :func:`maskvid_edu.reconstruct.precompute_views`' result,
    ``{(clip name, strategy, ratio): Reconstruction}``; moving a control only looks a view up
    and draws it (:func:`render_reconstructions`, one row) — no model runs. Controls: clip
    (dropdown, when there are several), strategy (dropdown), ratio (slider over the ratios
    present), frame (slider); sliders update on release (``continuous_update=False``). A
    combination missing from ``views`` says so in the picture.

    Returns an ``ipywidgets.VBox`` ``(controls, image)`` with ``.controls`` and ``.image``; put it
    on screen with :func:`show`, which keeps a static PNG of the current view for the HTML book.
    """
    import ipywidgets as widgets

    if not isinstance(views, Mapping) or not views:
        raise ValueError("views must be a non-empty {(clip, strategy, ratio): Reconstruction} mapping")
    keys = list(views)
    if any(not (isinstance(k, tuple) and len(k) == 3) for k in keys):
        raise ValueError("views must be keyed by (clip name, strategy, ratio) tuples")
    _recon_check(list(views.values()))
    clips = list(dict.fromkeys(k[0] for k in keys))
    strategies = list(dict.fromkeys(k[1] for k in keys))
    ratios = sorted({float(k[2]) for k in keys})
    clip = clips[0] if clip is None else clip
    for name, value, options in (("clip", clip, clips), ("strategy", strategy, strategies)):
        if value not in options:
            raise ValueError(f"{name} must be one of {options}, got {value!r}")
    ratio = min(ratios, key=lambda r: abs(r - float(ratio)))
    T = views[keys[0]].original.shape[2]
    frame = _check_frames(frame, T)[0]

    controls = {}
    if len(clips) > 1:
        controls["clip"] = widgets.Dropdown(options=clips, value=clip, description="clip")
    controls["strategy"] = widgets.Dropdown(options=strategies, value=strategy, description="mask")
    controls["ratio"] = widgets.SelectionSlider(options=[(f"{r:.2f}", r) for r in ratios], value=ratio,
                                                description="ratio ρ", continuous_update=False)
    controls["frame"] = widgets.IntSlider(value=frame, min=0, max=T - 1, description="frame", continuous_update=False)
    image = widgets.Image(format="png")

    def render(_change=None) -> None:
        name = controls["clip"].value if "clip" in controls else clips[0]
        s, rho, f = controls["strategy"].value, controls["ratio"].value, controls["frame"].value
        rec = views.get((name, s, rho))
        if rec is None:
            fig = _figure(6.0, 1.0, dpi)
            fig.text(0.5, 0.5, f"{s} masking at ρ = {rho:.2f} cannot be drawn on this grid", ha="center",
                     va="center", fontsize=9)
        else:
            fig = render_reconstructions(rec, f, title=f"{name}: {s} masking, ρ = {rho:.2f}", dpi=dpi)
        image.value = _figure_to_png(fig, dpi)

    return _assemble(controls, image, render)


def render_dual_masking(
    video: torch.Tensor,
    mask: torch.Tensor,
    decoder_mask: torch.Tensor,
    grid,
    frames: Sequence[int] | None = None,
    *,
    input_normalized: bool = True,
    sample: int = 0,
    panel: float = 1.5,
    dpi: int = DPI,
) -> Figure:
    """VideoMAE V2's two masks on one clip: what the encoder sees, what the decoder rebuilds.

    Each token is drawn in one of four ways: seen by the encoder and not in the loss (as it is);
    seen and also reconstructed (blue tint); hidden and reconstructed (red tint); hidden and
    *not* reconstructed (grey) — the decoder never spends a token on those.

    Args:
        video: ``(3, T, H, W)`` or ``(B, 3, T, H, W)``, ImageNet-normalised unless ``input_normalized=False``.
        mask: bool ``(N,)`` or ``(B, N)``, True = hidden from the encoder (tube mask).
        decoder_mask: bool like ``mask``, True = *not* reconstructed (running-cell mask).
        grid: token grid ``(t, h, w)``; frames: frames to draw (default: first frame of each slot, up to 8).
    """
    clip = _clip(video, sample)
    tubelet, ph, pw = _units(clip, grid)
    t, h, w = _check_grid(grid)
    enc = _mask_row(mask, t * h * w, sample)  # (N,)
    dec = _mask_row(decoder_mask, t * h * w, sample)  # (N,)
    T = clip.shape[1]
    frames = _default_frames(T, tubelet) if frames is None else _check_frames(frames, T)
    pixels = (denormalize(clip, channel_dim=0) if input_normalized else clip).clamp(0, 1)[:, frames]  # (3, F, H, W)
    pixels = pixels.permute(1, 2, 3, 0).numpy()  # (F, H, W, 3)
    hidden = mask_pixels(enc, grid, tubelet, (ph, pw))[frames].numpy()  # (F, H, W)
    rebuilt = mask_pixels(~dec, grid, tubelet, (ph, pw))[frames].numpy()  # (F, H, W)
    grey = (1 - MASK_ALPHA) * pixels + MASK_ALPHA * MASK_GREY
    red = 0.35 * pixels + 0.65 * np.array([0.85, 0.12, 0.1])
    blue = 0.45 * pixels + 0.55 * np.array([0.1, 0.35, 0.9])
    out = pixels.copy()
    for where, colour in ((hidden & ~rebuilt, grey), (hidden & rebuilt, red), (~hidden & rebuilt, blue)):
        out[where] = colour[where]
    H, W = clip.shape[2:]
    fig = _figure(panel * len(frames), panel * H / W + 0.85, dpi)
    axes = fig.subplots(1, len(frames), squeeze=False)[0]
    for ax, f, image in zip(axes, frames, out):
        _show_image(ax, (image * 255).round().astype(np.uint8), (ph, pw))
        ax.set_title(f"frame {f} (slot {f // tubelet})", fontsize=8)
    n_hidden, n_dec = int(enc.sum()), int((~dec).sum())
    both = int((enc & ~dec).sum())
    fig.suptitle(f"encoder sees {t * h * w - n_hidden} of {t * h * w} tokens; decoder rebuilds {n_dec} "
                 f"({both} hidden, {n_dec - both} seen) and skips {int((enc & dec).sum())} hidden ones", fontsize=8.5)
    fig.text(0.5, 0.01, "red: hidden, rebuilt · grey: hidden, skipped by the decoder · blue: seen, rebuilt too · "
             "clear: seen\n" + PIXELS_NOTE.split(";")[0], ha="center", va="bottom", fontsize=7, color="0.3")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.5 / fig.get_figheight(), top=1 - 0.45 / fig.get_figheight(),
                        wspace=0.05)
    return fig


__all__ += ["PATTERN_NOTE", "render_reconstructions", "reconstruction_explorer", "render_dual_masking"]


# --------------------------------------------------------------------------------------------
# Label propagation: predicted masks over the frames
# --------------------------------------------------------------------------------------------

PROPAGATION_NOTE = "colours: DAVIS palette (1 red, 2 green, 3 yellow, …); J: mean IoU with the truth over the first frame's objects"


def overlay_ids(image: np.ndarray, ids, alpha: float = 0.55) -> np.ndarray:
    """Colour a frame by instance ids: ``uint8 (H, W, 3)``.

    image: ``uint8 (H, W, 3)``. ids: ``(H, W)`` integers, 0 = background (left as it is); id ``k``
    is blended with the DAVIS palette colour ``k`` at ``alpha``, and its boundary pixels (those
    with a 4-neighbour of another id) are drawn in the full colour.
    """
    from ..data.davis import DAVIS_PALETTE

    ids = np.asarray(torch.as_tensor(ids).cpu().numpy() if torch.is_tensor(ids) else ids)
    if image.ndim != 3 or image.shape[2] != 3 or ids.shape != image.shape[:2]:
        raise ValueError(f"image must be (H, W, 3) and ids (H, W) of the same size, got {image.shape} and {ids.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise ValueError(f"ids must be in [0, 255], got [{ids.min()}, {ids.max()}]")
    colour = DAVIS_PALETTE[ids].astype(np.float64)  # (H, W, 3)
    out = image.astype(np.float64)
    fg = ids > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    edge = np.zeros_like(fg)
    edge[1:] |= ids[1:] != ids[:-1]
    edge[:-1] |= ids[:-1] != ids[1:]
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge &= fg
    out[edge] = colour[edge]
    return out.round().clip(0, 255).astype(np.uint8)


def _frames_rgb(frames, input_normalized: bool) -> np.ndarray:
    """``(T, 3, H, W)`` → ``uint8 (T, H, W, 3)``."""
    x = torch.as_tensor(frames).detach().float().cpu()
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got shape {tuple(x.shape)}")
    if input_normalized:
        x = denormalize(x, channel_dim=1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _as_predictions(predictions, T: int, size) -> dict:
    items = predictions.items() if isinstance(predictions, Mapping) else [("prediction", predictions)]
    out = {}
    for name, masks in items:
        m = torch.as_tensor(masks).cpu()
        if m.dim() != 3 or m.shape[0] != T or tuple(m.shape[1:]) != tuple(size):
            raise ValueError(f"prediction {name!r} must be (T, H, W) = {(T, *size)}, got shape {tuple(m.shape)}")
        out[str(name)] = m.long()
    if not out:
        raise ValueError("predictions is empty")
    return out


def frame_jaccard(gt, pred, t: int) -> float:
    """Mean IoU at frame ``t`` over the objects of ``gt``'s first frame (ids > 0)."""
    from ..evaluate.metrics import jaccard

    gt, pred = torch.as_tensor(gt), torch.as_tensor(pred)
    objects = [int(k) for k in torch.unique(gt[0]) if k > 0]
    if not objects:
        return float("nan")
    return float(np.mean([jaccard(gt[t] == k, pred[t] == k) for k in objects]))


def render_propagation(
    frames,
    predictions,
    frame: int = 0,
    *,
    gt=None,
    alpha: float = 0.55,
    input_normalized: bool = False,
    panel: float = 1.8,
    title: str | None = None,
    dpi: int = DPI,
) -> Figure:
    """One frame of a sequence with propagated masks drawn over it, side by side.

    Args:
        frames: ``(T, 3, H, W)`` RGB, in [0, 1] (as :func:`~maskvid_edu.data.davis.read_davis_sequence`
            returns them) or ImageNet-normalised with ``input_normalized=True``.
        predictions: ``(T, H, W)`` ids, or ``{name: (T, H, W)}`` to compare methods (one panel each).
        frame: which frame to draw.
        gt: optional true ids ``(T, H, W)``: drawn first, and each prediction's panel shows its
            ``J`` at this frame (:func:`frame_jaccard`).
    """
    rgb = _frames_rgb(frames, input_normalized)
    T, H, W = rgb.shape[:3]
    preds = _as_predictions(predictions, T, (H, W))
    frame = _check_frames(frame, T)[0]
    panels = ([("ground truth", torch.as_tensor(gt).long().cpu())] if gt is not None else []) + list(preds.items())
    if gt is not None and tuple(panels[0][1].shape) != (T, H, W):
        raise ValueError(f"gt must be (T, H, W) = {(T, H, W)}, got shape {tuple(panels[0][1].shape)}")
    fig = _figure(panel * len(panels), panel * H / W + 0.75, dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, masks) in zip(axes, panels):
        _show_image(ax, overlay_ids(rgb[frame], masks[frame], alpha))
        label = name
        if gt is not None and name != "ground truth":
            label += f"\nJ = {frame_jaccard(panels[0][1], masks, frame):.2f}"
        ax.set_title(label, fontsize=8)
    fig.suptitle(title or f"frame {frame} of {T} (frame 0 is given)", fontsize=9)
    fig.text(0.5, 0.01, PROPAGATION_NOTE, ha="center", va="bottom", fontsize=6.5, color="0.35")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.3 / fig.get_figheight(),
                        top=1 - 0.6 / fig.get_figheight(), wspace=0.05)
    return fig


def propagation_viewer(
    frames,
    predictions,
    *,
    gt=None,
    frame: int = 0,
    alpha: float = 0.55,
    input_normalized: bool = False,
    panel: float = 1.8,
    title: str | None = None,
    dpi: int = DPI,
):
    """An interactive view of propagated masks; returned, not displayed.

    Controls: ``frame`` (slider over the sequence) and ``alpha`` (opacity of the colours), both
    updating on release. The view is :func:`render_propagation` as PNG bytes in an
    ``ipywidgets.Image``. Returns an ``ipywidgets.VBox`` with ``.controls`` and ``.image``, like
    :func:`mask_explorer`; put it on screen with :func:`show` so that saved notebooks and the
    HTML book keep the current picture.
    """
    import ipywidgets as widgets

    rgb_T = _frames_rgb(frames, input_normalized).shape[0]
    frame = _check_frames(frame, rgb_T)[0]
    controls = {
        "frame": widgets.IntSlider(value=frame, min=0, max=rgb_T - 1, description="frame", continuous_update=False),
        "alpha": widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False, readout_format=".2f"),
    }
    image = widgets.Image(format="png")

    def render(_change=None) -> None:
        fig = render_propagation(frames, predictions, controls["frame"].value, gt=gt, alpha=controls["alpha"].value,
                                 input_normalized=input_normalized, panel=panel, title=title, dpi=dpi)
        image.value = _figure_to_png(fig, dpi)

    return _assemble(controls, image, render)


__all__ += ["PROPAGATION_NOTE", "overlay_ids", "frame_jaccard", "render_propagation", "propagation_viewer"]


# --------------------------------------------------------------------------------------------
# Training curves (every chapter that trains): one figure for the CLI, the notebooks and a viewer
# --------------------------------------------------------------------------------------------

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
    fig = _figure(6.0, 3.4, dpi)
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
    ax.legend(fontsize=7)
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
        image.value = _figure_to_png(fig, dpi)

    return _assemble(controls, image, render)


def show_source(obj) -> None:
    """Show the library's own source of ``obj`` (function, class or method) as a code block.

    Chapters show code this way instead of pasting copies, so the book always shows the code
    that runs. The block names the file and first line it comes from.
    """
    import inspect

    from IPython.display import Markdown, display

    try:
        lines, start = inspect.getsourcelines(obj)
        path = inspect.getsourcefile(obj)
    except (TypeError, OSError) as err:
        raise ValueError(f"no Python source for {obj!r}: {err}") from err
    package_root = str(Path(__file__).parents[2])  # the folder that holds maskvid_edu/
    where = path[len(package_root) + 1:] if path and path.startswith(package_root) else path
    display(Markdown(f"`{where}`, line {start}:\n\n```python\n{''.join(lines).rstrip()}\n```"))


__all__ += ["CURVE_NOTE", "curve_metrics", "render_training_curves", "training_curve_viewer", "show_source"]
