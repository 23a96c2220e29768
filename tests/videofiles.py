"""Write small real video files (good and deliberately broken) for the data tests.

Frames carry their own index: frame ``i`` is filled with the colour ``frame_colour(i)``
(R = 16 + 28 * (i // 8), G = 16 + 28 * (i % 8), B = 128), 28 grey levels apart, so
:func:`frame_index` recovers ``i`` from any decoded (even lossy, cropped or resized) frame and a
test can check exactly which frames a sampler picked. Up to 64 frames.

Codecs are written with PyAV (its bundled FFmpeg): H.264 and MPEG-4 in .mp4, MJPEG and MPEG-4 in
.avi, VP8 and VP9 in .webm, FFV1 (lossless, gray capable) in .mkv/.avi.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av  # noqa: F401  (load PyAV's FFmpeg before anything imports decord's; see write_video)
import numpy as np

# name -> (extension, encoder, pixel format, encoder options)
CODECS = {
    "h264_mp4": (".mp4", "libx264", "yuv420p", {"crf": "18", "preset": "ultrafast"}),
    "mpeg4_mp4": (".mp4", "mpeg4", "yuv420p", {"qscale": "2"}),
    "mpeg4_avi": (".avi", "mpeg4", "yuv420p", {"qscale": "2"}),
    "mjpeg_avi": (".avi", "mjpeg", "yuvj444p", {"q": "2"}),
    "vp8_webm": (".webm", "libvpx", "yuv420p", {"crf": "10", "b": "1M"}),
    "vp9_webm": (".webm", "libvpx-vp9", "yuv420p", {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
    "ffv1_mkv": (".mkv", "ffv1", "yuv444p", {}),
}

STEP = 28


def frame_colour(i: int) -> tuple[int, int, int]:
    if not 0 <= i < 64:
        raise ValueError(f"frame index must be in [0, 64), got {i}")
    return 16 + STEP * (i // 8), 16 + STEP * (i % 8), 128


def frame_index(frame: np.ndarray) -> int:
    """Index of a decoded frame ``(H, W, 3)`` (uint8 or float in [0, 255]) from its mean colour."""
    r, g = float(np.mean(frame[..., 0])), float(np.mean(frame[..., 1]))
    return int(round((r - 16) / STEP)) * 8 + int(round((g - 16) / STEP))


def indexed_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 ``(n, H, W, 3)``, frame i uniformly ``frame_colour(i)``."""
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        out[i] = frame_colour(i)
    return out


def textured_frames(n: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 ``(n, H, W, 3)``: smooth colour gradients and a square moving 2 px per frame."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        r = 40 + 150 * xx / max(width - 1, 1)
        g = 40 + 150 * yy / max(height - 1, 1)
        b = 90 + 60 * np.sin((xx + yy + 3 * i) / 6.0)
        img = np.stack([r, g, b], -1)
        x0, y0 = (4 + 2 * i) % max(width - 12, 1), (6 + i) % max(height - 12, 1)
        img[y0 : y0 + 10, x0 : x0 + 10] = (230, 60, 40)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def gray_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 ``(n, H, W)``: frame i uniformly 16 + 8 * i."""
    return np.stack([np.full((height, width), 16 + 8 * i, np.uint8) for i in range(n)])


def encoder_available(encoder: str) -> bool:
    try:
        av.codec.Codec(encoder, "w")
        return True
    except Exception:
        return False


def write_video(path, frames: np.ndarray, codec: str = "mpeg4_avi", fps: int = 10) -> Path:
    """Encode ``frames`` (uint8 ``(T, H, W, 3)`` RGB, or ``(T, H, W)`` gray) with a :data:`CODECS` entry.

    Gray input is stored with the ``gray`` pixel format when the codec is FFV1 (a real grayscale
    file); other codecs store it as colour with R = G = B.

    If decord's FFmpeg was loaded before PyAV's in this process, PyAV cannot open its libvpx
    encoders; the file is then written by a fresh Python process instead.
    """
    ext, encoder, pix_fmt, options = CODECS[codec]
    path = Path(path)
    if path.suffix != ext:
        raise ValueError(f"{codec} writes {ext} files, got {path.name}")
    try:
        _encode(path, frames, encoder, pix_fmt, options, fps)
    except av.error.ArgumentError:
        if "decord" not in sys.modules:
            raise
        _encode_in_subprocess(path, frames, codec, fps)
    return path


def _encode_in_subprocess(path: Path, frames: np.ndarray, codec: str, fps: int) -> None:
    npy = path.with_suffix(".frames.npy")
    np.save(npy, frames)
    here = str(Path(__file__).parent)
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import videofiles as v; "
        "v.write_video(sys.argv[2], np.load(sys.argv[3]), sys.argv[4], int(sys.argv[5]))"
    )
    try:
        subprocess.run([sys.executable, "-c", code, here, str(path), str(npy), codec, str(fps)], check=True)
    finally:
        npy.unlink()


def _encode(path: Path, frames: np.ndarray, encoder: str, pix_fmt: str, options: dict, fps: int) -> None:
    gray = frames.ndim == 3
    if gray and encoder == "ffv1":
        pix_fmt = "gray"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = dict(options)
        for f in frames:
            if gray:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="gray")
            else:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_zero_frame_video(path) -> Path:
    """A valid AVI with an MJPEG stream and no frames (PyAV opens it and finds 0 frames)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuvj444p"
        container.start_encoding()
    return path


def write_frame_folder(folder, frames: np.ndarray, ext: str = ".png", start: int = 1) -> Path:
    """One image per frame, named ``00001.png`` ...; gray input ``(T, H, W)`` gives mode-L images."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if ext in (".jpg", ".jpeg") else {}
    for k, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{k + start:05d}{ext}", **options)
    return folder


def truncate(src, dst, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of the bytes of ``src`` to ``dst`` (a cut-off download)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def write_random_bytes(path, nbytes: int = 4096, seed: int = 0) -> Path:
    """Random bytes under a video extension."""
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes())
    return Path(path)


def make_zoo(folder) -> dict[str, Path]:
    """A folder of good and bad videos with known expected outcomes (see ``ZOO_EXPECTED``).

    Good videos have 20 indexed frames of 48 x 64 unless the name says otherwise.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    z: dict[str, Path] = {}
    z["good_mp4"] = write_video(folder / "good.mp4", indexed_frames(20), "mpeg4_mp4")
    z["good_avi"] = write_video(folder / "good.avi", indexed_frames(20), "mjpeg_avi")
    z["good_webm"] = write_video(folder / "good.webm", indexed_frames(20), "vp8_webm")
    z["frames"] = write_frame_folder(folder / "frames_dir", indexed_frames(20))
    z["short3"] = write_video(folder / "short3.avi", indexed_frames(3), "mjpeg_avi")
    z["gray"] = write_video(folder / "gray.mkv", gray_frames(20), "ffv1_mkv")
    z["odd"] = write_video(folder / "odd.avi", indexed_frames(20, 45, 67), "mjpeg_avi")
    z["corrupt"] = write_random_bytes(folder / "corrupt.mp4")
    z["empty"] = folder / "empty.mp4"
    z["empty"].write_bytes(b"")
    z["zero"] = write_zero_frame_video(folder / "zero.avi")
    long_avi = write_video(folder / "long_src.avi", indexed_frames(40), "mjpeg_avi")
    # a quarter of a 40-frame AVI: decord indexes 4 frames and the 4th is cut off
    z["truncated"] = truncate(long_avi, folder / "truncated.avi", 0.25)
    long_avi.unlink()
    z["missing"] = folder / "does_not_exist.mp4"
    return z


# what VideoDataset must report for each zoo entry: skip reason, or the handled events
ZOO_EXPECTED = {
    "good_mp4": (None, set()),
    "good_avi": (None, set()),
    "good_webm": (None, set()),
    "frames": (None, set()),
    "short3": (None, {"too_short"}),
    "gray": (None, {"grayscale"}),
    "odd": (None, {"odd_size"}),
    "corrupt": ("unreadable", set()),
    "empty": ("empty_file", set()),
    "zero": ("zero_frames", set()),
    "truncated": ("decode_error", set()),
    "missing": ("missing_file", set()),
}


# ---------------------------------------------------------------------------------------------
# files real footage produces and the writers above do not: other containers, variable frame
# rates, files cut right after their first frame, audio without video
# ---------------------------------------------------------------------------------------------
def write_stream(path, frames: np.ndarray, encoder: str, fmt: str, fps: int = 25, pts=None, options=None) -> Path:
    """Encode RGB ``frames`` with ``encoder`` into container format ``fmt`` (e.g. ``"mpeg"``, an
    MPEG-1 program stream). ``pts`` (one per frame, in units of ``1/fps``) makes the frame rate
    variable: the gaps are time in which no picture is stored."""
    path = Path(path)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options or {})
        for k, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts is not None:
                frame.pts = int(pts[k])
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def vfr_timestamps(n: int, slots: int, seed: int = 0) -> list[int]:
    """``n`` increasing time stamps in ``[0, slots)`` starting at 0 (a variable frame rate)."""
    rest = np.random.default_rng(seed).choice(np.arange(1, slots), n - 1, replace=False)
    return [0] + sorted(int(t) for t in rest)


def cut_after_first_frame(src, dst) -> Path:
    """Copy ``src`` up to just before its second video packet: a download cut off after one frame
    (an AVI header that still promises every frame)."""
    with av.open(str(src)) as container:
        positions = [p.pos for p in container.demux(video=0) if p.size]
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: positions[1] - 8])
    return Path(dst)


def write_audio_only(path, seconds: float = 0.5, rate: int = 8000) -> Path:
    """An MP4 holding one AAC audio stream and no video."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        for i in range(int(seconds * rate) // 1024 + 1):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.rate, frame.pts = rate, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def corrupt_middle(src, dst, nbytes: int = 200, seed: int = 1) -> Path:
    """Copy ``src`` with ``nbytes`` random bytes written over the middle of the file."""
    data = bytearray(Path(src).read_bytes())
    mid = len(data) // 2
    data[mid : mid + nbytes] = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return Path(dst)
