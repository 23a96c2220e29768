"""EMA target networks (chapter 4, VideoMAC): the momentum schedule as the paper states it and as
its release runs it, the three loss terms of a pair run, and what the online and the target
network paint into the hidden patches of a frame pair.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..ema import cosine_momentum, cosine_momentum_per_epoch_buggy
from ._core import DPI, MASK_ALPHA, MASK_GREY, new_figure, show_image

__all__ = ["PAIR_NOTE", "render_momentum_schedules", "render_pair_losses", "render_pair_reconstructions"]

PAIR_NOTE = ("pixels shown after undoing the ImageNet normalisation; predicted patches un-normalised with "
             "each true patch's mean and std")
PAIR_TERMS = ("loss_online", "loss_target", "loss_consistency")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def render_momentum_schedules(
    epochs: int = 100,
    steps_per_epoch: int = 200,
    *,
    every: int = 10,
    base: float = 0.996,
    zoom_epochs: int = 3,
    dpi: int = DPI,
) -> Figure:
    """The EMA momentum of a run indexed by the global step against the release's per-epoch index.

    Left: :func:`~maskvid_edu.ema.cosine_momentum` over all ``epochs · steps_per_epoch`` steps
    (``base`` → 1) and :func:`~maskvid_edu.ema.cosine_momentum_per_epoch_buggy`, which restarts
    every epoch and so never leaves ``base``. Right: the release's schedule over the first
    ``zoom_epochs`` epochs as ``(m − base) · 10⁶`` — a saw-tooth about 10⁻⁶ high. Every
    ``every``-th step is drawn; the x axis counts epochs.
    """
    epochs, steps_per_epoch = _positive_int(epochs, "epochs"), _positive_int(steps_per_epoch, "steps_per_epoch")
    every, zoom_epochs = _positive_int(every, "every"), _positive_int(zoom_epochs, "zoom_epochs")
    total = epochs * steps_per_epoch
    steps = range(0, total, every)
    global_m = [cosine_momentum(s, total, base) for s in steps]
    release_m = [cosine_momentum_per_epoch_buggy(s % steps_per_epoch, steps_per_epoch, epochs, base) for s in steps]
    fig = new_figure(9.0, 3.0, dpi)
    axes = fig.subplots(1, 2)
    epoch = [s / steps_per_epoch for s in steps]
    axes[0].plot(epoch, global_m, label="global step (ema.cosine_momentum)", color="tab:blue")
    axes[0].plot(epoch, release_m, label="step in epoch (the release)", color="tab:red")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("EMA momentum m")
    axes[0].set_title(f"{epochs} epochs", fontsize=9)
    axes[0].legend(fontsize=9, loc="center left")
    first = [i for i, s in enumerate(steps) if s < zoom_epochs * steps_per_epoch]
    axes[1].plot([epoch[i] for i in first], [1e6 * (release_m[i] - base) for i in first], color="tab:red")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(f"(m − {base:g}) × 10⁶")
    axes[1].set_title(f"the release's schedule, first {zoom_epochs} epochs (zoomed)", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def render_pair_losses(history: Sequence[Mapping], *, title: str | None = None, dpi: int = DPI) -> Figure:
    """VideoMAC's three loss terms of one run against the optimizer step, in two panels.

    Left: ``loss_online`` (frame 1, online network) and ``loss_target`` (frame 2, EMA target
    network, no gradient), both MSE on the hidden patches; right: ``loss_consistency`` between
    the two predictions, on its own (much smaller) scale.

    Args:
        history: the trainer's history of a VideoMAC run — metric rows with ``step`` and the
            three terms (:func:`maskvid_edu.train.train` returns it).
    """
    rows = list(history) if isinstance(history, Sequence) else None
    if not rows:
        raise ValueError("history must be a non-empty list of the trainer's metric rows")
    for r in rows:
        missing = [k for k in ("step", *PAIR_TERMS) if not isinstance(r, Mapping) or k not in r]
        if missing:
            raise ValueError(f"every metric row must hold 'step' and VideoMAC's terms; a row lacks {missing}")
    step = [r["step"] for r in rows]
    fig = new_figure(9.0, 3.0, dpi)
    axes = fig.subplots(1, 2)
    axes[0].plot(step, [r["loss_online"] for r in rows], label="L_online (frame 1, online net)", color="tab:blue")
    axes[0].plot(step, [r["loss_target"] for r in rows], label="L_target (frame 2, EMA net; no gradient)",
                 color="tab:orange")
    axes[0].set_ylabel("MSE on hidden patches")
    axes[0].legend(fontsize=9)
    axes[1].plot(step, [r["loss_consistency"] for r in rows], color="tab:green")
    axes[1].set_ylabel("L_consistency")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def render_pair_reconstructions(rec: Mapping[str, torch.Tensor], *, dpi: int = DPI) -> Figure:
    """What each network of VideoMAC paints into the hidden patches: one row per pair.

    Columns, for frame 1 then frame 2: the frame with its hidden patches greyed, the frame as
    the network (online for frame 1, EMA target for frame 2) fills it in, the original.

    Args:
        rec: :func:`maskvid_edu.models.videomac.pair_reconstruction`'s result — ``frame1``,
            ``frame2``, ``online``, ``target`` images ``(B, 3, H, W)`` in [0, 1] and ``hidden``
            bool ``(B, H, W)`` (the same mask on both frames).
    """
    keys = ("frame1", "frame2", "online", "target", "hidden")
    if not isinstance(rec, Mapping) or any(k not in rec for k in keys):
        raise ValueError(f"rec must be pair_reconstruction's result with keys {list(keys)}")
    images = {k: torch.as_tensor(rec[k]).detach().cpu() for k in keys}
    B, C, H, W = images["frame1"].shape if images["frame1"].dim() == 4 else (0, 0, 0, 0)
    if B < 1 or C != 3 or any(tuple(images[k].shape) != (B, 3, H, W) for k in keys[:4]) \
            or tuple(images["hidden"].shape) != (B, H, W):
        raise ValueError("rec's images must all be (B, 3, H, W) and its hidden mask (B, H, W), got "
                         + ", ".join(f"{k} {tuple(images[k].shape)}" for k in keys))
    fig = new_figure(9.0, 1.7 * B, dpi)
    axes = fig.subplots(B, 6, squeeze=False)
    for i in range(B):
        hidden = images["hidden"][i].bool()  # (H, W)
        for j, (key, frame, label) in enumerate((("online", "frame1", "online net, frame 1"),
                                                 ("target", "frame2", "target net, frame 2"))):
            masked = images[frame][i].float().clone()  # (3, H, W)
            masked[:, hidden] = (1 - MASK_ALPHA) * masked[:, hidden] + MASK_ALPHA * MASK_GREY
            panels = ((masked, "masked"), (images[key][i], label), (images[frame][i], "original"))
            for k, (img, name) in enumerate(panels):
                ax = axes[i, 3 * j + k]
                show_image(ax, img.float().permute(1, 2, 0).numpy())
                if i == 0:
                    ax.set_title(name, fontsize=9)
    fig.text(0.5, 0.01, PAIR_NOTE, ha="center", fontsize=9, color="0.35")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
