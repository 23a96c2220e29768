"""How fast clips come out of a video file: the decoder's limit, the reference pipeline, ours.

A pre-training step at full size wants thousands of clips per second (chapter 7 computes the
appetite of a ViT-B), and a clip costs a decode plus an augmentation. This module measures,
on the same clips of the same files in one run:

(a) **the bare decode**: only the frames one clip needs, as RGB ``uint8``, nothing else:
    decord (``VideoReader`` + ``get_batch``, which seeks to the keyframe before each request)
    and PyAV (seek to the keyframe at or before the first frame, decode forward, keep the
    sampled frames, stop after the last), and torchcodec when it is installed (it needs
    FFmpeg's shared libraries, e.g. Debian's ``libavcodec59``; not a dependency). No loader can
    beat the fastest of them.
(b) **the reference pipeline** of VideoMAE's pre-training loader, step for step: decord
    ``get_batch``, one PIL image per frame, the multi-scale crop and a bilinear PIL resize per
    image, the frames stacked, converted to float and divided by 255, then normalised channel
    by channel (:func:`reference_clip`).
(c) **ours**: :class:`~maskvid_edu.data.datasets.VideoDataset` in pre-training mode, first
    item after item in one process (like for like with (a) and (b)), then through a
    ``DataLoader`` with 0, 1 or 2 worker processes (which also assembles batches: one more copy
    of every clip), each with 1, 2 or 4 views per decode (VideoMAE V2's repeated sampling,
    ``num_repeats``): crop and resize on the ``uint8`` frames (torch's integer kernels), then
    one multiply-add per value to normalise.

Every figure is clips per second per process (views count as clips: each is a training
sample), measured after one untimed clip. ``bench_loader`` returns the rows that
``maskvid-edu bench --what loader`` prints; :func:`loader_summary` reads the ratios the
README and chapter 7 quote.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.augment import VIDEOMAE_SCALES, multi_scale_crop_params
from ..data.datasets import VideoDataset
from ..data.decoders import open_video
from ..data.lists import VideoSample
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..data.video import shipped_clip
from .flops import loader_throughput

__all__ = ["clip_plan", "decode_decord", "decode_pyav", "decode_torchcodec", "torchcodec_available",
           "reference_clip", "bench_loader", "loader_summary", "format_loader_table"]


def clip_plan(paths: Sequence[str | os.PathLike], clips: int, *, clip_len: int = 16, stride: int = 4,
              size: int = 224, seed: int = 0) -> VideoDataset:
    """The clips every contender reads: a seeded pre-training dataset of ``clips`` items cycling
    over ``paths``; item ``i``'s frame indices and crop come from ``dataset.generator(i)``."""
    if clips < 2:
        raise ValueError(f"clips must be ≥ 2 (one untimed, one timed), got {clips!r}")
    paths = [str(p) for p in paths]
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"video not found: {p}")
    samples = [VideoSample(paths[i % len(paths)], None) for i in range(clips)]
    return VideoDataset(samples, mode="pretrain", clip_len=clip_len, stride=stride, size=size,
                        seed=seed, backend="decord", strict=True)


def _indices(dataset: VideoDataset, generator, num_frames: int) -> np.ndarray:
    idx, _ = dataset.frame_indices(num_frames, generator)
    return np.asarray(idx)


def decode_decord(path, indices: Sequence[int]) -> np.ndarray:
    """(a) decord: open, ``get_batch(indices)``: ``uint8 (T, H, W, 3)``."""
    reader = open_video(path, "decord")
    try:
        return reader.get_frames(indices)
    finally:
        reader.close()


def decode_pyav(path, indices: Sequence[int]) -> np.ndarray:
    """(a) PyAV: seek to the keyframe at or before ``indices[0]``, decode forward to
    ``indices[-1]``, keep the requested frames: ``uint8 (T, H, W, 3)``.

    Frame numbers come from presentation time stamps at the stream's average rate, so this is
    for constant-frame-rate files (what the benchmark reads); the library's PyAV reader decodes
    from the first frame instead and is exact for any file.
    """
    import av

    wanted = sorted(set(int(i) for i in indices))
    first, last = wanted[0], wanted[-1]
    keep: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1  # one decoder thread per process, as decord here and in workers
        rate, base = stream.average_rate, stream.time_base
        start = stream.start_time or 0
        container.seek(start + int(first / rate / base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            k = int(round(float((frame.pts - start) * base * rate)))
            if k in wanted and k not in keep:
                keep[k] = frame.to_ndarray(format="rgb24")
            if k >= last:
                break
    missing = [i for i in wanted if i not in keep]
    if missing:
        raise ValueError(f"{path}: PyAV seek could not deliver frames {missing[:4]} (not constant frame rate?)")
    return np.stack([keep[int(i)] for i in indices])


def torchcodec_available() -> bool:
    """True when torchcodec imports: the package, and the FFmpeg libraries (4–7) it loads."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def decode_torchcodec(path, indices: Sequence[int]) -> np.ndarray:
    """(a) torchcodec, PyTorch's own decoder (optional): ``get_frames_at(indices)`` with one
    FFmpeg thread, returned as ``uint8 (T, H, W, 3)`` like the others."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), num_ffmpeg_threads=1)
    frames = decoder.get_frames_at([int(i) for i in indices]).data  # (T, 3, H, W) uint8
    return frames.permute(0, 2, 3, 1).numpy()


def reference_clip(path, indices: Sequence[int], size: int = 224, generator=None) -> torch.Tensor:
    """(b) one clip the way VideoMAE's pre-training loader makes it: ``(3, T, size, size)``.

    decord decodes the batch; each frame becomes a PIL image; the multi-scale crop box (drawn by
    :func:`~maskvid_edu.data.augment.multi_scale_crop_params`, the same draw as ours) is cut
    from every image and resized with PIL's bilinear filter; the images are stacked along the
    channels, turned into a float tensor divided by 255, and normalised one channel at a time.
    """
    from PIL import Image

    frames = decode_decord(path, indices)  # (T, H, W, 3)
    images = [Image.fromarray(f).convert("RGB") for f in frames]
    w, h = images[0].size
    top, left, ch, cw = multi_scale_crop_params(h, w, size, VIDEOMAE_SCALES, generator=generator)
    images = [im.crop((left, top, left + cw, top + ch)).resize((size, size), Image.BILINEAR) for im in images]
    stacked = np.concatenate([np.asarray(im) for im in images], axis=2)  # (size, size, 3T)
    x = torch.from_numpy(stacked).permute(2, 0, 1).contiguous().float().div(255)  # (3T, size, size)
    for c in range(x.shape[0]):
        x[c].sub_(IMAGENET_MEAN[c % 3]).div_(IMAGENET_STD[c % 3])
    return x.view(len(images), 3, size, size).transpose(0, 1)  # (3, T, size, size)


def _rate(fn, n: int) -> float:
    """Clips per second of ``fn(i)`` over items 1..n-1, after item 0 untimed."""
    fn(0)
    t0 = time.perf_counter()
    for i in range(1, n):
        fn(i)
    return (n - 1) / (time.perf_counter() - t0)


def _ours_items(dataset: VideoDataset, views: int, clips: int) -> float:
    dataset.num_repeats = views
    try:
        return views * _rate(lambda i: dataset[i], clips)
    finally:
        dataset.num_repeats = 1


def _ours(dataset: VideoDataset, workers: int, views: int, batch_size: int) -> float:
    dataset.num_repeats = views  # the workers fork with this value
    try:
        batches = len(dataset) // batch_size - 1  # after one untimed batch
        return loader_throughput(dataset, batch_size, workers, batches)["clips_per_s"]
    finally:
        dataset.num_repeats = 1


def bench_loader(paths: Sequence[str | os.PathLike] | None = None, *, clips: int = 24, clip_len: int = 16,
                 stride: int = 4, size: int = 224, workers: Sequence[int] = (0, 1, 2),
                 views: Sequence[int] = (1, 2, 4), batch_size: int = 4, rounds: int = 3,
                 seed: int = 0) -> list[dict]:
    """Measure (a), (b) and (c) on the same ``clips`` clips of ``paths`` (default: the shipped
    clip). Returns one dict per row: ``{"name", "clips_per_s", "vs_decode", "vs_reference"}``
    (plus ``"workers"``, ``"views"`` for ours); the ratios are against the fastest bare decoder
    and the reference pipeline (above 1 is faster).

    The contenders take turns: each of ``rounds`` rounds times every row once, and a row's
    figure is its median over the rounds, so a machine that slows down for a while slows every
    row alike. Threads: torch and the decoders run one thread per process, as inside
    DataLoader workers; with ``w`` workers the main process only collates, so w = 2 uses both
    cores of a 2-core machine. ``clips`` ≥ ``2 × batch_size`` keeps a timed batch after the
    untimed one.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds!r}")
    if clips < 2 * batch_size:
        raise ValueError(f"clips ({clips}) must be ≥ 2 × batch_size ({batch_size}): one untimed batch, one timed")
    paths = [shipped_clip()] if not paths else list(paths)
    dataset = clip_plan(paths, clips, clip_len=clip_len, stride=stride, size=size, seed=seed)
    counts = {}
    for p in {s.path for s in dataset.samples}:
        with open_video(p, "decord") as reader:
            counts[p] = reader.num_frames
    plan = [(s.path, _indices(dataset, dataset.generator(i), counts[s.path])) for i, s in enumerate(dataset.samples)]

    def reference(i: int) -> torch.Tensor:  # item i's frames and crop, drawn as ours draws them
        g = dataset.generator(i)
        return reference_clip(plan[i][0], _indices(dataset, g, counts[plan[i][0]]), size, g)
    rows = [
        ({"name": "bare decode, decord (get_batch of the clip's frames)"},
         lambda: _rate(lambda i: decode_decord(*plan[i]), clips)),
        ({"name": "bare decode, PyAV (seek to keyframe, decode forward)"},
         lambda: _rate(lambda i: decode_pyav(*plan[i]), clips)),
        ({"name": "VideoMAE reference pipeline (decord + PIL crop/resize + normalise)"},
         lambda: _rate(reference, clips)),
    ]
    if torchcodec_available():  # optional: a third bare decoder, after the reference row
        rows.append(({"name": "bare decode, torchcodec (get_frames_at)"},
                     lambda: _rate(lambda i: decode_torchcodec(*plan[i]), clips)))
    for v in views:  # like for like with (a) and (b): one clip after another, no batches
        name = f"ours, items in one process, {v} view{'s' if v > 1 else ''} per decode"
        rows.append(({"name": name, "workers": None, "views": v}, lambda v=v: _ours_items(dataset, v, clips)))
    for w in workers:
        for v in views:
            name = f"ours, DataLoader, {w} worker{'s' if w != 1 else ''}, {v} view{'s' if v > 1 else ''} per decode"
            rows.append(({"name": name, "workers": w, "views": v},
                         lambda w=w, v=v: _ours(dataset, w, v, batch_size)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = [[measure() for _, measure in rows] for _ in range(rounds)]
    finally:
        torch.set_num_threads(threads)
    out = [{**info, "clips_per_s": float(np.median([r[k] for r in rates]))} for k, (info, _) in enumerate(rows)]
    decode = max(r["clips_per_s"] for r in out if r["name"].startswith("bare decode"))
    reference = out[2]["clips_per_s"]
    for r in out:
        r["vs_decode"] = r["clips_per_s"] / decode
        r["vs_reference"] = r["clips_per_s"] / reference
    return out


def loader_summary(rows: Sequence[dict]) -> dict:
    """The comparisons the course quotes: ours per process (items one after another, one view:
    what (a) and (b) do) against the bare decode and the reference, and the best configuration
    measured."""
    single = next(r for r in rows if "workers" in r and r["workers"] is None and r["views"] == 1)
    best = max((r for r in rows if "workers" in r), key=lambda r: r["clips_per_s"])
    return {"per_process_vs_decode": single["vs_decode"], "per_process_vs_reference": single["vs_reference"],
            "per_process_clips_per_s": single["clips_per_s"], "best": best}


def format_loader_table(rows: Sequence[dict]) -> str:
    """The rows of :func:`bench_loader` as a text table: clips/s and the two ratios."""
    width = max(len(r["name"]) for r in rows)
    head = f"{'':<{width}}  clips/s  vs decode  vs VideoMAE"
    lines = [head, "-" * len(head)]
    lines += [f"{r['name']:<{width}}  {r['clips_per_s']:7.1f}  {r['vs_decode']:8.2f}×  {r['vs_reference']:10.2f}×"
              for r in rows]
    return "\n".join(lines)
