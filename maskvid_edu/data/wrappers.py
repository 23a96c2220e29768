"""Dataset wrappers: datasets made from other datasets.

- :class:`FramePairs` — two frames ``(t, t + gap)`` of every clip of a clip dataset: VideoMAC's
  input (:mod:`maskvid_edu.models.videomac`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .sampling import frame_pair

__all__ = ["FramePairs"]


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
