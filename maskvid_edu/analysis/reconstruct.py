"""What a pre-trained VideoMAE paints back, how good it is, and what the asymmetric design saves.

Chapter 2 of the book reads together with this file. Three things live here:

**Reconstructions.** :func:`reconstruct` runs a VideoMAE on clips and masks and returns a
:class:`Reconstruction`: the clip, the mask, and the hidden tubelets filled in three ways —

- ``pixels``: the model's prediction *in pixel space*. For a model trained on raw pixels
  (``normalization="none"``) that is what it outputs; for a model trained on a per-patch
  normalised target it cannot be had without borrowing each true patch's mean and standard
  deviation (:func:`~maskvid_edu.patches.denormalize_patches`), and ``borrowed`` says so;
- ``pattern``: the prediction seen through VideoMAE's target, per patch *and per channel*
  normalised, then un-normalised with the **true** patch's statistics. This is how the
  published reconstructions are drawn: colour and contrast of each hidden patch are the truth's,
  only the pattern inside the patch is the model's. It flatters the model, and every figure
  that shows it must say so;
- ``copy``: the copy baseline of :mod:`maskvid_edu.analysis.baselines` — no learning at all.

Visible tubelets are the clip's own pixels in all three. PSNR (:func:`~maskvid_edu.analysis.baselines.masked_psnr`)
is taken over the hidden tubelets only, in [0, 1] pixel space.

**The measurement.** :func:`psnr_table` scores model and copy baseline over a batch at several
masking ratios and strategies; :func:`precompute_views` fills the grid of views an interactive
explorer indexes (:func:`maskvid_edu.widgets.reconstruction_explorer`).

**Cost.** The forward FLOPs of a VideoMAE configuration are counted analytically by
:func:`maskvid_edu.measure.flops.pretrain_flops` (the one FLOP model of the course): for the
asymmetric design (encoder on the visible tokens only), for an encoder that runs on all tokens,
and with VideoMAE V2's decoder mask. :class:`AllTokensVideoMAE` *is* that all-tokens design,
built on the same weights, so :func:`time_steps` can measure what the asymmetry saves on a real
step (with the one interleaved timer, :func:`maskvid_edu.measure.timing.time_interleaved`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import denormalize
from ..masking import check_mask, make_mask, masked_tokens, merge_tokens, visible_tokens
from ..measure.timing import time_interleaved
from ..models.output import PretrainOutput
from ..patches import denormalize_patches, normalize_patches, patchify, unpatchify
from .baselines import copy_reconstruct, masked_psnr

__all__ = [
    "Reconstruction",
    "reconstruct",
    "PSNRRow",
    "psnr_table",
    "format_psnr_table",
    "precompute_views",
    "AllTokensVideoMAE",
    "time_steps",
    "median_ms",
]

PATTERN_NORMALIZATION = "videomae"  # the target through which the ``pattern`` view is seen


# --------------------------------------------------------------------------------------------
# Reconstructions
# --------------------------------------------------------------------------------------------


@dataclass
class Reconstruction:
    """A batch of clips, one mask per clip, and the hidden tubelets filled in three ways.

    Videos are ``(B, C, T, H, W)`` in [0, 1] pixel space (the ImageNet normalisation undone,
    clamped); visible tubelets hold the clip's own pixels in ``pixels``, ``pattern`` and ``copy``.

    original: the clips.
    mask: bool ``(B, N)``, True = hidden from the encoder.
    pixels: the model's prediction in pixel space (see the module docstring; ``borrowed``).
    pattern: the prediction in VideoMAE's per-patch normalised space, un-normalised with each
        true patch's mean and std — colour and contrast are the truth's.
    copy: the copy baseline.
    psnr_pixels, psnr_pattern, psnr_copy: ``(B,)`` dB over each clip's hidden tubelets.
    grid, tubelet, patch: the token geometry. strategy, ratio: how ``mask`` was drawn (free text
        when the caller supplied the mask). normalization: the model's target. borrowed: True
        when ``pixels`` itself needed the true patches' statistics.
    """

    original: torch.Tensor
    mask: torch.Tensor
    pixels: torch.Tensor
    pattern: torch.Tensor
    copy: torch.Tensor
    psnr_pixels: torch.Tensor
    psnr_pattern: torch.Tensor
    psnr_copy: torch.Tensor
    grid: tuple[int, int, int]
    tubelet: int
    patch: int
    strategy: str
    ratio: float
    normalization: str
    borrowed: bool

    @property
    def batch(self) -> int:
        return self.original.shape[0]

    def hidden_share(self) -> float:
        """Share of tokens hidden from the encoder (the same in every clip)."""
        return float(self.mask[0].float().mean())


def _as_batch(video: torch.Tensor) -> torch.Tensor:
    if not isinstance(video, torch.Tensor) or video.dim() not in (4, 5):
        raise ValueError(f"video must be a (C, T, H, W) or (B, C, T, H, W) tensor, got {getattr(video, 'shape', type(video))}")
    return video if video.dim() == 5 else video.unsqueeze(0)


def _model_config(model):
    cfg = getattr(model, "config", None)
    for name in ("tubelet", "patch", "normalization"):
        if not hasattr(cfg, name):
            raise ValueError(f"model must be a VideoMAE (config.{name} missing), got {type(model).__name__}")
    return cfg


@torch.no_grad()
def reconstruct(model: nn.Module, video: torch.Tensor, mask: torch.Tensor, *, strategy: str = "given",
                ratio: float | None = None) -> Reconstruction:
    """Run ``model`` on ``video`` with ``mask`` and fill the hidden tubelets three ways.

    Args:
        model: a :class:`~maskvid_edu.models.videomae.VideoMAE` (any target normalisation,
            without decoder masking: every hidden tubelet must be predicted). Run in eval mode,
            without gradients; its train/eval state is restored afterwards.
        video: ``(B, C, T, H, W)`` or ``(C, T, H, W)``, ImageNet-normalised (the data pipeline's
            output).
        mask: bool ``(B, N)``, True = hidden from the encoder, equal counts per clip.
        strategy, ratio: recorded in the result (labels for figures and tables).

    The model predicts ``pred`` ``(B, N_mask, P)`` in its target space. Pixel view:
    ``denormalize_patches(pred, true, normalization)`` (the identity for ``"none"``). Pattern
    view: ``denormalize_patches(normalize_patches(pixels, "videomae"), true, "videomae")``.
    Both are clamped to [0, 1] before scoring and drawing.
    """
    cfg = _model_config(model)
    if getattr(cfg, "decoder_mask_ratio", 0.0) > 0:
        raise ValueError("reconstruct needs every hidden tubelet predicted: build the model with decoder_mask_ratio=0")
    video = _as_batch(video)
    device = next(model.parameters()).device
    video = video.to(device)
    mask = mask.to(device)
    tubelet, patch, C = cfg.tubelet, cfg.patch, video.shape[1]
    grid = model.encoder.token_grid(video)
    check_mask(mask, grid[0] * grid[1] * grid[2])
    if mask.shape[0] != video.shape[0]:
        raise ValueError(f"mask has batch {mask.shape[0]} but video has batch {video.shape[0]}")

    was_training = model.training
    model.eval()
    try:
        out = model(video, mask)  # pred: (B, N_mask, P) in the target's space
    finally:
        model.train(was_training)

    pixels01 = denormalize(video.float(), channel_dim=1).clamp(0, 1)  # (B, C, T, H, W)
    truth = patchify(pixels01, tubelet, patch)  # (B, N, P) in [0, 1]
    hidden_truth = masked_tokens(truth, mask)  # (B, N_mask, P)
    pred = denormalize_patches(out.pred.float(), hidden_truth, cfg.normalization, channels=C).clamp(0, 1)
    pattern = normalize_patches(pred, PATTERN_NORMALIZATION, channels=C)  # (B, N_mask, P): shape only
    pattern = denormalize_patches(pattern, hidden_truth, PATTERN_NORMALIZATION, channels=C).clamp(0, 1)
    copy = copy_reconstruct(video, mask, tubelet, patch).patches  # (B, N, P) in [0, 1]

    visible = visible_tokens(truth, mask)  # (B, N_vis, P)
    tokens = {"pixels": merge_tokens(visible, pred, mask), "pattern": merge_tokens(visible, pattern, mask),
              "copy": copy}  # each (B, N, P), raster order
    videos = {k: unpatchify(v, grid, tubelet, patch).cpu() for k, v in tokens.items()}  # (B, C, T, H, W)
    scores = {k: masked_psnr(v, truth, mask, per_clip=True).cpu() for k, v in tokens.items()}  # (B,) dB
    return Reconstruction(
        original=pixels01.cpu(),
        mask=mask.cpu(),
        pixels=videos["pixels"],
        pattern=videos["pattern"],
        copy=videos["copy"],
        psnr_pixels=scores["pixels"],
        psnr_pattern=scores["pattern"],
        psnr_copy=scores["copy"],
        grid=tuple(grid),
        tubelet=tubelet,
        patch=patch,
        strategy=strategy,
        ratio=float(mask[0].float().mean()) if ratio is None else float(ratio),
        normalization=cfg.normalization,
        borrowed=cfg.normalization != "none",
    )


def _draw(strategy: str, batch: int, grid, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    return make_mask(strategy, batch, grid, ratio, generator=generator)  # (B, N) on the CPU


class PSNRRow(NamedTuple):
    """One line of :func:`psnr_table`: dB over the hidden tubelets, pooled over the batch.

    strategy, ratio: the mask; visible: tokens the encoder saw per clip; model: the pixel view;
    pattern: the pattern view (true patch statistics borrowed); copy: the copy baseline;
    borrowed: True when the model predicts a normalised target, so that ``model`` too was
    scored with the true patches' statistics.
    """

    strategy: str
    ratio: float
    visible: int
    model: float
    pattern: float
    copy: float
    borrowed: bool = False


def _pooled_psnr(per_clip_db: torch.Tensor) -> float:
    # equal hidden counts per clip: the pooled MSE is the mean of the per-clip MSEs
    mse = (10.0 ** (-per_clip_db.double() / 10.0)).mean()
    return float(-10.0 * torch.log10(mse))


def psnr_table(model: nn.Module, videos: torch.Tensor, ratios: Sequence[float] = (0.75, 0.9, 0.95),
               strategies: Sequence[str] = ("tube",), generator: torch.Generator | None = None,
               batch_size: int = 16) -> list[PSNRRow]:
    """Model versus copy baseline on ``videos`` ``(B, C, T, H, W)`` (ImageNet-normalised).

    For each strategy and ratio (strategies outermost) one mask per clip is drawn with
    ``generator`` and every clip is reconstructed (in chunks of ``batch_size``). PSNR is pooled
    over all hidden values of all clips: ``10·log10(1 / mean MSE)``.
    """
    videos = _as_batch(videos)
    grid = model.encoder.token_grid(videos)
    rows = []
    for strategy in strategies:
        for ratio in ratios:
            mask = _draw(strategy, videos.shape[0], grid, ratio, generator)  # (B, N)
            parts = [reconstruct(model, videos[i:i + batch_size], mask[i:i + batch_size], strategy=strategy, ratio=ratio)
                     for i in range(0, videos.shape[0], batch_size)]
            cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
            rows.append(PSNRRow(strategy, float(ratio), int((~mask[0]).sum()), _pooled_psnr(cat("psnr_pixels")),
                                _pooled_psnr(cat("psnr_pattern")), _pooled_psnr(cat("psnr_copy")), parts[0].borrowed))
    return rows


def format_psnr_table(rows: Sequence[PSNRRow], title: str | None = None) -> str:
    """A plain-text table of :func:`psnr_table` rows, one line per (strategy, ratio)."""
    if not rows:
        raise ValueError("rows must hold at least one PSNRRow")
    lines = [title] if title else []
    lines.append(f"{'mask':<8}{'ρ':>6}{'visible':>9}{'model':>9}{'copy':>8}{'gain':>7}   {'pattern view*':>13}")
    for r in rows:
        lines.append(f"{r.strategy:<8}{r.ratio:>6.2f}{r.visible:>9d}{r.model:>7.1f}dB{r.copy:>6.1f}dB"
                     f"{r.model - r.copy:>+6.1f}   {r.pattern:>11.1f}dB")
    lines.append("* hidden patches drawn with the true patch's mean and std per channel: not a fair score")
    if any(r.borrowed for r in rows):
        lines.append("the model predicts a normalised target: its 'model' pixels borrow the true patch statistics too")
    return "\n".join(lines)


def precompute_views(model: nn.Module, clips: Mapping[str, torch.Tensor],
                     strategies: Sequence[str] = ("tube", "random", "frame"),
                     ratios: Sequence[float] = (0.75, 0.9, 0.95), seed: int = 0) -> dict:
    """Every view an explorer may show: ``{(clip name, strategy, ratio): Reconstruction}``.

    clips: name → one clip ``(C, T, H, W)`` (ImageNet-normalised). The mask of each
    (strategy, ratio) is drawn from ``torch.Generator().manual_seed(seed)`` — the same mask for
    every clip — so a view is a pure function of its key. A combination a strategy cannot draw
    on this grid (e.g. frame masking that would hide every slot) is left out.
    """
    views = {}
    for name, clip in clips.items():
        clip = _as_batch(clip)
        if clip.shape[0] != 1:
            raise ValueError(f"clips[{name!r}] must be one clip (C, T, H, W), got shape {tuple(clip.shape)}")
        grid = model.encoder.token_grid(clip)
        for strategy in strategies:
            for ratio in ratios:
                try:
                    mask = _draw(strategy, 1, grid, ratio, torch.Generator().manual_seed(seed))
                except ValueError:
                    continue
                if bool(mask.all()):
                    continue  # nothing visible: nothing to reconstruct from
                views[(name, strategy, float(ratio))] = reconstruct(model, clip, mask, strategy=strategy, ratio=ratio)
    if not views:
        raise ValueError("no (strategy, ratio) could be drawn on these clips")
    return views


# --------------------------------------------------------------------------------------------
# Cost, measured
# --------------------------------------------------------------------------------------------


class AllTokensVideoMAE(nn.Module):
    """The symmetric counterpart of a VideoMAE: its encoder runs on **all** tokens.

    Hidden tubelets enter the encoder as one learned embedding (``mask_token``, the BEiT/SimMIM
    way; MAE's "encoder with [M]" ablation) at their position; the encoder's outputs for all
    ``N`` tokens go to the same decoder, which predicts the hidden ones. Everything but
    ``mask_token`` is the wrapped model's own parameters, so the two designs can be timed on the
    same weights, clip and mask. Loss: ``mean((pred − target)²)`` over the hidden tubelets with
    the wrapped model's target, as VideoMAE.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        cfg = _model_config(model)
        if getattr(cfg, "decoder_mask_ratio", 0.0) > 0:
            raise ValueError("AllTokensVideoMAE wraps a VideoMAE without decoder masking (decoder_mask_ratio=0)")
        self.model = model
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> PretrainOutput:
        m = self.model
        enc = m.encoder
        grid = enc.token_grid(video)
        check_mask(mask, grid[0] * grid[1] * grid[2])
        x = enc.patch_embed(video)  # (B, N, dim): every tubelet embedded
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)  # (B, N, dim): hidden → [M]
        x = x + enc.position_embedding(grid, video.device, x.dtype)  # (B, N, dim)
        for block in enc.blocks:
            x = block(x)  # (B, N, dim): attention over all N tokens
        x = m.encoder_to_decoder(enc.norm(x))  # (B, N, decoder_dim)
        x = x + m.decoder_position_embedding(grid, video.device).to(x.dtype)  # (B, N, decoder_dim)
        x = torch.cat([visible_tokens(x, mask), masked_tokens(x, mask)], dim=1)  # (B, N, decoder_dim), hidden last
        n_hidden = int(mask[0].sum())
        pred = m.decoder(x, n_hidden)  # (B, N_mask, P)
        hidden_idx = mask.nonzero()[:, 1].view(mask.shape[0], n_hidden)  # (B, N_mask) raster order
        target = m.targets(video, hidden_idx)  # (B, N_mask, P)
        loss = F.mse_loss(pred.float(), target)
        return PretrainOutput(loss=loss, pred=pred, target=target, mask=mask, terms={"loss_pixel": loss},
                              extras={"decoded": mask})


def time_steps(models: Mapping[str, nn.Module], video: torch.Tensor, mask: torch.Tensor, steps: int = 10,
               warmup: int = 2, clock: str = "wall") -> dict[str, list[float]]:
    """Milliseconds of a training step (forward + backward) of each model.

    All models get the same ``video`` ``(B, C, T, H, W)`` and ``mask`` ``(B, N)``; steps
    alternate between the models (A B, B A, …) so that a change of load on a shared machine
    hits all of them alike. ``clock``: ``"wall"`` (elapsed time; on CUDA after a synchronise)
    or ``"process"`` (CPU time of this process, on CPU only: the work a step costs, whatever
    else the machine is running). Returns ``{name: [ms per timed step]}`` (take the median).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if not models:
        raise ValueError("models must name at least one model")
    device = video.device
    if clock not in ("wall", "process"):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    if clock == "process" and device.type != "cpu":
        raise ValueError(f"clock='process' measures CPU time: it needs the models on the CPU, not {device}")
    names = list(models)

    def step(model: nn.Module):
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model(video, mask).loss.backward()
        return run

    for model in models.values():
        model.train()
    seconds = time_interleaved({name: step(models[name]) for name in names}, rounds=steps, warmup=warmup,
                               order="alternate", clocks=(clock,), device=device)[clock]
    times = {name: [1000.0 * s for s in seconds[name]] for name in names}
    for model in models.values():
        model.zero_grad(set_to_none=True)
    return times


def median_ms(times: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``{name: median ms}`` of :func:`time_steps`' result."""
    return {name: statistics.median(values) for name, values in times.items()}
