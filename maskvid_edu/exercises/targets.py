"""Exercise on MAM2's motion target: RGB differences of consecutive frames.

Checked against :func:`maskvid_edu.targets.frame_differences` on the clip with its ImageNet
normalisation undone — the raw differences that
``maskvid_edu.targets.motion_targets(video, normalization="none")`` cuts into tubelets.
"""

from __future__ import annotations

import torch

from .. import targets as lib
from ..data.transforms import denormalize, normalize
from ..patches import patchify
from ._checker import Hint, call, close, exercise, expect_tensor

RGB_DIFF = exercise(
    "rgb_difference",
    title="the RGB-difference motion target",
    topic="motion targets · targets.py",
    signature="rgb_difference(video) -> torch.Tensor (B, C, T, H, W)",
    task="""video: (B, 3, T + 1, H, W), ImageNet-normalised as the data pipeline delivers it.
    Return the motion of each of the T model frames in [0, 1] pixel space: d_i = x_{i+1} − x_i
    (next minus current), i = 0 … T − 1, after undoing the ImageNet normalisation
    (maskvid_edu.data.transforms.denormalize(video, channel_dim=1)). Shape (B, 3, T, H, W).
    patchify of your result is motion_targets(video, normalization="none").""",
)

_SHAPE = (2, 3, 5, 12, 10)  # T + 1 = 5 frames; H and W differ from T and T + 1


def _clip(shape=_SHAPE, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(*shape, generator=g, dtype=dtype)  # (B, 3, T+1, H, W) in [0, 1]
    return normalize(pixels, channel_dim=1)


def _diff(fn, video):
    B, C, F, H, W = video.shape
    out = expect_tensor(call(fn, video.clone()), "rgb_difference")
    got, want = tuple(out.shape), (B, C, F - 1, H, W)
    if got != want:
        if got == (B, C, F, H, W):
            raise Hint(f"you returned {F} frames for a clip of T + 1 = {F}: there are T = {F - 1} differences, "
                       f"d_i = x_(i+1) − x_i for i = 0 … T − 1 — no padding")
        if got == (B, C, F - 2, H, W):
            raise Hint(f"you returned {F - 2} differences; a clip of T + 1 = {F} frames has T = {F - 1}")
        if got == (B, C - 1, F, H, W):
            raise Hint("you took differences along the channel axis: time is dim 2 of (B, C, T, H, W)")
        if got in ((B, C, F, H - 1, W), (B, C, F, H, W - 1)):
            raise Hint("you took differences along a spatial axis: time is dim 2 of (B, C, T, H, W)")
        raise Hint(f"your result has shape {got}, expected (B, C, T, H, W) = {want} for a clip {tuple(video.shape)}")
    return out.detach().to(torch.float64).cpu()


def _reference(video):
    return lib.frame_differences(denormalize(video, channel_dim=1)).double()  # (B, C, T, H, W)


@RGB_DIFF.property("returns (B, C, T, H, W): one difference per model frame")
def _rgb_shape(fn):
    _diff(fn, _clip())


@RGB_DIFF.property("takes next minus current: d_i = x_(i+1) − x_i")
def _rgb_direction(fn):
    video = _clip()
    out, ref = _diff(fn, video), _reference(video)
    if float((out * ref).sum()) < 0:
        raise Hint("wrong direction: you computed x_i − x_(i+1). The motion target is next minus current, "
                   "d_i = x_(i+1) − x_i, so a bright square moving right gives d > 0 where it arrives and d < 0 "
                   "where it left")


@RGB_DIFF.property("takes differences in [0, 1] pixel space")
def _rgb_pixels(fn):
    video = _clip()
    out, ref = _diff(fn, video), _reference(video)
    if close(out, ref, rtol=1e-6, atol=1e-7):
        return
    normalised = lib.frame_differences(video).double()
    if close(out, normalised, rtol=1e-6, atol=1e-7):
        raise Hint("you took the differences of the normalised frames: each channel comes out divided by its "
                   "ImageNet std (×4.4). The mean cancels in a difference, the std does not: undo the "
                   "normalisation first, denormalize(video, channel_dim=1), then subtract")
    worst = (out - ref).abs().max()
    raise Hint(f"your differences are off by up to {float(worst):.3g}: compute d_i = x_(i+1) − x_i on "
               "denormalize(video, channel_dim=1)")


@RGB_DIFF.property("agrees with motion_targets(..., normalization=\"none\") on any clip")
def _rgb_any(fn):
    video = _clip((1, 3, 3, 32, 32), seed=1, dtype=torch.float32)  # T = 2: one 2×16×16 tubelet row
    out = _diff(fn, video)
    ref = lib.motion_targets(video, 2, 16, "none").double()  # (1, N, 2·16·16·3)
    if not close(patchify(out, 2, 16), ref, rtol=1e-5, atol=1e-6):
        raise Hint("right on the first clip but not on a float32 clip of T + 1 = 3 frames: do not hard-code the "
                   "number of frames, the sizes or the dtype")
