"""VIP (Video Instance-level Parsing): human part labels to propagate through a video.

VIP is one of the three label-propagation benchmarks of VideoMAC (with DAVIS-17 and JHMDB):
the first frame's part labels are given and a model must carry them to every later frame; the
score is the mean IoU over the 20 categories (background + 19 body parts and clothes).

The ``VIP_Fine`` folder, as distributed::

    VIP_Fine/
      Images/<video>/<frame>.jpg                      the frames of each video
      Annotations/Category_ids/<video>/<frame>.png    one class id (0..19) per pixel
      lists/{train,val,test}_videos.txt               one video per line

List lines are video names (``videos1``); a line holding a path is reduced to its last part,
as the usual evaluation scripts do. Frames are taken in natural filename order and each
``.jpg`` is paired with the ``.png`` of the same stem.

:func:`read_vip_video` returns ``frames`` as float ``(T, 3, H, W)`` in [0, 1] (not normalised:
the propagation code normalises) and ``labels`` as int64 ``(T, H, W)``, with -1 on frames that
have no annotation file (``has_label`` says which do). The first frame must be annotated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from maskvid_edu.data.augment import resize_frames, resize_labels, target_size
from maskvid_edu.data.decoders import FrameFolderReader

__all__ = ["VIP_NUM_CLASSES", "vip_videos", "read_vip_video", "read_label_png", "VIPDataset"]

VIP_NUM_CLASSES = 20  # background + 19 human parts


def read_label_png(path) -> np.ndarray:
    """A class-id PNG (mode ``L``, ``P`` or ``I``) → int64 ``(H, W)``; colour images are refused
    (colour-coded parts are not ids)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"{path}: a label image must hold one class id per pixel (mode L or P), got mode {im.mode}")
        return np.asarray(im).astype(np.int64)


def _vip_dirs(root) -> tuple[Path, Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VIP folder not found: {root} (expected the VIP_Fine folder)")
    images, labels = root / "Images", root / "Annotations" / "Category_ids"
    for p, what in ((images, "VIP frame folder"), (labels, "VIP label folder")):
        if not p.is_dir():
            raise FileNotFoundError(f"{what} not found: {p}")
    return images, labels


def vip_videos(root, split: str = "val") -> list[str]:
    """Video names listed in ``<root>/lists/<split>_videos.txt`` (split: train, val or test)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    list_file = Path(root) / "lists" / f"{split}_videos.txt"
    if not list_file.is_file():
        raise FileNotFoundError(f"VIP list not found: {list_file}")
    names = []
    for raw in list_file.read_text().splitlines():
        line = raw.strip().rstrip("/")
        if line:
            names.append(line.split("/")[-1])
    return names


def read_vip_video(root, name: str, *, size=None, max_frames: int | None = None) -> dict:
    """Frames and part labels of one VIP video.

    Args:
        root: the ``VIP_Fine`` folder.
        name: video name (a folder of ``Images/``).
        size: None (keep), an int (short side) or ``(height, width)``; frames are resized
            bilinearly (antialiased), labels by nearest neighbour.
        max_frames: keep only the first frames (quick looks; the benchmark uses all).

    Returns:
        dict with ``frames`` float ``(T, 3, H, W)`` in [0, 1], ``labels`` int64 ``(T, H, W)``
        (-1 = not annotated), ``has_label`` bool ``(T,)``, ``name``, ``frame_names`` and
        ``orig_size`` ``(H0, W0)``.

    Raises:
        FileNotFoundError: missing folders; ValueError: first frame not annotated, label and
        frame sizes differ, or a colour label image.
    """
    images, labels_dir = _vip_dirs(root)
    folder = images / name
    if not folder.is_dir():
        raise FileNotFoundError(f"VIP video folder not found: {folder}")
    reader = FrameFolderReader(folder)
    n = reader.num_frames if max_frames is None else min(reader.num_frames, int(max_frames))
    if n == 0:
        raise ValueError(f"no frames in {folder}")
    files = reader.files[:n]
    frames = reader.get_frames(np.arange(n))  # (T, H0, W0, 3) uint8
    h0, w0 = frames.shape[1:3]
    labels = np.full((n, h0, w0), -1, np.int64)
    has = np.zeros(n, bool)
    for t, f in enumerate(files):
        png = labels_dir / name / (f.stem + ".png")
        if png.is_file():
            lab = read_label_png(png)
            if lab.shape != (h0, w0):
                raise ValueError(f"label {png} is {lab.shape[1]}x{lab.shape[0]}, its frame is {w0}x{h0}")
            labels[t], has[t] = lab, True
    if not has[0]:
        first = labels_dir / name / (files[0].stem + ".png")
        raise ValueError(f"the first frame of {name} has no label ({first}); propagation needs it")
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H0, W0)
    y = torch.from_numpy(labels)  # (T, H0, W0)
    out_size = target_size((h0, w0), size)
    return {
        "frames": resize_frames(x, out_size),  # (T, 3, H, W)
        "labels": resize_labels(y, out_size),  # (T, H, W)
        "has_label": torch.from_numpy(has),
        "name": name,
        "frame_names": [f.name for f in files],
        "orig_size": (h0, w0),
    }


class VIPDataset(Dataset):
    """The videos of a VIP split, one item per video (see :func:`read_vip_video`).

    Args:
        root: the ``VIP_Fine`` folder.
        split: ``"train"``, ``"val"`` or ``"test"`` (read from ``lists/``), or a list of video names.
        size, max_frames: as in :func:`read_vip_video`.
    """

    def __init__(self, root, split: str | Sequence[str] = "val", *, size=None, max_frames: int | None = None):
        _vip_dirs(root)
        self.root = Path(root)
        self.videos = vip_videos(root, split) if isinstance(split, str) else [str(v) for v in split]
        if not self.videos:
            raise ValueError(f"no VIP videos for split {split!r} in {root}")
        missing = [v for v in self.videos if not (self.root / "Images" / v).is_dir()]
        if missing:
            example = self.root / "Images" / missing[0]
            raise FileNotFoundError(f"{len(missing)} listed VIP videos have no frame folder, e.g. {example}")
        self.size, self.max_frames = size, max_frames
        self.num_classes = VIP_NUM_CLASSES

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        return read_vip_video(self.root, self.videos[index], size=self.size, max_frames=self.max_frames)
