"""Label propagation: how a frozen encoder is judged on video object segmentation, body-part
propagation and pose tracking without any training.

The protocol (CRW, Jabri et al. 2020; DINO, Caron et al. 2021; used unchanged by VideoMAC):

1. every frame of a video goes through the frozen encoder → features ``(T, D, h, w)``,
   L2-normalised along ``D`` so that a dot product is a cosine similarity;
2. the first frame's annotation is turned into *soft labels* on the feature grid,
   ``(K, h, w)`` (one channel per object id, part class or keypoint);
3. frame by frame, every cell ``q`` of the current frame looks at a *context*: the first frame
   plus the last ``n_last`` frames whose labels are already known (predicted), and only at the
   context cells inside a spatial window of ``radius`` cells around ``q``;
4. affinities are the cosine similarities divided by a temperature ``τ``; only the ``k``
   largest over the whole context are kept, and a softmax over those ``k`` gives the weights

   .. math::

      w_{qi} = \\frac{\\exp(f_q \\cdot f_i / τ)}{\\sum_{j \\in \\mathrm{topk}(q)} \\exp(f_q \\cdot f_j / τ)},
      \\qquad \\hat y_q = \\sum_{i \\in \\mathrm{topk}(q)} w_{qi}\\, y_i ;

   (DINO writes this as ``exp(aff / τ)``, zeroes everything below the k-th value and divides by
   the sum: the same numbers, up to exact ties at the k-th value);
5. the predicted soft labels join the context for later frames; for the answer they are
   upsampled bilinearly to the frame size and the arg-max over ``K`` is the predicted id.

The two reference implementations differ in a few details; :class:`PropagationConfig` names
each one, :meth:`PropagationConfig.dino` (the default) and :meth:`PropagationConfig.crw` set
them as each codebase does:

===================  ===================================  =====================================
detail               DINO ``eval_video_segmentation.py``  CRW ``test.py``
===================  ===================================  =====================================
context              first + last 7 predicted frames      first + previous 20 frames, padded
                                                          with copies of frame 0 at the start
top-k, temperature   5, 0.1                               10, 0.05
window               square, ``|dy|, |dx| ≤ 12``          disk, ``√(dy² + dx²) < 12``
window on frame 0    yes                                  no (the first frame is unrestricted)
first labels         nearest-neighbour resize of the ids  bilinear resize of the one-hot maps
before arg-max       min-max each channel (``norm_mask``) nothing
===================  ===================================  =====================================

Everything here is tensor code: one Python loop over frames (each frame needs the previous
predictions), none over pixels. Queries are processed in chunks so that the affinity block
``(chunk, context · h · w)`` stays bounded (:func:`propagate_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# one palette for the whole library: the DAVIS reader/writer's
from ..data.davis import DAVIS_PALETTE

__all__ = [
    "PropagationConfig",
    "FeatureExtractor",
    "downsample_labels",
    "labels_to_mask",
    "propagate_labels",
    "propagate_masks",
    "keypoint_heatmaps",
    "heatmaps_to_keypoints",
    "propagate_keypoints",
    "write_davis_masks",
    "DAVIS_PALETTE",
]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PropagationConfig:
    """The knobs of the propagation protocol (defaults: DINO's DAVIS-2017 settings).

    Args:
        n_last: how many preceding frames (besides the first) form the context.
        topk: how many context cells each query cell takes its label from.
        radius: spatial window in feature cells; ``0`` or ``None`` means no window.
        temperature: ``τ`` in ``exp(cos / τ)``.
        window: ``"square"`` keeps context cells with ``max(|dy|, |dx|) ≤ radius`` (DINO);
            ``"disk"`` keeps ``√(dy² + dx²) < radius`` (CRW).
        restrict_first: whether the window applies to the first frame too (DINO: yes,
            CRW: no — its first frame is "long-term memory").
        pad_context: before ``n_last`` frames exist, fill the short context with copies of
            frame 0 (CRW) instead of using only the frames that exist (DINO).
        label_downsample: how the first annotation reaches the feature grid: ``"nearest"``
            on the ids (DINO) or ``"bilinear"`` on the one-hot maps (CRW).
        norm_mask: min-max normalise each channel of the upsampled soft labels before the
            arg-max (DINO) or not (CRW).
    """

    n_last: int = 7
    topk: int = 5
    radius: float | None = 12
    temperature: float = 0.1
    window: str = "square"
    restrict_first: bool = True
    pad_context: bool = False
    label_downsample: str = "nearest"
    norm_mask: bool = True

    def __post_init__(self):
        if not isinstance(self.n_last, int) or self.n_last < 0:
            raise ValueError(f"n_last must be an int >= 0, got {self.n_last!r}")
        if not isinstance(self.topk, int) or self.topk < 1:
            raise ValueError(f"topk must be an int >= 1, got {self.topk!r}")
        if self.radius is not None and self.radius < 0:
            raise ValueError(f"radius must be >= 0 or None, got {self.radius!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if self.window not in ("square", "disk"):
            raise ValueError(f"window must be 'square' or 'disk', got {self.window!r}")
        if self.label_downsample not in ("nearest", "bilinear"):
            raise ValueError(f"label_downsample must be 'nearest' or 'bilinear', got {self.label_downsample!r}")

    @classmethod
    def dino(cls, **overrides) -> "PropagationConfig":
        """DINO's settings: context first + 7, top-5, square radius 12, τ = 0.1."""
        return replace(cls(), **overrides)

    @classmethod
    def crw(cls, **overrides) -> "PropagationConfig":
        """CRW's DAVIS settings: context first + 20 (padded), top-10, disk radius 12, τ = 0.05."""
        base = cls(
            n_last=20, topk=10, radius=12, temperature=0.05, window="disk", restrict_first=False,
            pad_context=True, label_downsample="bilinear", norm_mask=False,
        )
        return replace(base, **overrides)

    @property
    def windowed(self) -> bool:
        return self.radius is not None and self.radius > 0


# --------------------------------------------------------------------------------------------
# Labels on the feature grid and back
# --------------------------------------------------------------------------------------------


def _as_long_mask(mask, name: str) -> torch.Tensor:
    mask = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
    if mask.dim() != 2:
        raise ValueError(f"{name} must be a (H, W) integer mask, got shape {tuple(mask.shape)}")
    if mask.is_floating_point() or mask.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer ids, got dtype {mask.dtype}")
    if mask.numel() and int(mask.min()) < 0:
        raise ValueError(f"{name} must hold ids >= 0, found {int(mask.min())}")
    return mask.long()


def downsample_labels(mask, grid: tuple[int, int], num_classes: int | None = None,
                      mode: str = "nearest") -> torch.Tensor:
    """First-frame annotation → soft labels on the feature grid.

    Args:
        mask: ``(H, W)`` integer ids (0 = background), tensor or array.
        grid: ``(h, w)`` of the feature map.
        num_classes: ``K``; default ``mask.max() + 1``.
        mode: ``"nearest"`` resizes the ids with nearest neighbour (pixel centres, as PIL
            does) and then one-hots them (DINO); ``"bilinear"`` one-hots first and resizes
            the ``K`` maps bilinearly, giving fractional labels on object borders (CRW).

    Returns:
        ``(K, h, w)`` float32 soft labels on ``mask``'s device.
    """
    mask = _as_long_mask(mask, "mask")
    h, w = int(grid[0]), int(grid[1])
    if h < 1 or w < 1:
        raise ValueError(f"grid must be two positive ints, got {grid!r}")
    k = int(mask.max()) + 1 if num_classes is None else int(num_classes)
    if int(mask.max()) >= k:
        raise ValueError(f"mask holds id {int(mask.max())} but num_classes is {k}")
    if mode == "nearest":
        small = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0]  # (h, w)
        return F.one_hot(small.long(), k).permute(2, 0, 1).float()  # (K, h, w)
    if mode == "bilinear":
        onehot = F.one_hot(mask, k).permute(2, 0, 1).float()  # (K, H, W)
        return F.interpolate(onehot[None], size=(h, w), mode="bilinear", align_corners=False)[0]  # (K, h, w)
    raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")


def labels_to_mask(soft: torch.Tensor, size: tuple[int, int], norm_mask: bool = True,
                   stride: int | None = None) -> torch.Tensor:
    """Soft labels on the grid → hard ids at frame resolution.

    Args:
        soft: ``(K, h, w)`` (or ``(T, K, h, w)``) soft labels.
        size: ``(H, W)`` of the output.
        norm_mask: min-max normalise each channel (that has a positive max) before the
            arg-max, as DINO does — it lets a small object whose soft label never reaches
            the background's level still win where it is strongest.
        stride: if given, upsample bilinearly by exactly this factor and then resize to
            ``size`` with nearest neighbour (DINO: the patch size, and the original frame
            size); if ``None``, resize bilinearly straight to ``size``. The two agree when
            ``size == (stride·h, stride·w)``.

    Returns:
        ``(H, W)`` (or ``(T, H, W)``) int64 ids.
    """
    single = soft.dim() == 3
    if soft.dim() not in (3, 4):
        raise ValueError(f"soft must be (K, h, w) or (T, K, h, w), got shape {tuple(soft.shape)}")
    x = soft[None] if single else soft  # x: (T, K, h, w)
    x = x.float()
    if stride is None:
        up = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)  # (T, K, H, W)
    else:
        up = F.interpolate(x, scale_factor=int(stride), mode="bilinear", align_corners=False)
    if norm_mask:
        lo = up.amin(dim=(-2, -1), keepdim=True)  # (T, K, 1, 1)
        hi = up.amax(dim=(-2, -1), keepdim=True)
        span = hi - lo
        scaled = (up - lo) / torch.where(span > 0, span, torch.ones_like(span))
        up = torch.where(hi > 0, scaled, up)
    ids = up.argmax(dim=1)  # (T, H', W')
    if stride is not None and tuple(ids.shape[-2:]) != tuple(size):
        ids = F.interpolate(ids[:, None].float(), size=tuple(size), mode="nearest-exact")[:, 0].long()
    return ids[0] if single else ids


# --------------------------------------------------------------------------------------------
# The propagation itself
# --------------------------------------------------------------------------------------------


def _context_frames(t: int, cfg: PropagationConfig) -> list[int]:
    """Frame indices the labels of frame ``t`` come from; the first entry is frame 0."""
    if cfg.pad_context:  # CRW: the n_last previous frames, clamped at 0, plus the first frame
        return [0] + [max(0, t - cfg.n_last + i) for i in range(cfg.n_last)]
    # DINO: the first frame plus the (up to) n_last most recent predicted frames 1..t-1
    return [0] + list(range(max(1, t - cfg.n_last), t))


def _window_bias(q_idx: torch.Tensor, grid: tuple[int, int], cfg: PropagationConfig) -> torch.Tensor:
    """``(n, h·w)`` float: 0 where a key cell lies inside the window of the query, −inf outside.

    The window only depends on row and column offsets, so it is read from two small tables,
    ``rows (h, h)`` and ``cols (w, w)``, instead of computing distances for every pair.
    """
    h, w = grid
    dev = q_idx.device
    dy = torch.arange(h, device=dev)[:, None] - torch.arange(h, device=dev)[None, :]  # (h, h)
    dx = torch.arange(w, device=dev)[:, None] - torch.arange(w, device=dev)[None, :]  # (w, w)
    qy, qx = q_idx // w, q_idx % w  # (n,)
    ky = torch.arange(h, device=dev).repeat_interleave(w)  # (h·w,) row of each key cell
    kx = torch.arange(w, device=dev).repeat(h)  # (h·w,) column of each key cell
    if cfg.window == "square":
        rows, cols = dy.abs() <= cfg.radius, dx.abs() <= cfg.radius
        inside = rows[qy][:, ky] & cols[qx][:, kx]  # (n, h·w)
    else:  # disk: dy² + dx² < r²  (CRW: Euclidean distance strictly below the radius)
        d2 = (dy * dy)[qy][:, ky] + (dx * dx)[qx][:, kx]  # (n, h·w)
        inside = d2.double().sqrt() < cfg.radius
    zero = torch.zeros((), device=dev)
    return torch.where(inside, zero, torch.full((), float("-inf"), device=dev))


def _chunk_rows(n_keys: int, chunk_size: int | None, max_elements: int) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    return max(1, max_elements // max(1, n_keys))


@torch.no_grad()
def propagate_labels(features: torch.Tensor, first_labels: torch.Tensor,
                     config: PropagationConfig | None = None, *, chunk_size: int | None = None,
                     max_elements: int = 1 << 24, progress: bool = False) -> torch.Tensor:
    """Propagate soft labels from frame 0 through a video.

    Args:
        features: ``(T, D, h, w)`` per-frame features (any encoder); L2-normalised along
            ``D`` here again, so unnormalised features are fine too.
        first_labels: ``(K, h, w)`` soft labels of frame 0 on the same grid (e.g. from
            :func:`downsample_labels` or :func:`keypoint_heatmaps`).
        config: the protocol (default :meth:`PropagationConfig.dino`).
        chunk_size: query cells per affinity block; default: as many as fit in
            ``max_elements`` affinities (``chunk · |context| · h · w``).
        progress: show a tqdm bar over frames.

    Returns:
        ``(T, K, h, w)`` float32 soft labels, on ``features``' device; frame 0 is
        ``first_labels`` itself.
    """
    cfg = config or PropagationConfig()
    if features.dim() != 4:
        raise ValueError(f"features must be (T, D, h, w), got shape {tuple(features.shape)}")
    T, D, h, w = features.shape
    first_labels = torch.as_tensor(first_labels)
    if first_labels.dim() != 3 or tuple(first_labels.shape[1:]) != (h, w):
        raise ValueError(
            f"first_labels must be (K, {h}, {w}) to match features {tuple(features.shape)}, "
            f"got {tuple(first_labels.shape)}"
        )
    device = features.device
    feats = F.normalize(features.float(), dim=1).flatten(2)  # feats: (T, D, h·w)
    K = first_labels.shape[0]
    labels = torch.zeros(T, K, h * w, device=device)  # labels: (T, K, h·w)
    labels[0] = first_labels.to(device=device, dtype=torch.float32).flatten(1)
    hw = h * w
    full_window = None  # the whole (h·w, h·w) window bias, kept when it fits the budget
    if cfg.windowed and hw * hw <= max_elements:
        full_window = _window_bias(torch.arange(hw, device=device), (h, w), cfg)
    frames = range(1, T)
    if progress:
        from tqdm.auto import tqdm

        frames = tqdm(frames, desc="propagate", leave=False)
    for t in frames:
        ctx = _context_frames(t, cfg)
        C = len(ctx)
        keys = feats[ctx].permute(1, 0, 2).reshape(D, C * hw)  # keys: (D, C·h·w)
        ctx_labels = labels[ctx].permute(0, 2, 1).reshape(C * hw, K)  # (C·h·w, K)
        query = feats[t].T  # query: (h·w, D)
        k = min(cfg.topk, C * hw)
        rows = _chunk_rows(C * hw, chunk_size, max_elements)
        out = torch.empty(hw, K, device=device)
        for q0 in range(0, hw, rows):
            q_idx = torch.arange(q0, min(q0 + rows, hw), device=device)
            logits = (query[q_idx] @ keys) / cfg.temperature  # logits: (n, C·h·w)
            if cfg.windowed:
                if full_window is not None:
                    bias = full_window[q0 : q0 + len(q_idx)]  # (n, h·w)
                else:
                    bias = _window_bias(q_idx, (h, w), cfg)  # (n, h·w)
                first = 0 if cfg.restrict_first else 1
                logits.view(len(q_idx), C, hw)[:, first:] += bias[:, None, :]  # outside the window → −inf
            top, idx = logits.topk(k, dim=1)  # top, idx: (n, k)
            weights = torch.softmax(top, dim=1)  # (n, k); -inf entries (window too small) get 0
            out[q0 : q0 + len(q_idx)] = (weights[..., None] * ctx_labels[idx]).sum(dim=1)  # (n, K)
        labels[t] = out.T
    return labels.reshape(T, K, h, w)


def propagate_masks(features: torch.Tensor, first_mask, config: PropagationConfig | None = None, *,
                    num_classes: int | None = None, stride: int | None = None,
                    chunk_size: int | None = None, progress: bool = False) -> torch.Tensor:
    """Semi-supervised video object segmentation (DAVIS) or part propagation (VIP).

    Args:
        features: ``(T, D, h, w)`` per-frame features.
        first_mask: ``(H, W)`` integer ids of frame 0 at the resolution wanted for the output.
        config: the protocol (default DINO's).
        num_classes: ``K``; default ``first_mask.max() + 1``.
        stride: see :func:`labels_to_mask` (``None``: bilinear straight to ``(H, W)``).

    Returns:
        ``(T, H, W)`` int64 predicted ids on the CPU; frame 0 is ``first_mask`` itself (DINO
        writes the given annotation as ``00000.png``).
    """
    cfg = config or PropagationConfig()
    first_mask = _as_long_mask(first_mask, "first_mask")
    if features.dim() != 4:
        raise ValueError(f"features must be (T, D, h, w), got shape {tuple(features.shape)}")
    grid = tuple(features.shape[-2:])
    first = downsample_labels(first_mask, grid, num_classes, cfg.label_downsample)  # (K, h, w)
    soft = propagate_labels(features, first, cfg, chunk_size=chunk_size, progress=progress)  # (T, K, h, w)
    size = tuple(first_mask.shape)
    masks = torch.empty(soft.shape[0], *size, dtype=torch.long)
    masks[0] = first_mask.cpu()
    for t in range(1, soft.shape[0]):  # one frame at a time keeps the (K, H, W) upsample small
        masks[t] = labels_to_mask(soft[t], size, cfg.norm_mask, stride).cpu()
    return masks


# --------------------------------------------------------------------------------------------
# Keypoints (JHMDB pose tracking)
# --------------------------------------------------------------------------------------------


def keypoint_heatmaps(points, grid: tuple[int, int], sigma: float = 0.5) -> torch.Tensor:
    """Keypoints on the feature grid → ``J + 1`` label maps, the way CRW sets up JHMDB.

    Joint ``j`` becomes an unnormalised Gaussian ``exp(−d² / 2σ²)`` (peak 1) around its
    position rounded to the nearest cell, cut at ``3σ`` cells; channel 0 is the background,
    1 where no joint's map is positive. A joint outside the grid gives an empty map.

    Args:
        points: ``(J, 2)`` positions ``(x, y)`` in feature-cell units (cell ``i`` ↔ pixel
            ``i · stride``).
        grid: ``(h, w)``.
        sigma: Gaussian width in cells (CRW: 0.5).

    Returns:
        ``(J + 1, h, w)`` float32.
    """
    pts = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points).double()
    if pts.dim() != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (J, 2) as (x, y), got shape {tuple(pts.shape)}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = int(grid[0]), int(grid[1])
    centre = torch.floor(pts + 0.5)  # (J, 2) nearest cell
    ys = torch.arange(h, dtype=torch.float64)[None, :, None]  # (1, h, 1)
    xs = torch.arange(w, dtype=torch.float64)[None, None, :]  # (1, 1, w)
    dx = xs - centre[:, 0, None, None]  # (J, 1, w)
    dy = ys - centre[:, 1, None, None]  # (J, h, 1)
    g = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))  # (J, h, w)
    cut = math.ceil(3 * sigma)
    g = torch.where((dx.abs() <= cut) & (dy.abs() <= cut), g, torch.zeros_like(g))
    background = (g.sum(dim=0, keepdim=True) == 0).double()  # (1, h, w)
    return torch.cat([background, g]).float()  # (J + 1, h, w)


def heatmaps_to_keypoints(heatmaps: torch.Tensor, topk: int = 3) -> torch.Tensor:
    """Propagated label maps → keypoint positions (CRW's read-out).

    For each joint channel (channel 0, the background, is skipped), the ``topk`` largest
    cells are averaged with weights proportional to their values. A joint whose map is all
    zero gets ``(−1, −1)`` (JHMDB's evaluation then leaves it out).

    Args:
        heatmaps: ``(J + 1, h, w)`` or ``(T, J + 1, h, w)``.

    Returns:
        ``(J, 2)`` or ``(T, J, 2)`` positions ``(x, y)`` in feature-cell units.
    """
    single = heatmaps.dim() == 3
    if heatmaps.dim() not in (3, 4):
        raise ValueError(f"heatmaps must be (J+1, h, w) or (T, J+1, h, w), got {tuple(heatmaps.shape)}")
    x = (heatmaps[None] if single else heatmaps)[:, 1:].float()  # x: (T, J, h, w)
    T, J, h, w = x.shape
    flat = x.flatten(2)  # (T, J, h·w)
    k = min(topk, h * w)
    vals, idx = flat.topk(k, dim=-1)  # (T, J, k)
    total = vals.sum(-1, keepdim=True)
    wts = vals / torch.where(total != 0, total, torch.ones_like(total))
    xy = torch.stack([(idx % w).float(), (idx // w).float()], dim=-1)  # (T, J, k, 2)
    coords = (wts[..., None] * xy).sum(dim=2)  # (T, J, 2)
    empty = flat.sum(-1) == 0  # (T, J)
    coords[empty] = -1.0
    return coords[0] if single else coords


def propagate_keypoints(features: torch.Tensor, first_points, frame_size: tuple[int, int],
                        config: PropagationConfig | None = None, *, sigma: float = 0.5,
                        topk: int = 3, chunk_size: int | None = None) -> torch.Tensor:
    """Pose tracking (JHMDB): propagate joint heatmaps and read positions back.

    Args:
        features: ``(T, D, h, w)``.
        first_points: ``(J, 2)`` joint positions ``(x, y)`` in pixels of frame 0.
        frame_size: ``(H, W)`` of the frames the pixels refer to; pixel ``x`` ↔ cell
            ``x · w / W`` both ways (CRW's convention).
        sigma, topk: see :func:`keypoint_heatmaps` and :func:`heatmaps_to_keypoints`.

    Returns:
        ``(T, J, 2)`` float positions in pixels; frame 0 is ``first_points``; ``−1`` marks a
        joint whose map vanished.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (T, D, h, w), got shape {tuple(features.shape)}")
    h, w = features.shape[-2:]
    H, W = int(frame_size[0]), int(frame_size[1])
    pts = torch.as_tensor(np.asarray(first_points, dtype=np.float64))
    if pts.dim() != 2 or pts.shape[1] != 2:
        raise ValueError(f"first_points must be (J, 2) as (x, y), got shape {tuple(pts.shape)}")
    scale = torch.tensor([w / W, h / H], dtype=torch.float64)  # pixels → cells
    maps = keypoint_heatmaps(pts * scale, (h, w), sigma)  # (J + 1, h, w)
    soft = propagate_labels(features, maps, config, chunk_size=chunk_size)  # (T, J + 1, h, w)
    cells = heatmaps_to_keypoints(soft.cpu(), topk).double()  # (T, J, 2)
    pixels = torch.where(cells >= 0, cells / scale, cells)
    pixels[0] = pts
    return pixels


# --------------------------------------------------------------------------------------------
# Feature extraction from any encoder
# --------------------------------------------------------------------------------------------


def _module_device(fn) -> torch.device | None:
    module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    if isinstance(module, torch.nn.Module):
        for p in module.parameters():
            return p.device
        for b in module.buffers():
            return b.device
    return None


class FeatureExtractor:
    """Wrap any encoder as ``frames (T, 3, H, W) → features (T, D, h, w)`` for propagation.

    Frames are ImageNet-normalised, each frame is encoded on its own (the protocol), in
    batches of ``batch_size``, under ``torch.no_grad()``; put the model in ``eval()`` mode.

    Args:
        fn: the encoder, any callable.
        output: what ``fn`` returns —
            ``"map"``: a feature map ``(B, D, h, w)`` (ConvNets: return the stage you want,
            e.g. ``lambda x: backbone.forward_features(x)[-1]`` or ResNet's ``layer3``);
            ``"tokens"``: a token sequence ``(B, P + t·h·w, D)`` whose first ``P =
            num_prefix_tokens`` tokens (a CLS token) are dropped and the rest laid out in
            raster order on ``(h, w) = (H / patch_size, W / patch_size)``, ``t`` slowest.
        patch_size: the ViT patch size (needed for ``"tokens"``).
        frames_per_clip: ``None`` — ``fn`` takes images ``(B, 3, H, W)``. An int ``n`` —
            ``fn`` takes videos ``(B, 3, n, H, W)`` (the library's layout) and each frame is
            repeated ``n`` times: a static clip. For a tubelet-2 VideoMAE use ``n = 2``, so
            the token grid has one time step; a model whose temporal position embedding
            needs its training length (e.g. 16) can be given ``n = 16``, and the ``t = n /
            tubelet`` time steps of the output are averaged.
        num_prefix_tokens: tokens before the patch tokens (1 for a CLS token).
        batch_size: frames per call to ``fn``.
        device: where frames go; default: the device of ``fn``'s parameters when ``fn`` is
            a module (or a bound method of one), else the frames' device.
        l2_normalize: L2-normalise the output along ``D``.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, output: str = "map",
                 patch_size: int | None = None, frames_per_clip: int | None = None,
                 num_prefix_tokens: int = 0, batch_size: int = 8,
                 device: str | torch.device | None = None, l2_normalize: bool = True):
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        if output not in ("map", "tokens"):
            raise ValueError(f"output must be 'map' or 'tokens', got {output!r}")
        if output == "tokens" and (patch_size is None or patch_size < 1):
            raise ValueError("output='tokens' needs patch_size (the ViT patch size in pixels)")
        if frames_per_clip is not None and frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be None or >= 1, got {frames_per_clip}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_prefix_tokens < 0:
            raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
        self.fn = fn
        self.output = output
        self.patch_size = patch_size
        self.frames_per_clip = frames_per_clip
        self.num_prefix_tokens = num_prefix_tokens
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else None
        self.l2_normalize = l2_normalize

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        if self.frames_per_clip is not None:
            x = x[:, :, None].expand(-1, -1, self.frames_per_clip, -1, -1)  # x: (B, 3, n, H, W)
        out = self.fn(x)
        if self.output == "map":
            if out.dim() != 4 or out.shape[0] != B:
                raise ValueError(f"output='map' expects fn to return (B, D, h, w), got {tuple(out.shape)}")
            return out
        if out.dim() != 3 or out.shape[0] != B:
            raise ValueError(f"output='tokens' expects fn to return (B, N, D), got {tuple(out.shape)}")
        h, w = H // self.patch_size, W // self.patch_size
        tokens = out[:, self.num_prefix_tokens :]  # tokens: (B, t·h·w, D)
        if tokens.shape[1] % (h * w):
            raise ValueError(
                f"fn returned {tokens.shape[1]} patch tokens after {self.num_prefix_tokens} prefix "
                f"tokens, not a multiple of the {h}x{w} grid of {H}x{W} frames at patch {self.patch_size}"
            )
        t = tokens.shape[1] // (h * w)
        grid = tokens.reshape(B, t, h, w, -1).mean(dim=1)  # (B, h, w, D)
        return grid.permute(0, 3, 1, 2)  # (B, D, h, w)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (T, 3, H, W)`` normalised → ``(T, D, h, w)`` on the encoder's device."""
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be (T, 3, H, W), got shape {tuple(frames.shape)}")
        device = self.device or _module_device(self.fn) or frames.device
        feats = []
        for b in range(0, frames.shape[0], self.batch_size):
            feats.append(self._encode(frames[b : b + self.batch_size].to(device)).float())
        out = torch.cat(feats)  # (T, D, h, w)
        return F.normalize(out, dim=1) if self.l2_normalize else out


# --------------------------------------------------------------------------------------------
# Writing results in the DAVIS layout
# --------------------------------------------------------------------------------------------


def write_davis_masks(masks, out_dir: str | Path, sequence: str, *, names=None,
                      palette: np.ndarray | None = None) -> list[Path]:
    """Write ``<out_dir>/<sequence>/00000.png, 00001.png, …`` as indexed PNGs (DAVIS layout).

    Args:
        masks: ``(T, H, W)`` integer ids in ``[0, 255]``.
        names: optional ``T`` file stems (default ``f"{t:05d}"``).
        palette: ``(≤256, 3)`` uint8 colours (default :data:`DAVIS_PALETTE`).

    Returns:
        The written paths.
    """
    arr = masks.cpu().numpy() if torch.is_tensor(masks) else np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks must be (T, H, W), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"masks must hold integer ids, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"masks ids must be in [0, 255] for an indexed PNG, got [{arr.min()}, {arr.max()}]")
    if names is None:
        names = [f"{t:05d}" for t in range(arr.shape[0])]
    names = list(names)
    if len(names) != arr.shape[0]:
        raise ValueError(f"names has {len(names)} entries for {arr.shape[0]} masks")
    pal = DAVIS_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3 or pal.shape[0] > 256:
        raise ValueError(f"palette must be (N<=256, 3) uint8, got shape {pal.shape}")
    folder = Path(out_dir) / sequence
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in zip(names, arr):
        img = Image.fromarray(frame.astype(np.uint8))  # mode "L"; putpalette makes it "P"
        img.putpalette(pal.reshape(-1).tolist())
        path = folder / f"{name}.png"
        img.save(path, format="PNG")
        paths.append(path)
    return paths
