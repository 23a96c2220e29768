"""Reconstructions of a pre-trained VideoMAE (chapter 2): the model's predictions beside the copy
baseline, an explorer over precomputed views, VideoMAE V2's two masks, and the reconstruction
figure that ``maskvid-edu pretrain`` writes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.transforms import denormalize
from ..patches import denormalize_patches, patchify, unpatchify
from ._core import (DPI, MASK_ALPHA, MASK_GREY, PIXELS_NOTE, as_clip, assemble, check_frames, check_grid,
                    clip_units, default_frames, figure_to_png, mask_pixels, mask_row, masked_frames, new_figure,
                    show_image)

__all__ = ["PATTERN_NOTE", "RECON_COLUMNS", "render_reconstructions", "reconstruction_explorer",
           "render_dual_masking", "reconstruction_figure"]

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
        raise ValueError("recs must be one or more maskvid_edu.analysis.reconstruct.Reconstruction objects")
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
    """Reconstructions side by side: one row per :class:`~maskvid_edu.analysis.reconstruct.Reconstruction`.

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
    frame = check_frames(frame, T)[0]
    fig = new_figure(panel * len(RECON_COLUMNS) + 1.2, (panel * H / W + 0.32) * len(recs) + 0.95, dpi)
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
            show_image(ax, image, (r.patch, r.patch) if j < 4 else None)
            if score is not None:
                ax.set_xlabel(f"{float(score):.1f} dB", fontsize=9, labelpad=1)
        visible = int((~r.mask[sample]).sum())
        label = labels[i] if labels is not None else (
            f"{getattr(r, 'strategy', '')} ρ = {getattr(r, 'ratio', r.mask[sample].float().mean()):.2f}\n"
            f"{visible}/{r.mask.shape[1]} visible")
        axes[i, 0].set_ylabel(label, fontsize=9)
    for j, name in enumerate(RECON_COLUMNS):
        axes[0, j].set_title(name + (f" (frame {frame})" if j == 0 else ""), fontsize=9)
    note = "PSNR over the hidden tubelets of the clip; " + PIXELS_NOTE + "\n" + PATTERN_NOTE
    if any(getattr(r, "borrowed", False) for r in recs):
        note += "\nthe model predicts a normalised target: its pixel view borrows the true patch statistics too"
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=9, color="0.3")
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

    ``views`` is :func:`maskvid_edu.analysis.reconstruct.precompute_views`' result,
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
    frame = check_frames(frame, T)[0]

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
            fig = new_figure(6.0, 1.0, dpi)
            fig.text(0.5, 0.5, f"{s} masking at ρ = {rho:.2f} cannot be drawn on this grid", ha="center",
                     va="center", fontsize=9)
        else:
            fig = render_reconstructions(rec, f, title=f"{name}: {s} masking, ρ = {rho:.2f}", dpi=dpi)
        image.value = figure_to_png(fig, dpi)

    return assemble(controls, image, render)


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
    clip = as_clip(video, sample)
    tubelet, ph, pw = clip_units(clip, grid)
    t, h, w = check_grid(grid)
    enc = mask_row(mask, t * h * w, sample)  # (N,)
    dec = mask_row(decoder_mask, t * h * w, sample)  # (N,)
    T = clip.shape[1]
    frames = default_frames(T, tubelet) if frames is None else check_frames(frames, T)
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
    fig = new_figure(panel * len(frames), panel * H / W + 0.85, dpi)
    axes = fig.subplots(1, len(frames), squeeze=False)[0]
    for ax, f, image in zip(axes, frames, out):
        show_image(ax, (image * 255).round().astype(np.uint8), (ph, pw))
        ax.set_title(f"frame {f} (slot {f // tubelet})", fontsize=9)
    n_hidden, n_dec = int(enc.sum()), int((~dec).sum())
    both = int((enc & ~dec).sum())
    fig.suptitle(f"encoder sees {t * h * w - n_hidden} of {t * h * w} tokens; decoder rebuilds {n_dec} "
                 f"({both} hidden, {n_dec - both} seen) and skips {int((enc & dec).sum())} hidden ones", fontsize=9)
    fig.text(0.5, 0.01, "red: hidden, rebuilt · grey: hidden, skipped by the decoder · blue: seen, rebuilt too · "
             "clear: seen\n" + PIXELS_NOTE.split(";")[0], ha="center", va="bottom", fontsize=9, color="0.3")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.5 / fig.get_figheight(), top=1 - 0.45 / fig.get_figheight(),
                        wspace=0.05)
    return fig


def _pixel_target_normalization(model) -> str:
    """How ``model``'s ``pred`` is normalised, or ValueError if it does not predict pixels."""
    cfg = getattr(model, "config", None)
    if not isinstance(getattr(cfg, "tubelet", None), int) or not isinstance(getattr(cfg, "patch", None), int):
        raise ValueError(f"{type(model).__name__} has no config.tubelet / config.patch: cannot lay out its predictions")
    if hasattr(cfg, "normalization"):  # VideoMAE
        return cfg.normalization
    target = getattr(cfg, "appearance_target", None)  # MAM2's appearance head
    if target == "pixels_norm":
        return "videomae"
    if target is not None:
        raise ValueError(f"{type(model).__name__} predicts {target!r}, not pixels: no reconstruction to draw")
    return "none"


def reconstruction_figure(model, video: torch.Tensor, *, generator: torch.Generator | None = None,
                          num_frames: int = 4, title: str = "", dpi: int = DPI) -> Figure:
    """Original / masked / reconstructed frames of one clip (the first of ``video``).

    ``video``: ``(C, T, H, W)`` or ``(B, C, T, H, W)``, ImageNet-normalised. The model draws its
    own mask (``model.make_mask``); the reconstruction row shows the visible patches as they
    are and the model's prediction in place of every reconstructed patch. A model trained on
    per-patch normalised targets predicts each patch's pattern but not its mean and contrast;
    those are taken from the true patch (:func:`~maskvid_edu.patches.denormalize_patches`), and
    the figure says so. Needs ``model.config.tubelet`` and ``model.config.patch``.
    """
    norm = _pixel_target_normalization(model)
    tubelet, patch = model.config.tubelet, model.config.patch
    video = video if video.dim() == 5 else video.unsqueeze(0)
    video = video[:1].to(next(model.parameters()).device)  # (1, C, F, H, W), F ≥ T frames
    T = getattr(model.config, "num_frames", video.shape[2])
    C, _, H, W = video.shape[1:]
    grid = (T // tubelet, H // patch, W // patch)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mask = model.make_mask(video, generator=generator)  # (1, N)
            out = model(video, mask)
    finally:
        model.train(was_training)
    decoded = out.extras.get("decoded", out.mask) if isinstance(out.extras, dict) else out.mask  # (1, N)
    if out.pred is None or out.pred.dim() != 3 or out.pred.shape[-1] != tubelet * patch * patch * C:
        raise ValueError(f"{type(model).__name__}'s pred is not one row of tubelet pixels per token")
    video = video[:, :, :T]  # the frames the tokens cover
    pixels = denormalize(video.float(), channel_dim=1)  # (1, C, T, H, W) in [0, 1]
    patches = patchify(pixels, tubelet, patch)  # (1, N, P)
    index = decoded[0].nonzero().squeeze(1)  # reconstructed tokens, raster order
    pred = denormalize_patches(out.pred.float(), patches[:, index], norm, channels=C)  # (1, N_dec, P)
    recon = patches.clone()
    recon[:, index] = pred
    recon = unpatchify(recon, grid, tubelet, patch).clamp(0, 1)[0]  # (C, T, H, W)

    frames = sorted({int(round(f)) for f in np.linspace(0, T - 1, min(num_frames, T))})
    rows = [
        ("original", (pixels[0].clamp(0, 1)[:, frames].permute(1, 2, 3, 0).cpu().numpy())),
        (f"masked ({mask.float().mean().item():.0%} hidden)", masked_frames(video.cpu(), mask.cpu(), grid, frames) / 255.0),
        ("visible + predicted", recon[:, frames].permute(1, 2, 3, 0).cpu().numpy()),
    ]
    fig = Figure(figsize=(1.6 * len(frames) + 0.6, 5.4), dpi=dpi)
    axes = fig.subplots(3, len(frames), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, f in enumerate(frames):
            ax = axes[r][c]
            ax.imshow(images[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    note = PIXELS_NOTE
    if norm != "none":
        note += f";\npredictions of the {norm!r}-normalised target un-normalised with each true patch's mean and std"
    fig.suptitle(title, fontsize=9)
    fig.text(0.5, 0.01, note, ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig
