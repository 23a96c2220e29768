"""Which tokens are hidden: the mask generators of VideoMAE, VideoMAE V2 and VideoMAC.

A video of shape ``(B, C, T, H, W)`` cut into tubelets of ``tubelet × p × p`` pixels becomes a
*token grid* ``(t, h, w) = (T / tubelet, H / p, W / p)``. Tokens are numbered in raster order
with ``t`` slowest, so token ``n`` sits at ``(n // (h·w), (n // w) % h, n % w)`` and
``N = t·h·w``.

A **mask** is a bool tensor ``(B, N)`` with ``True = masked`` (hidden from the encoder). Every
sample of a batch hides the same number of tokens, so visible tokens can be gathered into a
dense ``(B, N_vis, D)`` tensor without padding.

Count rule (the one the reference implementations use): a ratio ``ρ`` over ``n`` maskable
units hides ``floor(ρ · n)`` of them. The *unit* depends on the strategy:

=====================  ======================================  ==============================
strategy               unit masked                             masked tokens per sample
=====================  ======================================  ==============================
``random_mask``        one token                               ``floor(ρ·t·h·w)``
``tube_mask``          one spatial position, for all ``t``     ``t · floor(ρ·h·w)``
``frame_mask``         one temporal slot, all its ``h·w``      ``h·w · floor(ρ·t)``
``pair_mask``          a tube over a frame pair (``t = 2``)    ``2 · floor(ρ·h·w)``
``running_cell_mask``  a fixed share of each 2×2 cell          ``t·h·w · floor(4ρ) / 4``
=====================  ======================================  ==============================

Randomness comes only from the ``torch.Generator`` you pass (or torch's default one), so the
same seed gives the same masks. Noise is drawn on the generator's device, then the mask is moved
to ``device``: a CPU generator therefore gives identical masks on every device, and a CUDA
generator keeps mask generation on the GPU.
"""

from __future__ import annotations

import math

import torch

Grid = tuple[int, int, int]

__all__ = [
    "num_masked",
    "random_mask",
    "tube_mask",
    "frame_mask",
    "pair_mask",
    "running_cell_mask",
    "make_mask",
    "mask_count",
    "check_grid",
    "MASKERS",
    "check_mask",
    "token_index",
    "tokens_at",
    "gather_tokens",
    "visible_tokens",
    "masked_tokens",
    "merge_tokens",
]


# --------------------------------------------------------------------------------------------
# Argument checks (shared by every generator)
# --------------------------------------------------------------------------------------------


def _check_ratio(ratio: float, name: str = "ratio") -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or math.isnan(ratio):
        raise ValueError(f"{name} must be a number in [0, 1), got {ratio!r}")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (1 would hide every token), got {ratio}")
    return float(ratio)


def check_grid(grid, name: str = "grid") -> Grid:
    """``grid`` as a ``(t, h, w)`` triple of positive ints, or a ValueError naming ``name``."""
    try:
        t, h, w = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (t, h, w) triple of positive ints, got {grid!r}") from None
    if min(t, h, w) < 1 or tuple(grid) != (t, h, w):
        raise ValueError(f"{name} must be a (t, h, w) triple of positive ints, got {grid!r}")
    return t, h, w


def _check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return batch


def num_masked(units: int, ratio: float) -> int:
    """How many of ``units`` maskable units a ratio hides: ``floor(ratio · units)``.

    This is VideoMAE's rule (``int(mask_ratio * num_patches)``). A ratio above 0 that would hide
    nothing on so small a grid is an error rather than a silent no-op.
    """
    ratio = _check_ratio(ratio)
    # Round before flooring so 0.9 * 10 (= 8.999999999999998 in floats) counts 9, not 8.
    k = math.floor(round(ratio * units, 9))
    if ratio > 0 and k == 0:
        raise ValueError(
            f"ratio {ratio} hides no unit out of {units}: use a larger grid or a ratio ≥ {1 / units:.3g}"
        )
    return k


def _noise(batch: int, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform noise ``(batch, n)`` on the generator's device (see the module docstring)."""
    noise_device = generator.device if generator is not None else device
    return torch.rand(batch, n, generator=generator, device=noise_device)


def _choose(batch: int, n: int, k: int, generator, device) -> torch.Tensor:
    """A bool ``(batch, n)`` with exactly ``k`` True per row, uniformly at random."""
    # rank of each unit under random noise: the k lowest-noise units are masked.
    ranks = _noise(batch, n, generator, device).argsort(dim=1).argsort(dim=1)  # (B, n)
    return (ranks < k).to(device)


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def random_mask(batch: int, grid: Grid, ratio: float, *, generator=None, device="cpu") -> torch.Tensor:
    """Mask every token independently: ``floor(ratio·N)`` tokens anywhere in the clip.

    Image MAE's strategy applied to video. Because neighbouring frames are nearly equal, a hidden
    token can usually be copied from the same place in a nearby frame — the leak tube masking
    closes. Returns bool ``(B, N)``.
    """
    _check_batch(batch)
    t, h, w = check_grid(grid)
    k = num_masked(t * h * w, ratio)
    return _choose(batch, t * h * w, k, generator, device)


def tube_mask(batch: int, grid: Grid, ratio: float, *, generator=None, device="cpu") -> torch.Tensor:
    """VideoMAE's tube masking: one spatial mask ``(h, w)`` repeated over all ``t`` slots.

    Each hidden position is hidden in *every* frame, so no frame can leak it. Hides
    ``t · floor(ratio·h·w)`` tokens per sample. Returns bool ``(B, N)``.
    """
    _check_batch(batch)
    t, h, w = check_grid(grid)
    k = num_masked(h * w, ratio)
    spatial = _choose(batch, h * w, k, generator, device)  # (B, h·w)
    return spatial.repeat(1, t)  # (B, t·h·w): t slowest, so repeating the row repeats the tube


def frame_mask(batch: int, grid: Grid, ratio: float, *, generator=None, device="cpu") -> torch.Tensor:
    """Hide whole temporal slots: ``floor(ratio·t)`` of the ``t`` slots, all their tokens.

    The visible slots show the whole scene, so a hidden slot is easy to interpolate from its
    neighbours in time. Returns bool ``(B, N)``.
    """
    _check_batch(batch)
    t, h, w = check_grid(grid)
    k = num_masked(t, ratio)
    slots = _choose(batch, t, k, generator, device)  # (B, t)
    return slots.repeat_interleave(h * w, dim=1)  # (B, t·h·w)


def pair_mask(batch: int, grid_hw: tuple[int, int], ratio: float, *, generator=None, device="cpu") -> torch.Tensor:
    """VideoMAC's symmetric masking: one spatial mask shared by the two frames of a pair.

    ``grid_hw`` is the ``(h, w)`` grid of one frame at the encoder's total stride (32 px for
    VideoMAC). The result is a tube mask over ``t = 2``: bool ``(B, 2·h·w)``, the first
    ``h·w`` entries for frame 1 and the next ``h·w`` (identical) for frame 2.
    """
    try:
        h, w = (int(v) for v in grid_hw)
    except (TypeError, ValueError):
        raise ValueError(f"grid_hw must be an (h, w) pair of positive ints, got {grid_hw!r}") from None
    return tube_mask(batch, (2, h, w), ratio, generator=generator, device=device)


def running_cell_mask(batch: int, grid: Grid, ratio: float = 0.5, *, generator=None, device="cpu") -> torch.Tensor:
    """VideoMAE V2's running-cell *decoder* mask.

    The spatial grid is tiled by 2×2 cells. In each cell ``floor(4·ratio)`` of the 4 positions
    are True (dropped from reconstruction) — the same positions in every cell — and the pattern
    steps one position along the cell (in the order top-left, top-right, bottom-left,
    bottom-right) at every temporal slot, so over 4 slots every position is reconstructed
    equally often. The starting phase is drawn per sample. Needs even ``h`` and ``w`` and
    ``0 < floor(4·ratio) < 4``. Returns bool ``(B, N)`` with True = *not reconstructed*.
    """
    _check_batch(batch)
    t, h, w = check_grid(grid)
    ratio = _check_ratio(ratio)
    k = math.floor(round(4 * ratio, 9))
    if not 0 < k < 4:
        raise ValueError(f"ratio must give 1–3 of the 4 positions of a 2×2 cell (0.25 ≤ ratio < 1), got {ratio}")
    if h % 2 or w % 2:
        raise ValueError(f"grid must have even h and w for 2×2 running cells, got (t, h, w) = {(t, h, w)}")
    # phase: (B,) random start in {0..3}; the cell at slot s is the queue [1]*k + [0]*(4-k)
    # read from position (phase + s + 1) onwards, as in VideoMAE V2's generator.
    phase = (_noise(batch, 1, generator, device) * 4).long().clamp_(max=3).to(device)  # (B, 1)
    queue = torch.arange(4, device=device) < k  # (4,)
    slot = torch.arange(t, device=device).view(1, t, 1)  # (1, t, 1)
    pos = torch.arange(4, device=device).view(1, 1, 4)  # (1, 1, 4)
    cells = queue[(pos + phase.view(batch, 1, 1) + slot + 1) % 4]  # (B, t, 4)
    cells = cells.view(batch, t, 2, 1, 2, 1)  # (B, t, cell row, ·, cell col, ·)
    grid_mask = cells.expand(batch, t, 2, h // 2, 2, w // 2)  # which cell position each token has
    # token (y, x) takes position (y % 2, x % 2) of its cell: put the cell axes innermost.
    grid_mask = grid_mask.permute(0, 1, 3, 2, 5, 4).reshape(batch, t * h * w)  # (B, N)
    return grid_mask.contiguous()


MASKERS = {
    "tube": tube_mask,
    "random": random_mask,
    "frame": frame_mask,
    "running_cell": running_cell_mask,
}


def make_mask(strategy: str, batch: int, grid: Grid, ratio: float, *, generator=None, device="cpu") -> torch.Tensor:
    """Dispatch by name: ``"tube"``, ``"random"``, ``"frame"`` or ``"running_cell"``."""
    if strategy not in MASKERS:
        raise ValueError(f"strategy must be one of {sorted(MASKERS)}, got {strategy!r}")
    return MASKERS[strategy](batch, grid, ratio, generator=generator, device=device)


def mask_count(strategy: str, grid: Grid, ratio: float) -> int:
    """How many tokens per sample ``make_mask(strategy, ·, grid, ratio)`` sets True.

    Known before any mask exists, from the rule of each strategy: ``floor(ρ·N)`` (random),
    ``t·floor(ρ·h·w)`` (tube), ``floor(ρ·t)·h·w`` (frame), ``t·(h·w/4)·floor(4ρ)`` (running
    cell). A model that takes its count from here instead of from the mask's contents never
    waits for the device (see :func:`check_mask`).
    """
    t, h, w = check_grid(grid)
    if strategy == "random":
        return num_masked(t * h * w, ratio)
    if strategy == "tube":
        return t * num_masked(h * w, ratio)
    if strategy == "frame":
        return num_masked(t, ratio) * h * w
    if strategy == "running_cell":
        return t * (h // 2) * (w // 2) * math.floor(round(4 * _check_ratio(ratio), 9))
    raise ValueError(f"strategy must be one of {sorted(MASKERS)}, got {strategy!r}")


# --------------------------------------------------------------------------------------------
# Using a mask
# --------------------------------------------------------------------------------------------


def check_mask(mask: torch.Tensor, num_tokens: int | None = None, name: str = "mask", *,
               count: int | None = None) -> int:
    """Validate a mask and return its number of masked tokens per sample.

    A mask must be a bool tensor ``(B, N)`` (``N = num_tokens`` when given) with the same count
    of True in every row. Raises ``ValueError`` naming what is wrong otherwise.

    Reading the count from the mask copies a number from the device to the host: on a GPU
    the Python thread waits until every queued kernel has run, and the GPU then idles while the
    next kernels are launched. A training loop that draws its masks with a known rule passes the
    expected ``count`` (:func:`mask_count`) instead: the shape checks stay, and the per-row
    counts are verified *on the device* by ``torch._assert_async`` — an error on the CPU at once,
    a device-side assertion on CUDA — without waiting.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of dtype bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must have dtype torch.bool (True = masked), got {mask.dtype}")
    if mask.dim() != 2:
        raise ValueError(f"{name} must have shape (B, N), got {tuple(mask.shape)}")
    if num_tokens is not None and mask.shape[1] != num_tokens:
        raise ValueError(f"{name} must have N = {num_tokens} tokens per sample, got {mask.shape[1]}")
    counts = mask.sum(dim=1)
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= mask.shape[1]:
            raise ValueError(f"count must be an int in [0, {mask.shape[1]}], got {count!r}")
        torch._assert_async((counts == count).all(), f"{name} must hide exactly {count} tokens in every sample")
        return count
    if mask.shape[0] and bool((counts != counts[0]).any()):
        raise ValueError(f"{name} must mask the same number of tokens in every sample, got counts {counts.tolist()}")
    return int(counts[0]) if mask.shape[0] else 0


def token_index(select: torch.Tensor, count: int | None = None) -> torch.Tensor:
    """Indices of the True entries of a bool ``(B, N)`` with equal counts: ``(B, K)``, raster order.

    ``x[torch.arange(B)[:, None], token_index(select)]`` equals ``x[select].reshape(B, K, ...)``,
    the official code's gather. With the count ``K`` known on the host the indices come from a
    stable sort, whose output size does not depend on the data: no wait for the device.
    """
    if count is None:
        return select.nonzero()[:, 1].view(select.shape[0], -1)  # nonzero is row-major: sorted per row
    return torch.argsort((~select).to(torch.uint8), dim=1, stable=True)[:, :count]  # (B, K) selected first, in order


def tokens_at(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The tokens at ``index``, sample by sample: ``x (B, N, ...)``, ``index (B, K)`` → ``(B, K, ...)``.

    ``out[b, k] = x[b, index[b, k]]``; with ``index = token_index(select)`` it keeps the tokens
    where ``select`` is True, as :func:`gather_tokens` does.
    """
    return x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), index]


def gather_tokens(x: torch.Tensor, select: torch.Tensor, count: int | None = None) -> torch.Tensor:
    """Keep the tokens where ``select`` is True, in raster order.

    x: ``(B, N, ...)``; select: bool ``(B, N)`` with equal counts ``K`` → ``(B, K, ...)``.
    """
    k = check_mask(select, x.shape[1], name="select", count=count)
    idx = token_index(select, k)  # (B, K)
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, idx)


def visible_tokens(x: torch.Tensor, mask: torch.Tensor, masked_count: int | None = None) -> torch.Tensor:
    """``(B, N, D)`` → ``(B, N_vis, D)``: the tokens the encoder sees, in raster order.
    ``masked_count``: the known number of hidden tokens per sample (see :func:`check_mask`)."""
    count = None if masked_count is None else mask.shape[1] - masked_count
    return gather_tokens(x, ~mask if mask.dtype == torch.bool else mask, count)


def masked_tokens(x: torch.Tensor, mask: torch.Tensor, masked_count: int | None = None) -> torch.Tensor:
    """``(B, N, D)`` → ``(B, N_mask, D)``: the hidden tokens, in raster order (targets)."""
    return gather_tokens(x, mask, masked_count)


def merge_tokens(visible: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put visible and hidden tokens back in raster order: the inverse of the two gathers.

    visible: ``(B, N_vis, ...)``, hidden: ``(B, N_mask, ...)``, mask: bool ``(B, N)`` →
    ``(B, N, ...)`` with ``out[~mask] = visible`` and ``out[mask] = hidden``.
    """
    k = check_mask(mask, visible.shape[1] + hidden.shape[1])
    if hidden.shape[1] != k:
        raise ValueError(f"hidden must hold the {k} masked tokens of mask, got {hidden.shape[1]}")
    if visible.shape[0] != mask.shape[0] or hidden.shape[0] != mask.shape[0]:
        raise ValueError(
            f"visible, hidden and mask must share the batch size, got {visible.shape[0]}, {hidden.shape[0]}, {mask.shape[0]}"
        )
    x = torch.cat([visible, hidden], dim=1)  # (B, N, ...): visible first, then hidden
    # the same stable order the gathers used: position j of x belongs at token order[j]
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)  # (B, N)
    inverse = torch.argsort(order, dim=1)  # (B, N): where token n sits in x
    inverse = inverse.view(*inverse.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, inverse)
