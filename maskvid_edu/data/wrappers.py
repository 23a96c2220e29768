"""Dataset wrappers: datasets built on other datasets, item by item.

- :class:`ClipViews` — the test views of every clip (temporal windows × spatial crops), as
  multi-view testing (:func:`maskvid_edu.evaluate.finetune.evaluate_views`) reads them.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["ClipViews"]


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
