"""Does a reconstruction model beat the baselines that need no network? Measured on held-out clips.

A masked autoencoder's masked-patch PSNR is meaningful only beside what a trivial rule reaches
on the same clips and masks. Two rules need no training:

- the **copy baseline** (:func:`maskvid_edu.baselines.copy_reconstruct`): copy the nearest
  visible token, in time first, then in space;
- the **mean colour** of the visible pixels (:func:`maskvid_edu.baselines.mean_colour_reconstruct`):
  one colour per clip. A briefly trained model predicts little more than this, so it is the
  baseline that tells whether the model learned structure.

The clips are *held out*: synthetic clips from a dataset seed no zoo recipe trains on
(:data:`HELDOUT_SEED`), and non-overlapping windows of the shipped real clip
(:data:`maskvid_edu.data.video.SHIPPED_CLIP`), which no zoo recipe trains on. Every clip gets
the same masks for the model and both baselines, so each comparison is *paired* over clips
and its interval is the percentile bootstrap of the per-clip differences
(:func:`maskvid_edu.analysis.stats.paired_difference`).

PSNR is computed in [0, 1] pixel space over the hidden tokens. A model trained on the
published per-patch normalised target predicts each patch's *shape* but not its mean and
contrast; turning that into pixels borrows the hidden patch's true mean and standard deviation
(:func:`maskvid_edu.reconstruct.reconstruct`, ``borrowed=True``), which no baseline is given —
so this comparison is only fair for a raw-pixel model, and :func:`reconstruction_scores`
refuses any other.

An upper bound worth knowing: filling every hidden token with its *own true* mean colour
(:func:`patch_mean_oracle`) needs the hidden pixels and is no method, but it shows how much of
the hidden pixels' variance lies in each patch's mean colour — the most that a model
predicting smooth colour, and no texture, could recover.
"""

from __future__ import annotations

import torch

from ..data.augment import center_crop
from ..data.synthetic import SyntheticConfig, SyntheticVideoDataset
from ..data.transforms import denormalize
from ..data.video import read_clip, shipped_clip
from ..masking import make_mask
from ..patches import patchify
from .baselines import masked_psnr, mean_colour_reconstruct
from .reconstruct import reconstruct
from .stats import bootstrap_ci, format_estimate, paired_difference, verdict

__all__ = ["HELDOUT_SEED", "heldout_synthetic", "heldout_real", "patch_mean_oracle", "reconstruction_scores",
           "compare_to_baselines"]

HELDOUT_SEED = 1000
"""Seed of the held-out synthetic clips; zoo recipes train on other seeds (a test checks)."""


def heldout_synthetic(num_clips: int = 64, *, num_frames: int = 8, size: int = 64, seed: int = HELDOUT_SEED) -> torch.Tensor:
    """``num_clips`` synthetic clips of the default dataset from seed ``seed``: ``(B, 3, T, H, W)``, ImageNet-normalised."""

    data = SyntheticVideoDataset(SyntheticConfig(num_frames=num_frames, size=size, num_samples=num_clips, seed=seed))
    return torch.stack([data[i]["video"] for i in range(num_clips)])


def heldout_real(*, num_frames: int = 8, size: int = 64) -> torch.Tensor:
    """Non-overlapping windows of the shipped real clip (all 64 frames, resized and centre-cropped
    to ``size``): ``(64 // num_frames, 3, T, size, size)``, ImageNet-normalised."""

    video = center_crop(read_clip(shipped_clip(), num_frames=64, stride=1, size=size), size)  # (3, 64, S, S)
    starts = range(0, video.shape[1] - num_frames + 1, num_frames)
    return torch.stack([video[:, s:s + num_frames] for s in starts])


def patch_mean_oracle(video: torch.Tensor, mask: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """Per-clip masked PSNR ``(B,)`` of filling each hidden token with its own true mean colour
    (an oracle: it reads the hidden pixels)."""

    pixels = patchify(denormalize(video.float(), channel_dim=1).clamp(0, 1), tubelet, patch)  # (B, N, D)
    B, N, D = pixels.shape
    C = video.shape[1]
    own = pixels.view(B, N, D // C, C).mean(dim=2, keepdim=True).expand(B, N, D // C, C).reshape(B, N, D)
    return masked_psnr(own, pixels, mask, per_clip=True)


def reconstruction_scores(model, videos: torch.Tensor, *, ratio: float = 0.9, strategy: str = "tube",
                          repeats: int = 2, seed: int = 0, batch_size: int = 32) -> dict[str, list[float]]:
    """Per-(clip, mask) masked PSNR in dB of the model, the copy baseline, the mean colour and the
    patch-mean oracle, on the same masks.

    Args:
        model: a raw-pixel VideoMAE (``normalization="none"``), evaluated without gradients.
        videos: ``(B, 3, T, H, W)``, ImageNet-normalised.
        ratio, strategy: the masks drawn (:func:`maskvid_edu.masking.make_mask`), ``repeats``
            per clip from ``torch.Generator().manual_seed(seed)``.

    Returns:
        ``{"model", "copy", "mean", "oracle"}`` → lists of ``B · repeats`` values, paired by index.
    """

    cfg = model.config
    if cfg.normalization != "none":
        raise ValueError(
            f"the model predicts the {cfg.normalization!r}-normalised target: its pixels would borrow each hidden "
            "patch's true mean and std, which the baselines are not given; compare a raw-pixel model (normalization='none')")
    generator = torch.Generator().manual_seed(seed)
    scores: dict[str, list[float]] = {"model": [], "copy": [], "mean": [], "oracle": []}
    for _ in range(repeats):
        for start in range(0, videos.shape[0], batch_size):
            video = videos[start:start + batch_size]
            grid = model.encoder.token_grid(video)
            mask = make_mask(strategy, video.shape[0], grid, ratio, generator=generator)  # (b, N)
            with torch.no_grad():
                rec = reconstruct(model, video, mask, strategy=strategy, ratio=ratio)
            truth = patchify(denormalize(video.float(), channel_dim=1).clamp(0, 1), cfg.tubelet, cfg.patch)
            mean = mean_colour_reconstruct(video, mask, cfg.tubelet, cfg.patch)
            scores["model"] += rec.psnr_pixels.tolist()
            scores["copy"] += rec.psnr_copy.tolist()
            scores["mean"] += masked_psnr(mean, truth, mask, per_clip=True).tolist()
            scores["oracle"] += patch_mean_oracle(video, mask, cfg.tubelet, cfg.patch).tolist()
    return scores


def compare_to_baselines(scores: dict[str, list[float]], *, margin: float = 2.0) -> dict:
    """Means with intervals, the paired differences model − copy and model − mean, their verdicts,
    and whether the claim holds: the model ahead of *both* by at least ``margin`` dB on average,
    each interval excluding 0.

    The pairs are (clip, mask) draws; the bootstrap resamples them, so repeated masks of one
    clip count as items (their intervals are a little narrow when ``repeats > 1``)."""

    out = {k: bootstrap_ci(v) for k, v in scores.items()}
    lines = {k: format_estimate(e, 2, "dB") for k, e in out.items()}
    diffs = {b: paired_difference(scores["model"], scores[b], method="bootstrap") for b in ("copy", "mean")}
    names = {"copy": "the copy baseline", "mean": "the mean colour"}
    holds = all(d.mean >= margin and d.excludes_zero() and d.low > 0 for d in diffs.values())
    return {
        "estimates": out,
        "text": lines,
        "differences": diffs,
        "verdicts": {b: verdict("the model", names[b], d, unit="dB", digits=2) for b, d in diffs.items()},
        "claim_holds": holds,
    }
