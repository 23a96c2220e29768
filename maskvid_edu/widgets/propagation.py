"""Label propagation (chapter 6): predicted instance masks drawn over the frames, the J score
of each frame, and a viewer that steps through a sequence.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.transforms import denormalize
from ._core import DPI, assemble, check_frames, figure_to_png, new_figure, show_image

__all__ = ["PROPAGATION_NOTE", "overlay_ids", "frame_jaccard", "render_propagation", "propagation_viewer"]

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
    frame = check_frames(frame, T)[0]
    panels = ([("ground truth", torch.as_tensor(gt).long().cpu())] if gt is not None else []) + list(preds.items())
    if gt is not None and tuple(panels[0][1].shape) != (T, H, W):
        raise ValueError(f"gt must be (T, H, W) = {(T, H, W)}, got shape {tuple(panels[0][1].shape)}")
    fig = new_figure(panel * len(panels), panel * H / W + 0.75, dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, masks) in zip(axes, panels):
        show_image(ax, overlay_ids(rgb[frame], masks[frame], alpha))
        label = name
        if gt is not None and name != "ground truth":
            label += f"\nJ = {frame_jaccard(panels[0][1], masks, frame):.2f}"
        ax.set_title(label, fontsize=9)
    fig.suptitle(title or f"frame {frame} of {T} (frame 0 is given)", fontsize=9)
    fig.text(0.5, 0.01, PROPAGATION_NOTE, ha="center", va="bottom", fontsize=9, color="0.35")
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
    frame = check_frames(frame, rgb_T)[0]
    controls = {
        "frame": widgets.IntSlider(value=frame, min=0, max=rgb_T - 1, description="frame", continuous_update=False),
        "alpha": widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False, readout_format=".2f"),
    }
    image = widgets.Image(format="png")

    def render(_change=None) -> None:
        fig = render_propagation(frames, predictions, controls["frame"].value, gt=gt, alpha=controls["alpha"].value,
                                 input_normalized=input_normalized, panel=panel, title=title, dpi=dpi)
        image.value = figure_to_png(fig, dpi)

    return assemble(controls, image, render)
