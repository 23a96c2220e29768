"""The "reconstruction" that needs no network: copy a visible patch from somewhere else.

VideoMAE's case for *tube* masking is an argument about this baseline. Neighbouring frames of a
video are nearly equal, so when a token is hidden in one frame but visible at the same place in a
nearby frame, copying it already gives a good reconstruction — a network trained on such masks
can lower its loss without learning anything about objects or motion. Tube masking hides a
spatial position in *every* frame, which removes the shortcut. This module measures that claim.

The copy rule, for a clip with token grid ``(t, h, w)`` (``S = h·w`` positions per slot) and a
mask ``(B, N)`` (True = hidden). Every hidden token ``(s, y, x)`` is filled by the first rule
that applies:

1. **temporal copy** (``TEMPORAL``) — the pixels of the visible token at the *same* position
   ``(y, x)`` in the temporally nearest slot ``s'`` (smallest ``|s' − s|``; on a tie the earlier
   slot). This is the shortcut random and frame masking leave open.
2. **spatial copy** (``SPATIAL``) — when position ``(y, x)`` is hidden in every slot (what tube
   masking does to every hidden token): the pixels of the visible token of the *same slot*
   ``s`` nearest in space (smallest squared Euclidean distance ``(y' − y)² + (x' − x)²`` on the
   token grid; on a tie the lowest raster index ``y'·w + x'``).
3. **mean fill** (``MEAN``) — when slot ``s`` has no visible token either: every pixel of the
   token takes the per-channel mean of all visible pixels of the clip.

Visible tokens keep their own pixels (``VISIBLE``). Everything is computed with a few tensor
operations over all tokens at once: the candidate costs above are made unique integers, so one
``min`` per rule picks the source.

Quality is reported as PSNR in [0, 1] pixel space (the data pipeline's ImageNet normalisation
undone, then clamped to [0, 1]) over the hidden tokens only:
``PSNR = 10 · log10(range² / MSE)``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..data.transforms import denormalize
from ..masking import check_grid, check_mask, make_mask
from ..patches import patchify

__all__ = [
    "best_copy_psnr",
    "VISIBLE",
    "TEMPORAL",
    "SPATIAL",
    "MEAN",
    "CopyReconstruction",
    "copy_nearest_visible",
    "copy_reconstruct",
    "psnr",
    "masked_psnr",
    "CopyRow",
    "copy_baseline_table",
    "format_copy_table",
    "frame_similarity",
    "mean_colour_reconstruct",
    "copyable_share",
]

# How each token of a copy reconstruction got its pixels (the ``how`` field).
VISIBLE, TEMPORAL, SPATIAL, MEAN = 0, 1, 2, 3


class CopyReconstruction(NamedTuple):
    """Result of :func:`copy_nearest_visible`.

    patches: ``(B, N, D)`` the reconstruction, visible tokens unchanged.
    source:  ``(B, N)`` long, the token whose pixels were copied (a visible token's own index;
             ``-1`` for the mean fill).
    how:     ``(B, N)`` long, one of ``VISIBLE``, ``TEMPORAL``, ``SPATIAL``, ``MEAN``.
    """

    patches: torch.Tensor
    source: torch.Tensor
    how: torch.Tensor


def copy_nearest_visible(
    patches: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int, int], channels: int = 3
) -> CopyReconstruction:
    """Fill every hidden token by copying a visible one (rules in the module docstring).

    Args:
        patches: ``(B, N, D)`` token pixels, ``D = tubelet·p·p·C`` with channel fastest (the
            layout of :func:`maskvid_edu.patches.patchify`); ``N = t·h·w``.
        mask: bool ``(B, N)``, True = hidden, the same count in every sample.
        grid: the token grid ``(t, h, w)``.
        channels: ``C``, used only by the mean fill (per-channel means).

    Returns:
        :class:`CopyReconstruction` ``(patches, source, how)``.
    """
    t, h, w = check_grid(grid)
    if patches.dim() != 3:
        raise ValueError(f"patches must have shape (B, N, D), got {tuple(patches.shape)}")
    B, N, D = patches.shape
    if N != t * h * w:
        raise ValueError(f"patches must hold N = t·h·w = {t * h * w} tokens for grid {grid}, got {N}")
    check_mask(mask, N)
    if mask.shape[0] != B:
        raise ValueError(f"mask must have the batch size of patches ({B}), got {mask.shape[0]}")
    if channels < 1 or D % channels:
        raise ValueError(f"channels must divide the patch width D = {D}, got {channels}")
    if bool(mask.all(dim=1).any()):
        raise ValueError("mask hides every token of a sample: nothing is left to copy from")

    S = h * w
    device = patches.device
    vis = ~mask.view(B, t, S)  # (B, t, S): True where a token is visible

    # Rule 1, temporal: cost of copying slot s' into slot s is 2|s' - s| + [s' > s], unique per s.
    slot = torch.arange(t, device=device)
    cost_t = 2 * (slot.view(1, t) - slot.view(t, 1)).abs() + (slot.view(1, t) > slot.view(t, 1)).long()  # (t, t)
    never_t = 2 * t + 2  # larger than any valid cost
    cost = cost_t.view(1, t, t, 1).masked_fill(~vis.view(B, 1, t, S), never_t)  # (B, t_dst, t_src, S)
    best_t, src_slot = cost.min(dim=2)  # (B, t, S) each
    has_time = best_t < never_t  # (B, t, S)
    pos = torch.arange(S, device=device)  # (S,)
    temporal_src = src_slot * S + pos  # (B, t, S): token index of the source

    # Rule 2, spatial: cost S·d² + j for source position j, unique per destination position.
    yy, xx = pos // w, pos % w  # (S,) each
    d2 = (yy.view(S, 1) - yy.view(1, S)) ** 2 + (xx.view(S, 1) - xx.view(1, S)) ** 2  # (S_dst, S_src)
    cost_s = d2 * S + pos.view(1, S)  # (S, S)
    never_s = (h * h + w * w) * S + S  # larger than any valid cost
    cost = cost_s.view(1, 1, S, S).masked_fill(~vis.view(B, t, 1, S), never_s)  # (B, t, S_dst, S_src)
    best_s, src_pos = cost.min(dim=3)  # (B, t, S) each
    has_space = best_s < never_s  # (B, t, S)
    spatial_src = slot.view(1, t, 1) * S + src_pos  # (B, t, S)

    # Which rule serves each token, and the token it copies.
    own = torch.arange(N, device=device).expand(B, N)  # (B, N)
    has_time, has_space = has_time.reshape(B, N), has_space.reshape(B, N)
    how = torch.full((B, N), MEAN, dtype=torch.long, device=device)
    how = torch.where(has_space, torch.full_like(how, SPATIAL), how)
    how = torch.where(has_time, torch.full_like(how, TEMPORAL), how)
    how = torch.where(mask, how, torch.full_like(how, VISIBLE))  # (B, N)
    source = torch.full((B, N), -1, dtype=torch.long, device=device)
    source = torch.where(how == SPATIAL, spatial_src.reshape(B, N), source)
    source = torch.where(how == TEMPORAL, temporal_src.reshape(B, N), source)
    source = torch.where(how == VISIBLE, own, source)  # (B, N)

    copied = torch.gather(patches, 1, source.clamp(min=0).unsqueeze(-1).expand(B, N, D))  # (B, N, D)

    # Rule 3, mean fill: per-channel mean of the visible pixels of each clip.
    weight = (~mask).to(patches.dtype).unsqueeze(1)  # (B, 1, N)
    sums = torch.bmm(weight, patches).view(B, D // channels, channels).sum(dim=1)  # (B, C)
    count = weight.sum(dim=2) * (D // channels)  # (B, 1): visible values per channel
    fill = (sums / count).repeat(1, D // channels).unsqueeze(1)  # (B, 1, D), channel fastest
    out = torch.where((how == MEAN).unsqueeze(-1), fill, copied)  # (B, N, D)
    return CopyReconstruction(out, source, how)


def copy_reconstruct(
    video: torch.Tensor, mask: torch.Tensor, tubelet: int = 2, patch: int = 16, *, input_normalized: bool = True
) -> CopyReconstruction:
    """The copy baseline on a video: ``(B, C, T, H, W)`` → :class:`CopyReconstruction`.

    ``video`` carries the data pipeline's ImageNet normalisation when ``input_normalized`` is
    True; it is undone and the pixels clamped to [0, 1] first, so ``patches`` of the result are
    in [0, 1] pixel space (``maskvid_edu.patches.unpatchify`` turns them back into a video).
    """
    pixels = _pixels(video, input_normalized)  # (B, C, T, H, W) in [0, 1]
    grid = _grid(video, tubelet, patch)
    return copy_nearest_visible(patchify(pixels, tubelet, patch), mask, grid, channels=video.shape[1])


# --------------------------------------------------------------------------------------------
# Image quality
# --------------------------------------------------------------------------------------------


def _check_range(data_range: float) -> float:
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not data_range > 0:
        raise ValueError(f"data_range must be a positive number (1.0 for [0, 1] pixels), got {data_range!r}")
    return float(data_range)


def _psnr_from_mse(mse: torch.Tensor, data_range: float) -> torch.Tensor:
    # 10·log10(range² / mse); an exact copy (mse = 0) gives +inf.
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio over all elements: ``10 · log10(data_range² / mean((a − b)²))``.

    ``a`` and ``b`` have the same shape; the result is a 0-dim float tensor in dB (+inf when
    they are equal).
    """
    data_range = _check_range(data_range)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = (a.float() - b.float()).pow_(2).mean(dtype=torch.float64)  # float: uint8 would wrap around
    return _psnr_from_mse(mse, data_range).float()


def masked_psnr(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 1.0, per_clip: bool = False
) -> torch.Tensor:
    """PSNR over the hidden tokens only.

    Args:
        pred, target: ``(B, N, D)`` token pixels in [0, 1] pixel space (not per-patch
            normalised: PSNR compares pixels).
        mask: bool ``(B, N)``, True = hidden; only these tokens count.
        data_range: the pixel range (1.0 for [0, 1]).
        per_clip: False → one number, the MSE pooled over every hidden value of the batch;
            True → ``(B,)``, one PSNR per clip.
    """
    data_range = _check_range(data_range)
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(
            f"pred and target must have the same (B, N, D) shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    k = check_mask(mask, pred.shape[1])
    if mask.shape[0] != pred.shape[0]:
        raise ValueError(f"mask must have the batch size of pred ({pred.shape[0]}), got {mask.shape[0]}")
    if k == 0:
        raise ValueError("mask hides no token: PSNR over hidden tokens is undefined")
    err = (pred.float() - target.float()).pow_(2).mean(dim=-1, dtype=torch.float64)  # (B, N): per-token MSE
    err = err * mask  # (B, N): visible tokens contribute nothing
    mse = err.sum(dim=1) / k if per_clip else err.sum() / (k * mask.shape[0])
    return _psnr_from_mse(mse, data_range).float()


# --------------------------------------------------------------------------------------------
# The measurement: copy baseline under each masking strategy
# --------------------------------------------------------------------------------------------


class CopyRow(NamedTuple):
    """One row of :func:`copy_baseline_table`.

    strategy, ratio: the mask drawn; masked: hidden tokens per clip; psnr: dB over the hidden
    pixels of the batch; from_other_frame: share of hidden tokens filled by a temporal copy.
    """

    strategy: str
    ratio: float
    masked: int
    psnr: float
    from_other_frame: float


def copy_baseline_table(
    video_batch: torch.Tensor,
    ratios: Sequence[float] = (0.75, 0.9, 0.95),
    strategies: Sequence[str] = ("random", "frame", "tube"),
    generator: torch.Generator | None = None,
    tubelet: int = 2,
    patch: int = 16,
    *,
    input_normalized: bool = True,
) -> list[CopyRow]:
    """How well the copy baseline fills each masking strategy: VideoMAE's argument, measured.

    For each strategy and ratio, draws one mask per clip of ``video_batch`` (``(B, C, T, H, W)``,
    ImageNet-normalised when ``input_normalized``) with ``generator``, fills the hidden tokens
    with :func:`copy_nearest_visible` and scores them with :func:`masked_psnr` (MSE pooled over
    the batch). Returns one :class:`CopyRow` per (strategy, ratio), strategies outermost.
    """
    pixels = _pixels(video_batch, input_normalized)  # (B, C, T, H, W) in [0, 1]
    grid = _grid(video_batch, tubelet, patch)
    target = patchify(pixels, tubelet, patch)  # (B, N, tubelet·p·p·C)
    B = video_batch.shape[0]
    rows = []
    for strategy in strategies:
        for ratio in ratios:
            mask = make_mask(strategy, B, grid, ratio, generator=generator, device=video_batch.device)  # (B, N)
            rec = copy_nearest_visible(target, mask, grid, channels=video_batch.shape[1])
            k = int(mask[0].sum())
            rows.append(
                CopyRow(
                    strategy=strategy,
                    ratio=float(ratio),
                    masked=k,
                    psnr=float(masked_psnr(rec.patches, target, mask)),
                    from_other_frame=float((rec.how == TEMPORAL).sum()) / (k * B),
                )
            )
    return rows


def format_copy_table(rows: Sequence[CopyRow], title: str | None = None) -> str:
    """A plain-text table: one line per strategy, one column per ratio.

    Each cell reads ``PSNR dB (share of hidden tokens copied from another frame)``.
    """
    if not rows:
        raise ValueError("rows must hold at least one CopyRow")
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    ratios = list(dict.fromkeys(r.ratio for r in rows))
    cell = {(r.strategy, r.ratio): f"{r.psnr:.1f} dB ({r.from_other_frame:.0%})" for r in rows}
    width = max(len(s) for s in strategies + ["strategy"])
    lines = [title] if title else []
    lines.append(f"{'strategy':<{width}}  " + "  ".join(f"{'ρ = ' + format(r, 'g'):<16}" for r in ratios).rstrip())
    for s in strategies:
        lines.append(f"{s:<{width}}  " + "  ".join(f"{cell.get((s, r), '—'):<16}" for r in ratios).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Redundancy: how alike are frames?
# --------------------------------------------------------------------------------------------


def frame_similarity(
    videos: torch.Tensor, gaps: Sequence[int] = (1, 2, 4, 8), *, input_normalized: bool = True
) -> dict[str, float]:
    """How alike frames are: mean absolute pixel difference between frames ``g`` apart, in [0, 1]
    pixel space — small numbers, alike frames (the redundancy the copy baseline exploits).

    (Not :func:`maskvid_edu.targets.frame_differences`, the per-pixel motion target tensor.)

    For a batch ``(B, C, T, H, W)`` returns ``{"gap g": ...}`` — the mean of
    ``|x[:, :, i + g] − x[:, :, i]|`` over every clip, frame ``i``, pixel and channel — for each
    gap ``g < T``, and, when ``B ≥ 2``, ``"other clip"``: the same with frame ``i`` of clip
    ``(b + 1) mod B`` in place of frame ``i + g`` of clip ``b``, the difference between
    unrelated images of the same kind.
    """
    if videos.dim() != 5:
        raise ValueError(f"videos must have shape (B, C, T, H, W), got {tuple(videos.shape)}")
    pixels = _pixels(videos, input_normalized)  # (B, C, T, H, W)
    T = pixels.shape[2]
    out = {}
    for g in gaps:
        if not isinstance(g, int) or not 0 < g < T:
            raise ValueError(f"gaps must be ints in [1, T - 1] = [1, {T - 1}], got {g!r}")
        out[f"gap {g}"] = float((pixels[:, :, g:] - pixels[:, :, :-g]).abs().mean())
    if pixels.shape[0] >= 2:
        out["other clip"] = float((pixels.roll(1, dims=0) - pixels).abs().mean())
    return out


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _pixels(video: torch.Tensor, input_normalized: bool) -> torch.Tensor:
    if video.dim() != 5:
        raise ValueError(f"video must have shape (B, C, T, H, W), got {tuple(video.shape)}")
    pixels = denormalize(video.float(), channel_dim=1) if input_normalized else video.float()
    return pixels.clamp(0.0, 1.0)


def _grid(video: torch.Tensor, tubelet: int, patch: int) -> tuple[int, int, int]:
    _, _, T, H, W = video.shape
    for size, unit, what, name in ((T, tubelet, "T", "tubelet"), (H, patch, "H", "patch"), (W, patch, "W", "patch")):
        if unit < 1 or size % unit:
            raise ValueError(f"video {what} = {size} is not divisible by {name} = {unit}")
    return T // tubelet, H // patch, W // patch



# --------------------------------------------------------------------------------------------
# The other network-free baseline: the mean colour of what is visible
# --------------------------------------------------------------------------------------------


def mean_colour_reconstruct(
    video: torch.Tensor, mask: torch.Tensor, tubelet: int = 2, patch: int = 16, *, input_normalized: bool = True
) -> torch.Tensor:
    """Fill every hidden token with the per-channel mean colour of the clip's visible pixels.

    The flattest guess that still uses the visible tokens: one colour per clip, no position, no
    time. A masked autoencoder trained too briefly learns little more than this, so a model's
    masked-patch PSNR means something only where it beats this baseline as well as the copy
    baseline. (It is the copy baseline's last-resort rule, ``MEAN``, applied to every token.)

    Args:
        video: ``(B, C, T, H, W)``, ImageNet-normalised when ``input_normalized`` (undone and
            clamped to [0, 1] first).
        mask: bool ``(B, N)``, True = hidden, the same count in every sample.
        tubelet, patch: the token size.

    Returns:
        ``(B, N, D)`` token pixels in [0, 1] (visible tokens unchanged), the layout of
        :func:`maskvid_edu.patches.patchify`; score it with :func:`masked_psnr`.
    """
    pixels = _pixels(video, input_normalized)  # (B, C, T, H, W) in [0, 1]
    target = patchify(pixels, tubelet, patch)  # (B, N, D), channel fastest
    B, N, D = target.shape
    C = video.shape[1]
    check_mask(mask, N)
    if mask.shape[0] != B:
        raise ValueError(f"mask must have the batch size of video ({B}), got {mask.shape[0]}")
    if bool(mask.all(dim=1).any()):
        raise ValueError("mask hides every token of a sample: there is no visible colour to average")
    weight = (~mask).to(target.dtype).unsqueeze(-1)  # (B, N, 1): 1 where visible
    sums = (target * weight).sum(dim=1).view(B, D // C, C).sum(dim=1)  # (B, C)
    mean = sums / (weight.sum(dim=1) * (D // C))  # (B, C): visible values per channel
    fill = mean.repeat(1, D // C).unsqueeze(1).expand(B, N, D)  # (B, N, D), channel fastest
    return torch.where(mask.unsqueeze(-1), fill, target)  # (B, N, D)


def copyable_share(video: torch.Tensor, mask: torch.Tensor, tubelet: int = 2, patch: int = 16, *,
                   input_normalized: bool = True, atol: float = 1e-6) -> torch.Tensor:
    """Share of the hidden tokens that have an exact copy *visible* in a neighbouring slot.

    A hidden token ``(s, y, x)`` counts as copyable when some visible token of slot ``s − 1`` or
    ``s + 1`` — at any position — holds the same pixels (largest absolute difference ≤ ``atol``,
    in [0, 1] pixel space). It is the shortcut of chapter 1 measured without a copy rule: under a
    mask that stays in place while the content moves, the content hidden here is often visible
    one slot away at a shifted position; a mask that follows the content hides both.

    video ``(B, C, T, H, W)`` (ImageNet-normalised when ``input_normalized``), mask bool
    ``(B, N)``. Returns float ``(B,)`` in [0, 1], one share per sample.
    """
    x = _pixels(video, input_normalized)  # (B, C, T, H, W) in [0, 1]
    t, h, w = _grid(video, tubelet, patch)
    tokens = patchify(x, tubelet, patch)  # (B, N, D)
    B, N, D = tokens.shape
    check_mask(mask, N)
    S = h * w
    tokens, hidden = tokens.view(B, t, S, D), mask.view(B, t, S)
    copyable = torch.zeros(B, t, S, dtype=torch.bool, device=tokens.device)
    for s in range(t):
        for n in (s - 1, s + 1):
            if not 0 <= n < t:
                continue
            dist = torch.cdist(tokens[:, s], tokens[:, n], p=float("inf"))  # (B, S, S): max |Δ| per pair
            dist = dist.masked_fill(hidden[:, n].unsqueeze(1), float("inf"))  # only visible sources
            copyable[:, s] |= dist.min(dim=2).values <= atol
    copyable &= hidden
    return copyable.flatten(1).sum(dim=1) / hidden.flatten(1).sum(dim=1).clamp_min(1)  # (B,)


def best_copy_psnr(video: torch.Tensor, mask: torch.Tensor, tubelet: int = 2, patch: int = 16, *,
                   input_normalized: bool = True, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of the best copy a hidden token has among the *visible* tokens of the neighbouring slots.

    :func:`copyable_share` asks for an exact copy, which only synthetic clips contain. On real
    footage the same shortcut is graded: every hidden token ``(s, y, x)`` is replaced by the
    visible token of slot ``s − 1`` or ``s + 1``, at **any** position, that is closest to it in
    mean squared error — an oracle that looks at the hidden pixels to choose, so an upper
    bound on what copying from a moving neighbour can give — and the PSNR is taken over all
    hidden tokens (repeated background texture anywhere in the frame also matches, so the
    value mixes the motion shortcut with self-similarity of the scene). A mask whose hidden content is visible one slot away (a tube over moving
    content) leaves a high value; a mask that follows the motion leaves a lower one.

    video ``(B, C, T, H, W)`` (ImageNet-normalised when ``input_normalized``), mask bool
    ``(B, N)``. Returns float ``(B,)`` in dB, one value per sample.
    """
    x = _pixels(video, input_normalized)  # (B, C, T, H, W) in [0, 1]
    t, h, w = _grid(video, tubelet, patch)
    if t < 2:
        raise ValueError(f"best_copy_psnr needs at least two temporal slots, got t = {t}")
    tokens = patchify(x, tubelet, patch)  # (B, N, D)
    B, N, D = tokens.shape
    check_mask(mask, N)
    S = h * w
    tokens, hidden = tokens.view(B, t, S, D), mask.view(B, t, S)
    best = torch.full((B, t, S), float("inf"), device=tokens.device)  # (B, t, S) squared error of the best copy
    for s in range(t):
        for n in (s - 1, s + 1):
            if not 0 <= n < t:
                continue
            dist = torch.cdist(tokens[:, s], tokens[:, n]).pow(2) / D  # (B, S, S): MSE per pair
            dist = dist.masked_fill(hidden[:, n].unsqueeze(1), float("inf"))  # only visible sources
            best[:, s] = torch.minimum(best[:, s], dist.min(dim=2).values)
    if torch.isinf(best[hidden]).any():
        raise ValueError("best_copy_psnr: some hidden token has no visible token in a neighbouring slot "
                         "(both neighbouring slots wholly hidden); this measure needs a visible neighbour")
    mse = torch.where(hidden, best, 0.0).flatten(1).sum(dim=1) / hidden.flatten(1).sum(dim=1).clamp_min(1)  # (B,)
    return _psnr_from_mse(mse, _check_range(data_range))
