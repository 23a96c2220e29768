"""Spatial augmentation for video clips: one crop, one flip, the same for every frame.

A clip is augmented as a whole: the crop box and the flip are drawn once and applied to all
``T`` frames, so motion inside the clip is left untouched. Functions take either layout

* ``"THWC"`` — ``(T, H, W, 3)``, what the decoders return (uint8), or
* ``"CTHW"`` — ``(3, T, H, W)``, what the models take,

as a ``torch.Tensor`` or a NumPy array, uint8 or float, and return a tensor in the same layout and
dtype (uint8 results are rounded and clamped). The layout is read from where the size-3 axis is;
pass ``layout=`` when both ends are 3 (a three-frame THWC clip).

The recipes of the papers:

==============================  ===================================================================
``multi_scale_crop``            VideoMAE / VideoMAE V2 pre-training (``GroupMultiScaleCrop``): crop
                                sides ``int(short_side * s)`` for ``s`` in (1, .875, .75, .66), height
                                and width scale indices at most ``max_distort`` = 1 apart, the box at
                                one of 13 fixed offsets (corners, centre, edge middles, quarter
                                points), then resized to 224 x 224. No flip.
``random_resized_crop``         fine-tuning (scale 0.08–1, aspect 3/4–4/3, bilinear) and VideoMAC
                                pre-training (scale 0.2–1, bicubic), each followed by a shared
                                horizontal flip with probability 0.5 (not on SSv2, where left and
                                right are part of the label)
``short_side_resize`` +         validation: short side to 224, then the centre 224 x 224
``center_crop``
``spatial_crops``               test: short side to 224, then 3 crops of 224 along the long side
                                (start, middle, end), VideoMAE's three-crop views
``to_model_input``              uint8 ``(T, H, W, 3)`` → float ``(3, T, H, W)``, divided by 255 and
                                normalised with the ImageNet mean and std
                                (:func:`maskvid_edu.data.transforms.normalize`)
:class:`ClipAugment`            VideoMAE fine-tuning's RandAugment (``rand-m7-n4-mstd0.5-inc1``) on
                                the uint8 frames after the crop, and random erasing (probability
                                0.25, random normal pixels) after normalisation, both from
                                ``torchvision.transforms.v2``, one draw for the whole clip
==============================  ===================================================================

:class:`ClipTransform` chains them into the per-sample transforms the datasets use. Every random
choice reads the ``generator`` argument (``torch.Generator``, ``numpy.random.Generator`` or
``None`` for torch's global generator), so a seeded generator reproduces a crop exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from maskvid_edu.data.sampling import Generator, randint, uniform
from maskvid_edu.data.transforms import normalize, normalize_uint8

__all__ = [
    "VIDEOMAE_SCALES",
    "fixed_crop_offsets",
    "multi_scale_crop_params",
    "multi_scale_crop",
    "random_resized_crop_params",
    "resized_crop",
    "random_resized_crop",
    "horizontal_flip",
    "random_horizontal_flip",
    "short_side_resize",
    "center_crop",
    "spatial_crops",
    "to_model_input",
    "ClipTransform",
    "ClipAugment",
    "parse_rand_augment",
    "VIDEOMAE_RAND_AUGMENT",
    "VIDEOMAE_ERASING",
    "target_size",
    "resize_frames",
    "resize_labels",
]

VIDEOMAE_SCALES = (1.0, 0.875, 0.75, 0.66)
_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}


# ---------------------------------------------------------------------------------------------
# layout helpers: everything below works on (T, C, H, W)
# ---------------------------------------------------------------------------------------------
def _infer_layout(video, layout: str | None) -> str:
    if video.ndim != 4:
        raise ValueError(f"video must have 4 dims, (T, H, W, 3) or (3, T, H, W); got shape {tuple(video.shape)}")
    if layout is not None:
        if layout not in ("THWC", "CTHW"):
            raise ValueError(f"layout must be 'THWC' or 'CTHW', got {layout!r}")
        axis = -1 if layout == "THWC" else 0
        if video.shape[axis] != 3:
            raise ValueError(f"layout {layout} needs 3 channels on axis {axis}, got shape {tuple(video.shape)}")
        return layout
    last, first = video.shape[-1] == 3, video.shape[0] == 3
    if last and not first:
        return "THWC"
    if first and not last:
        return "CTHW"
    if first and last:
        raise ValueError(
            f"shape {tuple(video.shape)} is ambiguous (3 at both ends): pass layout='THWC' or layout='CTHW'"
        )
    raise ValueError(f"no colour axis of size 3 at either end of shape {tuple(video.shape)}")


def _to_tchw(video, layout: str | None):
    """→ (x: (T, C, H, W) tensor, layout)."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(np.ascontiguousarray(video))
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"video must be a torch.Tensor or numpy array, got {type(video).__name__}")
    layout = _infer_layout(video, layout)
    x = video.permute(0, 3, 1, 2) if layout == "THWC" else video.permute(1, 0, 2, 3)  # (T, C, H, W)
    return x, layout


def _from_tchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    out = x.permute(0, 2, 3, 1) if layout == "THWC" else x.permute(1, 0, 2, 3)
    return out.contiguous()


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    elif isinstance(size, Sequence) and len(size) == 2:
        h, w = (int(s) for s in size)
    else:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _resize_tchw(x: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize (T, C, H, W) to ``size`` = (h, w), antialiased; uint8 stays uint8."""
    if interpolation not in _INTERP:
        raise ValueError(f"interpolation must be one of {tuple(_INTERP)}, got {interpolation!r}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = _INTERP[interpolation]
    antialias = interpolation != "nearest"
    # uint8 stays uint8 through torch's integer kernels: PIL's filters in fixed point (what the
    # reference pipelines resize with, within 2 levels on ~1 % of pixels) and ~15x faster than
    # resizing float copies, which also drift from PIL on ~20 % of pixels (bicubic by up to 24
    # levels, as PIL clamps between its two passes).
    return TF.resize(x, list(size), interpolation=mode, antialias=antialias)


# ---------------------------------------------------------------------------------------------
# VideoMAE's multi-scale crop
# ---------------------------------------------------------------------------------------------
def fixed_crop_offsets(width: int, height: int, crop_w: int, crop_h: int, more_fix_crop: bool = True) -> list[tuple[int, int]]:
    """The candidate ``(x, y)`` top-left corners of a ``crop_w x crop_h`` box.

    With ``w_step = (width - crop_w) // 4`` and ``h_step = (height - crop_h) // 4``: the four
    corners and the centre, and with ``more_fix_crop`` also the four edge middles and the four
    quarter points (13 in all, duplicates kept, as in the reference).
    """
    ws, hs = (width - crop_w) // 4, (height - crop_h) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
    if more_fix_crop:
        grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    return [(i * ws, j * hs) for i, j in grid]


def multi_scale_crop_params(
    height: int,
    width: int,
    size=224,
    scales: Sequence[float] = VIDEOMAE_SCALES,
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
    generator: Generator = None,
) -> tuple[int, int, int, int]:
    """Draw the box of VideoMAE's ``GroupMultiScaleCrop``.

    Candidate sides are ``int(min(height, width) * s)`` for ``s`` in ``scales``; a side within 2
    pixels of the output size snaps to it. A (width, height) pair is allowed when their scale
    indices differ by at most ``max_distort``; one pair is drawn uniformly, then one offset from
    :func:`fixed_crop_offsets` (or any position when ``fix_crop=False``). Sides are capped at the
    frame size (the reference would crop outside a frame smaller than the output).

    Returns:
        ``(top, left, crop_h, crop_w)``.
    """
    out_h, out_w = _pair(size)
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    crop_hs = [out_h if abs(s - out_h) < 3 else s for s in sides]
    crop_ws = [out_w if abs(s - out_w) < 3 else s for s in sides]
    pairs = [
        (min(max(w, 1), width), min(max(h, 1), height))
        for i, h in enumerate(crop_hs)
        for j, w in enumerate(crop_ws)
        if abs(i - j) <= max_distort
    ]
    crop_w, crop_h = pairs[randint(0, len(pairs) - 1, generator)]
    if fix_crop:
        offsets = fixed_crop_offsets(width, height, crop_w, crop_h, more_fix_crop)
        left, top = offsets[randint(0, len(offsets) - 1, generator)]
    else:
        left = randint(0, width - crop_w, generator)
        top = randint(0, height - crop_h, generator)
    return top, left, crop_h, crop_w


def multi_scale_crop(
    video,
    size=224,
    scales: Sequence[float] = VIDEOMAE_SCALES,
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
    *,
    interpolation: str = "bilinear",
    generator: Generator = None,
    layout: str | None = None,
) -> torch.Tensor:
    """VideoMAE's pre-training crop: :func:`multi_scale_crop_params`, then resize to ``size``."""
    x, layout = _to_tchw(video, layout)  # x: (T, C, H, W)
    top, left, ch, cw = multi_scale_crop_params(
        x.shape[-2], x.shape[-1], size, scales, max_distort, fix_crop, more_fix_crop, generator
    )
    x = _resize_tchw(x[..., top : top + ch, left : left + cw], _pair(size), interpolation)  # (T, C, h, w)
    return _from_tchw(x, layout)


# ---------------------------------------------------------------------------------------------
# random resized crop + flip
# ---------------------------------------------------------------------------------------------
def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: Generator = None,
) -> tuple[int, int, int, int]:
    """Draw a box covering ``scale`` of the area with aspect ratio in ``ratio``.

    The algorithm of ``torchvision.transforms.RandomResizedCrop.get_params`` (up to 10 tries:
    area uniform in ``scale``, log-aspect uniform in ``log(ratio)``; otherwise the largest centred
    box with the aspect clamped to ``ratio``), reading a generator instead of the global RNG; with
    a ``torch.Generator`` it draws the very same numbers as torchvision under the same seed.

    Returns:
        ``(top, left, h, w)``.
    """
    if not (0 < scale[0] <= scale[1]):
        raise ValueError(f"scale must satisfy 0 < min <= max, got {scale}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
    area = height * width
    torch_rng = not isinstance(generator, np.random.Generator)
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision
    for _ in range(10):
        target_area = area * uniform(scale[0], scale[1], generator)
        if torch_rng:  # the same float32 arithmetic as torchvision, so the same boxes
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        else:
            aspect = math.exp(uniform(float(log_ratio[0]), float(log_ratio[1]), generator))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = randint(0, height - h, generator)
            left = randint(0, width - w, generator)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(video, top: int, left: int, h: int, w: int, size, *, interpolation: str = "bilinear", layout=None):
    """Crop the box ``(top, left, h, w)`` from every frame and resize it to ``size``."""
    x, layout = _to_tchw(video, layout)  # (T, C, H, W)
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > x.shape[-2] or left + w > x.shape[-1]:
        raise ValueError(f"box (top={top}, left={left}, h={h}, w={w}) is outside the {x.shape[-2]}x{x.shape[-1]} frame")
    x = _resize_tchw(x[..., top : top + h, left : left + w], _pair(size), interpolation)
    return _from_tchw(x, layout)


def horizontal_flip(video, *, layout=None) -> torch.Tensor:
    """Mirror every frame left ↔ right."""
    x, layout = _to_tchw(video, layout)
    return _from_tchw(x.flip(-1), layout)


def random_horizontal_flip(video, p: float = 0.5, *, generator: Generator = None, layout=None) -> torch.Tensor:
    """Flip the whole clip with probability ``p`` (one draw for all frames)."""
    x, layout = _to_tchw(video, layout)
    if uniform(0.0, 1.0, generator) < p:
        x = x.flip(-1)
    return _from_tchw(x, layout)


def random_resized_crop(
    video,
    size=224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    *,
    flip: float = 0.5,
    interpolation: str = "bilinear",
    generator: Generator = None,
    layout: str | None = None,
) -> torch.Tensor:
    """One random resized crop for the whole clip, then a shared flip with probability ``flip``.

    ``scale=(0.08, 1)`` is fine-tuning's crop; ``scale=(0.2, 1), interpolation="bicubic"`` is
    VideoMAC's. ``flip=0`` disables the flip (SSv2).
    """
    x, layout = _to_tchw(video, layout)  # (T, C, H, W)
    top, left, h, w = random_resized_crop_params(x.shape[-2], x.shape[-1], scale, ratio, generator)
    x = _resize_tchw(x[..., top : top + h, left : left + w], _pair(size), interpolation)
    if flip > 0 and uniform(0.0, 1.0, generator) < flip:
        x = x.flip(-1)
    return _from_tchw(x, layout)


# ---------------------------------------------------------------------------------------------
# deterministic views for validation and test
# ---------------------------------------------------------------------------------------------
def short_side_resize(video, size: int, *, interpolation: str = "bilinear", layout=None) -> torch.Tensor:
    """Resize so that the shorter side is ``size``; the longer becomes ``int(long * size / short)``."""
    x, layout = _to_tchw(video, layout)
    h, w = x.shape[-2:]
    if h <= w:
        new = (size, int(size * w / h))
    else:
        new = (int(size * h / w), size)
    return _from_tchw(_resize_tchw(x, new, interpolation), layout)


def center_crop(video, size, *, layout=None) -> torch.Tensor:
    """The centred ``size`` box (top/left rounded as torchvision does); the frame must be large enough."""
    x, layout = _to_tchw(video, layout)
    ch, cw = _pair(size)
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"center_crop of {ch}x{cw} needs a frame at least that large, got {h}x{w}")
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return _from_tchw(x[..., top : top + ch, left : left + cw], layout)


def spatial_crops(
    video, size: int = 224, num_crops: int = 3, *, interpolation: str = "bilinear", layout=None
) -> list[torch.Tensor]:
    """Test-time spatial views: short side to ``size``, then ``num_crops`` squares along the long side.

    Crop ``k`` starts at ``int(k * (long - size) / (num_crops - 1))`` (one crop: the middle), so
    three crops are the left/centre/right (or top/centre/bottom) squares, as in VideoMAE's test.
    """
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    x, layout = _to_tchw(short_side_resize(video, size, interpolation=interpolation, layout=layout), layout)
    h, w = x.shape[-2:]
    long = max(h, w)
    if num_crops == 1:
        starts = [int((long - size) / 2)]
    else:
        step = (long - size) / (num_crops - 1)
        starts = [int(k * step) for k in range(num_crops)]
    crops = []
    for s in starts:
        c = x[..., s : s + size, :] if h >= w else x[..., :, s : s + size]  # (T, C, size, size)
        crops.append(_from_tchw(c, layout))
    return crops


def to_model_input(video, *, layout=None, normalized: bool = True) -> torch.Tensor:
    """Clip → float ``(3, T, H, W)``: uint8 divided by 255 (float is taken as [0, 1] already), then
    normalised with the ImageNet statistics (skip with ``normalized=False``)."""
    x, _ = _to_tchw(video, layout)  # (T, C, H, W)
    x = x.permute(1, 0, 2, 3)  # (C, T, H, W), a view
    if x.dtype == torch.uint8 and normalized:
        return normalize_uint8(x, channel_dim=-4)  # one multiply-add per value
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    x = x.contiguous()
    return normalize(x, channel_dim=-4) if normalized else x


# ---------------------------------------------------------------------------------------------
# resizing frames and their dense labels together (propagation benchmarks)
# ---------------------------------------------------------------------------------------------
def target_size(hw: tuple[int, int], size) -> tuple[int, int]:
    """Output ``(height, width)`` for a frame of size ``hw``: ``size`` None keeps it, an int sets
    the short side (the long one scaled to ``int(long * size / short)``), a pair is taken as is."""
    h, w = int(hw[0]), int(hw[1])
    if size is None:
        return h, w
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        return (int(size), int(size * w / h)) if h <= w else (int(size * h / w), int(size))
    return _pair(size)


def resize_frames(frames: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize frames ``(T, C, H, W)`` to ``size`` = (h, w), antialiased (uint8 stays uint8)."""
    if frames.dim() != 4:
        raise ValueError(f"frames must be (T, C, H, W), got shape {tuple(frames.shape)}")
    return _resize_tchw(frames, _pair(size), interpolation)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize integer label maps ``(T, H, W)`` to ``size`` by nearest neighbour (values kept)."""
    if labels.dim() != 3:
        raise ValueError(f"labels must be (T, H, W), got shape {tuple(labels.shape)}")
    size = _pair(size)
    if tuple(labels.shape[-2:]) == size:
        return labels
    y = torch.nn.functional.interpolate(labels[:, None].double(), size=size, mode="nearest")  # (T, 1, h, w)
    return y[:, 0].round().to(labels.dtype)


# ---------------------------------------------------------------------------------------------
# per-sample pipelines
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# fine-tuning: RandAugment and random erasing, one draw per clip
# ---------------------------------------------------------------------------------------------
#: VideoMAE's fine-tuning augmentation (``run_class_finetuning.py``: ``--aa rand-m7-n4-mstd0.5-inc1``,
#: ``--reprob 0.25 --remode pixel --recount 1``), in timm's notation.
VIDEOMAE_RAND_AUGMENT = "rand-m7-n4-mstd0.5-inc1"
VIDEOMAE_ERASING = 0.25


def parse_rand_augment(spec: str) -> dict:
    """timm's RandAugment string → ``{"magnitude", "num_ops", "mstd", "inc"}``.

    ``"rand-m7-n4-mstd0.5-inc1"``: magnitude 7 of 10, 4 operations per image, magnitude noise
    std 0.5, the increasing-severity variants of the operations (timm's defaults: n 2, mstd 0,
    inc 0).
    """
    parts = str(spec).split("-")
    if parts[0] != "rand" or len(parts) < 2:
        raise ValueError(f"rand_augment must look like 'rand-m7-n4-mstd0.5-inc1' (timm's notation), got {spec!r}")
    out = {"magnitude": None, "num_ops": 2, "mstd": 0.0, "inc": 0}
    for part in parts[1:]:
        for key, name, cast in (("mstd", "mstd", float), ("inc", "inc", int), ("m", "magnitude", int), ("n", "num_ops", int)):
            if part.startswith(key):
                try:
                    out[name] = cast(part[len(key):])
                except ValueError:
                    raise ValueError(f"rand_augment {spec!r}: cannot read {part!r}") from None
                break
        else:
            raise ValueError(f"rand_augment {spec!r}: unknown part {part!r} (expected m, n, mstd, inc)")
    if out["magnitude"] is None or not 0 <= out["magnitude"] <= 10 or out["num_ops"] < 1:
        raise ValueError(f"rand_augment {spec!r}: needs a magnitude m0…m10 and n ≥ 1")
    return out


class ClipAugment:
    """Fine-tuning's photometric and occlusion augmentation, applied to a clip as a whole.

    Both transforms are torchvision's (``transforms.v2``). Given a ``tv_tensors.Video`` of shape
    ``(T, C, H, W)`` a v2 transform draws its parameters once per call and applies them to all
    ``T`` frames: every frame gets the same RandAugment operations at the same magnitudes and the
    same erased box filled with the same noise, so the augmentation changes how the clip looks,
    never its motion.

    Args:
        rand_augment: timm's notation (``"rand-m7-n4-mstd0.5-inc1"``, VideoMAE's) or None (off).
            Mapped to ``v2.RandAugment(num_ops=n, magnitude=m, num_magnitude_bins=11)``, so that
            magnitude ``m`` is ``m/10`` of each operation's range as in timm. torchvision's
            Solarize and Posterize grow more severe with the magnitude (timm's ``inc1``); it has
            no magnitude noise, so ``mstd`` is read and not used.
        erasing: probability of ``v2.RandomErasing`` (area 0.02–1/3, aspect 0.3–3.3, the box
            filled with standard-normal noise: timm's ``remode="pixel"``, one box:
            ``recount=1``); 0 = off. VideoMAE's loader erases each frame on its own; here the
            box is the clip's.

    ``randaugment(frames uint8 (T, H, W, 3))`` comes before normalisation (RandAugment works on
    uint8 images), ``erase(video float (C, T, H, W))`` after it (the noise is in normalised
    units). A seeded ``generator`` (torch, NumPy) makes both reproducible: its draw seeds
    torch's global generator inside a forked RNG state, which is left as it was.
    """

    def __init__(self, rand_augment: str | None = VIDEOMAE_RAND_AUGMENT, erasing: float = VIDEOMAE_ERASING):
        if not 0.0 <= erasing <= 1.0:
            raise ValueError(f"erasing is a probability in [0, 1], got {erasing}")
        self.rand_augment, self.erasing = rand_augment, float(erasing)
        self._randaugment = None
        if rand_augment is not None:
            spec = parse_rand_augment(rand_augment)
            self._randaugment = v2.RandAugment(num_ops=spec["num_ops"], magnitude=spec["magnitude"], num_magnitude_bins=11)
        self._erase = v2.RandomErasing(p=self.erasing, value="random") if self.erasing > 0 else None

    @staticmethod
    def _apply(transform, x: torch.Tensor, generator: Generator) -> torch.Tensor:
        """``transform`` on a ``(T, C, H, W)`` clip seen as one video, reproducible under ``generator``."""
        if generator is None:
            return transform(tv_tensors.Video(x)).as_subclass(torch.Tensor)
        seed = randint(0, 2**62, generator)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return transform(tv_tensors.Video(x)).as_subclass(torch.Tensor)

    def randaugment(self, frames: torch.Tensor, generator: Generator = None, *, layout="THWC") -> torch.Tensor:
        """RandAugment of a uint8 clip (same layout back); unchanged when off."""
        if self._randaugment is None:
            return frames
        x, layout = _to_tchw(frames, layout)  # (T, C, H, W)
        return _from_tchw(self._apply(self._randaugment, x, generator), layout)

    def erase(self, video: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        """Random erasing of a normalised float ``(C, T, H, W)`` clip; unchanged when off."""
        if self._erase is None:
            return video
        return self._apply(self._erase, video.transpose(0, 1), generator).transpose(0, 1).contiguous()

    def __bool__(self) -> bool:
        return self._randaugment is not None or self._erase is not None

    def __repr__(self) -> str:
        return f"ClipAugment(rand_augment={self.rand_augment!r}, erasing={self.erasing})"


class ClipTransform:
    """Decoded frames → model input, one of the paper recipes.

    Args:
        kind: ``"multiscale"`` (VideoMAE pre-training), ``"resized_crop"`` (fine-tuning or
            VideoMAC), ``"center"`` (validation) or ``"three_crop"`` (test views).
        size: output side (224 in every paper; the demos use 32–64).
        scales: multi-scale crop scales.
        scale, ratio: random-resized-crop area and aspect ranges (0.08–1 fine-tuning,
            0.2–1 VideoMAC).
        flip: probability of the shared horizontal flip (``resized_crop`` only; 0 for SSv2).
        interpolation: ``"bilinear"`` or ``"bicubic"`` (VideoMAC).
        num_crops: spatial test views for ``"three_crop"``.
        normalized: apply ImageNet normalisation (default True, the library contract).
        augment: ``resized_crop`` only: a :class:`ClipAugment` (RandAugment after the crop and
            flip, random erasing after normalisation); None = off.

    Call:
        ``transform(frames, generator=None)`` with ``frames`` uint8 ``(T, H, W, 3)``; returns float
        ``(3, T, size, size)``, or ``(num_crops, 3, T, size, size)`` for ``"three_crop"``.
    """

    KINDS = ("multiscale", "resized_crop", "center", "three_crop")

    def __init__(
        self,
        kind: str = "multiscale",
        size: int = 224,
        *,
        scales: Sequence[float] = VIDEOMAE_SCALES,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        interpolation: str = "bilinear",
        num_crops: int = 3,
        normalized: bool = True,
        augment: ClipAugment | None = None,
    ):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        if interpolation not in _INTERP:
            raise ValueError(f"interpolation must be one of {tuple(_INTERP)}, got {interpolation!r}")
        if not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip is a probability in [0, 1], got {flip}")
        self.kind, self.size = kind, _pair(size)[0]
        self.scales, self.scale, self.ratio = tuple(scales), tuple(scale), tuple(ratio)
        self.flip, self.interpolation, self.num_crops, self.normalized = flip, interpolation, num_crops, normalized
        if augment is not None and (kind != "resized_crop" or not isinstance(augment, ClipAugment)):
            raise ValueError(f"augment is a ClipAugment for kind 'resized_crop' (fine-tuning), got {augment!r} for {kind!r}")
        self.augment = augment if augment else None

    @property
    def num_views(self) -> int:
        """Spatial views per clip (``num_crops`` for three_crop, else 1)."""
        return self.num_crops if self.kind == "three_crop" else 1

    def __call__(self, frames, generator: Generator = None) -> torch.Tensor:
        kw = dict(layout="THWC")
        if self.kind == "multiscale":
            x = multi_scale_crop(frames, self.size, self.scales, interpolation=self.interpolation, generator=generator, **kw)
        elif self.kind == "resized_crop":
            x = random_resized_crop(
                frames, self.size, self.scale, self.ratio, flip=self.flip,
                interpolation=self.interpolation, generator=generator, **kw,
            )
            if self.augment is not None:  # RandAugment on the uint8 frames, erasing once normalised
                x = self.augment.randaugment(x, generator)
                return self.augment.erase(to_model_input(x, layout="THWC", normalized=self.normalized), generator)
        elif self.kind == "center":
            x = center_crop(short_side_resize(frames, self.size, interpolation=self.interpolation, **kw), self.size, **kw)
        else:
            crops = spatial_crops(frames, self.size, self.num_crops, interpolation=self.interpolation, **kw)
            return torch.stack([to_model_input(c, layout="THWC", normalized=self.normalized) for c in crops])
        return to_model_input(x, layout="THWC", normalized=self.normalized)  # (3, T, size, size)

    def __repr__(self) -> str:
        extra = {
            "multiscale": f"scales={self.scales}",
            "resized_crop": f"scale={self.scale}, ratio=({self.ratio[0]:.3g}, {self.ratio[1]:.3g}), flip={self.flip}"
                            + (f", augment={self.augment!r}" if self.augment is not None else ""),
            "center": "",
            "three_crop": f"num_crops={self.num_crops}",
        }[self.kind]
        extra = f", {extra}" if extra else ""
        return f"ClipTransform({self.kind!r}, size={self.size}{extra}, interpolation={self.interpolation!r})"
