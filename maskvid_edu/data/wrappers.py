"""Dataset wrappers: datasets built on other datasets or on one clip, and the collate they need.

- :class:`ClipViews` — the test views of every clip (temporal windows × spatial crops), as
  multi-view testing (:func:`maskvid_edu.evaluate.finetune.evaluate_views`) reads them;
- :class:`ClipWindows` — overlapping windows of one long clip as a dataset (a real video added
  to a synthetic training set, chapter 2);
- :func:`collate_videos` — stack a batch by its ``"video"`` alone, for sets mixed from sources
  whose items carry different extra keys;
- :class:`FirstFrames` — the first ``T`` frames of every clip of another dataset (a
  ``T + 1``-frame dataset for motion targets feeding a model that reads ``T``, chapter 5);
- :class:`InMemoryDataset` — a dataset decoded or rendered once and held in memory;
- :func:`frames_per_clip` — ``T`` of a dataset's clips, checked;
- :class:`FramePairs` — two frames ``(t, t + gap)`` of every clip of a clip dataset: VideoMAC's
  input (:mod:`maskvid_edu.models.videomac`).

Every item is a dict with a ``"video"`` ``(C, T, H, W)`` tensor, as everywhere in :mod:`maskvid_edu.data`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .sampling import frame_pair

__all__ = ["ClipViews", "ClipWindows", "collate_videos", "FirstFrames", "InMemoryDataset", "frames_per_clip", "FramePairs"]


def _starts(length: int, window: int, count: int) -> list[int]:
    """``count`` evenly spaced window starts in ``[0, length − window]`` (the centre for one)."""
    if count == 1:
        return [(length - window) // 2]
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


class ClipViews(Dataset):
    """The test views of every clip of ``dataset``: ``num_clips`` windows × ``num_crops`` crops.

    Item ``i`` is ``{"video": (V, C, clip_len, crop_size, crop_size), "label"}`` with
    ``V = num_clips · num_crops``, clip-major (the layout of a test-mode
    :class:`~maskvid_edu.data.datasets.VideoDataset`). Temporal windows of ``clip_len`` frames
    start evenly from the first to the last possible frame; spatial crops are squares of
    ``crop_size`` taken at the start, centre and end of the longer side (one crop: the centre).
    VideoMAE tests Kinetics with 5 clips × 3 crops, Something-Something V2 with 2 × 3.

    dataset: items ``{"video": (C, T, H, W), "label"}`` with ``T ≥ clip_len`` and
    ``min(H, W) ≥ crop_size`` (e.g. a :class:`~maskvid_edu.data.synthetic.SyntheticVideoDataset`
    rendered longer and larger than the training clips).
    """

    def __init__(self, dataset, *, num_clips: int = 2, num_crops: int = 3, clip_len: int, crop_size: int):
        for name, value in (("num_clips", num_clips), ("num_crops", num_crops), ("clip_len", clip_len), ("crop_size", crop_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.dataset, self.num_clips, self.num_crops = dataset, num_clips, num_crops
        self.clip_len, self.crop_size = clip_len, crop_size

    def __len__(self) -> int:
        return len(self.dataset)

    def views(self, video: torch.Tensor) -> torch.Tensor:
        """``(C, T, H, W)`` → ``(V, C, clip_len, crop_size, crop_size)``."""
        C, T, H, W = video.shape
        if T < self.clip_len or min(H, W) < self.crop_size:
            raise ValueError(f"clip {tuple(video.shape)} is shorter than clip_len={self.clip_len} "
                             f"or smaller than crop_size={self.crop_size}")
        s = self.crop_size
        if W >= H:  # crops along the longer side, centred on the other
            corners = [((H - s) // 2, x) for x in _starts(W, s, self.num_crops)]
        else:
            corners = [(y, (W - s) // 2) for y in _starts(H, s, self.num_crops)]
        out = []
        for t0 in _starts(T, self.clip_len, self.num_clips):
            for y0, x0 in corners:
                out.append(video[:, t0 : t0 + self.clip_len, y0 : y0 + s, x0 : x0 + s])
        return torch.stack(out)  # (V, C, clip_len, s, s)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {"video": self.views(torch.as_tensor(item["video"])), "label": item["label"]}



class ClipWindows(Dataset):
    """Overlapping windows of one long clip as a dataset: item ``i`` is ``{"video": (C, T, H, W)}``.

    Lets a notebook add a real video to a synthetic training set. ``video`` is ``(C, F, H, W)``
    (ImageNet-normalised); window ``i`` covers frames ``starts[i] … starts[i] + num_frames − 1``,
    ``starts = range(first, last_start + 1, step)``. With ``flip=True`` every window also comes
    mirrored left–right (items ``len/2 …``), doubling the set.
    """

    def __init__(self, video: torch.Tensor, num_frames: int, step: int = 1, first: int = 0,
                 last_start: int | None = None, flip: bool = False):
        if not isinstance(video, torch.Tensor) or video.dim() != 4:
            raise ValueError(f"video must be a (C, F, H, W) tensor, got {getattr(video, 'shape', type(video))}")
        F_ = video.shape[1]
        for name, value in (("num_frames", num_frames), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        last = F_ - num_frames if last_start is None else last_start
        if not 0 <= first <= last <= F_ - num_frames:
            raise ValueError(f"windows of {num_frames} frames from {first} to start {last} do not fit a clip of {F_} frames")
        self.video = video
        self.num_frames = num_frames
        self.starts = list(range(first, last + 1, step))
        self.flip = flip

    def __len__(self) -> int:
        return len(self.starts) * (2 if self.flip else 1)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} windows")
        i %= len(self)
        mirrored, i = divmod(i, len(self.starts))
        s = self.starts[i]
        clip = self.video[:, s:s + self.num_frames]  # (C, T, H, W)
        return {"video": clip.flip(-1) if mirrored else clip.clone()}

    def __repr__(self) -> str:
        return f"ClipWindows({len(self)} windows of {self.num_frames} frames, flip={self.flip})"




def collate_videos(items: Sequence[dict]) -> dict:
    """Collate dataset items by their ``"video"`` alone: ``{"video": (B, C, T, H, W)}``.

    For training sets mixed from sources whose items carry different extra keys (a synthetic
    dataset's ``label`` and ``masks``, :class:`ClipWindows`' video only); pre-training reads
    nothing else.
    """
    if not items or any(not isinstance(item, dict) or "video" not in item for item in items):
        raise ValueError("items must be a non-empty sequence of dicts with a 'video' tensor")
    return {"video": torch.stack([item["video"] for item in items])}


def frames_per_clip(dataset) -> int:
    """Frames ``T`` of the first clip of a dataset whose items are ``{"video": (C, T, H, W), …}``."""
    item = dataset[0]
    if not isinstance(item, Mapping) or "video" not in item:
        raise ValueError("dataset items must be dicts with a 'video' (C, T, H, W) tensor")
    video = item["video"]
    if not isinstance(video, torch.Tensor) or video.dim() != 4:
        raise ValueError(f"dataset item 'video' must be a (C, T, H, W) tensor, got {getattr(video, 'shape', video)!r}")
    return int(video.shape[1])


class FirstFrames(Dataset):
    """A view of a clip dataset that keeps the first ``num_frames`` frames of every clip.

    ``FirstFrames(ds, T)[i]`` is ``ds[i]`` with ``"video"`` cut to ``(C, T, H, W)`` (and
    ``"masks"``, when present, to ``(T, H, W)``); other fields pass through. This is how a
    ``T + 1``-frame dataset (motion targets) feeds a model that reads ``T`` frames.
    """

    def __init__(self, dataset, num_frames: int):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ValueError("dataset must be a map-style dataset (with __len__ and __getitem__)")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        available = frames_per_clip(dataset)
        if num_frames > available:
            raise ValueError(f"num_frames={num_frames} but the dataset's clips have only {available} frames")
        self.dataset = dataset
        self.num_frames = num_frames

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["video"] = item["video"][:, : self.num_frames]  # (C, T, H, W)
        if isinstance(item.get("masks"), torch.Tensor):
            item["masks"] = item["masks"][: self.num_frames]  # (T, H, W)
        return item


class InMemoryDataset(Dataset):
    """A dataset held in memory: ``items[i]`` is returned as a (shallow) copy.

    :meth:`from_dataset` renders or decodes every clip once — worth it when a run reads the
    same few clips many times (several methods × seeds × probes).
    """

    def __init__(self, items: Sequence[Mapping]):
        items = list(items)
        if not items:
            raise ValueError("items is empty: an in-memory dataset needs at least one item")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or "video" not in item:
                raise ValueError(f"item {i} must be a dict with a 'video' tensor, got {type(item).__name__}")
        self.items = items

    @classmethod
    def from_dataset(cls, dataset, keys: Sequence[str] = ("video", "label"), max_items: int | None = None):
        """Copy ``dataset[0 … n−1]`` (``n = min(len, max_items)``), keeping only ``keys``."""
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ValueError("dataset must be a map-style dataset (with __len__ and __getitem__)")
        n = len(dataset) if max_items is None else min(len(dataset), int(max_items))
        items = []
        for i in range(n):
            item = dataset[i]
            missing = [k for k in keys if k not in item]
            if missing:
                raise ValueError(f"dataset item {i} lacks {missing} (has {sorted(item)})")
            items.append({k: item[k] for k in keys})
        return cls(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])



class FramePairs(Dataset):
    """Frame pairs from any clip dataset: VideoMAC's input.

    ``FramePairs(dataset, gap=1)[i]`` takes item ``i`` of ``dataset`` (a dict with ``"video"``
    ``(C, T, H, W)``) and keeps two frames ``(t, t + gap)``, ``t`` uniform
    (:func:`~maskvid_edu.data.sampling.frame_pair`): ``"video"`` becomes ``(C, 2, H, W)``,
    ``"masks"`` (if present) ``(2, H, W)``, ``"frame_indices"`` ``(2,)`` is added and ``"label"``
    passes through.

    Why: the synthetic clips spread their motion over the whole clip, so the two frames of a
    2-frame clip are far apart in motion; render longer clips (8 frames, say) and take
    neighbours to get the small motion of adjacent real frames.

    Args:
        dataset: map-style dataset of clip dicts.
        gap: frame distance (1 = adjacent); ``max_gap`` draws it from ``[1, max_gap]`` instead.
        seed: ``None`` → ``t`` (and the gap) drawn from torch's global generator at every
            access (a new pair each epoch; the trainer seeds and checkpoints that generator);
            an int → a pure function of ``(seed, i)``.
        cache: keep the underlying items in memory after their first access (rendering a
            synthetic clip costs milliseconds; a short CPU run reads each clip many times).
        keys: item fields to keep (e.g. ``("video",)`` to leave the instance masks out of
            memory); None keeps all.
    """

    def __init__(self, dataset, gap: int = 1, *, max_gap: int | None = None, seed: int | None = None,
                 cache: bool = False, keys: tuple[str, ...] | None = None):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ValueError("dataset must be a map-style dataset (with __len__ and __getitem__)")
        if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
            raise ValueError(f"gap must be a positive int, got {gap!r}")
        if max_gap is not None and (isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 1):
            raise ValueError(f"max_gap must be a positive int or None, got {max_gap!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}")
        if keys is not None and ("video" not in keys or not all(isinstance(k, str) for k in keys)):
            raise ValueError(f"keys must be a tuple of field names including 'video', got {keys!r}")
        self.dataset, self.gap, self.max_gap, self.seed, self.cache = dataset, gap, max_gap, seed, cache
        self.keys = None if keys is None else tuple(keys)
        self._items: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def _item(self, index: int) -> dict:
        if self.cache and index in self._items:
            return self._items[index]
        item = self.dataset[index]
        if not isinstance(item, dict) or "video" not in item or not isinstance(item["video"], torch.Tensor) \
                or item["video"].dim() != 4:
            raise ValueError("dataset items must be dicts with a 'video' (C, T, H, W) tensor")
        if self.keys is not None:
            item = {k: v for k, v in item.items() if k in self.keys}
        if self.cache:
            self._items[index] = item
        return item

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} clips")
        index = int(index) % n
        item = self._item(index)
        T = item["video"].shape[1]
        generator = None if self.seed is None else np.random.default_rng([self.seed, index])
        idx = frame_pair(T, self.gap, max_gap=self.max_gap, generator=generator).indices  # (2,)
        index_t = torch.from_numpy(idx)
        out = {k: v for k, v in item.items() if k not in ("video", "masks")}
        out["video"] = item["video"][:, index_t]  # (C, 2, H, W)
        if "masks" in item:
            out["masks"] = item["masks"][index_t]  # (2, H, W)
        out["frame_indices"] = index_t
        return out

    def __repr__(self) -> str:
        gap = f"gap 1–{self.max_gap}" if self.max_gap is not None else f"gap {self.gap}"
        return f"FramePairs({gap}, of {self.dataset!r})"
