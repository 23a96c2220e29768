"""Which tokens are hidden: the mask generators of VideoMAE, VideoMAE V2, VideoMAC, V-JEPA and MGMAE.

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
``multiblock_mask``    a union of spatial blocks, as tubes     ``t · k`` (``k`` see below)
``flow_guided_mask``   a base-frame mask warped along flow     ``t · k`` (``k`` of the base)
=====================  ======================================  ==============================

V-JEPA's multi-block mask (:func:`multiblock_mask`) draws a few large rectangles per sample; the
size of their union varies from sample to sample, so it is *equalised* to ``k`` positions (the
batch minimum, or ``floor(ρ·h·w)`` through :data:`MASKERS` ``["multiblock"]``). MGMAE's
flow-guided mask (:func:`flow_guided_mask`) needs optical flow besides the grid, so it is a
function of its own, not an entry of :data:`MASKERS`; :func:`motion_guided_mask` estimates the
flow from the clip (:mod:`maskvid_edu.flow`) and is the entry ``"motion_guided"`` of
:data:`VIDEO_MASKERS`, the strategies that take the clip itself.

Randomness comes only from the ``torch.Generator`` you pass (or torch's default one), so the
same seed gives the same masks. Noise is drawn on the generator's device, then the mask is moved
to ``device``: a CPU generator therefore gives identical masks on every device, and a CUDA
generator keeps mask generation on the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .flow import token_flow

Grid = tuple[int, int, int]

__all__ = [
    "num_masked",
    "random_mask",
    "tube_mask",
    "frame_mask",
    "pair_mask",
    "running_cell_mask",
    "BlockSpec",
    "SHORT_RANGE",
    "LONG_RANGE",
    "VJEPA_BLOCKS",
    "block_union",
    "multiblock_mask",
    "constant_flow",
    "multiblock_ratio_mask",
    "flow_guided_mask",
    "motion_guided_mask",
    "VIDEO_MASKERS",
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


# --------------------------------------------------------------------------------------------
# V-JEPA: multi-block masks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSpec:
    """One family of V-JEPA blocks: ``num_blocks`` rectangles of ``spatial_scale · h·w`` positions.

    Each block's aspect ratio (height / width) is drawn uniformly from ``aspect_ratio``; its
    height is ``round(sqrt(scale·h·w · ar))`` and its width ``round(sqrt(scale·h·w / ar))``,
    clipped to the grid; its top-left corner is uniform over the places where it fits. A block
    covers every temporal slot (V-JEPA's ``temporal_scale = 1``): it is a tube.
    """

    num_blocks: int
    spatial_scale: float
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self):
        if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int) or self.num_blocks < 1:
            raise ValueError(f"num_blocks must be a positive int, got {self.num_blocks!r}")
        if not 0.0 < self.spatial_scale <= 1.0:
            raise ValueError(f"spatial_scale must be in (0, 1], got {self.spatial_scale!r}")
        lo, hi = self.aspect_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"aspect_ratio must be a (low, high) pair with 0 < low ≤ high, got {self.aspect_ratio!r}")


#: V-JEPA's short-range mask: 8 blocks of 15 % of the frame each (configs/pretrain/vitl16.yaml).
SHORT_RANGE = BlockSpec(num_blocks=8, spatial_scale=0.15, aspect_ratio=(0.75, 1.5))
#: V-JEPA's long-range mask: 2 blocks of 70 % of the frame each.
LONG_RANGE = BlockSpec(num_blocks=2, spatial_scale=0.7, aspect_ratio=(0.75, 1.5))
#: The two masks V-JEPA draws for every clip (each one a mask of its own, not their union).
VJEPA_BLOCKS = {"short": (SHORT_RANGE,), "long": (LONG_RANGE,)}


def block_union(batch: int, grid_hw: tuple[int, int], specs, *, generator=None, device="cpu") -> torch.Tensor:
    """The union of the blocks of ``specs`` (see :class:`BlockSpec`) per sample: bool ``(B, h·w)``.

    Every sample draws its own blocks (aspect ratios and places), on the generator's device.
    The union's size differs between samples; :func:`multiblock_mask` equalises it.
    """
    _check_batch(batch)
    h, w = (int(v) for v in grid_hw)
    specs = tuple(specs)
    if not specs or not all(isinstance(s, BlockSpec) for s in specs):
        raise ValueError(f"specs must be a non-empty sequence of BlockSpec, got {specs!r}")
    noise_device = generator.device if generator is not None else device
    rows = torch.arange(h, device=noise_device).view(1, 1, h, 1)  # (1, 1, h, 1)
    cols = torch.arange(w, device=noise_device).view(1, 1, 1, w)  # (1, 1, 1, w)
    union = torch.zeros(batch, h, w, dtype=torch.bool, device=noise_device)
    for spec in specs:
        u = _noise(batch, 3 * spec.num_blocks, generator, device).view(batch, 3, spec.num_blocks)  # (B, 3, nb)
        lo, hi = spec.aspect_ratio
        ar = lo + u[:, 0] * (hi - lo)  # (B, nb) height / width
        area = max(1, int(spec.spatial_scale * h * w))  # positions per block, as V-JEPA's max_keep
        bh = torch.sqrt(area * ar).round().clamp(1, h).long()  # (B, nb)
        bw = torch.sqrt(area / ar).round().clamp(1, w).long()  # (B, nb)
        top = (u[:, 1] * (h - bh + 1)).long().clamp(max=h - bh)  # (B, nb) uniform over the places that fit
        left = (u[:, 2] * (w - bw + 1)).long().clamp(max=w - bw)
        inside_r = (rows >= top[..., None, None]) & (rows < (top + bh)[..., None, None])  # (B, nb, h, 1)
        inside_c = (cols >= left[..., None, None]) & (cols < (left + bw)[..., None, None])  # (B, nb, 1, w)
        union |= (inside_r & inside_c).any(dim=1)  # (B, h, w)
    return union.view(batch, h * w)


def _equalise(selected: torch.Tensor, k: int, generator, device) -> torch.Tensor:
    """Exactly ``k`` True per row, changing ``selected`` (bool ``(B, n)``) as little as possible:
    a row with more keeps ``k`` of its True entries, uniformly at random; a row with fewer keeps
    all of them and gains random ones among its False entries."""
    key = _noise(*selected.shape, generator, device) + (~selected).to(torch.float32)  # selected first
    ranks = key.argsort(dim=1).argsort(dim=1)  # (B, n)
    return ranks < k


def multiblock_mask(batch: int, grid: Grid, specs=(SHORT_RANGE,), *, count: int | None = None,
                    generator=None, device="cpu") -> torch.Tensor:
    """V-JEPA's multi-block mask: the union of a few large spatial blocks, hidden in every frame.

    Args:
        batch: ``B``.
        grid: token grid ``(t, h, w)``.
        specs: the :class:`BlockSpec` families whose blocks are all hidden together
            (V-JEPA's two masks are ``(SHORT_RANGE,)`` and ``(LONG_RANGE,)``, drawn separately).
        count: hidden spatial positions per sample. None: the **smallest union of the batch**
            (kept within ``1 … h·w − 1``, so the encoder always sees something).
        generator: the only source of randomness (block shapes, places, equalisation).

    **Equal counts.** The library's masks hide the same number of tokens in every sample, but
    unions of random blocks differ in size. Each sample's union is brought to exactly ``k``
    spatial positions (``k = count``, else the batch minimum): a larger union *unhides* randomly
    chosen positions of its own blocks, a smaller one (only with ``count``) *hides* randomly
    chosen positions outside them. With the batch minimum nothing is ever added, and the
    blocks of the smallest sample stay whole. (The official collator trims each sample's list
    of hidden indices to the batch minimum, dropping the last ones in raster order; random
    positions keep the mask free of a bias towards the top of the frame.)

    The spatial mask is repeated over all ``t`` slots (a tube), so ``t · k`` tokens are hidden.
    Returns bool ``(B, N)``, True = hidden.
    """
    t, h, w = check_grid(grid)
    union = block_union(batch, (h, w), specs, generator=generator, device=device)  # (B, h·w)
    if count is None:
        k = int(union.sum(dim=1).min())  # counted on the generator's device: no wait for another one
        k = min(max(k, 1), h * w - 1)  # at least one hidden and one visible position
    else:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count < h * w:
            raise ValueError(f"count must be an int in (0, {h * w}), got {count!r}")
        k = count
    spatial = _equalise(union, k, generator, device)  # (B, h·w), k True per row
    return spatial.repeat(1, t).to(device)  # (B, t·h·w): t slowest, so repeating the row makes tubes


def multiblock_ratio_mask(batch: int, grid: Grid, ratio: float, *, generator=None, device="cpu",
                          blocks: str = "short") -> torch.Tensor:
    """:func:`multiblock_mask` with V-JEPA's ``blocks`` (``"short"`` or ``"long"``) and a count
    fixed by ``ratio``: ``floor(ratio·h·w)`` positions, hidden over all ``t`` slots — the tube
    mask's count, known before any mask is drawn (:func:`mask_count`). Choose ``ratio`` near
    the typical union, so the equalisation changes few positions: on a 14×14 grid (and on the
    8×8 demo grid) short-range blocks cover 0.63 of the frame on average (10 % of samples below
    0.53), long-range blocks 0.84 (10 % below 0.77)."""
    t, h, w = check_grid(grid)
    if blocks not in VJEPA_BLOCKS:
        raise ValueError(f"blocks must be one of {sorted(VJEPA_BLOCKS)}, got {blocks!r}")
    k = num_masked(h * w, ratio)
    return multiblock_mask(batch, grid, VJEPA_BLOCKS[blocks], count=k, generator=generator, device=device)


def _multiblock_long(batch: int, grid: Grid, ratio: float, *, generator=None, device="cpu") -> torch.Tensor:
    return multiblock_ratio_mask(batch, grid, ratio, generator=generator, device=device, blocks="long")


# --------------------------------------------------------------------------------------------
# MGMAE: masks that follow the motion
# --------------------------------------------------------------------------------------------


def flow_guided_mask(base_mask: torch.Tensor, flow: torch.Tensor, *, generator=None,
                     count: int | None = None) -> torch.Tensor:
    """MGMAE's motion-guided mask: a base-frame mask carried along the optical flow.

    Args:
        base_mask: bool ``(B, h·w)``, the mask of the first temporal slot, True = hidden, the
            same count ``k`` in every sample (e.g. a row of :func:`tube_mask` over ``t = 1``).
        flow: ``(B, t-1, 2, h, w)`` float, in **token units**: ``flow[:, s, 0]`` and
            ``flow[:, s, 1]`` are how far the content at each token of slot ``s`` moves along
            ``x`` (columns) and ``y`` (rows) by slot ``s+1``.
        generator: randomness for ties and holes.
        count: hidden positions per row of ``base_mask`` when known (then checked on the
            device, with no wait for it; see :func:`check_mask`); None reads it from the mask.

    Rule, slot by slot: every token of slot ``s`` carries a score — 1 if hidden, 0 if visible,
    plus a random fraction in [0, 1) — to its rounded destination in slot ``s+1`` (forward
    warping; destinations outside the frame are dropped). A **collision** (several tokens land
    on one place) keeps the highest score, so a hidden token wins over a visible one; a
    **hole** (nothing lands) gets a fresh fraction in [0, 1), i.e. counts as visible. Slot
    ``s+1`` hides its ``k`` highest scores: every token that followed a hidden one, and, when
    collisions or the frame's edge lost some, the places with the highest fractions among the
    rest. So every slot hides exactly ``k``, and a whole-token translation that keeps the
    hidden tokens inside the frame moves the mask exactly.

    Returns bool ``(B, t·h·w)``, raster order with ``t`` slowest.
    """
    if not isinstance(base_mask, torch.Tensor) or base_mask.dtype != torch.bool or base_mask.dim() != 2:
        raise ValueError(f"base_mask must be a bool (B, h·w) tensor, got {getattr(base_mask, 'shape', base_mask)!r}")
    if not isinstance(flow, torch.Tensor) or flow.dim() != 5 or flow.shape[2] != 2:
        raise ValueError(f"flow must be a (B, t-1, 2, h, w) tensor, got {getattr(flow, 'shape', type(flow))}")
    B, steps, _, h, w = flow.shape
    if base_mask.shape != (B, h * w):
        raise ValueError(f"base_mask must have shape (B, h·w) = {(B, h * w)} to match flow, got {tuple(base_mask.shape)}")
    k = check_mask(base_mask, h * w, name="base_mask", count=count)
    device = base_mask.device
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")  # (h, w)
    score = base_mask.float() + _noise(B, h * w, generator, device).to(device)  # (B, h·w): 1 + u hidden, u visible
    masks = [base_mask]
    for s in range(steps):
        dx = flow[:, s, 0].round().long()  # (B, h, w)
        dy = flow[:, s, 1].round().long()
        tx, ty = xs + dx, ys + dy  # (B, h, w) destination of every token
        inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
        dest = torch.where(inside, ty * w + tx, torch.full_like(tx, h * w)).view(B, h * w)  # h·w = dropped
        warped = torch.full((B, h * w + 1), -1.0, device=device)
        warped.scatter_reduce_(1, dest, score, reduce="amax", include_self=True)  # collisions: highest score
        warped = warped[:, : h * w]  # (B, h·w)
        holes = warped < 0
        warped = torch.where(holes, _noise(B, h * w, generator, device).to(device), warped)  # a hole counts as visible
        ranks = warped.argsort(dim=1, descending=True).argsort(dim=1)  # (B, h·w)
        mask = ranks < k  # the k highest scores
        score = mask.float() + warped.frac()  # re-score: the hidden set of this slot moves on
        masks.append(mask)
    return torch.cat(masks, dim=1)  # (B, t·h·w)


def constant_flow(batch: int, grid: Grid, dx: float, dy: float = 0.0, *, device="cpu") -> torch.Tensor:
    """The flow field of a whole-clip translation, in :func:`flow_guided_mask`'s layout.

    Every token moves ``dx`` columns and ``dy`` rows from one temporal slot to the next (token
    units: a clip translating by ``u`` pixels per frame moves ``u·tubelet/patch`` tokens per
    slot). Returns float ``(B, t-1, 2, h, w)``: channel 0 is ``dx``, channel 1 is ``dy``. A
    stand-in for optical flow where the true motion is known (the synthetic clips of the book).
    """
    _check_batch(batch)
    t, h, w = check_grid(grid)
    flow = torch.empty(batch, max(t - 1, 0), 2, h, w, device=device)
    flow[:, :, 0] = float(dx)
    flow[:, :, 1] = float(dy)
    return flow


def motion_guided_mask(video: torch.Tensor, grid: Grid, ratio: float, *, generator=None,
                       flow: str = "block") -> torch.Tensor:
    """MGMAE's motion-guided mask for a clip: a tube mask's first slot carried along the clip's flow.

    Args:
        video: ``(B, C, T, H, W)``; the token size is read from it and ``grid``
            (``patch = H / h``, ``tubelet = ⌊T / t⌋``; frames past ``t · tubelet`` are not used).
        grid: token grid ``(t, h, w)``.
        ratio: hidden share of each slot: ``floor(ratio·h·w)`` positions, as a tube mask.
        flow: the estimator (:data:`maskvid_edu.flow.FLOW_METHODS`; ``"block"``, the default,
            runs on the clip's device with no host synchronisation).

    The base mask is a random spatial mask (one slot of :func:`tube_mask`); the flow comes from
    :func:`maskvid_edu.flow.token_flow`; :func:`flow_guided_mask` warps the base mask slot by
    slot. Hides ``t · floor(ratio·h·w)`` tokens per sample, the tube mask's count, so
    :func:`mask_count` knows it before the mask is drawn. Returns bool ``(B, N)``.
    """
    t, h, w = check_grid(grid)
    if (video.dim() != 5 or video.shape[2] < t or video.shape[3] % h or video.shape[4] % w
            or video.shape[3] // h != video.shape[4] // w):
        raise ValueError(f"video {tuple(getattr(video, 'shape', ()))} does not divide into the token grid {(t, h, w)}")
    patch, tubelet = video.shape[3] // h, video.shape[2] // t
    video = video[:, :, : t * tubelet]  # MAM2's clips carry one frame more than its grid covers
    base = tube_mask(video.shape[0], (1, h, w), ratio, generator=generator, device=video.device)  # (B, h·w)
    field = token_flow(video, patch, tubelet, method=flow)  # (B, t-1, 2, h, w)
    return flow_guided_mask(base, field, generator=generator, count=num_masked(h * w, ratio))  # (B, t·h·w)


VIDEO_MASKERS = {
    "motion_guided": motion_guided_mask,  # MGMAE: follows the clip's own motion
}
"""Strategies that need the clip itself, called ``fn(video, grid, ratio, generator=…)``:
:meth:`maskvid_edu.models.base.PretrainModel.make_mask` dispatches to them by name."""


MASKERS = {
    "tube": tube_mask,
    "random": random_mask,
    "frame": frame_mask,
    "running_cell": running_cell_mask,
    "multiblock": multiblock_ratio_mask,  # V-JEPA's short-range blocks, count floor(ρ·h·w) per slot
    "multiblock_long": _multiblock_long,  # V-JEPA's long-range blocks, the same count rule
}


def make_mask(strategy: str, batch: int, grid: Grid, ratio: float, *, generator=None, device="cpu") -> torch.Tensor:
    """Dispatch by name: ``"tube"``, ``"random"``, ``"frame"``, ``"running_cell"``,
    ``"multiblock"`` or ``"multiblock_long"``."""
    if strategy not in MASKERS:
        raise ValueError(f"strategy must be one of {sorted(MASKERS)}, got {strategy!r}")
    return MASKERS[strategy](batch, grid, ratio, generator=generator, device=device)


def mask_count(strategy: str, grid: Grid, ratio: float) -> int:
    """How many tokens per sample ``make_mask(strategy, ·, grid, ratio)`` sets True.

    Known before any mask exists, from the rule of each strategy: ``floor(ρ·N)`` (random),
    ``t·floor(ρ·h·w)`` (tube, multiblock), ``floor(ρ·t)·h·w`` (frame), ``t·(h·w/4)·floor(4ρ)`` (running
    cell). A model that takes its count from here instead of from the mask's contents never
    waits for the device (see :func:`check_mask`).
    """
    t, h, w = check_grid(grid)
    if strategy == "random":
        return num_masked(t * h * w, ratio)
    if strategy in ("tube", "multiblock", "multiblock_long", "motion_guided"):
        return t * num_masked(h * w, ratio)
    if strategy == "frame":
        return num_masked(t, ratio) * h * w
    if strategy == "running_cell":
        return t * (h // 2) * (w // 2) * math.floor(round(4 * _check_ratio(ratio), 9))
    raise ValueError(f"strategy must be one of {sorted(MASKERS) + sorted(VIDEO_MASKERS)}, got {strategy!r}")


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
