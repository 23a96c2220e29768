"""What a masked model is asked to predict: pixels, RGB-difference motion, or VQ codes.

:mod:`maskvid_edu.patches` builds the pixel targets of VideoMAE. This file adds the two
targets of MAM2 (masked appearance-motion modeling), whose code is not public — what follows is
our documented reconstruction — and one switch, :func:`make_targets`, that any model calls.

**Motion target: RGB differences.** For a clip of frames ``x_0 … x_T`` (pixels in [0, 1]) the
motion of frame ``i`` is the difference to the *next* frame::

    d_i = x_{i+1} − x_i            for i = 0 … T−1          (next minus current)

so a bright square moving right gives ``d > 0`` where it arrives and ``d < 0`` where it left.
The model sees frames ``0 … T−1`` and predicts ``d_0 … d_{T−1}``: one difference per input
frame, cut into tubelets exactly like the pixel targets (same token grid, same
``(frame, row, col, channel)`` value order), so ``pred``/``target`` of both heads line up.

Two clip conventions, chosen with ``num_frames``:

- **T + 1 frames** (the default; ``video`` is ``(B, C, T+1, H, W)``): every difference is a
  true one. The data pipeline samples one frame more than the model sees;
  :func:`split_motion_clip` returns the model input ``video[:, :, :T]`` and the clip the
  motion target is computed from.
- **exactly T frames** (``num_frames=T`` with a ``(B, C, T, H, W)`` video), when no extra frame
  exists: ``d_0 … d_{T−2}`` are true differences and the last one comes from a border rule.
  ``border="repeat"`` (default) copies ``d_{T−2}`` — motion continues at constant velocity,
  which is right for smooth motion and keeps the last tubelet consistent; ``border="zero"``
  says the last frame is static, a claim the data does not support, so it is only an option.

Differences are taken in [0, 1] pixel space (the data pipeline's ImageNet normalisation undone
first, as for pixel targets). Normalisations (``normalization=``):

- ``"scale"`` (default): divide by a fixed per-channel scale, by default the ImageNet std, which
  makes the target equal to the difference of the *normalised* frames the model receives —
  values of order one, in the model's own input units. A fixed scale keeps what a motion target
  should keep: a static patch has target exactly 0, and a patch with faint flicker stays faint.
- ``"videomae"`` / ``"mae"``: per-patch normalisation of :func:`patches.normalize_patches`.
  A static patch gives 0 (its std is 0, and the 1e-6 eps keeps the division finite), but a
  nearly static patch with sensor or compression noise is blown up to unit variance: the model
  would be asked to predict noise as hard as real motion. Offered for comparison.
- ``"none"``: raw differences in [−1, 1] — small numbers, mostly near zero.

This choice of default is ours; the MAM2 paper, as far as we reconstruct it, does not fix one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .data.transforms import IMAGENET_STD, denormalize, normalize
from .patches import NORMALIZATIONS, normalize_patches, patchify, pixel_targets

MOTION_NORMALIZATIONS = ("scale", "videomae", "mae", "none")
BORDER_RULES = ("repeat", "zero")
TARGET_KINDS = ("pixels", "pixels_norm", "motion", "codes")


def _check_video(video: torch.Tensor, name: str = "video") -> None:
    if not isinstance(video, torch.Tensor) or video.dim() != 5:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"{name} must be a (B, C, T, H, W) tensor, got {shape}")


def split_motion_clip(video: torch.Tensor, num_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``T + 1``-frame clip into the model input and the motion-target source.

    Args:
        video: ``(B, C, T+1, H, W)``, as the data pipeline delivers it for motion targets.
        num_frames: ``T`` if known; checked against the clip (``T + 1`` frames expected).

    Returns:
        ``(model_input, motion_source)``: ``video[:, :, :T]`` of shape ``(B, C, T, H, W)`` and
        ``video`` itself, from which :func:`motion_targets` computes ``d_0 … d_{T−1}``.
    """
    _check_video(video)
    frames = video.shape[2]
    if frames < 2:
        raise ValueError(f"video needs at least 2 frames (T + 1) for motion targets, got {frames}")
    if num_frames is not None and frames != num_frames + 1:
        raise ValueError(f"video must have num_frames + 1 = {num_frames + 1} frames, got {frames}")
    return video[:, :, : frames - 1], video  # (B, C, T, H, W), (B, C, T+1, H, W)


def _resolve_frames(frames: int, num_frames: int | None) -> int:
    """Number of model frames T for a clip of ``frames`` frames (T + 1 or exactly T)."""
    if num_frames is None:
        if frames < 2:
            raise ValueError(f"video needs at least 2 frames (T + 1) for motion targets, got {frames}")
        return frames - 1
    if num_frames < 1 or frames not in (num_frames, num_frames + 1):
        raise ValueError(
            f"num_frames={num_frames} needs a video of num_frames + 1 (or exactly num_frames) frames, got {frames}"
        )
    return num_frames


def frame_differences(pixels: torch.Tensor, num_frames: int | None = None, border: str = "repeat") -> torch.Tensor:
    """One difference per model frame, ``d_i = x_{i+1} − x_i`` (next minus current).

    Args:
        pixels: ``(B, C, F, H, W)`` frames (any linear pixel space; targets use [0, 1]).
        num_frames: ``T``, the frames the model sees. ``None`` means ``F = T + 1``. With
            ``F == T`` the last difference comes from the ``border`` rule.
        border: ``"repeat"`` (``d_{T−1} = d_{T−2}``) or ``"zero"`` (``d_{T−1} = 0``); only used
            when the clip has exactly ``T`` frames.

    Returns:
        ``(B, C, T, H, W)`` differences.
    """
    _check_video(pixels, "pixels")
    if border not in BORDER_RULES:
        raise ValueError(f"border must be one of {BORDER_RULES}, got {border!r}")
    frames = pixels.shape[2]
    T = _resolve_frames(frames, num_frames)
    if frames == T + 1:
        return pixels[:, :, 1:] - pixels[:, :, :-1]  # (B, C, T, H, W)
    if T < 2:
        raise ValueError(f"a clip of exactly num_frames frames needs num_frames >= 2 for a border rule, got {T}")
    diffs = pixels[:, :, 1:] - pixels[:, :, :-1]  # (B, C, T-1, H, W): the true differences
    last = diffs[:, :, -1:] if border == "repeat" else torch.zeros_like(diffs[:, :, -1:])  # (B, C, 1, H, W)
    return torch.cat([diffs, last], dim=2)  # (B, C, T, H, W)


def _channel_scale(scale: float | Sequence[float], channels: int, like: torch.Tensor) -> torch.Tensor:
    values = [float(scale)] * channels if isinstance(scale, (int, float)) else [float(s) for s in scale]
    if len(values) != channels or min(values) <= 0:
        raise ValueError(f"scale must be a positive number or {channels} positive per-channel values, got {scale!r}")
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, channels, 1, 1, 1)


def motion_targets(
    video: torch.Tensor,
    tubelet: int = 2,
    patch: int = 16,
    normalization: str = "scale",
    *,
    input_normalized: bool = True,
    num_frames: int | None = None,
    border: str = "repeat",
    scale: float | Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB-difference targets for every token of the ``T`` model frames.

    Args:
        video: ``(B, C, T+1, H, W)`` (default) or ``(B, C, T, H, W)`` with ``num_frames=T``.
        tubelet, patch: the model's tubelet size and patch size.
        normalization: ``"scale"`` (``d_c / scale_c``), ``"videomae"``, ``"mae"`` or ``"none"``
            — see the module docstring for what each does to static and noisy patches.
        input_normalized: ``video`` carries the ImageNet normalisation (undone first).
        num_frames, border: clip convention, see :func:`frame_differences`.
        scale: the fixed scale of ``"scale"``; the default ImageNet std makes the target the
            difference of the normalised frames.

    Returns:
        ``(B, N, tubelet·p·p·C)`` with ``N = (T/tubelet)·(H/p)·(W/p)``, the layout of
        :func:`patches.patchify`.
    """
    if normalization not in MOTION_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {MOTION_NORMALIZATIONS}, got {normalization!r}")
    _check_video(video)
    pixels = denormalize(video, channel_dim=1) if input_normalized else video  # (B, C, F, H, W) in [0, 1]
    diffs = frame_differences(pixels, num_frames, border)  # (B, C, T, H, W)
    if normalization == "scale":
        diffs = diffs / _channel_scale(scale, diffs.shape[1], diffs)
    patches = patchify(diffs, tubelet, patch)  # (B, N, tubelet·p·p·C)
    if normalization in ("videomae", "mae"):
        patches = normalize_patches(patches, normalization, channels=video.shape[1])
    return patches


def code_targets(
    video: torch.Tensor,
    tokenizer,
    tubelet: int = 2,
    patch: int = 16,
    *,
    input_normalized: bool = True,
    num_frames: int | None = None,
) -> torch.Tensor:
    """Appearance targets: the VQ code of every frame, grouped by token.

    Each frame is encoded on its own by ``tokenizer`` (a :class:`tokenizers.VQTokenizer`,
    ``downsample`` pixels per code). A token of ``tubelet × p × p`` pixels then covers
    ``tubelet·(p/downsample)²`` codes, listed in ``(frame, row, col)`` order — the order of
    :func:`patches.patchify` without the channel. With a VQGAN f16 and ``patch=16`` that is
    one code per frame of the tubelet.

    Args:
        video: ``(B, 3, F, H, W)``; the first ``num_frames`` frames are used (all if ``None``).
        tokenizer: object with ``encode(frames (B, 3, H, W) normalised) -> (B, h, w)`` and
            ``downsample``; called without gradients.

    Returns:
        ``(B, N, tubelet·(p/downsample)²)`` int64 codes.
    """
    _check_video(video)
    down = int(getattr(tokenizer, "downsample", 0))
    if down < 1 or patch % down:
        raise ValueError(f"patch ({patch}) must be a multiple of the tokenizer's downsample ({down})")
    if num_frames is not None:
        video = _first_frames(video, num_frames)
    if not input_normalized:
        video = normalize(video, channel_dim=1)
    B, C, T, H, W = video.shape
    frames = video.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)  # (B·T, C, H, W)
    with torch.no_grad():
        codes = tokenizer.encode(frames)  # (B·T, H/down, W/down)
    codes = codes.reshape(B, T, 1, H // down, W // down).transpose(1, 2)  # (B, 1, T, h', w')
    return patchify(codes, tubelet, patch // down)  # (B, N, tubelet·(p/down)²)


def _first_frames(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    frames = video.shape[2]
    if num_frames < 1 or frames not in (num_frames, num_frames + 1):
        raise ValueError(
            f"num_frames={num_frames} needs a video of num_frames or num_frames + 1 frames, got {frames}"
        )
    return video[:, :, :num_frames]


def make_targets(
    video: torch.Tensor,
    kind: str = "pixels",
    tubelet: int = 2,
    patch: int = 16,
    *,
    normalization: str | None = None,
    input_normalized: bool = True,
    num_frames: int | None = None,
    border: str = "repeat",
    scale: float | Sequence[float] = IMAGENET_STD,
    tokenizer=None,
) -> torch.Tensor:
    """One switch for every target a masked video model predicts, per token in raster order.

    ================  ======================================  ===========================
    ``kind``          target                                   default ``normalization``
    ================  ======================================  ===========================
    ``"pixels"``      pixels in [0, 1]                         ``"none"``
    ``"pixels_norm"`` per-patch normalised pixels (VideoMAE)   ``"videomae"``
    ``"motion"``      RGB differences ``x_{i+1} − x_i``        ``"scale"``
    ``"codes"``       VQ codes from ``tokenizer`` (int64)      —
    ================  ======================================  ===========================

    Args:
        video: ``(B, C, F, H, W)``. For ``"motion"`` ``F = T + 1`` (or ``F = T`` with
            ``num_frames=T`` and a ``border`` rule). For the other kinds, ``num_frames=T``
            takes the first ``T`` frames — so one ``T + 1``-frame clip serves every head.
        normalization: overrides the kind's default (pixels: ``"none"|"videomae"|"mae"``;
            motion: ``"scale"|"videomae"|"mae"|"none"``).
        tokenizer: required for ``"codes"``.

    Returns:
        ``(B, N, D)`` float targets, or ``(B, N, tubelet·(p/downsample)²)`` int64 codes.
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")
    _check_video(video)
    if kind == "motion":
        return motion_targets(
            video, tubelet, patch, normalization or "scale",
            input_normalized=input_normalized, num_frames=num_frames, border=border, scale=scale,
        )
    if kind == "codes":
        if tokenizer is None:
            raise ValueError("kind='codes' needs a tokenizer (a VQTokenizer with encode and downsample)")
        if normalization is not None:
            raise ValueError(f"kind='codes' takes no normalization, got {normalization!r}")
        return code_targets(video, tokenizer, tubelet, patch, input_normalized=input_normalized, num_frames=num_frames)
    mode = normalization or ("videomae" if kind == "pixels_norm" else "none")
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization for kind={kind!r} must be one of {NORMALIZATIONS}, got {mode!r}")
    if num_frames is not None:
        video = _first_frames(video, num_frames)
    return pixel_targets(video, tubelet, patch, mode, input_normalized)  # (B, N, tubelet·p·p·C)
