"""Exercises on patches: cutting a video into tubelet tokens, and VideoMAE's normalised target.

Checked against :func:`maskvid_edu.patches.patchify` (``(B, N, tubelet·p·p·C)``, tokens in
raster order, values ``(frame, row, col, channel)`` — channel fastest) and
:func:`maskvid_edu.patches.normalize_patches` with ``mode="videomae"`` (per patch and per
channel, ``(x − mean) / (unbiased std + 1e-6)``).
"""

from __future__ import annotations

import itertools

import torch

from .. import patches as lib
from ._checker import Hint, call, close, exercise, expect_shape, expect_tensor

# --------------------------------------------------------------------------------------------
# patchify
# --------------------------------------------------------------------------------------------

PATCHIFY = exercise(
    "patchify",
    title="cut a video into tubelet tokens",
    topic="patches and pixel targets · patches.py",
    signature="patchify(video, tubelet, patch) -> torch.Tensor (B, N, tubelet·patch·patch·C)",
    task="""Cut a video (B, C, T, H, W) into non-overlapping tubelets of tubelet × patch ×
    patch pixels and flatten each into one row: the result has shape (B, N, tubelet·patch·patch·C)
    with N = (T/tubelet)·(H/patch)·(W/patch). Tokens are listed in raster order (t, h, w), t
    slowest; the values of a token in the order (frame, row, col, channel), channel fastest —
    the layout of the official VideoMAE code and of transformers' VideoMAEForPreTraining.""",
)

_AXES = ("frame", "row", "col", "channel")


def _video(shape) -> torch.Tensor:
    """A video whose every value is its own flat index: any rearrangement can be traced back."""
    numel = 1
    for s in shape:
        numel *= s
    return torch.arange(numel, dtype=torch.float64).reshape(shape)  # (B, C, T, H, W)


def _patchify(fn, shape, tubelet, patch):
    video = _video(shape)
    out = expect_tensor(call(fn, video.clone(), tubelet, patch), "patchify")
    ref = lib.patchify(video, tubelet, patch)  # (B, N, D)
    B, C, T, H, W = shape
    grid = (T // tubelet, H // patch, W // patch)
    if tuple(out.shape) != tuple(ref.shape):
        got = tuple(out.shape)
        explain = (f" = (B, N, tubelet·p·p·C) for a video {tuple(shape)}, tubelet {tubelet}, patch {patch} "
                   f"(token grid {grid})")
        if len(got) > 3 and got[:2] == tuple(ref.shape[:2]):
            explain += ": flatten each token into one row of tubelet·p·p·C values"
        expect_shape(out, tuple(ref.shape), "your result", explain)
    return out.detach().to(torch.float64).cpu(), ref, grid


@PATCHIFY.property("returns (B, N, tubelet·patch·patch·C)")
def _patchify_shape(fn):
    _patchify(fn, (2, 3, 4, 32, 48), 2, 16)


@PATCHIFY.property("puts the pixels of exactly one tubelet in each token")
def _patchify_groups(fn):
    out, ref, _ = _patchify(fn, (2, 3, 4, 32, 48), 2, 16)
    mine = {tuple(row.tolist()) for row in out.sort(dim=-1).values.flatten(0, 1)}
    theirs = {tuple(row.tolist()) for row in ref.sort(dim=-1).values.flatten(0, 1)}
    if mine != theirs:
        raise Hint("a token mixes pixels of different tubelets. A plain reshape of (B, C, T, H, W) cuts "
                   "whole rows, not patches: reshape to (B, C, t, tubelet, h, p, w, p), permute to "
                   "(B, t, h, w, tubelet, p, p, C), then flatten")


@PATCHIFY.property("lists tokens in raster order (t, h, w), t slowest")
def _patchify_order(fn):
    out, ref, (t, h, w) = _patchify(fn, (2, 3, 4, 32, 48), 2, 16)
    key = {tuple(row.tolist()): n for n, row in enumerate(ref[0].sort(dim=-1).values)}
    where = [key.get(tuple(row.tolist())) for row in out[0].sort(dim=-1).values]
    if where == list(range(t * h * w)):
        return
    if None in where:
        raise Hint("the tokens of the first sample hold pixels of other samples: keep the batch axis first")
    coords = [(m // (h * w), (m // w) % h, m % w) for m in where]
    n = next(i for i, m in enumerate(where) if m != i)
    expected = (n // (h * w), (n // w) % h, n % w)
    raise Hint(f"your token {n} holds the tubelet at (slot, row, col) = {coords[n]}, but in raster order token {n} "
               f"is {expected}: order the token axes (t, h, w) — t slowest, w fastest — before flattening "
               f"(your first tokens: {coords[:4]})")


@PATCHIFY.property("orders the values of a token (frame, row, col, channel), channel fastest")
def _patchify_layout(fn):
    out, ref, _ = _patchify(fn, (2, 3, 4, 32, 48), 2, 16)
    if torch.equal(out, ref):
        return
    B, N, _ = ref.shape
    grouped = ref.view(B, N, 2, 16, 16, 3)  # (B, N, frame, row, col, channel)
    for order in itertools.permutations(range(4)):
        candidate = grouped.permute(0, 1, *(2 + i for i in order)).reshape(B, N, -1)
        if torch.equal(out, candidate):
            names = ", ".join(_AXES[i] for i in order)
            extra = " — channel slowest" if order[0] == 3 else ""
            raise Hint(f"your token layout is ({names}){extra}. VideoMAE and transformers' VideoMAEForPreTraining "
                       "flatten (frame, row, col, channel), channel fastest: permute so the axes come in that "
                       "order, C last, before flattening")
    raise Hint("each token holds the right pixels but in an order that is not (frame, row, col, channel): "
               "permute the token axes to (tubelet, p, p, C) before flattening")


@PATCHIFY.property("works for any tubelet and patch size",
                   crash_hints=(("", "right for tubelet 2, patch 16 but not for other sizes: do not hard-code sizes, "
                                 "derive t, h, w from the video's shape and the tubelet and patch arguments"),))
def _patchify_sizes(fn):
    for shape, tubelet, patch in (((1, 3, 3, 24, 16), 1, 8), ((2, 3, 8, 8, 8), 4, 2)):
        out, ref, _ = _patchify(fn, shape, tubelet, patch)
        if not torch.equal(out, ref):
            raise Hint(f"right for tubelet 2, patch 16 but wrong for a video {shape} with tubelet {tubelet}, "
                       f"patch {patch}: use the arguments and the video's shape, do not hard-code sizes")


# --------------------------------------------------------------------------------------------
# normalize_patches_videomae
# --------------------------------------------------------------------------------------------

NORM = exercise(
    "normalize_patches_videomae",
    title="VideoMAE's normalised-pixel target",
    topic="patches and pixel targets · patches.py",
    signature="normalize_patches_videomae(patches) -> torch.Tensor (same shape)",
    task="""patches: (B, N, D) flat tubelets from patchify with C = 3 colour channels, values in
    the order (frame, row, col, channel) — channel fastest — so D = tubelet·p·p·3. Normalise every
    channel of every patch separately over its tubelet·p·p values: (x − mean) / (std + 1e-6), with
    the unbiased std (divide by n − 1), as VideoMAE's normalised-pixel target does. Return the
    same shape.""",
)

_C = 3


def _regular_patches() -> torch.Tensor:
    """Patches of a random clip whose channels differ in level and contrast: ``(2, 8, 96)``."""
    g = torch.Generator().manual_seed(3)
    pixels = torch.rand(2, _C, 4, 8, 8, generator=g, dtype=torch.float64)
    pixels = pixels * torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1, 1) + torch.tensor([0.1, 0.4, 0.0]).view(1, 3, 1, 1, 1)
    return lib.patchify(pixels, 2, 4)  # (2, 8, 2·4·4·3): n = 32 values per channel


def _flat_patches() -> torch.Tensor:
    """Token 0: every channel constant; token 1: every channel nearly constant (std ≈ 1e-3)."""
    g = torch.Generator().manual_seed(4)
    level = torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64)
    const = level.repeat(32)  # (96,) channel fastest
    near = const + 1e-3 * torch.randn(96, generator=g, dtype=torch.float64)
    return torch.stack([const, near]).unsqueeze(0)  # (1, 2, 96)


def _normalize(fn, patches: torch.Tensor) -> torch.Tensor:
    out = expect_tensor(call(fn, patches.clone()), "normalize_patches_videomae")
    expect_shape(out, tuple(patches.shape), "your result", " (the shape of the input patches)")
    return out.detach().to(torch.float64).cpu()


def _by_channel(x: torch.Tensor) -> torch.Tensor:
    return x.unflatten(-1, (-1, _C))  # (B, N, tubelet·p·p, C)


def _zero(x: torch.Tensor) -> bool:
    return bool(x.abs().max() < 1e-6)


@NORM.property("returns a float tensor of the input's shape")
def _norm_shape(fn):
    out = expect_tensor(call(fn, _regular_patches()), "normalize_patches_videomae")
    expect_shape(out, (2, 8, 96), "your result", " (the shape of the input patches)")
    if not out.is_floating_point():
        raise Hint(f"your result has dtype {out.dtype}; normalised values are floats")


@NORM.property("normalises each channel of each patch on its own (mean 0 per patch and channel)")
def _norm_axis(fn):
    x = _regular_patches()
    out = _normalize(fn, x)
    if _zero(_by_channel(out).mean(dim=-2)):
        return
    if torch.equal(out, x):
        raise Hint("you returned the patches unchanged")
    if _zero(_by_channel(out).mean(dim=-1)):
        raise Hint("wrong axis: you normalised the 3 channels of each pixel against each other. Normalise each "
                   "channel over the tubelet·p·p values of its patch: group with patches.unflatten(-1, (-1, 3)) "
                   "and take mean and std over dim -2")
    if _zero(out.unflatten(-1, (_C, -1)).mean(dim=-1)):
        raise Hint("you grouped the values as (channel, ...) — channel slowest. Patches are channel fastest: "
                   "group with patches.unflatten(-1, (-1, 3)) and take the statistics over dim -2")
    if _zero(out.mean(dim=-1)):
        raise Hint("wrong axis: you normalised over the whole patch, all channels together (image MAE's and "
                   "VideoMAC's target). VideoMAE normalises each channel of the patch separately: group with "
                   "patches.unflatten(-1, (-1, 3)) and take mean and std over dim -2")
    if _zero(out.mean(dim=1)) or _zero(out.mean(dim=0)):
        raise Hint("you normalised across tokens (or samples); the statistics belong to each patch alone: "
                   "take them over the values inside a patch, per channel")
    worst = _by_channel(out).mean(dim=-2).abs().max()
    raise Hint(f"after normalising, each channel of each patch should have mean 0; yours reach {float(worst):.3g}. "
               "Subtract the mean of each channel of each patch")


@NORM.property("divides by the unbiased std (n − 1)")
def _norm_std(fn):
    x = _regular_patches()
    std = _by_channel(_normalize(fn, x)).std(dim=-2)  # (B, N, C), unbiased
    # the eps moves these stds by < 1e-4 here (channel stds ≥ 0.05); n − 1 versus n moves them by 1.6 %
    if bool(((std - 1).abs() < 1e-3).all()):
        return
    n = x.shape[-1] // _C
    biased = (n / (n - 1)) ** 0.5
    if bool(((std - biased).abs() < 1e-3).all()):
        raise Hint(f"biased std: you divided by sqrt(Σ(x − mean)² / n); VideoMAE uses the unbiased std, "
                   f"sqrt(Σ(x − mean)² / (n − 1)) — torch's default (x.std(dim) or x.var(dim, unbiased=True)). "
                   f"With n = {n} values per channel the two differ by {100 * (biased - 1):.1f}%")
    raise Hint(f"each channel of each patch should have unbiased std 1 after normalising; yours ranges "
               f"{float(std.min()):.4g}–{float(std.max()):.4g}. Divide by (std + 1e-6)")


@NORM.property("maps a constant patch to 0 (no NaN)")
def _norm_constant(fn):
    out = _normalize(fn, _flat_patches())[:, 0]  # (1, 96): the constant token
    if not bool(torch.isfinite(out).all()):
        raise Hint("a constant patch gave NaN or inf: its std is 0, so (x − mean) / std is 0 / 0. "
                   "VideoMAE adds 1e-6 to the std: (x − mean) / (std + 1e-6)")
    if not _zero(out):
        raise Hint("a patch whose channels are each constant must normalise to 0 (every x equals its mean); "
                   f"yours gives values up to {float(out.abs().max()):.3g}")


@NORM.property("divides by std + 1e-6, with eps outside the square root")
def _norm_eps(fn):
    x = _flat_patches()
    out = _normalize(fn, x)[:, 1]  # the nearly constant token
    ref = lib.normalize_patches(x, "videomae", channels=_C)[:, 1]
    if close(out, ref, rtol=1e-6, atol=1e-8):
        return
    g = _by_channel(x[:, 1:2])
    centred = g - g.mean(dim=-2, keepdim=True)
    inside = (centred / (g.var(dim=-2, keepdim=True) + 1e-6).sqrt()).flatten(-2)[:, 0]
    inside_biased = (centred / (g.var(dim=-2, unbiased=False, keepdim=True) + 1e-6).sqrt()).flatten(-2)[:, 0]
    bare = (centred / g.std(dim=-2, keepdim=True)).flatten(-2)[:, 0]
    if close(out, inside, rtol=1e-6, atol=1e-8) or close(out, inside_biased, rtol=1e-6, atol=1e-8):
        raise Hint("eps inside the square root: you divided by sqrt(var + 1e-6), the image-MAE form. VideoMAE "
                   "divides by (std + 1e-6); the two part ways on nearly flat patches (std ≈ 1e-3 here)")
    if close(out, bare, rtol=1e-6, atol=1e-8):
        raise Hint("you divided by the std alone: VideoMAE divides by (std + 1e-6)")
    raise Hint("on a nearly flat patch (std ≈ 1e-3) your values differ from (x − mean) / (std + 1e-6) by up to "
               f"{float((out - ref).abs().max()):.3g}: check the eps (1e-6, added to the unbiased std)")


@NORM.property("matches maskvid_edu.patches.normalize_patches at full size (2×16×16 tubelets)",
               crash_hints=(("", "right on small patches but not on 2×16×16 tubelets: do not hard-code sizes, the "
                             "number of values per channel is D / 3"),))
def _norm_full(fn):
    g = torch.Generator().manual_seed(5)
    x = lib.patchify(torch.rand(1, _C, 4, 32, 32, generator=g), 2, 16)  # (1, 8, 1536) float32
    out = _normalize(fn, x)
    ref = lib.normalize_patches(x, "videomae", channels=_C).double()
    if not close(out, ref, rtol=1e-4, atol=1e-4):
        raise Hint(f"right on small patches but off by up to {float((out - ref).abs().max()):.3g} on float32 "
                   "2×16×16 tubelets (D = 1536): do not hard-code sizes or dtypes")
