"""Data the course runs on, with nothing to download.

- :mod:`~maskvid_edu.data.transforms` — ImageNet normalisation and its inverse
- :mod:`~maskvid_edu.data.synthetic`  — seeded videos whose class is decided by motion alone,
  with per-frame instance masks
- :mod:`~maskvid_edu.data.video`      — one clip of a real video in one call; the shipped clip
- :mod:`~maskvid_edu.data.davis`      — the DAVIS-2017 folder layout: export and read back
- :mod:`~maskvid_edu.data.decoders`   — decord / PyAV / frame-folder readers behind one interface
- :mod:`~maskvid_edu.data.sampling`   — which frames make a clip (dense, segment, pair, motion)
- :mod:`~maskvid_edu.data.augment`    — crops and flips shared by all frames of a clip
- :mod:`~maskvid_edu.data.lists`      — the list formats datasets are released with (``path label``,
  CSV, Kinetics, UCF101, HMDB51, SSv2) and folders of videos, read into samples
- :mod:`~maskvid_edu.data.datasets`   — clips from those samples for pre-training and fine-tuning,
  with the skip policy for bad files
- :mod:`~maskvid_edu.data.vip`, :mod:`~maskvid_edu.data.jhmdb` — the other propagation benchmarks

The names below are re-exported here; import the other modules by name (they pull in heavier
dependencies such as torchvision).

Every dataset item is a dict ``{"video": (3, T, H, W) float normalised, "label": int,
"masks": (T, H, W) int64}`` (label and masks where the data has them); the default collate of a
``DataLoader`` stacks a batch into ``(B, 3, T, H, W)``.
"""

from .davis import (
    DAVIS_PALETTE,
    davis_palette,
    list_davis_sequences,
    read_davis_sequence,
    write_davis_dataset,
    write_davis_sequence,
)
from .lists import (
    BadVideoWarning,
    IgnoredPath,
    MalformedLine,
    ParsedList,
    VideoSample,
    folder_samples,
    hmdb51_samples,
    read_video_list,
    ssv2_label,
    ssv2_samples,
    ucf101_samples,
)
from .synthetic import SYNTHETIC_CLASSES, SyntheticClip, SyntheticConfig, SyntheticVideoDataset, render_clip
from .transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
from .video import SHIPPED_CLIP, VideoInfo, clip_indices, read_clip, shipped_clip, video_info

__all__ = [
    "BadVideoWarning",
    "DAVIS_PALETTE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IgnoredPath",
    "MalformedLine",
    "ParsedList",
    "SHIPPED_CLIP",
    "SYNTHETIC_CLASSES",
    "SyntheticClip",
    "SyntheticConfig",
    "SyntheticVideoDataset",
    "VideoInfo",
    "VideoSample",
    "clip_indices",
    "davis_palette",
    "denormalize",
    "folder_samples",
    "hmdb51_samples",
    "list_davis_sequences",
    "normalize",
    "read_clip",
    "read_davis_sequence",
    "read_video_list",
    "render_clip",
    "shipped_clip",
    "ssv2_label",
    "ssv2_samples",
    "ucf101_samples",
    "video_info",
    "write_davis_dataset",
    "write_davis_sequence",
]
