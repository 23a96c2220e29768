"""JHMDB: 15 body joints to propagate through a video (keypoint label propagation).

The third propagation benchmark of VideoMAC: the joints of the first frame are given, a model
carries them to the later frames, and the score is PCK (the share of joints predicted within
``alpha`` times the person's size of the truth). The dataset, as distributed::

    JHMDB/
      Rename_Images/<action>/<video>/00001.png ...      frames
      joint_positions/<action>/<video>/joint_positions.mat
      splits/<action>_test_split<k>.txt                 "<video>.avi <1|2>" (1 = train, 2 = test)

Each ``joint_positions.mat`` holds ``pos_img``, shape ``(2, 15, T)``: x (row 0) and y (row 1) of
15 joints in every frame, in MATLAB's 1-based pixel coordinates. :func:`read_joint_positions`
turns that into ``(T, 15, 2)`` (x, y) 0-based, as the usual evaluation code does (it subtracts
1). Resizing the frames scales x by ``new_w / w`` and y by ``new_h / h``.

Evaluation code often works from a list of ``<frame folder> <mat file>`` lines;
:func:`read_pair_list` reads one, :func:`jhmdb_videos` builds the pairs from the split files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from maskvid_edu.data.augment import resize_frames, target_size
from maskvid_edu.data.decoders import FrameFolderReader

__all__ = [
    "JHMDB_JOINTS",
    "read_joint_positions",
    "read_jhmdb_video",
    "jhmdb_videos",
    "read_pair_list",
    "JHMDBDataset",
]

# joint order of pos_img's second axis
JHMDB_JOINTS = (
    "neck", "belly", "face",
    "right shoulder", "left shoulder", "right hip", "left hip",
    "right elbow", "left elbow", "right knee", "left knee",
    "right wrist", "left wrist", "right ankle", "left ankle",
)


def read_joint_positions(mat_path) -> np.ndarray:
    """``pos_img`` of a ``joint_positions.mat`` → float32 ``(T, 15, 2)``, (x, y), 0-based pixels."""
    from scipy.io import loadmat

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise FileNotFoundError(f"JHMDB joint file not found: {mat_path}")
    try:
        mat = loadmat(str(mat_path))
    except Exception as err:
        raise ValueError(f"{mat_path}: not a readable .mat file ({type(err).__name__}: {err})") from None
    if "pos_img" not in mat:
        raise ValueError(f"{mat_path}: no 'pos_img' variable (found {sorted(k for k in mat if not k.startswith('__'))})")
    pos = np.asarray(mat["pos_img"], dtype=np.float64)
    if pos.ndim == 2:  # a one-frame video saved without its last axis
        pos = pos[..., None]
    if pos.ndim != 3 or pos.shape[0] != 2 or pos.shape[1] != len(JHMDB_JOINTS):
        raise ValueError(f"{mat_path}: pos_img must be (2, 15, T), got {pos.shape}")
    return (pos.transpose(2, 1, 0) - 1.0).astype(np.float32)  # (T, 15, 2)


def read_jhmdb_video(frames_dir, mat_path, *, size=None, max_frames: int | None = None) -> dict:
    """Frames and joints of one JHMDB video.

    Args:
        frames_dir: folder of the frames (``Rename_Images/<action>/<video>``).
        mat_path: its ``joint_positions.mat``.
        size: None (keep), an int (short side) or ``(height, width)``.
        max_frames: keep only the first frames.

    Returns:
        dict with ``frames`` float ``(T, 3, H, W)`` in [0, 1], ``keypoints`` float ``(T, 15, 2)``
        (x, y in the output pixels), ``orig_size`` ``(H0, W0)`` and ``name``. When the frame count
        and ``pos_img``'s ``T`` differ, both are cut to the shorter one with a warning.
    """
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"JHMDB frame folder not found: {frames_dir}")
    kp = read_joint_positions(mat_path)  # (T, 15, 2)
    reader = FrameFolderReader(frames_dir)
    n = min(reader.num_frames, kp.shape[0])
    if reader.num_frames != kp.shape[0]:
        warnings.warn(
            f"{frames_dir} has {reader.num_frames} frames but {mat_path} has joints for {kp.shape[0]}; using {n}",
            UserWarning,
            stacklevel=2,
        )
    if max_frames is not None:
        n = min(n, int(max_frames))
    if n == 0:
        raise ValueError(f"no frames to read in {frames_dir}")
    frames = reader.get_frames(np.arange(n))  # (T, H0, W0, 3) uint8
    h0, w0 = frames.shape[1:3]
    h, w = target_size((h0, w0), size)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H0, W0)
    keypoints = torch.from_numpy(kp[:n].copy())  # (T, 15, 2)
    keypoints[..., 0] *= w / w0
    keypoints[..., 1] *= h / h0
    return {
        "frames": resize_frames(x, (h, w)),  # (T, 3, H, W)
        "keypoints": keypoints,
        "orig_size": (h0, w0),
        "name": frames_dir.name,
    }


def jhmdb_videos(root, split: int = 1, subset: str = "test") -> list[tuple[str, str]]:
    """``(frame folder, mat file)`` pairs of a JHMDB split, from ``<root>/splits``."""
    root = Path(root)
    for sub in ("Rename_Images", "joint_positions", "splits"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"JHMDB folder not found: {root / sub}")
    if split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3, got {split!r}")
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in (root / "splits").iterdir() if p.name.endswith(suffix))
    if not files:
        raise FileNotFoundError(f"no '*{suffix}' files in {root / 'splits'}")
    want = "1" if subset == "train" else "2"
    pairs = []
    for f in files:
        action = f.name[: -len(suffix)]
        for no, raw in enumerate(f.read_text().splitlines(), 1):
            tok = raw.split()
            if not tok:
                continue
            if len(tok) != 2 or tok[1] not in ("1", "2"):
                raise ValueError(f"{f}:{no}: expected '<video>.avi <1|2>', got {raw!r}")
            if tok[1] == want:
                video = Path(tok[0]).stem
                pairs.append((str(root / "Rename_Images" / action / video),
                              str(root / "joint_positions" / action / video / "joint_positions.mat")))
    return pairs


def read_pair_list(list_file) -> list[tuple[str, str]]:
    """``<frame folder> <mat file>`` lines (relative paths are relative to the list's folder)."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"JHMDB list not found: {list_file}")
    pairs = []
    for no, raw in enumerate(list_file.read_text().splitlines(), 1):
        tok = raw.split()
        if not tok or tok[0].startswith("#"):
            continue
        if len(tok) != 2:
            raise ValueError(f"{list_file}:{no}: expected '<frame folder> <mat file>', got {raw!r}")
        pairs.append(tuple(str(p if Path(p).is_absolute() else list_file.parent / p) for p in tok))
    return pairs


class JHMDBDataset(Dataset):
    """JHMDB videos for keypoint propagation, one item per video (:func:`read_jhmdb_video`).

    Args:
        videos: a list file (:func:`read_pair_list`) or a sequence of ``(frame folder, mat file)``
            pairs (:func:`jhmdb_videos`).
        size, max_frames: as in :func:`read_jhmdb_video`.
    """

    def __init__(self, videos, *, size=None, max_frames: int | None = None):
        pairs = read_pair_list(videos) if isinstance(videos, (str, Path)) else [tuple(map(str, v)) for v in videos]
        if not pairs:
            raise ValueError("no JHMDB videos given")
        for frames_dir, mat in pairs:
            if not Path(frames_dir).is_dir():
                raise FileNotFoundError(f"JHMDB frame folder not found: {frames_dir}")
            if not Path(mat).is_file():
                raise FileNotFoundError(f"JHMDB joint file not found: {mat}")
        self.pairs: Sequence[tuple[str, str]] = pairs
        self.size, self.max_frames = size, max_frames

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        frames_dir, mat = self.pairs[index]
        return read_jhmdb_video(frames_dir, mat, size=self.size, max_frames=self.max_frames)
