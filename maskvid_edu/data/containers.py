"""What a video file holds, as FFmpeg's demuxer sees it, and how loudly FFmpeg may talk.

Two small services for :mod:`~maskvid_edu.data.decoders`, kept apart because they read the
*container* (headers and packets), never pixels:

* :func:`frame_count` counts the frames a file really stores and tells a **truncated** file
  (the header promises frames whose data is missing: a cut-off download) from a complete
  **variable-frame-rate** one (an AVI header counts time slots, 444 of them, while only 68
  carry a picture). Both have fewer pictures than the header says; only the first is broken.
  The answer is cached per file and process, so a DataLoader worker demuxes each file once.
* :func:`set_ffmpeg_log_level` keeps FFmpeg's own diagnostics (printed straight to stderr, not
  through Python) out of a training run's output.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# What a file's name says it is: a video container, or one image of a frame folder.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm", ".ppm")

__all__ = [
    "VIDEO_EXTENSIONS",
    "FRAME_EXTENSIONS",
    "list_frame_files",
    "FFMPEG_LOG_LEVELS",
    "FileCache",
    "FrameCount",
    "file_key",
    "frame_count",
    "probe_frame_count",
    "record_decodable_frames",
    "set_ffmpeg_log_level",
    "quiet_decord",
]

FFMPEG_LOG_LEVELS = ("quiet", "fatal", "error", "warning", "info")
_LOG = {"level": "fatal", "decord_set": False}


def set_ffmpeg_log_level(level: str = "fatal") -> None:
    """How much FFmpeg may print to the terminal while decoding.

    FFmpeg writes its diagnostics straight to stderr, bypassing Python. decord's copy of FFmpeg
    does so at ``error`` level by default, which on some perfectly valid H.264 files means two
    ``[h264 @ 0x…] decode_slice_header error`` lines per decoded clip (hundreds in a short run)
    while the frames are right. This package therefore lowers decord's FFmpeg to ``fatal`` when
    it first imports decord. A frame that really cannot be decoded still raises, and
    :class:`~maskvid_edu.data.datasets.VideoDataset` counts it as a skip, so nothing is lost by
    silencing the log.

    PyAV has its own FFmpeg, silent by default (PyAV >= 13); calling this function sets both.

    Args:
        level: ``"quiet"``, ``"fatal"`` (default), ``"error"``, ``"warning"`` or ``"info"``;
            ``"error"`` brings back FFmpeg's per-frame complaints, to diagnose one file.
    """
    if level not in FFMPEG_LOG_LEVELS:
        raise ValueError(f"FFmpeg log level must be one of {FFMPEG_LOG_LEVELS}, got {level!r}")
    _LOG["level"] = level
    if "decord" in sys.modules:
        _set_decord_level(sys.modules["decord"])
    if "av" in sys.modules:
        import av.logging

        av.logging.set_level(None if level == "quiet" else getattr(av.logging, level.upper()))


def _set_decord_level(decord) -> None:
    decord.logging.set_level(getattr(decord.logging, _LOG["level"].upper()))
    _LOG["decord_set"] = True


def quiet_decord(decord) -> None:
    """Apply the chosen level (``fatal`` unless :func:`set_ffmpeg_log_level` said otherwise) to
    a freshly imported decord, once."""
    if not _LOG["decord_set"]:
        _set_decord_level(decord)


@dataclass(frozen=True)
class FrameCount:
    """Frames of a video stream: promised by the header, and stored in the file.

    Attributes:
        claimed: the container's frame count (0 when it keeps none, e.g. WebM).
        present: packets that carry a picture (demuxed, not decoded; empty AVI "drop" chunks
            and packets the container marks as discarded do not count).
        reaches_end: whether those packets reach the end of the time the header promises.
    """

    claimed: int
    present: int
    reaches_end: bool = True

    @property
    def truncated(self) -> bool:
        """Fewer pictures than promised *and* they stop early: the rest of the file is lost."""
        return self.claimed > self.present and not self.reaches_end

    @property
    def usable(self) -> int:
        """The frame count to sample from: the pictures that exist, except that a truncated
        file keeps its promise, so that a request past the cut fails loudly instead of quietly
        sampling from a shorter video."""
        if self.truncated:
            return self.claimed
        return self.present if self.claimed == 0 or self.present < self.claimed else self.claimed


class FileCache(dict):
    """A per-process memory keyed by :func:`file_key` that forgets its oldest entries beyond
    ``limit`` (so a worker that sees a million files does not keep a million answers)."""

    def __init__(self, limit: int = 65536):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        if key not in self and len(self) >= self.limit:
            del self[next(iter(self))]  # dicts keep insertion order: the oldest goes first
        super().__setitem__(key, value)


_COUNTS: FileCache = FileCache()  # file_key -> FrameCount


def file_key(path) -> tuple:
    """Cache key of a file: a rewritten file (new size or modification time) is looked at anew."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def frame_count(path, container, stream) -> FrameCount:
    """:class:`FrameCount` of ``stream`` in an open PyAV ``container`` (cached per file).

    Reads every packet once (no decoding). A packet's end is ``pts + duration``; the header's
    promise in seconds is ``claimed / average_rate``; the packets reach the end if they come
    within 1.5 frame durations of it.
    """
    key = file_key(path)
    if key not in _COUNTS:
        claimed = int(stream.frames or 0)
        present, last_end = 0, 0
        for packet in container.demux(stream):
            if packet.size > 0 and not getattr(packet, "is_discard", False):
                present += 1
                if packet.pts is not None:
                    last_end = max(last_end, packet.pts + (packet.duration or 0))
        rate = stream.average_rate or stream.guessed_rate
        reaches_end = True
        if claimed > present and rate and stream.time_base:
            promised = claimed / float(rate)  # seconds the header's frame count stands for
            reached = float((last_end - (stream.start_time or 0)) * stream.time_base)
            reaches_end = reached >= promised - 1.5 / float(rate)
        _COUNTS[key] = FrameCount(claimed, present, reaches_end)
    return _COUNTS[key]


def probe_frame_count(path) -> FrameCount | None:
    """:func:`frame_count` of a file opened just for it (``None`` without PyAV, a readable
    container or a video stream)."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            return frame_count(path, container, container.streams.video[0])
    except Exception:  # unreadable: the decoders' own errors say so
        return None


def record_decodable_frames(path, decoded: int) -> None:
    """Remember that a complete file decoded to only ``decoded`` frames (packets that hold no
    picture), so the next open samples from those."""
    key = file_key(path)
    if key in _COUNTS and not _COUNTS[key].truncated:
        old = _COUNTS[key]
        _COUNTS[key] = FrameCount(old.claimed, min(old.present, decoded), old.reaches_end)


def _natural_key(name: str):
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def list_frame_files(folder) -> list[Path]:
    """Image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS]
    return sorted(files, key=lambda p: _natural_key(p.name))
