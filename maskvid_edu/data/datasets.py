"""Action-recognition style video datasets, with bad files handled in the open.

One :class:`VideoDataset` reads the list formats people already have and serves a video in the
four ways the papers use one:

``mode="pretrain"``  ``{"video"}``: one clip (VideoMAE: 16 frames every 4th, multi-scale crop),
                     optionally ``num_repeats`` augmented views of the same decoded clip
                     (VideoMAE V2's repeated sampling), stacked ``(R, C, T, H, W)`` or as a list
``mode="train"``     ``{"video", "label"}``: random clip, random resized crop + flip (fine-tuning)
``mode="val"``       ``{"video", "label"}``: the centre clip, short side resize + centre crop
``mode="test"``      ``{"video", "label"}``: ``test_clips`` evenly spaced clips x ``test_crops``
                     spatial crops, stacked ``(V, C, T, H, W)`` with ``V = clips * crops``
                     (clip-major); VideoMAE tests Kinetics with 5 x 3

Every item also carries ``"index"`` (its position in the list) and ``"events"``, a bool vector
over :data:`EVENTS` saying which tolerated oddities the video had.

**Where the samples come from**: :mod:`~maskvid_edu.data.lists` reads the list formats
(``path label`` lines, CSV, Kinetics, UCF101, HMDB51, Something-Something V2, folders); the
``from_*`` constructors below call its readers.

**Bad data policy.** Nothing bad ends an epoch, and nothing bad is silently replaced by another
sample (the reference loaders retry with a random index, which hides broken files and skews the
data):

=====================  ======================================================================
what                   what happens
=====================  ======================================================================
malformed list line    dropped when the dataset is built; a :class:`BadVideoWarning` names
                       ``file:line`` and the problem; counted as ``malformed_line``
missing file           the item is **skipped**: ``__getitem__`` returns a :class:`SkippedItem`
empty (0-byte) file    (index, path, reason, detail) and warns with the path;
unreadable / corrupt   :func:`collate_skip_bad` drops it from the batch and keeps it in
zero frames            ``batch["skipped"]``; counted under the reason (``missing_file``,
truncated data         ``empty_file``, ``unreadable``, ``zero_frames``, ``decode_error``)
too short              used, last frame repeated (:mod:`~maskvid_edu.data.sampling`); counted
                       as ``too_short`` — unless the file was cut off (its header promises more
                       frames than it holds): then it is ``decode_error``, never padded
decord misreads        the file is read with PyAV instead (the decoder checks decord once per
                       file); used, counted as ``decord_mismatch``
grayscale              used, the gray channel repeated into R, G, B by the decoder; counted as
                       ``grayscale`` (a clip whose decoded frames have R = G = B everywhere)
odd size               used, the crop/resize makes the output size; counted as ``odd_size``
                       (an odd height or width, which 4:2:0 H.264 cannot even store)
=====================  ======================================================================

A truncated file shows up in one of three ways, depending on where the container keeps its index:
cut before it (an MP4 whose ``moov`` box is at the end) it is ``unreadable``; with the index lost
but the frames in front intact (AVI) it opens, and a clip reaching past the cut is a
``decode_error``; a WebM cut mid-stream simply opens as a shorter video.

With ``strict=True`` the first bad line or file raises instead (its error names the path).

**Counting with DataLoader workers.** Workers are separate processes, so a counter inside the
dataset would only count what the main process loaded itself. Instead each item carries its own
outcome (``SkippedItem`` or the ``events`` flags) through the batch, and the counting happens in
the main process: :meth:`VideoDataset.loader` returns a loader that feeds every batch to
``dataset.stats`` (a :class:`DataStats`), drops batches left empty, and warns with a summary at
the end of an epoch that had skips. With a DataLoader of your own, use
``collate_fn=collate_skip_bad`` and call ``dataset.stats.update(batch)`` on every batch. The
counts are then the same for any ``num_workers``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from maskvid_edu.data.augment import ClipAugment, ClipTransform
from maskvid_edu.data.decoders import DECODER_EVENTS, VideoDecodeError, decoder_events, open_video
from maskvid_edu.data.lists import (
    BadVideoWarning,
    IgnoredPath,
    MalformedLine,
    ParsedList,
    VideoSample,
    folder_samples,
    hmdb51_samples,
    read_video_list,
    ssv2_samples,
    ucf101_samples,
)
from maskvid_edu.data.sampling import (
    dense_clip,
    frame_pair,
    motion_clip,
    segment_clip,
    segment_views,
    uniform_clips,
)

__all__ = [
    "is_grayscale",
    "EVENTS",
    "SKIP_REASONS",
    "SkippedItem",
    "DataStats",
    "UnusableDataError",
    "collate_skip_bad",
    "first_usable",
    "VideoDataset",
    "SkipAwareLoader",
]

EVENTS = ("too_short", "grayscale", "odd_size") + DECODER_EVENTS  # decord_mismatch: read with PyAV instead
SKIP_REASONS = ("missing_file", "empty_file", "unreadable", "zero_frames", "decode_error", "returned_none")
MODES = ("pretrain", "train", "val", "test")
SAMPLINGS = ("dense", "segment", "pair", "motion")


# =============================================================================================
# skipping and counting
# =============================================================================================
def is_grayscale(frames: np.ndarray) -> bool:
    """R = G = B at every pixel of ``frames (U, H, W, 3)``. A colour clip almost always differs
    somewhere in its first frame, so that frame is compared first (a 16-frame clip then costs
    1/16 of the full comparison)."""
    for part in (frames[:1], frames[1:]):
        if not (np.array_equal(part[..., 0], part[..., 1]) and np.array_equal(part[..., 1], part[..., 2])):
            return False
    return True


@dataclass(frozen=True)
class SkippedItem:
    """What ``__getitem__`` returns for a video it cannot use (instead of a substitute sample)."""

    index: int
    path: str
    reason: str
    detail: str = ""


def first_usable(dataset, limit: int = 32):
    """The first item of ``dataset`` that is not skipped (a dict), looking at most ``limit``
    items; None when all of those were skipped (or ``None``)."""
    for index in range(min(len(dataset), limit)):
        item = dataset[index]
        if isinstance(item, dict):
            return item
    return None


def collate_skip_bad(items: Sequence) -> dict:
    """Collate the usable items, keep the skipped ones aside.

    ``None`` items (from other datasets) and :class:`SkippedItem` s are removed before
    ``default_collate``; they travel on in ``batch["skipped"]`` (a list of ``SkippedItem``,
    ``None`` recorded with reason ``returned_none``) so the main process can count them. A batch
    in which nothing was usable is ``{"skipped": [...]}`` with no ``"video"``.
    """
    good, skipped = [], []
    for it in items:
        if it is None:
            skipped.append(SkippedItem(-1, "", "returned_none", "the dataset returned None"))
        elif isinstance(it, SkippedItem):
            skipped.append(it)
        else:
            good.append(it)
    batch = default_collate(good) if good else {}
    if not isinstance(batch, dict):
        raise TypeError(f"collate_skip_bad expects dict items, got {type(good[0]).__name__}")
    batch["skipped"] = skipped
    return batch


#: The usable-data rule (:meth:`DataStats.check_usable`, which the trainer calls on every batch):
#: training stops when a whole epoch yields no usable clip, or when more than this share of the
#: clips loaded so far was skipped, once at least ``MIN_ITEMS_FOR_SHARE`` clips were loaded.
MAX_SKIPPED_SHARE = 0.5
MIN_ITEMS_FOR_SHARE = 64


class UnusableDataError(ValueError):
    """Training data that yields too few usable clips to train on (see :data:`MAX_SKIPPED_SHARE`)."""


class DataStats:
    """Counts of what happened to the samples, kept in the main process.

    ``malformed`` (list lines dropped at construction) persists; the per-epoch counters
    (``seen``, ``used``, ``skipped``, ``events``) are reset by :meth:`reset` — the loader does
    that when a new epoch starts. ``source`` and ``root`` (the list file or folder the samples
    came from, and the folder their paths are relative to) only serve the messages.
    """

    def __init__(self, malformed: Iterable[MalformedLine] = (), *, source=None, root=None):
        self.malformed: list[MalformedLine] = list(malformed)
        self.source = None if source is None else str(source)
        self.root = None if root is None else str(root)
        self.reset()

    def reset(self) -> None:
        self.seen = 0
        self.used = 0
        self.skipped: Counter = Counter()
        self.events: Counter = Counter()
        self.skipped_items: list[SkippedItem] = []
        self.begin_epoch()

    def begin_epoch(self) -> None:
        """Mark the start of an epoch (for a loop that keeps counting across epochs, like the
        trainer's): :meth:`check_usable` judges the epoch by what was counted after this."""
        self._epoch_start = (self.seen, self.used)

    def check_usable(self, *, epoch_ended: bool = False) -> None:
        """Enforce the usable-data rule; raise :class:`UnusableDataError` when it is broken.

        Broken when more than :data:`MAX_SKIPPED_SHARE` of the clips counted so far were skipped
        (once :data:`MIN_ITEMS_FOR_SHARE` were counted: a few bad files at the start of a good
        list are not a verdict), or — with ``epoch_ended`` — when the epoch since
        :meth:`begin_epoch` yielded no usable clip at all. Without this rule, a list whose every
        path is wrong (a mistyped ``--root``) would start epoch after epoch, skipping every clip.
        The error names the list, the root, the counts per reason and three skipped paths.
        """
        skipped = self.seen - self.used
        epoch_seen, epoch_used = self.seen - self._epoch_start[0], self.used - self._epoch_start[1]
        if epoch_ended and epoch_seen > 0 and epoch_used == 0:
            why = f"a whole epoch ({epoch_seen} clips) yielded no usable clip"
        elif self.seen >= MIN_ITEMS_FOR_SHARE and skipped > MAX_SKIPPED_SHARE * self.seen:
            why = (f"{skipped} of the first {self.seen} clips loaded were skipped, more than the "
                   f"{MAX_SKIPPED_SHARE:.0%} the data may lose")
        else:
            return
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none recorded"
        examples = "; ".join(f"{s.path} ({s.reason})" for s in self.skipped_items[:3]) or "none recorded"
        source = repr(self.source) if self.source is not None else "unknown (the dataset was not built from a list)"
        root = repr(self.root) if self.root is not None else "unknown"
        raise UnusableDataError(
            f"stopped: {why}. List: {source}; root: {root}; skipped per reason: {reasons}; "
            f"e.g. {examples}. Check that the root folder is right (relative paths in the list are "
            "joined to it) and that the files are videos or frame folders"
        )

    def record(self, item) -> None:
        """Count one item as returned by ``dataset[i]`` (for loops without a DataLoader)."""
        if item is None or isinstance(item, SkippedItem):
            self.update(collate_skip_bad([item]))
        else:
            self.update({"events": item["events"][None], "skipped": []})

    def update(self, batch: dict) -> None:
        """Count a batch made by :func:`collate_skip_bad`."""
        skipped = batch.get("skipped", [])
        events = batch.get("events")
        used = 0 if events is None else int(events.shape[0])
        self.seen += used + len(skipped)
        self.used += used
        for s in skipped:
            self.skipped[s.reason] += 1
            self.skipped_items.append(s)
        if events is not None and used:
            for name, n in zip(EVENTS, torch.as_tensor(events).sum(0).tolist()):
                if n:
                    self.events[name] += int(n)

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "used": self.used,
            "skipped": dict(self.skipped),
            "events": dict(self.events),
            "malformed_line": len(self.malformed),
        }

    def summary(self, max_paths: int = 10) -> str:
        lines = [f"{self.seen} samples loaded, {self.used} used, {sum(self.skipped.values())} skipped"]
        if self.skipped:
            lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
            for s in self.skipped_items[:max_paths]:
                detail = s.detail if len(s.detail) <= 160 else s.detail[:157] + "..."
                lines.append(f"  {s.reason}: {s.path}" + (f" ({detail})" if detail else ""))
            if len(self.skipped_items) > max_paths:
                lines.append(f"  ... and {len(self.skipped_items) - max_paths} more")
        if self.events:
            lines.append("handled: " + ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())))
        if self.malformed:
            lines.append(f"malformed list lines dropped when the dataset was built: {len(self.malformed)}")
            lines += [f"  {m}" for m in self.malformed[:3]] + (["  ..."] if len(self.malformed) > 3 else [])
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"DataStats({self.as_dict()})"


# =============================================================================================
# the dataset
# =============================================================================================
class VideoDataset(Dataset):
    """Clips from a list of videos, for pre-training, fine-tuning, validation and testing.

    Args:
        samples: the :class:`VideoSample` list (see the ``from_*`` constructors), or a
            :class:`ParsedList` (its malformed lines go into ``stats``).
        mode: ``"pretrain"``, ``"train"``, ``"val"`` or ``"test"`` (see the module docstring).
        sampling: ``"dense"`` (``clip_len`` frames every ``stride``-th), ``"segment"`` (one frame
            from each of ``clip_len`` parts; SSv2), ``"pair"`` (two frames ``gap`` apart, or a
            random gap up to ``max_gap``; VideoMAC) or ``"motion"`` (``clip_len + 1`` frames; MAM2).
            Validation and test accept ``dense`` and ``segment``.
        clip_len: frames per clip (16 in VideoMAE; the demos use 4–8).
        stride: frame step for dense/motion sampling (4 on Kinetics, 2 on SSv2 frames).
        gap, max_gap: frame-pair distance for ``sampling="pair"``.
        size: output side in pixels (224 in the papers).
        transform: ``callable(frames uint8 (T, H, W, 3), generator) -> tensor``; default by mode:
            pretrain ``ClipTransform("multiscale")``, train ``ClipTransform("resized_crop")``,
            val ``ClipTransform("center")``, test ``ClipTransform("three_crop")`` (or ``"center"``
            when ``test_crops == 1``).
        augment: train mode's default transform only: a
            :class:`~maskvid_edu.data.augment.ClipAugment` (RandAugment, random erasing; what
            ``maskvid-edu finetune`` turns on for real videos); None = off.
        num_repeats: pre-training views per decoded clip (VideoMAE V2 uses 4).
        stack_repeats: stack the repeated views into ``(R, C, T, H, W)`` (else a list of R).
        test_clips, test_crops: test views (5 x 3 on Kinetics; 2 x 3 on SSv2).
        backend: decoder backend (see :func:`~maskvid_edu.data.decoders.open_video`).
        strict: raise on the first bad video instead of skipping it.
        seed: if set, item ``i`` in epoch ``e`` draws from a generator seeded by ``(seed, e, i)``,
            so clips and crops do not depend on workers or order; if None, torch's global RNG
            (which DataLoader seeds differently in each worker).
        classes: class names in label order (kept as ``self.classes``; taken from a
            :class:`ParsedList` when it has them).
    """

    def __init__(
        self,
        samples,
        *,
        mode: str = "pretrain",
        sampling: str = "dense",
        clip_len: int = 16,
        stride: int = 4,
        gap: int = 1,
        max_gap: int | None = None,
        size: int = 224,
        transform: Callable | None = None,
        augment: ClipAugment | None = None,
        num_repeats: int = 1,
        stack_repeats: bool = True,
        test_clips: int = 5,
        test_crops: int = 3,
        backend: str = "auto",
        strict: bool = False,
        seed: int | None = None,
        classes: Sequence[str] | None = None,
    ):
        malformed: list[MalformedLine] = []
        ignored: list[IgnoredPath] = []
        if isinstance(samples, ParsedList):
            malformed, classes = samples.malformed, classes if classes is not None else samples.classes
            ignored = samples.ignored
            samples = samples.samples
        samples = list(samples)
        if not all(isinstance(s, VideoSample) for s in samples):
            raise TypeError("samples must be VideoSample objects (see read_video_list and the from_* constructors)")
        if not samples:
            raise ValueError("the dataset has no samples (empty list, or every line was malformed)")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if mode in ("val", "test") and sampling not in ("dense", "segment"):
            raise ValueError(f"mode={mode!r} supports sampling 'dense' or 'segment', got {sampling!r}")
        for name, value in (("clip_len", clip_len), ("stride", stride), ("gap", gap), ("size", size),
                            ("num_repeats", num_repeats), ("test_clips", test_clips), ("test_crops", test_crops)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_repeats > 1 and mode != "pretrain":
            raise ValueError(f"num_repeats > 1 (repeated sampling) is a pre-training option; mode is {mode!r}")
        if max_gap is not None and (not isinstance(max_gap, int) or max_gap < 1):
            raise ValueError(f"max_gap must be a positive int or None, got {max_gap!r}")
        if backend not in ("auto", "decord", "pyav", "frames"):
            raise ValueError(f"backend must be 'auto', 'decord', 'pyav' or 'frames', got {backend!r}")
        if augment is not None and (mode != "train" or transform is not None):
            raise ValueError("augment goes with mode='train' and its default transform (pass it to your own transform instead)")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable(frames, generator), got {type(transform).__name__}")
        labelled = [s.label is not None for s in samples]
        if mode in ("train", "val") and not all(labelled):
            first = samples[labelled.index(False)].path
            raise ValueError(f"mode={mode!r} needs a label for every sample; {first} has none")
        if mode == "test" and any(labelled) and not all(labelled):
            first = samples[labelled.index(False)].path
            raise ValueError(f"some samples are labelled and some are not (e.g. {first}); use one kind per dataset")

        self.samples = samples
        self.classes = list(classes) if classes is not None else None
        self.mode, self.sampling = mode, sampling
        self.clip_len, self.stride, self.gap, self.max_gap = clip_len, stride, gap, max_gap
        self.size, self.num_repeats, self.stack_repeats = size, num_repeats, stack_repeats
        self.test_clips, self.test_crops = test_clips, test_crops
        self.backend, self.strict, self.seed = backend, strict, seed
        self.epoch = 0
        if transform is None:
            flip = 0.0 if sampling == "segment" else 0.5  # SSv2-style sampling: left/right matter
            transform = {
                "pretrain": ClipTransform("multiscale", size),
                "train": ClipTransform("resized_crop", size, flip=flip, augment=augment),
                "val": ClipTransform("center", size),
                "test": (
                    ClipTransform("three_crop", size, num_crops=test_crops)
                    if test_crops > 1
                    else ClipTransform("center", size)
                ),
            }[mode]
        self.transform = transform
        self.stats = DataStats(malformed)
        self.ignored = list(ignored)  # paths of a dataset folder that are not videos (never read)

    # -- constructors for the common formats --------------------------------------------------
    @classmethod
    def from_list(cls, list_file, root=None, *, classes=None, ext: str = ".mp4", **kwargs) -> "VideoDataset":
        """From a ``path label`` list, a ``path,label`` CSV or a Kinetics CSV (:func:`read_video_list`)."""
        parsed = read_video_list(list_file, root, classes=classes, ext=ext, strict=kwargs.get("strict", False))
        if not parsed.samples:
            what = (f"all {len(parsed.malformed)} of its entries are malformed (first: {parsed.malformed[0]})"
                    if parsed.malformed else "it holds no entries (only blank or '#' lines)")
            raise ValueError(f"the dataset has no samples: video list {str(list_file)!r}: {what}")
        dataset = cls(parsed, **kwargs)
        dataset.stats.source, dataset.stats.root = str(list_file), str(root if root is not None else Path(list_file).parent)
        return dataset

    @classmethod
    def ucf101(cls, video_root, split_dir, split: int = 1, subset: str = "train", **kwargs) -> "VideoDataset":
        """From UCF101's official split files (:func:`ucf101_samples`)."""
        return cls(ucf101_samples(video_root, split_dir, split, subset, strict=kwargs.get("strict", False)), **kwargs)

    @classmethod
    def hmdb51(cls, video_root, split_dir, split: int = 1, subset: str = "train", **kwargs) -> "VideoDataset":
        """From HMDB51's official split files (:func:`hmdb51_samples`)."""
        return cls(hmdb51_samples(video_root, split_dir, split, subset, strict=kwargs.get("strict", False)), **kwargs)

    @classmethod
    def ssv2(cls, video_root, annotation_dir, subset: str = "train", **kwargs) -> "VideoDataset":
        """From Something-Something V2's JSON files (:func:`ssv2_samples`); ``sampling="segment"`` by default."""
        kwargs.setdefault("sampling", "segment")
        return cls(ssv2_samples(video_root, annotation_dir, subset, strict=kwargs.get("strict", False)), **kwargs)

    @classmethod
    def from_folder(cls, root, *, labelled: bool = True, **kwargs) -> "VideoDataset":
        """From ``<root>/<class>/<video or frame folder>``, or with ``labelled=False`` also a flat
        folder of videos (:func:`folder_samples`; what it leaves out is in ``self.ignored``)."""
        dataset = cls(folder_samples(root, labelled=labelled), **kwargs)
        dataset.stats.source = dataset.stats.root = str(root)
        return dataset

    # -- sampling ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Epoch number mixed into the per-item seed (when ``seed`` is set)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator | None:
        """The random source of item ``index`` in the current epoch (None: torch's global RNG)."""
        if self.seed is None:
            return None
        state = np.random.SeedSequence([int(self.seed), self.epoch, int(index)]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def frame_indices(self, num_frames: int, generator=None):
        """Frame numbers for one item: ``(indices (T,) or (V, T), padded)``."""
        T, s = self.clip_len, self.sampling
        if self.mode in ("pretrain", "train"):
            if s == "dense":
                return dense_clip(num_frames, T, self.stride, generator=generator)
            if s == "segment":
                return segment_clip(num_frames, T, generator=generator)
            if s == "pair":
                return frame_pair(num_frames, self.gap, max_gap=self.max_gap, generator=generator)
            return motion_clip(num_frames, T, self.stride, generator=generator)
        if self.mode == "val":
            if s == "dense":
                return dense_clip(num_frames, T, self.stride, mode="center")
            return segment_clip(num_frames, T, mode="center")
        if s == "dense":
            return uniform_clips(num_frames, T, self.stride, self.test_clips)
        return segment_views(num_frames, T, self.test_clips)

    # -- loading -------------------------------------------------------------------------------
    def _skip(self, index: int, path: str, reason: str, detail: str, err: BaseException) -> SkippedItem:
        if self.strict:
            raise err
        warnings.warn(f"skipping {path}: {reason} ({detail})", BadVideoWarning, stacklevel=3)
        return SkippedItem(index, path, reason, detail)

    def load_frames(self, index: int, generator=None):
        """Decode item ``index``: ``(frames uint8 (U, H, W, 3), indices into frames, padded)``.

        Raises the decoder's errors (``FileNotFoundError``, ``VideoDecodeError``).
        """
        path = self.samples[index].path
        with open_video(path, self.backend) as reader:
            idx, padded = self.frame_indices(reader.num_frames, generator)
            if padded:  # a cut-off file is broken data, not a short video: never padded
                reader.check_not_truncated()
            unique, inverse = np.unique(idx, return_inverse=True)
            frames = reader.get_frames(unique)  # (U, H, W, 3)
        return frames, inverse.reshape(idx.shape), padded

    def __getitem__(self, index: int):
        sample = self.samples[index]
        g = self.generator(index)
        try:
            frames, where, padded = self.load_frames(index, g)
        except FileNotFoundError as err:
            return self._skip(index, sample.path, "missing_file", "no such file or folder", err)
        except VideoDecodeError as err:
            return self._skip(index, sample.path, err.kind, err.reason, err)
        h, w = frames.shape[1:3]
        gray = is_grayscale(frames)
        decoded = decoder_events(sample.path)  # what the decoder noticed about this file
        events = torch.tensor([bool(padded), gray, bool(h % 2 or w % 2)] + [e in decoded for e in DECODER_EVENTS])
        item = {"index": index, "events": events}
        if self.mode == "test":
            clips = where if where.ndim == 2 else where[None]
            views = []
            for c in clips:  # each clip, then its spatial crops
                v = self.transform(frames[c], g)
                views.extend(v if v.dim() == 5 else v[None])
            item["video"] = torch.stack(views)  # (V, C, T, H, W)
        elif self.mode == "pretrain" and self.num_repeats > 1:
            clip = frames[where]  # (T, H, W, 3), decoded once
            views = [self.transform(clip, g) for _ in range(self.num_repeats)]
            item["video"] = torch.stack(views) if self.stack_repeats else views  # (R, C, T, H, W)
        else:
            item["video"] = self.transform(frames[where], g)  # (C, T, H, W)
        if self.mode != "pretrain" and sample.label is not None:
            item["label"] = sample.label
        return item

    # -- loading loops -------------------------------------------------------------------------
    def loader(self, batch_size: int = 8, *, shuffle: bool | None = None, num_workers: int = 0, **kwargs) -> "SkipAwareLoader":
        """A DataLoader with :func:`collate_skip_bad` whose batches are counted in ``self.stats``.

        ``shuffle`` defaults to True for pretrain/train and False for val/test; other keyword
        arguments go to :class:`torch.utils.data.DataLoader`.
        """
        if shuffle is None:
            shuffle = self.mode in ("pretrain", "train")
        dl = DataLoader(self, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                        collate_fn=collate_skip_bad, **kwargs)
        return SkipAwareLoader(dl, self)

    def summary(self) -> str:
        """Counts per reason for the current (or last) epoch; see :class:`DataStats`. Paths of a
        dataset folder that were not taken as videos are listed after them."""
        text = self.stats.summary()
        if self.ignored:
            text += f"\nnot videos, left out when the dataset was built: {len(self.ignored)}"
            text += "".join(f"\n  {i}" for i in self.ignored[:3]) + ("\n  ..." if len(self.ignored) > 3 else "")
        return text

    def __repr__(self) -> str:
        return (
            f"VideoDataset({len(self)} videos, mode={self.mode!r}, sampling={self.sampling!r}, "
            f"clip_len={self.clip_len}, stride={self.stride}, transform={self.transform!r})"
        )


class SkipAwareLoader:
    """Iterate a DataLoader built on :func:`collate_skip_bad`, counting into ``dataset.stats``.

    Each ``iter()`` is an epoch: it resets the per-epoch counters, feeds every batch to
    ``stats.update``, leaves out batches with nothing usable, and at the end warns with
    ``dataset.summary()`` if anything was skipped — or raises :class:`UnusableDataError` when the
    usable-data rule is broken (:meth:`DataStats.check_usable`, the same rule the trainer
    applies). A completed pass advances ``dataset.epoch``
    by one, so seeded datasets draw new clips and crops each epoch (call ``dataset.set_epoch`` to
    choose one; workers see it unless ``persistent_workers=True``).
    """

    def __init__(self, dataloader: DataLoader, dataset: VideoDataset, *, warn: bool = True):
        self.dataloader, self.dataset, self.warn = dataloader, dataset, warn

    def __len__(self) -> int:
        return len(self.dataloader)

    def __iter__(self) -> Iterator[dict]:
        stats = self.dataset.stats
        stats.reset()
        for batch in self.dataloader:
            stats.update(batch)
            stats.check_usable()
            if "video" in batch:
                yield batch
        stats.check_usable(epoch_ended=True)
        self.dataset.set_epoch(self.dataset.epoch + 1)
        if self.warn and stats.skipped:
            warnings.warn("epoch summary: " + self.dataset.summary(), BadVideoWarning, stacklevel=2)
