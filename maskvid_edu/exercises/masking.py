"""Exercises of the tube-masking chapter: the count rule and VideoMAE's tube mask.

Checked against :mod:`maskvid_edu.masking`: ``num_masked`` (``floor(ρ·units)``) and
``tube_mask`` (one spatial mask per sample, repeated over the ``t`` temporal slots).
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import masking as lib
from ._checker import Hint, call, exercise, expect_tensor, generator

# --------------------------------------------------------------------------------------------
# num_masked
# --------------------------------------------------------------------------------------------

NUM_MASKED = exercise(
    "num_masked",
    title="how many units a masking ratio hides",
    topic="tube masking · masking.py",
    signature="num_masked(units: int, ratio: float) -> int",
    task="""Return how many of `units` maskable units (tokens, or spatial positions for a tube
    mask) a masking ratio hides. VideoMAE's rule: floor(ratio · units), as a Python int.""",
)

# (units, ratio): VideoMAE (8·14·14 tokens at 0.9), tube masks on 14×14, FCMAE's 7×7 at 0.6,
# and half-way cases where rounding and flooring part ways.
_COUNT_CASES = ((1568, 0.9), (196, 0.9), (196, 0.75), (49, 0.6), (30, 0.75), (7, 0.5), (100, 0.0))


@NUM_MASKED.property("returns a Python int")
def _num_masked_type(fn):
    out = call(fn, 196, 0.75)
    if out is None:
        raise Hint("num_masked returned None: did you forget the `return` statement?")
    if isinstance(out, torch.Tensor):
        raise Hint("num_masked returned a tensor: return a plain Python int (int(...))")
    if isinstance(out, bool) or not isinstance(out, numbers.Integral):
        raise Hint(f"num_masked(196, 0.75) returned {out!r} ({type(out).__name__}): a count is an integer — "
                   "return int(...) of the floored product")


@NUM_MASKED.property("hides floor(ratio · units)")
def _num_masked_rule(fn):
    got = [call(fn, units, ratio) for units, ratio in _COUNT_CASES]
    want = [lib.num_masked(units, ratio) for units, ratio in _COUNT_CASES]
    if got == want:
        return
    # name a slip only when it explains every case
    if got == [units - k for (units, _), k in zip(_COUNT_CASES, want)]:
        slip = "you counted the units left *visible*; the ratio is the share that is hidden"
    elif got == [round(r * u) for u, r in _COUNT_CASES] or got == [math.floor(r * u + 0.5) for u, r in _COUNT_CASES]:
        slip = "you rounded to the nearest integer; the rule floors — int(ratio * units) or math.floor"
    elif got == [math.ceil(r * u) for u, r in _COUNT_CASES]:
        slip = "you rounded up; the rule floors — int(ratio * units) or math.floor"
    else:
        slip = ""
    i = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    units, ratio = _COUNT_CASES[i]
    where = (f"num_masked({units}, {ratio}) returned {got[i]!r}, expected floor({ratio}·{units}) = "
             f"floor({ratio * units:g}) = {want[i]}")
    raise Hint(f"{where}: {slip}" if slip else where)


# --------------------------------------------------------------------------------------------
# tube_mask
# --------------------------------------------------------------------------------------------

TUBE = exercise(
    "tube_mask",
    title="VideoMAE's tube masking",
    topic="tube masking · masking.py",
    signature="tube_mask(batch, grid, ratio, generator) -> torch.Tensor (bool, shape (batch, t·h·w))",
    task="""Return a bool mask of shape (batch, t·h·w) for the token grid grid = (t, h, w),
    tokens in raster order with t slowest, True = masked. For each sample choose
    floor(ratio · h · w) of the h·w spatial positions uniformly at random — drawing every random
    number from `generator` (a torch.Generator) — and hide those positions in every one of the t
    temporal slots: each hidden position is a tube through time. Every sample gets its own
    positions.""",
)

_GRID = (4, 6, 5)  # t·floor(0.75·30) = 88 differs from floor(0.75·120) = 90: the two count rules part


def _mask(fn, batch, grid, ratio, seed=0) -> torch.Tensor:
    """Call the learner's ``tube_mask`` and check type, dtype and shape."""
    out = expect_tensor(call(fn, batch, grid, ratio, generator=generator(seed)), "tube_mask")
    t, h, w = grid
    n = t * h * w
    shape = tuple(out.shape)
    if shape != (batch, n):
        if shape in ((batch, t, h, w), (batch, t, h * w)):
            raise Hint(f"for batch {batch}, grid {grid} you returned shape {shape}; flatten it to "
                       f"(batch, t·h·w) = {(batch, n)}, t slowest: mask.reshape(batch, -1)")
        if shape in ((n,), (1, n)) and batch != 1:
            raise Hint(f"for batch {batch} you returned shape {shape}: one mask per sample, shape {(batch, n)}")
        if shape == (batch, h * w):
            raise Hint(f"for batch {batch}, grid {grid} you returned shape {shape}: that is one spatial mask; "
                       f"repeat it over the t = {t} temporal slots to get {(batch, n)}")
        raise Hint(f"for batch {batch}, grid {grid} you returned shape {shape}, expected (batch, t·h·w) = {(batch, n)}")
    if out.dtype != torch.bool:
        raise Hint(f"your mask has dtype {out.dtype}; a mask is a bool tensor (True = masked): "
                   "a comparison such as `ranks < k` gives one, or call .bool()")
    return out.detach().cpu()


@TUBE.property("returns a bool tensor of shape (batch, t·h·w)",
               crash_hints=(("unexpected keyword argument 'generator'",
                             "the checker passes the generator by name: call the fourth parameter `generator`"),))
def _tube_shape(fn):
    _mask(fn, 3, _GRID, 0.75)


@TUBE.property("hides t · floor(ratio · h · w) tokens in every sample")
def _tube_count(fn):
    for batch, grid, ratio in ((3, _GRID, 0.75), (2, (2, 14, 14), 0.9), (4, (8, 7, 7), 0.6), (2, (3, 5, 5), 0.5)):
        t, h, w = grid
        k = lib.num_masked(h * w, ratio)
        counts = _mask(fn, batch, grid, ratio).sum(dim=1).tolist()  # (B,)
        if len(set(counts)) > 1:
            raise Hint(f"the samples hide different numbers of tokens ({counts}): each must hide exactly "
                       f"t·floor(ρ·h·w) = {t * k}. Choose exactly k positions per sample (e.g. the k smallest "
                       "of uniform noise) instead of thresholding noise (noise < ratio)")
        got, n = counts[0], t * h * w
        where = f"grid {grid}, ratio {ratio}: you hid {got} tokens per sample, expected t·floor(ρ·h·w) = {t}·{k} = {t * k}"
        if got == t * k:
            continue
        if got == n - t * k:
            raise Hint(f"{where}. You marked the visible tokens: True must mean masked (hidden from the encoder)")
        if got == lib.num_masked(n, ratio):
            raise Hint(f"{where}. floor(ρ·t·h·w) is the count of random masking; a tube mask hides floor(ρ·h·w) = {k} "
                       f"spatial positions in each of the {t} slots")
        if got == k:
            raise Hint(f"{where}. The {k} positions must be hidden in all {t} temporal slots, not once")
        if got in (t * round(ratio * h * w), t * math.ceil(ratio * h * w)):
            raise Hint(f"{where}. Floor the count: ρ·h·w = {ratio * h * w:g} hides {k} positions")
        raise Hint(where)


@TUBE.property("hides the same spatial positions in every temporal slot (a tube)")
def _tube_property(fn):
    batch, (t, h, w) = 3, _GRID
    mask = _mask(fn, batch, _GRID, 0.75)
    slots = mask.view(batch, t, h * w)  # (B, t, h·w)
    if bool((slots == slots[:, :1]).all()):
        return
    if bool((mask.view(batch, h * w, t) == mask.view(batch, h * w, t)[..., :1]).all()):
        raise Hint("each position is repeated t times side by side (repeat_interleave): tokens are in raster "
                   "order with t slowest, so repeat the whole spatial row instead — spatial.repeat(1, t)")
    raise Hint("each temporal slot hides different positions: you drew one mask per frame; "
               "draw one spatial mask and repeat it over t")


@TUBE.property("draws its randomness from `generator`")
def _tube_seeded(fn):
    a = _mask(fn, 2, _GRID, 0.75, seed=7)
    torch.rand(17)  # move the global generator: a mask that depends on it changes
    b = _mask(fn, 2, _GRID, 0.75, seed=7)
    if not torch.equal(a, b):
        raise Hint("two calls with generators seeded alike gave different masks: draw every random number from "
                   "`generator` (torch.rand(..., generator=generator)), not from torch's global random state")
    c = _mask(fn, 2, _GRID, 0.75, seed=8)
    if torch.equal(a, c):
        raise Hint("seeds 7 and 8 gave the same masks: the positions must be drawn at random from `generator`")


@TUBE.property("gives each sample of the batch its own mask")
def _tube_batch(fn):
    mask = _mask(fn, 8, _GRID, 0.75)
    if bool((mask == mask[:1]).all()):
        raise Hint("all 8 samples got the same mask: draw noise of shape (batch, h·w), one row per sample, "
                   "not a single (h·w) row shared by the batch")


@TUBE.property("picks every spatial position equally often")
def _tube_uniform(fn):
    batch, grid, ratio = 4000, (2, 4, 4), 0.5
    mask = _mask(fn, batch, grid, ratio)
    freq = mask.view(batch, 2, 16)[:, 0].double().mean(dim=0)  # (16,) share of samples hiding each position
    # each share is a mean of 4000 Bernoulli(0.5): std 0.008, so 0.06 is beyond 7 std
    if float((freq - ratio).abs().max()) > 0.06:
        hi, lo = int(freq.argmax()), int(freq.argmin())
        raise Hint(f"with ratio {ratio}, position {hi} is hidden in {freq[hi]:.0%} of the samples and position {lo} "
                   f"in {freq[lo]:.0%}; every position must be hidden with probability ρ — choose the positions "
                   "uniformly (the k smallest of torch.rand noise, or torch.randperm)")
