"""Features of whole videos, written to disk: sliding windows, one ``.npy`` per video.

:func:`~maskvid_edu.evaluate.probe.extract_features` keeps one clip per video in memory, which is
what a probe needs. Downstream work on long videos (temporal action localisation, retrieval,
video-language models) wants features of the *whole* video instead, computed once:

- the video is cut into windows of ``window`` frames every ``stride`` frames (windows starting
  at ``0, stride, 2·stride, …`` as long as they fit; ``stride < window`` overlaps them);
- each window is resized (short side) and centre-cropped to ``size``, normalised as every
  clip is, and encoded by the frozen encoder;
- a ViT gives its tokens ``(N, dim)`` after block ``layer`` (default: the last block, after the
  final norm), mean-pooled per window (the pooled default is the encoder's own
  ``forward_features``, ``fc_norm`` included), or kept with ``tokens=True``; a ConvNet encoder
  (VideoMAC's ResNet / ConvNeXt V2) runs frame by frame through
  :class:`~maskvid_edu.evaluate.probe.FrameEncoder` and gives the stage ``layer``'s map
  averaged over space and over the window's frames;
- ``<out>/<video path relative to the data folder>.npy`` holds ``(num_windows, D)`` float32
  (``(num_windows, N, dim)`` with tokens), and ``<out>/index.csv`` one row per window: the
  video, its ``.npy``, the window number, start and end frame (end exclusive), start and end
  in seconds (empty when the file does not know its frame rate), whether the window was padded,
  and the shape of its features.

**A video shorter than a window** gives one window, padded by repeating its last frame — the
data path's rule for short videos (:mod:`maskvid_edu.data.datasets`: used, last frame
repeated, counted as ``too_short``); its row says ``padded=1`` and ``end_frame`` is the true
length, so nothing of it is lost and nothing is invented silently.

**Resumable.** A video whose ``.npy`` exists is not decoded again; every ``.npy`` is written to
a temporary name first and renamed, so an interrupted run never leaves a half-written file.
``index.csv`` is rewritten at the end for every video that has its features.

**Bad videos** follow the data path's skip policy: a missing, empty, unreadable or truncated
file is skipped with a :class:`~maskvid_edu.data.lists.BadVideoWarning`, counted by reason in
a :class:`~maskvid_edu.data.datasets.DataStats`, and listed in the returned summary (and in
``<out>/skipped.csv``); the run goes on with the other videos.
"""

from __future__ import annotations

import contextlib
import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.augment import ClipTransform
from ..data.datasets import EVENTS, DataStats, SkippedItem
from ..data.decoders import VideoDecodeError, open_video
from ..data.lists import BadVideoWarning, folder_samples, read_video_list
from ..models.vit import VisionTransformer
from ..utils import frozen, positive_int, resolve_device
from .probe import FrameEncoder, clip_features

__all__ = ["window_starts", "VideoWindows", "FeatureRun", "write_features", "INDEX_COLUMNS"]

#: Columns of ``index.csv``, one row per window.
INDEX_COLUMNS = ("video", "file", "window", "start_frame", "end_frame", "start_s", "end_s", "padded", "shape")


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """First frames of the windows over ``num_frames``: ``0, stride, …`` while a whole window
    fits; ``[0]`` (one padded window) for a video shorter than ``window``, none for 0 frames."""
    if num_frames <= 0:
        return []
    if num_frames <= window:
        return [0]
    return list(range(0, num_frames - window + 1, stride))


@dataclass
class _Video:
    path: str
    name: str  # relative to the data folder, without extension
    num_frames: int = 0
    fps: float | None = None
    starts: list[int] = field(default_factory=list)


class VideoWindows(Dataset):
    """The windows of some videos in chunks: item ``i`` → ``{"video": (k, C, window, size, size),
    "vid": v, "starts": (k,)}``, up to ``chunk`` consecutive windows of video ``v``.

    A chunk is read with one open of the file and each frame decoded and resized once, however
    much the windows overlap (opening a long file once per window would read its index again and
    again). ``videos``: the planned videos (``_Video`` records with their window starts).
    Decoding errors come back as :class:`~maskvid_edu.data.datasets.SkippedItem` (``index`` =
    the video's number).
    """

    def __init__(self, videos, window: int, size: int, backend: str = "auto", chunk: int = 8):
        self.videos, self.window, self.backend = list(videos), window, backend
        self.items = [(v, video.starts[i:i + chunk]) for v, video in enumerate(self.videos)
                      for i in range(0, len(video.starts), chunk)]
        self.transform = ClipTransform("center", size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        v, starts = self.items[i]
        video = self.videos[v]
        idx = np.arange(self.window)[None] + np.asarray(starts)[:, None]  # (k, window)
        padded = bool(idx.max() >= video.num_frames)
        idx = np.minimum(idx, video.num_frames - 1)  # a short video: its last frame repeated
        try:
            with open_video(video.path, self.backend) as reader:
                if padded:
                    reader.check_not_truncated()  # a cut-off file is broken, never padded
                unique, inverse = np.unique(idx, return_inverse=True)
                frames = reader.get_frames(unique)  # (U, H, W, 3), each frame once
        except FileNotFoundError:
            return SkippedItem(v, video.path, "missing_file", "no such file or folder")
        except VideoDecodeError as err:
            return SkippedItem(v, video.path, err.kind, err.reason)
        x = self.transform(frames)  # (C, U, size, size): resized and normalised once
        clips = x[:, torch.from_numpy(inverse.reshape(idx.shape))]  # (C, k, window, size, size)
        return {"video": clips.transpose(0, 1).contiguous(), "vid": v, "starts": torch.as_tensor(starts)}


def _as_is(item):
    return item


@dataclass
class FeatureRun:
    """What :func:`write_features` did: videos written now, already there, skipped (with reasons)."""

    out: Path
    written: list[str]
    existing: list[str]
    skipped: list[SkippedItem]
    stats: DataStats
    num_windows: int

    def summary(self) -> str:
        lines = [f"features of {len(self.written) + len(self.existing)} videos in {self.out}/ "
                 f"({len(self.written)} written now, {len(self.existing)} already there, "
                 f"{len(self.skipped)} skipped; {self.num_windows} windows in index.csv)"]
        lines += [f"  skipped {s.path}: {s.reason} ({s.detail})" for s in self.skipped]
        return "\n".join(lines)


def _samples(data, root=None):
    """``(samples, base folder, malformed lines)`` for a list file or a folder of videos."""
    path = Path(data)
    if path.is_dir():
        parsed = folder_samples(path, labelled=False)
        base = path
    elif path.is_file():
        parsed = read_video_list(path, root)
        base = Path(root) if root is not None else path.parent
    else:
        raise FileNotFoundError(f"data {str(data)!r}: no such list file or folder of videos")
    if not parsed.samples:
        raise ValueError(f"data {str(data)!r}: no videos in it")
    return parsed.samples, base, parsed.malformed


def _name(path: str, base: Path) -> str:
    p = Path(path)
    try:
        rel = p.resolve().relative_to(base.resolve())
    except ValueError:
        rel = Path(p.name)
    return str(rel.with_suffix("")) if rel.suffix else str(rel)


class _Features:
    """Encoder wrapper: window batch ``(B, C, T, H, W)`` → ``(B, D)`` pooled or ``(B, N, dim)`` tokens."""

    def __init__(self, encoder, layer: int | None, tokens: bool):
        self.encoder, self.layer, self.tokens = encoder, layer, tokens
        self.vit = isinstance(encoder, VisionTransformer)
        if self.vit:
            depth = len(encoder.blocks)
            if layer is not None and not -depth <= layer < depth:
                raise ValueError(f"layer must be a block of the encoder, -{depth} … {depth - 1}, got {layer}")
            self.block = None if layer is None or layer % depth == depth - 1 else layer % depth
        else:
            if tokens:
                raise ValueError("tokens=True keeps ViT tokens; a ConvNet encoder gives pooled stage features")
            self.frames = encoder if isinstance(encoder, FrameEncoder) else FrameEncoder(encoder, stage=layer)

    def module(self):
        return self.encoder if self.vit else self.frames

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        if not self.vit:
            return clip_features(self.frames, video)  # (B, C): space, then the window's frames averaged
        if self.block is None:
            x = self.encoder(video)  # (B, N, dim), after the final norm
            return x if self.tokens else self.encoder.pool(x)
        seen = {}
        handle = self.encoder.blocks[self.block].register_forward_hook(lambda m, i, o: seen.setdefault("x", o))
        try:
            self.encoder(video)
        finally:
            handle.remove()
        x = seen["x"]  # (B, N, dim): the output of block `layer`
        return x if self.tokens else x.mean(dim=1)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


@torch.no_grad()
def write_features(
    encoder,
    data,
    out,
    *,
    root=None,
    window: int | None = None,
    stride: int | None = None,
    size: int | None = None,
    layer: int | None = None,
    tokens: bool = False,
    batch_size: int = 8,
    num_workers: int = 0,
    device="auto",
    amp: str = "none",
    backend: str = "auto",
    progress: bool = True,
) -> FeatureRun:
    """Write sliding-window features of every video of ``data`` to ``out`` (see the module docstring).

    Args:
        encoder: a :class:`~maskvid_edu.models.vit.VisionTransformer`, or an image encoder
            ``(B, 3, H, W) → (B, C, h, w)`` (with ``forward_stages`` for ``layer``), or a
            :class:`~maskvid_edu.evaluate.probe.FrameEncoder`.
        data: a list file (``path [label]`` lines, CSV, Kinetics CSV) or a folder of videos;
            root: the folder a list's relative paths start from.
        out: output folder (created).
        window, stride: window length and step in frames (default: a ViT's clip length, else 16;
            stride defaults to ``window``: no overlap); a ViT needs ``window`` divisible by its
            tubelet.
        size: frame side after short-side resize and centre crop (default: a ViT's frame
            size, else 224).
        layer: ViT block (0-based, negative from the end; default the last, after the final
            norm) or ConvNet stage (default the encoder's output).
        tokens: keep the ViT's tokens ``(N, dim)`` per window instead of their mean.
        batch_size, num_workers: windows per forward pass (and per decoded chunk of a video),
            decoding worker processes.
        device: ``"auto"`` → CUDA if available; amp: ``"none"``, ``"bf16"`` or ``"fp16"``
            (autocast; features are stored as float32).
        backend: decoder (see :func:`~maskvid_edu.data.decoders.open_video`).
        progress: a tqdm bar over the windows.

    Returns a :class:`FeatureRun`; raises ValueError for bad arguments and
    FileNotFoundError for a missing ``data``.
    """
    vit = isinstance(encoder, VisionTransformer)
    window = (encoder.config.num_frames if vit else 16) if window is None else window
    size = (encoder.config.img_size if vit else 224) if size is None else size
    positive_int(window, "window")
    stride = window if stride is None else stride
    positive_int(stride, "stride")
    positive_int(size, "size")
    positive_int(batch_size, "batch_size")
    if amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {amp!r}")
    if isinstance(encoder, VisionTransformer) and window % encoder.config.tubelet:
        raise ValueError(f"window {window} must be a multiple of the encoder's tubelet {encoder.config.tubelet}")
    features = _Features(encoder, layer, tokens)
    samples, base, malformed = _samples(data, root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = DataStats(malformed, source=str(data), root=str(base))

    videos, skipped = [], []
    for sample in samples:  # plan: frame counts and rates (header reads), bad files skipped
        video = _Video(sample.path, _name(sample.path, base))
        try:
            with open_video(sample.path, backend) as reader:
                video.num_frames, video.fps = reader.num_frames, reader.fps
        except FileNotFoundError:
            skipped.append(SkippedItem(len(videos) + len(skipped), sample.path, "missing_file", "no such file or folder"))
            continue
        except VideoDecodeError as err:
            skipped.append(SkippedItem(len(videos) + len(skipped), sample.path, err.kind, err.reason))
            continue
        if video.num_frames == 0:
            skipped.append(SkippedItem(len(videos) + len(skipped), sample.path, "zero_frames", "no decodable frame"))
            continue
        video.starts = window_starts(video.num_frames, window, stride)
        videos.append(video)
    for s in skipped:
        warnings.warn(f"skipping {s.path}: {s.reason} ({s.detail})", BadVideoWarning, stacklevel=2)
    names: dict[str, str] = {}
    for v in videos:  # one .npy per video: two videos must not share one
        if names.setdefault(v.name, v.path) != v.path:
            raise ValueError(f"{names[v.name]} and {v.path} would both write {v.name}.npy; rename one or list them apart")
    todo = [v for v in videos if not (out / f"{v.name}.npy").exists()]  # resume: the rest is written
    existing = [v.name for v in videos if (out / f"{v.name}.npy").exists()]

    dataset = VideoWindows(todo, window, size, backend, chunk=batch_size)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_as_is)
    dev = resolve_device(device)
    if amp == "fp16" and dev.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device; the device is {dev}. Use amp='bf16' or 'none' on CPU")
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
                if amp != "none" else contextlib.nullcontext())
    from tqdm.auto import tqdm

    pending: dict[int, list[np.ndarray]] = {}  # video → features of its windows so far, in order
    bad: set[int] = set()
    written = []
    total = sum(len(v.starts) for v in todo)
    with frozen(features.module(), dev), tqdm(total=total, desc="windows", unit="win", disable=not progress) as bar:
        for item in loader:  # a chunk of one video's windows, in order
            if isinstance(item, SkippedItem):
                if item.index not in bad:
                    bad.add(item.index)
                    warnings.warn(f"skipping {item.path}: {item.reason} ({item.detail})", BadVideoWarning, stacklevel=2)
                    skipped.append(item)
                    pending.pop(item.index, None)
                continue
            v = item["vid"]
            bar.update(len(item["starts"]))
            if v in bad:
                continue
            with autocast:
                f = features(item["video"].to(dev, torch.float32))  # (k, D) or (k, N, dim)
            pending.setdefault(v, []).extend(f.float().cpu().numpy())
            if len(pending[v]) == len(todo[v].starts):  # the video is complete
                _atomic_save(out / f"{todo[v].name}.npy", np.stack(pending.pop(v)))
                written.append(todo[v].name)
    done = [v for v in videos if (out / f"{v.name}.npy").exists()]
    events = torch.zeros(len(done), len(EVENTS), dtype=torch.bool)
    events[:, EVENTS.index("too_short")] = torch.tensor([v.num_frames < window for v in done], dtype=torch.bool)
    stats.update({"events": events, "skipped": skipped})  # per video: used (with its events) or skipped

    num_windows = _write_index(out, done, window)
    with open(out / "skipped.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("video", "reason", "detail"))
        w.writerows((s.path, s.reason, s.detail) for s in skipped)
    return FeatureRun(out, written, existing, skipped, stats, num_windows)


def _write_index(out: Path, videos, window: int) -> int:
    rows = 0
    tmp = out / ".index.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(INDEX_COLUMNS)
        for v in videos:
            array = np.load(out / f"{v.name}.npy", mmap_mode="r")
            shape = "x".join(str(d) for d in array.shape[1:])
            for k, start in enumerate(v.starts):
                end = min(start + window, v.num_frames)
                seconds = ("", "") if not v.fps else (f"{start / v.fps:.3f}", f"{end / v.fps:.3f}")
                w.writerow((v.path, f"{v.name}.npy", k, start, end, *seconds, int(start + window > v.num_frames), shape))
                rows += 1
    os.replace(tmp, out / "index.csv")
    return rows
