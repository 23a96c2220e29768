"""Pixel normalisation shared by the data pipeline, the targets and the figures.

Videos enter the models as float ``(B, C, T, H, W)`` in [0, 1], then normalised per channel with
the ImageNet mean and std (as every reference implementation does). Anything that shows a clip
or builds a pixel target first undoes that normalisation with :func:`denormalize`.
"""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(x: torch.Tensor, channel_dim: int):
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(shape)
    if x.shape[channel_dim] != 3:
        raise ValueError(f"expected 3 colour channels at dim {channel_dim}, got shape {tuple(x.shape)}")
    return mean, std


def normalize(x: torch.Tensor, channel_dim: int = -4) -> torch.Tensor:
    """[0, 1] pixels → ImageNet-normalised. ``channel_dim`` is -4 for ``(…, C, T, H, W)``."""
    mean, std = _stats(x, channel_dim)
    return (x - mean) / std


def normalize_uint8(x: torch.Tensor, channel_dim: int = -4) -> torch.Tensor:
    """uint8 pixels in [0, 255] → ImageNet-normalised float32, in one multiply-add per value.

    The same map as ``normalize(x / 255)``, folded into a scale ``1 / (255 · std)`` and a shift
    ``−mean / std`` per channel: three passes over the clip (convert, scale, shift) instead of
    five, equal to :func:`normalize` within float32 rounding (a few 1e-7). The data loader's
    last step.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_uint8 takes uint8 pixels, got {x.dtype}")
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    out.copy_(x)
    mean, std = _stats(out, channel_dim)
    return out.mul_(1.0 / (255.0 * std)).add_(-mean / std)


def denormalize(x: torch.Tensor, channel_dim: int = -4) -> torch.Tensor:
    """ImageNet-normalised → [0, 1] pixels (not clamped). Inverse of :func:`normalize`."""
    mean, std = _stats(x, channel_dim)
    return x * std + mean
