"""The DAVIS-2017 folder layout: writing synthetic clips in it, reading any sequence back.

Video object segmentation benchmarks (DAVIS-2017 semi-supervised, and the label-propagation
evaluations of CRW, DINO and VideoMAC) expect this layout::

    <root>/
      JPEGImages/480p/<sequence>/00000.jpg, 00001.jpg, …   RGB frames
      Annotations/480p/<sequence>/00000.png, 00001.png, …  indexed ("P"-mode) PNGs
      ImageSets/2017/val.txt                                one sequence name per line

An annotation PNG stores one *instance id* per pixel (0 = background, 1, 2, … = objects) and
carries the DAVIS palette so that viewers show id 1 red, 2 green, 3 yellow, …. The palette is
the PASCAL VOC colour map: the bits of the id are dealt out to R, G, B from the most significant
bit down (:func:`davis_palette`). ``480p`` is only a folder name here: synthetic clips keep their
own resolution (the evaluation code reads whatever size it finds).

:func:`write_davis_dataset` exports clips of :class:`~maskvid_edu.data.synthetic.SyntheticVideoDataset`
so that the same propagation code runs on synthetic and real data; :func:`read_davis_sequence`
reads a sequence of either back as tensors.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "DAVIS_PALETTE",
    "PALETTE_ASSET",
    "davis_palette",
    "list_davis_sequences",
    "read_davis_sequence",
    "write_davis_dataset",
    "write_davis_sequence",
]

PALETTE_ASSET = Path(__file__).resolve().parents[1] / "assets" / "davis_palette.npy"
"""``maskvid_edu/assets/davis_palette.npy``: :data:`DAVIS_PALETTE` saved with ``np.save``, for
figures and tools that want the colours without importing this module. It is produced by
``np.save(PALETTE_ASSET, davis_palette())``; a test checks the two agree."""


def davis_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC / DAVIS colour map, ``(n, 3)`` uint8.

    Colour of id ``i``: take the bits of ``i`` three at a time, lowest first; bit 0 of each
    triple goes to R, bit 1 to G, bit 2 to B, filling each channel from its most significant
    bit (128) downwards. So 1 → (128, 0, 0), 2 → (0, 128, 0), 3 → (128, 128, 0),
    8 → (64, 0, 0).
    """
    if not 1 <= n <= 256:
        raise ValueError(f"n must be in [1, 256], got {n}")
    ids = np.arange(n)
    palette = np.zeros((n, 3), dtype=np.int64)
    for j in range(8):  # the j-th triple of bits sets bit (7 - j) of each channel
        triple = ids >> (3 * j)
        for channel in range(3):
            palette[:, channel] |= ((triple >> channel) & 1) << (7 - j)
    return palette.astype(np.uint8)


DAVIS_PALETTE: np.ndarray = davis_palette()
"""``(256, 3)`` uint8: id 0 black, 1 (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), …"""


def _to_thwc_uint8(frames) -> np.ndarray:
    """(T, 3, H, W) float in [0, 1] → (T, H, W, 3) uint8."""
    x = torch.as_tensor(frames)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"frames must be float pixels in [0, 1], got dtype {x.dtype}")
    return (x.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_davis_sequence(root, name: str, frames, masks, *, resolution: str = "480p",
                         quality: int = 95) -> Path:
    """Write one sequence: ``JPEGImages/<resolution>/<name>/%05d.jpg`` and the annotation PNGs.

    Args:
        root: dataset root (created if needed).
        name: sequence name (a folder name: no path separators).
        frames: ``(T, 3, H, W)`` float RGB in [0, 1] (un-normalised).
        masks: ``(T, H, W)`` integer instance ids in [0, 255].
        resolution: the resolution folder name.
        quality: JPEG quality (4:4:4 chroma, so colours survive small frames).

    Returns:
        The sequence's ``JPEGImages`` folder.
    """
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    rgb = _to_thwc_uint8(frames)
    ids = torch.as_tensor(masks).detach().cpu().numpy()
    if ids.ndim != 3 or ids.shape != rgb.shape[:3]:
        raise ValueError(f"masks must be (T, H, W) = {rgb.shape[:3]} to match frames, got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"masks must hold integer ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise ValueError(f"masks ids must be in [0, 255] for an indexed PNG, got [{ids.min()}, {ids.max()}]")
    root = Path(root)
    image_dir = root / "JPEGImages" / resolution / name
    mask_dir = root / "Annotations" / resolution / name
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    flat_palette = DAVIS_PALETTE.reshape(-1).tolist()
    for t in range(rgb.shape[0]):
        Image.fromarray(rgb[t]).save(image_dir / f"{t:05d}.jpg", quality=quality, subsampling=0)
        png = Image.fromarray(ids[t].astype(np.uint8), mode="P")
        png.putpalette(flat_palette)
        png.save(mask_dir / f"{t:05d}.png")
    return image_dir


def _add_to_split(root: Path, names: list[str], split: str, year: str) -> Path:
    path = root / "ImageSets" / year / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text().split() if path.is_file() else []
    merged = existing + [n for n in names if n not in existing]
    path.write_text("".join(f"{n}\n" for n in merged))
    return path


def write_davis_dataset(dataset, root, indices: Iterable[int] | None = None, *, split: str = "val",
                        year: str = "2017", resolution: str = "480p", quality: int = 95) -> list[str]:
    """Export clips of a synthetic dataset in the DAVIS-2017 layout.

    Sequences are named ``<index:05d>_<class>`` (e.g. ``00003_move_down``) and added to
    ``ImageSets/<year>/<split>.txt`` (names already listed there are kept, none is repeated).

    Args:
        dataset: a :class:`~maskvid_edu.data.synthetic.SyntheticVideoDataset` (anything with
            ``clip(i) -> {"frames": (3, T, H, W) in [0, 1], "masks": (T, H, W), "label"}`` and
            ``classes``).
        root: dataset root.
        indices: which clips (default: all of them).

    Returns:
        The sequence names written, in order.
    """
    root = Path(root)
    indices = range(len(dataset)) if indices is None else list(indices)
    names = []
    for i in indices:
        clip = dataset.clip(i)
        name = f"{int(i):05d}_{dataset.classes[clip['label']]}"
        write_davis_sequence(root, name, clip["frames"].permute(1, 0, 2, 3), clip["masks"],
                             resolution=resolution, quality=quality)
        names.append(name)
    _add_to_split(root, names, split, year)
    return names


def list_davis_sequences(root, split: str = "val", year: str = "2017") -> list[str]:
    """Sequence names listed in ``<root>/ImageSets/<year>/<split>.txt``."""
    path = Path(root) / "ImageSets" / year / f"{split}.txt"
    if not Path(root).is_dir():
        raise FileNotFoundError(f"DAVIS root not found: {root}")
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path} (expected ImageSets/{year}/{split}.txt under the root)")
    return path.read_text().split()


def read_davis_sequence(root, sequence: str, *, resolution: str = "480p",
                        allow_missing_masks: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one sequence of a DAVIS-layout root.

    Args:
        root: dataset root (holding ``JPEGImages/`` and ``Annotations/``).
        sequence: sequence name.
        resolution: resolution folder name.
        allow_missing_masks: DAVIS test splits annotate only the first frame. With ``True``,
            frames without an annotation get masks of ``-1`` (unknown); the first frame's
            annotation is always required.

    Returns:
        ``frames`` (T, 3, H, W) float32 RGB in [0, 1] and ``masks`` (T, H, W) int64 ids, in
        frame-name order.

    Raises:
        FileNotFoundError: a missing root, sequence folder or first-frame annotation.
        ValueError: no frames, mismatched sizes, non-indexed annotations, missing annotations.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DAVIS root not found: {root}")
    image_dir = root / "JPEGImages" / resolution / sequence
    mask_dir = root / "Annotations" / resolution / sequence
    if not image_dir.is_dir():
        parent = image_dir.parent
        if not parent.is_dir():
            hint = f"{parent} does not exist"
        else:
            known = sorted(p.name for p in parent.iterdir() if p.is_dir())
            hint = f"sequences there: {known[:5]}{' …' if len(known) > 5 else ''}" if known else "no sequence there"
        raise FileNotFoundError(f"frames folder not found: {image_dir} ({hint})")
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"annotations folder not found: {mask_dir}")
    frame_paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not frame_paths:
        raise ValueError(f"no frames (.jpg/.png) in {image_dir}")
    frames, masks = [], []
    missing = []
    for path in frame_paths:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        if frames and rgb.shape != frames[0].shape:
            raise ValueError(f"frame {path} is {rgb.shape[:2]}, the first frame is {frames[0].shape[:2]}")
        frames.append(rgb)
        mask_path = mask_dir / f"{path.stem}.png"
        if not mask_path.is_file():
            missing.append(mask_path.name)
            masks.append(None)
            continue
        with Image.open(mask_path) as img:
            if img.mode not in ("P", "L"):
                raise ValueError(f"annotation {mask_path} must be an indexed (P-mode) PNG of ids, got mode {img.mode}")
            ids = np.asarray(img).astype(np.int64)
        if ids.shape != rgb.shape[:2]:
            raise ValueError(f"annotation {mask_path} is {ids.shape}, its frame is {rgb.shape[:2]}")
        masks.append(ids)
    if masks[0] is None:
        raise FileNotFoundError(f"first-frame annotation not found: {mask_dir / missing[0]}")
    if missing and not allow_missing_masks:
        raise ValueError(f"{len(missing)} of {len(frame_paths)} frames have no annotation in {mask_dir} "
                         f"(first missing: {missing[0]}); pass allow_missing_masks=True to read them as -1")
    h, w = frames[0].shape[:2]
    masks = [np.full((h, w), -1, dtype=np.int64) if m is None else m for m in masks]
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H, W)
    return video, torch.from_numpy(np.stack(masks))  # (T, 3, H, W), (T, H, W)
