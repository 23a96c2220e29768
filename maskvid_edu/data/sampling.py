"""Which frames of a video make a clip: frame-index samplers.

Every sampler is a pure function of the video length ``num_frames`` and a random generator
(``torch.Generator``, ``numpy.random.Generator`` or ``None`` for torch's global one). It returns a
:class:`FrameIndices` ``(indices, padded)``: int64 frame numbers, all in ``[0, num_frames)``, and
whether the video was too short for the request.

===================  ==========================================================  ===============
sampler              frames                                                      used by
===================  ==========================================================  ===============
``dense_clip``       ``clip_len`` frames, every ``stride``-th, random start      VideoMAE: 16x4
                                                                                 (K400), 16x2
                                                                                 (SSv2 frames)
``segment_clip``     split the video into ``num_segments`` equal parts, one      TSN; VideoMAE
                     frame per part (random in training, the middle in test)     on SSv2 videos
``frame_pair``       two frames ``gap`` apart (adjacent by default, or a         VideoMAC
                     random gap in ``[1, max_gap]``)
``motion_clip``      ``clip_len + 1`` frames, so ``clip_len`` frame              MAM2 motion
                     differences can be targets                                  targets
``uniform_clips``    ``num_clips`` dense clips with evenly spaced starts         multi-view test
``segment_views``    ``num_views`` segment samplings shifted inside the parts    SSv2 test views
===================  ==========================================================  ===============

**Short videos: pad with the last frame.** A dense clip spans ``(clip_len - 1) * stride + 1``
frames; ``num_segments`` segments need ``num_segments`` frames; a pair needs ``gap + 1``. When
the video is shorter, the sampler lays its frames out from frame 0 and every position past the
end is replaced by the last frame (indices clamped to ``num_frames - 1``), and ``padded`` is
True. This is what VideoMAE's loaders do (they pad the index list with the last frame), it
keeps the stride of the frames that do exist, and a repeated last frame is an honest "nothing
moves any more" (zero motion) rather than the jump back to frame 0 that looping would add.
The datasets count every padded sample as ``too_short``. A video with no frames cannot be
sampled: the samplers raise ``ValueError`` (the decoders already refuse such files).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Union

import numpy as np
import torch

__all__ = [
    "FrameIndices",
    "Generator",
    "clip_span",
    "dense_clip",
    "segment_clip",
    "frame_pair",
    "motion_clip",
    "uniform_clips",
    "segment_views",
    "randint",
    "uniform",
]

Generator = Union[torch.Generator, np.random.Generator, None]


class FrameIndices(NamedTuple):
    """Sampled frame numbers and whether the video had to be padded.

    Attributes:
        indices: int64 ``(T,)`` (or ``(V, T)`` for the multi-view samplers), in ``[0, num_frames)``.
        padded: True when the video was shorter than the request and the last frame was repeated.
    """

    indices: np.ndarray
    padded: bool


# ---------------------------------------------------------------------------------------------
# random numbers from either kind of generator
# ---------------------------------------------------------------------------------------------
def randint(low: int, high: int, generator: Generator = None, size: int | None = None):
    """Uniform integer(s) in ``[low, high]`` (both ends included)."""
    if high < low:
        raise ValueError(f"empty range [{low}, {high}]")
    n = 1 if size is None else size
    if isinstance(generator, np.random.Generator):
        out = generator.integers(low, high + 1, size=n)
    elif generator is None or isinstance(generator, torch.Generator):
        out = torch.randint(low, high + 1, (n,), generator=generator).numpy()
    else:
        raise TypeError(f"generator must be a torch.Generator, numpy Generator or None, got {type(generator)}")
    out = out.astype(np.int64)
    return int(out[0]) if size is None else out


def uniform(low: float, high: float, generator: Generator = None) -> float:
    """One uniform float in ``[low, high)``."""
    if isinstance(generator, np.random.Generator):
        return float(generator.uniform(low, high))
    if generator is None or isinstance(generator, torch.Generator):
        return float(torch.empty(1).uniform_(low, high, generator=generator).item())
    raise TypeError(f"generator must be a torch.Generator, numpy Generator or None, got {type(generator)}")


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _check_frames(num_frames) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise TypeError(f"num_frames must be an int, got {type(num_frames).__name__}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 (a video with no frames cannot be sampled), got {num_frames}")
    return int(num_frames)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _clamp(indices: np.ndarray, num_frames: int) -> np.ndarray:
    return np.minimum(indices, num_frames - 1).astype(np.int64)


def clip_span(clip_len: int, stride: int) -> int:
    """Frames covered by ``clip_len`` frames taken every ``stride``-th: ``(clip_len-1)*stride + 1``."""
    return (_check_positive("clip_len", clip_len) - 1) * _check_positive("stride", stride) + 1


# ---------------------------------------------------------------------------------------------
# samplers
# ---------------------------------------------------------------------------------------------
def dense_clip(
    num_frames: int,
    clip_len: int = 16,
    stride: int = 4,
    *,
    generator: Generator = None,
    mode: str = "random",
) -> FrameIndices:
    """``clip_len`` frames, ``stride`` apart: ``start + stride * [0, 1, ..., clip_len-1]``.

    Args:
        num_frames: frames in the video (>= 1).
        clip_len: frames in the clip (16 in VideoMAE).
        stride: step between frames (4 on Kinetics-400, 2 on SSv2 frame folders).
        generator: random source for the start.
        mode: ``"random"`` (start uniform in ``[0, num_frames - span]``, training) or
            ``"center"`` (start ``(num_frames - span) // 2``, validation).

    Returns:
        :class:`FrameIndices` with ``indices`` of shape ``(clip_len,)``.

    VideoMAE's training loader reserves ``clip_len * stride`` frames for a clip and spreads the
    frames over them with ``linspace``; this sampler asks only for the ``(clip_len - 1) * stride
    + 1`` frames it uses and keeps the stride exact.
    """
    n = _check_frames(num_frames)
    span = clip_span(clip_len, stride)
    steps = np.arange(clip_len, dtype=np.int64) * stride  # (T,)
    if n < span:
        return FrameIndices(_clamp(steps, n), True)
    if mode == "random":
        start = randint(0, n - span, generator)
    elif mode == "center":
        start = (n - span) // 2
    else:
        raise ValueError(f"mode must be 'random' or 'center', got {mode!r}")
    return FrameIndices(start + steps, False)


def segment_clip(
    num_frames: int,
    num_segments: int = 16,
    *,
    generator: Generator = None,
    mode: str = "random",
) -> FrameIndices:
    """One frame from each of ``num_segments`` equal parts of the video (TSN sampling).

    In ``"random"`` mode part ``k`` covers ``[k * L, (k + 1) * L)`` with ``L = num_frames //
    num_segments`` and the frame is uniform inside it (VideoMAE's SSv2 training). In
    ``"center"`` mode the part has fractional length ``tick = num_frames / num_segments`` and the
    frame is ``int(tick / 2 + k * tick)``, its middle (VideoMAE's SSv2 test).

    Returns:
        :class:`FrameIndices` with ``indices`` of shape ``(num_segments,)``; padded when
        ``num_frames < num_segments``.
    """
    n = _check_frames(num_frames)
    s = _check_positive("num_segments", num_segments)
    if n < s:
        return FrameIndices(_clamp(np.arange(s, dtype=np.int64), n), True)
    if mode == "random":
        length = n // s
        offsets = randint(0, length - 1, generator, size=s)  # (S,)
        return FrameIndices(np.arange(s, dtype=np.int64) * length + offsets, False)
    if mode == "center":
        return FrameIndices(segment_views(n, s, num_views=1).indices[0], False)
    raise ValueError(f"mode must be 'random' or 'center', got {mode!r}")


def frame_pair(
    num_frames: int,
    gap: int = 1,
    *,
    max_gap: int | None = None,
    generator: Generator = None,
) -> FrameIndices:
    """Two frames ``gap`` apart, ``(t, t + gap)`` with ``t`` uniform (VideoMAC's frame pairs).

    Args:
        num_frames: frames in the video.
        gap: distance between the frames; 1 = adjacent (VideoMAC's default).
        max_gap: if given, the gap is drawn uniformly from ``[1, max_gap]`` instead.
        generator: random source for the gap and the first frame.

    Returns:
        :class:`FrameIndices` with ``indices`` of shape ``(2,)``; a video with fewer than
        ``gap + 1`` frames gives ``(0, num_frames - 1)``, padded.
    """
    n = _check_frames(num_frames)
    if max_gap is not None:
        gap = randint(1, _check_positive("max_gap", max_gap), generator)
    gap = _check_positive("gap", gap)
    if n < gap + 1:
        return FrameIndices(_clamp(np.array([0, gap], dtype=np.int64), n), True)
    t = randint(0, n - 1 - gap, generator)
    return FrameIndices(np.array([t, t + gap], dtype=np.int64), False)


def motion_clip(
    num_frames: int,
    clip_len: int = 16,
    stride: int = 2,
    *,
    generator: Generator = None,
    mode: str = "random",
) -> FrameIndices:
    """``clip_len + 1`` frames ``stride`` apart, for targets built from frame differences.

    ``x[t + 1] - x[t]`` over the returned frames gives ``clip_len`` motion frames aligned with the
    first ``clip_len`` appearance frames (MAM2's motion branch).

    Returns:
        :class:`FrameIndices` with ``indices`` of shape ``(clip_len + 1,)``.
    """
    return dense_clip(num_frames, _check_positive("clip_len", clip_len) + 1, stride, generator=generator, mode=mode)


def uniform_clips(num_frames: int, clip_len: int = 16, stride: int = 4, num_clips: int = 5) -> FrameIndices:
    """``num_clips`` dense clips with evenly spaced starts, for multi-view testing.

    Clip ``k`` starts at ``int(k * (num_frames - span) / (num_clips - 1))`` (the first clip at
    frame 0, the last one ending on the last frame; one clip is centred), as in VideoMAE's test
    loader. Deterministic.

    Returns:
        :class:`FrameIndices` with ``indices`` of shape ``(num_clips, clip_len)``.
    """
    n = _check_frames(num_frames)
    c = _check_positive("num_clips", num_clips)
    span = clip_span(clip_len, stride)
    steps = np.arange(clip_len, dtype=np.int64) * stride  # (T,)
    if n < span:
        return FrameIndices(np.tile(_clamp(steps, n), (c, 1)), True)
    if c == 1:
        starts = np.array([(n - span) // 2], dtype=np.int64)
    else:
        step = (n - span) / (c - 1)
        starts = np.array([int(k * step) for k in range(c)], dtype=np.int64)  # (C,)
    return FrameIndices(starts[:, None] + steps[None, :], False)  # (C, T)


def segment_views(num_frames: int, num_segments: int = 16, num_views: int = 2) -> FrameIndices:
    """``num_views`` deterministic segment samplings, shifted by ``tick / num_views``.

    View ``v`` takes ``int(v * tick / num_views + k * tick)`` for segment ``k``, with ``tick =
    num_frames / num_segments``; ``num_views=1`` gives the segment middles, ``2`` gives the
    starts and the middles (VideoMAE's two SSv2 test views).

    Returns:
        :class:`FrameIndices` with ``indices`` of shape ``(num_views, num_segments)``.
    """
    n = _check_frames(num_frames)
    s = _check_positive("num_segments", num_segments)
    v = _check_positive("num_views", num_views)
    if n < s:
        return FrameIndices(np.tile(_clamp(np.arange(s, dtype=np.int64), n), (v, 1)), True)
    tick = n / s
    shift = [tick / 2.0] if v == 1 else [k * tick / v for k in range(v)]
    idx = np.array([[int(math.floor(sh + k * tick)) for k in range(s)] for sh in shift], dtype=np.int64)
    return FrameIndices(_clamp(idx, n), False)  # (V, S)
