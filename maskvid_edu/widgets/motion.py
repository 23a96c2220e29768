"""Motion targets and the convergence race (chapter 5): RGB differences of consecutive frames,
the targets of VideoMAE and MAM2 side by side, probe accuracy against pre-training step, and
the motion explorer.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.transforms import denormalize
from ..patches import unpatchify
from ._core import DPI, as_clip, assemble, check_frames, figure_to_png, new_figure, show_image

__all__ = ["MOTION_NOTE", "difference_image", "still_map", "render_motion_targets", "render_target_views",
           "render_probe_curves", "render_motion_view", "motion_explorer"]

MOTION_NOTE = ("difference d = next − current frame in [0, 1] pixels, shown as 0.5 + gain·d "
               "(grey: no change)")


def _motion_pixels(video: torch.Tensor, input_normalized: bool, sample: int) -> torch.Tensor:
    """``(3, F, H, W)`` clip in [0, 1] pixels (not clamped) with at least two frames."""
    clip = as_clip(video, sample)
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
    frames = check_frames(frames, F - 1)
    H, W = pixels.shape[2:]
    fig = new_figure(panel * len(frames) + 0.9, (panel * H / W + 0.25) * 3 + 0.6, dpi)
    axes = fig.subplots(3, len(frames), squeeze=False)
    for j, i in enumerate(frames):
        diff = pixels[:, i + 1] - pixels[:, i]  # (3, H, W)
        still = still_map(diff, threshold)
        frame = (pixels[:, i].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        show_image(axes[0, j], frame)
        axes[0, j].set_title(f"frame {i}", fontsize=9)
        show_image(axes[1, j], difference_image(diff, gain))
        axes[2, j].imshow(~still, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[2, j].set_xticks([])
        axes[2, j].set_yticks([])
        axes[2, j].set_title(f"{100 * still.mean():.0f} % still", fontsize=9)
    for row, name in enumerate(("frame i", f"d_i (gain {gain:g})", f"still: |d| < {threshold:g}")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.005, MOTION_NOTE + "\nbottom: black = still pixel, white = moving pixel",
             ha="center", va="bottom", fontsize=9, color="0.35")
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
    first = as_clip(rows[0][1])
    H, W = first.shape[2:]
    fig = new_figure(panel * len(names) + 0.9, (panel * H / W + 0.15) * len(rows) + 0.85, dpi)
    axes = fig.subplots(len(rows), len(names), squeeze=False)
    for r, (name, video) in enumerate(rows):
        clip = as_clip(video)
        pixels = denormalize(clip, channel_dim=0) if input_normalized else clip  # (3, F, H, W)
        F, (h, w) = clip.shape[1], clip.shape[2:]
        T = F - 1
        if T < 1 or T % tubelet or h % patch or w % patch:
            raise ValueError(f"clip {name!r} of shape {tuple(clip.shape)} must have T + 1 frames with T a multiple of "
                             f"tubelet={tubelet} and H, W multiples of patch={patch}")
        i = check_frames(frame, T)[0]
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
            show_image(axes[r, c], image)
            if r == 0:
                axes[r, c].set_title(names[c], fontsize=9)
        label = f"{name}\nframe {i}" if name else f"frame {i}"
        if tokenizer is not None:
            label += f"\n{n_codes} codes"
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.text(0.5, 0.005, f"pixels after undoing the ImageNet normalisation; pixel target shown as 0.5 + 0.2·value; "
             f"\nmotion shown as 0.5 + {gain:g}·d (grey: no change); code colours are arbitrary, one per code",
             ha="center", va="bottom", fontsize=9, color="0.35")
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
        result: a :class:`~maskvid_edu.analysis.compare.ComparisonResult`.
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
    fig = new_figure(3.6 * len(metrics) + 0.4, 3.5, dpi)
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
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
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
    i = check_frames(frame, pixels.shape[1] - 1)[0]
    diff = pixels[:, i + 1] - pixels[:, i]  # (3, H, W)
    still = still_map(diff, threshold)
    fig = new_figure(6.0, 2.6, dpi)
    axes = fig.subplots(1, 3)
    show_image(axes[0], (pixels[:, i].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    axes[0].set_title(f"frame {i}", fontsize=9)
    show_image(axes[1], difference_image(diff, gain))
    axes[1].set_title(f"d_{i} = frame {i + 1} − frame {i}", fontsize=9)
    axes[2].imshow(~still, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    axes[2].set_title(f"{100 * still.mean():.0f} % still (|d| < {threshold:g})", fontsize=9)
    fig.suptitle(title or "what the motion target keeps", fontsize=10)
    fig.text(0.01, 0.01, MOTION_NOTE.replace("gain", f"gain {gain:g}", 1) + "; right: black = still",
             fontsize=9, color="0.35")
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
    frame = check_frames(frame, pixels.shape[1] - 1)[0]
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
        image.value = figure_to_png(fig, dpi)

    return assemble(controls, image, render)
