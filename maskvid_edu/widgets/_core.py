"""What every explorer family of :mod:`maskvid_edu.widgets` shares.

- **pixels**: :func:`as_clip` (one ``(3, T, H, W)`` clip out of a clip or a batch), :func:`to_rgb`,
  :func:`mask_pixels` and :func:`masked_frames` (hidden patches greyed with ``MASK_GREY`` /
  ``MASK_ALPHA``), and the argument checks :func:`clip_units`, :func:`mask_row`,
  :func:`check_frames`;
- **figures**: :func:`new_figure` (a ``Figure`` at a book-sized ``dpi``, no pyplot state),
  :func:`show_image`, :func:`default_frames`, :func:`figure_to_png`;
- **widgets**: :func:`assemble` (controls + image + render function, the layout of every
  explorer), :func:`show` (controls on screen with the view as a plain PNG output) and
  :func:`show_source` (the library's own code as a block in a chapter).

The family modules (``masks``, ``reconstruction``, ``dissipation``, ``motion``, ``propagation``,
``curves``) import from here and never from each other.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.transforms import denormalize
# masking's grid check, the one place this package reads a name masking keeps private
from ..masking import check_grid
from ..masking import check_mask

__all__ = [
    "MASK_GREY",
    "MASK_ALPHA",
    "PIXELS_NOTE",
    "DPI",
    "check_grid",
    "as_clip",
    "clip_units",
    "mask_row",
    "to_rgb",
    "mask_pixels",
    "masked_frames",
    "check_frames",
    "new_figure",
    "MIN_FONT",
    "show_image",
    "default_frames",
    "figure_to_png",
    "assemble",
    "show",
    "show_source",
]

MASK_GREY = 0.45  # grey level of a hidden pixel, in [0, 1]
MASK_ALPHA = 0.8  # share of grey in a hidden pixel (the rest is the true pixel)
PIXELS_NOTE = "pixels shown after undoing the ImageNet normalisation; hidden patches greyed"
DPI = 110  # dots per inch of every figure and PNG (≤ 150 keeps the book small)
MIN_FONT = 9  # smallest text size in points: captions and footnotes stay readable at DPI


# --------------------------------------------------------------------------------------------
# Pure image functions
# --------------------------------------------------------------------------------------------


def as_clip(video: torch.Tensor, sample: int = 0) -> torch.Tensor:
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


def clip_units(clip: torch.Tensor, grid) -> tuple[int, int, int]:
    """Tubelet and patch sizes ``(tubelet, p_h, p_w)`` implied by a clip and its token grid."""
    t, h, w = check_grid(grid)
    _, T, H, W = clip.shape
    if T % t or H % h or W % w:
        raise ValueError(f"grid {tuple(grid)} does not tile a clip of T, H, W = {(T, H, W)}")
    return T // t, H // h, W // w


def mask_row(mask: torch.Tensor, num_tokens: int, sample: int = 0) -> torch.Tensor:
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
    clip = as_clip(video, sample)
    pixels = denormalize(clip, channel_dim=0) if input_normalized else clip
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def mask_pixels(mask: torch.Tensor, grid, tubelet: int, patch: int | tuple[int, int]) -> torch.Tensor:
    """Token mask ``(N,)`` → pixel mask bool ``(T, H, W)``: each token covers its tubelet."""
    t, h, w = check_grid(grid)
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
    clip = as_clip(video, sample)
    tubelet, ph, pw = clip_units(clip, grid)
    t, h, w = grid
    row = mask_row(mask, t * h * w, sample)
    T = clip.shape[1]
    frames = list(range(T)) if frames is None else check_frames(frames, T)
    pixels = denormalize(clip, channel_dim=0) if input_normalized else clip
    pixels = pixels.clamp(0, 1)[:, frames]  # (3, F, H, W)
    hidden = mask_pixels(row, grid, tubelet, (ph, pw))[frames]  # (F, H, W)
    shown = torch.where(hidden, (1 - MASK_ALPHA) * pixels + MASK_ALPHA * MASK_GREY, pixels)  # (3, F, H, W)
    return (shown * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def check_frames(frames, T: int) -> list[int]:
    frames = [frames] if isinstance(frames, (int, np.integer)) else list(frames)
    if not frames or any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < T for f in frames):
        raise ValueError(f"frames must be frame indices in [0, {T - 1}], got {frames!r}")
    return [int(f) for f in frames]


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def new_figure(width: float, height: float, dpi: int) -> Figure:
    if not 20 <= dpi <= 150:
        raise ValueError(f"dpi must be in [20, 150] to keep the book small, got {dpi}")
    return Figure(figsize=(width, height), dpi=dpi)


def show_image(ax, image: np.ndarray, patch_hw: tuple[int, int] | None = None) -> None:
    ax.imshow(image, interpolation="nearest")
    if patch_hw is not None:  # faint patch boundaries, drawn over the picture (not in it)
        H, W = image.shape[:2]
        for y in range(patch_hw[0], H, patch_hw[0]):
            ax.axhline(y - 0.5, color="white", lw=0.4, alpha=0.35)
        for x in range(patch_hw[1], W, patch_hw[1]):
            ax.axvline(x - 0.5, color="white", lw=0.4, alpha=0.35)
    ax.set_xticks([])
    ax.set_yticks([])


def default_frames(T: int, tubelet: int, at_most: int = 8) -> list[int]:
    """The first frame of evenly spaced temporal slots, at most ``at_most`` of them."""
    slots = T // tubelet
    picks = np.linspace(0, slots - 1, num=min(slots, at_most)).round().astype(int)
    return sorted({int(s) * tubelet for s in picks})


def figure_to_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Encode a figure as PNG bytes at ``dpi`` (≤ 150 keeps the book small)."""
    if not 20 <= dpi <= 150:
        raise ValueError(f"dpi must be in [20, 150] to keep the book small, got {dpi}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------------


def assemble(controls: dict, image, render):
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
