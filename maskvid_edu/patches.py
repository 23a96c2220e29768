"""Video ⇄ tubelet patches, and the pixel targets masked models learn to predict.

A tubelet of ``tubelet × p × p`` pixels and C channels flattens to a vector of
``tubelet·p·p·C`` values in the order ``(frame, row, col, channel)`` — channel fastest. This
is the layout of the official VideoMAE code and of transformers' ``VideoMAEForPreTraining``,
so predictions and targets can be compared with theirs value by value. Images use the same
functions with ``tubelet = 1`` (MAE's ``(row, col, channel)`` layout).

Two per-patch normalisations exist in the literature; both are here and both are tested:

- ``"videomae"``: per patch **and per channel**. For each patch and each channel c, over its
  ``tubelet·p·p`` values: ``(x − mean_c) / (std_c + 1e-6)`` with the *unbiased* std.
- ``"mae"`` (image MAE, ConvNeXt V2's FCMAE, VideoMAC): per patch over all its values:
  ``(x − mean) / sqrt(var + 1e-6)`` with the *unbiased* variance (``torch.var``'s default,
  as the reference code calls it).

Targets are built from pixels in [0, 1] (the data pipeline's ImageNet normalisation undone
first), exactly as the references do.
"""

from __future__ import annotations

import torch

from .data.transforms import denormalize

NORMALIZATIONS = ("none", "videomae", "mae")
EPS = 1e-6


def _check_divisible(size: int, unit: int, what: str) -> int:
    if unit < 1 or size % unit:
        raise ValueError(f"{what} of {size} is not divisible by the {unit}-sized patch/tubelet")
    return size // unit


def patchify(x: torch.Tensor, tubelet: int = 2, patch: int = 16) -> torch.Tensor:
    """Cut a video ``(B, C, T, H, W)`` — or an image ``(B, C, H, W)`` — into flat patches.

    Returns ``(B, N, tubelet·p·p·C)`` for video (``N = t·h·w``, raster order, t slowest), or
    ``(B, h·w, p·p·C)`` for an image (``tubelet`` is ignored).
    """
    if x.dim() == 4:
        x = x.unsqueeze(2)  # (B, C, 1, H, W)
        tubelet = 1
    if x.dim() != 5:
        raise ValueError(f"patchify expects (B, C, T, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    B, C, T, H, W = x.shape
    t = _check_divisible(T, tubelet, "T")
    h = _check_divisible(H, patch, "H")
    w = _check_divisible(W, patch, "W")
    x = x.reshape(B, C, t, tubelet, h, patch, w, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, t, h, w, tubelet, p, p, C)
    return x.reshape(B, t * h * w, tubelet * patch * patch * C)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int, int], tubelet: int = 2, patch: int = 16) -> torch.Tensor:
    """Inverse of :func:`patchify` for video: ``(B, N, tubelet·p·p·C)`` → ``(B, C, T, H, W)``.

    ``grid`` is the token grid ``(t, h, w)``; pass ``tubelet=1`` and ``t=1`` and squeeze dim 2
    for images.
    """
    t, h, w = grid
    B, N, D = patches.shape
    if N != t * h * w or D % (tubelet * patch * patch):
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not fit grid {grid} with tubelet {tubelet}, patch {patch}"
        )
    C = D // (tubelet * patch * patch)
    x = patches.reshape(B, t, h, w, tubelet, patch, patch, C)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, t, tubelet, h, p, w, p)
    return x.reshape(B, C, t * tubelet, h * patch, w * patch)


def _patch_stats(patches: torch.Tensor, mode: str, channels: int):
    """Mean and divisor of each patch, shaped to broadcast against the grouped patches."""
    if mode == "videomae":
        x = patches.unflatten(-1, (-1, channels))  # (B, N, tubelet·p·p, C)
        mean = x.mean(dim=-2, keepdim=True)
        scale = x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + EPS
    elif mode == "mae":
        x = patches
        mean = x.mean(dim=-1, keepdim=True)
        scale = (x.var(dim=-1, unbiased=True, keepdim=True) + EPS).sqrt()
    else:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
    return x, mean, scale


def normalize_patches(patches: torch.Tensor, mode: str = "videomae", channels: int = 3) -> torch.Tensor:
    """Per-patch normalisation of flat patches ``(B, N, D)`` (see the module docstring)."""
    if mode == "none":
        return patches
    x, mean, scale = _patch_stats(patches, mode, channels)
    return ((x - mean) / scale).reshape(patches.shape)


def denormalize_patches(pred: torch.Tensor, reference: torch.Tensor, mode: str = "videomae", channels: int = 3) -> torch.Tensor:
    """Undo :func:`normalize_patches` on a prediction, with the statistics of ``reference``.

    A model trained on normalised targets predicts each patch's *shape* but not its mean and
    contrast; to show a reconstruction we borrow those from the true patches (``reference``,
    raw pixels of the same tokens). Figures that do this must say so.
    """
    if mode == "none":
        return pred
    _, mean, scale = _patch_stats(reference, mode, channels)
    grouped = pred.unflatten(-1, (-1, channels)) if mode == "videomae" else pred
    return (grouped * scale + mean).reshape(pred.shape)


def pixel_targets(
    video: torch.Tensor,
    tubelet: int = 2,
    patch: int = 16,
    normalization: str = "videomae",
    input_normalized: bool = True,
) -> torch.Tensor:
    """Pixel targets for every token: ``(B, C, T, H, W)`` → ``(B, N, tubelet·p·p·C)``.

    ``input_normalized=True`` means ``video`` carries the data pipeline's ImageNet
    normalisation, which is undone first so targets live in [0, 1] pixel space.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    pixels = denormalize(video, channel_dim=1) if input_normalized else video
    patches = patchify(pixels, tubelet, patch)
    return normalize_patches(patches, normalization, channels=video.shape[1])
