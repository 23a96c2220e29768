"""Reading real clips: frame sampling with decord, in the library's tensor layout.

A clip of ``num_frames`` frames taken every ``stride`` frames covers a *span* of
``(num_frames - 1) · stride + 1`` source frames, so frame ``i`` of the clip is source frame
``start + i · stride``. VideoMAE samples Kinetics clips this way (16 frames, stride 4: a span of
61 frames, about 2 s at 30 fps); something-something, whose actions are short, is read with
segment sampling instead (a later part of the library).

:func:`read_clip` decodes only the frames it needs (through :mod:`~maskvid_edu.data.decoders`:
decord, which seeks to the nearest key frame, checked once per file against PyAV and with PyAV
as the fallback where it fails or disagrees), converts them to
float, optionally resizes and ImageNet-normalises, and returns ``(3, T, H, W)`` — the layout of
one item of every dataset in this library. It is the one-clip convenience for notebooks; the
training datasets (:mod:`~maskvid_edu.data.datasets`) use the samplers of
:mod:`~maskvid_edu.data.sampling` over the same decoders.

:data:`SHIPPED_CLIP` is the short real clip in the repository's ``data/`` folder (64 frames,
320×240, 10 fps, people walking across a lawn; provenance and licence in ``data/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .decoders import VideoDecodeError, open_video
from .transforms import normalize as _normalize

__all__ = ["SHIPPED_CLIP", "VideoInfo", "clip_indices", "read_clip", "shipped_clip", "video_info"]

_REPO_ROOT = Path(__file__).resolve().parents[2]  # maskvid_edu/data/video.py → repository root

SHIPPED_CLIP: Path = _REPO_ROOT / "data" / "people_walking.mp4"
"""Path of the sample clip shipped in the repository's ``data/`` folder. The package is meant
to be installed editable from a clone (``pip install -e .``), which keeps ``data/`` next to it;
:func:`shipped_clip` checks that the file is really there."""


def shipped_clip() -> Path:
    """:data:`SHIPPED_CLIP`, after checking it exists (``FileNotFoundError`` with advice if not)."""
    if not SHIPPED_CLIP.is_file():
        raise FileNotFoundError(
            f"the sample clip is missing: expected {SHIPPED_CLIP}. It lives in the repository's data/ "
            "folder; install the package editable from a clone of the repository (pip install -e .) "
            "or pass the path of another clip.")
    return SHIPPED_CLIP


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`video_info` reports about a video file."""

    path: Path
    num_frames: int
    fps: float
    height: int
    width: int

    @property
    def duration(self) -> float:
        """Seconds, ``num_frames / fps``."""
        return self.num_frames / self.fps if self.fps > 0 else float("nan")


def _open(path, backend: str):
    """Open ``path`` through :func:`~maskvid_edu.data.decoders.open_video`; a directory that is
    not a folder of frames, or an undecodable file, becomes a ValueError naming the path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        return open_video(path, backend=backend)
    except VideoDecodeError as err:  # already a ValueError; say what was being done
        raise VideoDecodeError(err.path, f"could not decode video: {err.reason}", err.kind) from err


def video_info(path, backend: str = "auto") -> VideoInfo:
    """Frame count, frame rate and frame size of a video file (or a folder of frames).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a readable video.
    """
    with _open(path, backend) as reader:
        height, width = reader.size
        return VideoInfo(Path(path), int(reader.num_frames), float(reader.fps or 0.0), int(height), int(width))


def clip_indices(num_available: int, num_frames: int = 16, stride: int = 4, start: int | str = 0,
                 loop: bool = False) -> list[int]:
    """Source-frame indices of a clip: ``start + i · stride`` for ``i < num_frames``.

    Args:
        num_available: frames in the video.
        num_frames: ``T``, frames in the clip (≥ 1).
        stride: gap between sampled frames (≥ 1).
        start: first source frame (≥ 0), or ``"center"`` to centre the span in the video.
        loop: if ``False`` (default) a video shorter than ``start + span`` is an error; if
            ``True`` indices wrap around (``index % num_available``), i.e. the video is played
            in a loop — useful for very short clips, but it creates a jump at the seam.

    Raises:
        ValueError: bad arguments, or a video too short for the clip when ``loop=False``.
    """
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    if num_available < 1:
        raise ValueError("the video has no frames")
    span = (num_frames - 1) * stride + 1
    if start == "center":
        start = max((num_available - span) // 2, 0)
    elif not isinstance(start, (int, np.integer)) or isinstance(start, bool) or start < 0:
        raise ValueError(f"start must be an int >= 0 or 'center', got {start!r}")
    indices = [int(start) + i * stride for i in range(num_frames)]
    if indices[-1] >= num_available:
        if not loop:
            raise ValueError(
                f"clip too short: {num_frames} frames at stride {stride} from frame {start} need frames "
                f"{indices[0]}..{indices[-1]} ({indices[-1] + 1} frames), but the video has {num_available}; "
                "lower num_frames/stride/start or pass loop=True")
        indices = [i % num_available for i in indices]
    return indices


def _resize(frames: torch.Tensor, size) -> torch.Tensor:
    """frames (T, 3, H, W) → resized; ``size`` int = shorter side, or (H, W)."""
    h, w = frames.shape[-2:]
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        scale = size / min(h, w)
        target = (size, max(1, round(w * scale))) if h <= w else (max(1, round(h * scale)), size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s >= 1 for s in size):
        target = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be None, an int (shorter side) or a pair (H, W) of ints >= 1, got {size!r}")
    if target == (h, w):
        return frames
    return F.interpolate(frames, size=target, mode="bilinear", align_corners=False, antialias=True)


def read_clip(path, num_frames: int = 16, stride: int = 4, start: int | str = 0, size=None,
              normalize: bool = True, loop: bool = False, backend: str = "auto") -> torch.Tensor:
    """Decode a clip of ``num_frames`` frames, one every ``stride``, from a video file.

    Args:
        path: video file (anything FFmpeg reads: mp4, avi, webm, …).
        num_frames: ``T``.
        stride: source frames between two clip frames (1 = consecutive).
        start: first source frame, or ``"center"`` (see :func:`clip_indices`).
        size: ``None`` keeps the decoded size; an int resizes the *shorter side* to it (aspect
            kept); ``(H, W)`` resizes to exactly that. Bilinear with antialiasing.
        normalize: ImageNet-normalise (the models' input); ``False`` returns [0, 1] pixels.
        loop: allow wrapping around the end of a short video (see :func:`clip_indices`).
        backend: decoder (:func:`~maskvid_edu.data.decoders.open_video`): ``"auto"`` is decord,
            with PyAV as the fallback for files decord cannot read, and a folder of images
            for a directory.

    Returns:
        ``(3, T, H, W)`` float32.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unreadable video, bad arguments, or a video too short for the clip.
    """
    with _open(path, backend) as reader:
        indices = clip_indices(reader.num_frames, num_frames, stride, start, loop)
        frames = torch.from_numpy(reader.get_frames(indices))  # (T, H, W, 3) uint8
    frames = frames.permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H, W) in [0, 1]
    if size is not None:
        frames = _resize(frames, size).clamp_(0.0, 1.0)
    video = frames.permute(1, 0, 2, 3).contiguous()  # (3, T, H, W)
    return _normalize(video) if normalize else video
