"""Video lists: the files action-recognition datasets are released with, read into samples.

Every reader returns a :class:`ParsedList`: the :class:`VideoSample` s (a path and a class index,
or None when unlabelled), the lines that could not be parsed (:class:`MalformedLine`, each also a
:class:`BadVideoWarning` naming ``file:line``), and the class names when the format knows them.
:class:`~maskvid_edu.data.datasets.VideoDataset` turns one into clips.

**Formats** (:func:`read_video_list` detects the first three from the first line)

* ``path label`` lines (VideoMAE's ``train.csv``/``val.csv``, despite the name), ``path``
  alone for pre-training, or VideoMAE V2's ``path start_idx total_frames label``;
* CSV with a ``path,label`` (or ``path``) header;
* the Kinetics CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``, mapped to
  ``<root>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (the downloader's naming);
* UCF101 ``classInd.txt`` + ``trainlist0k.txt`` / ``testlist0k.txt`` (:func:`ucf101_samples`);
* HMDB51 ``<class>_test_split<k>.txt`` with flags 1 = train, 2 = test, 0 = unused
  (:func:`hmdb51_samples`);
* Something-Something V2 ``something-something-v2-{train,validation,test}.json`` +
  ``labels.json`` (:func:`ssv2_samples`);
* a folder ``<root>/<class>/<video file or frame folder>`` (:func:`folder_samples`).

A ``path`` may be a video file or a folder of frames; :func:`~maskvid_edu.data.decoders.open_video`
tells them apart. Whether the files exist and decode is checked later, per item, by the dataset
(a missing or broken file is skipped and counted there, see :mod:`~maskvid_edu.data.datasets`).
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from maskvid_edu.data.decoders import FRAME_EXTENSIONS

__all__ = [
    "VIDEO_EXTENSIONS",
    "BadVideoWarning",
    "VideoSample",
    "MalformedLine",
    "ParsedList",
    "read_video_list",
    "ucf101_samples",
    "hmdb51_samples",
    "ssv2_samples",
    "ssv2_label",
    "folder_samples",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


class BadVideoWarning(UserWarning):
    """A list line or a video that the dataset had to drop or skip."""


@dataclass(frozen=True)
class VideoSample:
    """One entry of a list: a video file (or frame folder) and its class index (None if unlabelled)."""

    path: str
    label: int | None = None


@dataclass(frozen=True)
class MalformedLine:
    """A list line that could not be parsed (kept for the summary)."""

    file: str
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}: {self.text!r}"


@dataclass
class ParsedList:
    """Result of reading a list: the samples, the lines that were dropped, and class names if known."""

    samples: list[VideoSample]
    malformed: list[MalformedLine] = field(default_factory=list)
    classes: list[str] | None = None


# =============================================================================================
# list formats
# =============================================================================================
def _require_file(path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    if not p.is_file():
        raise ValueError(f"{what} must be a file, got a folder: {p}")
    return p


def _require_dir(path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    if not p.is_dir():
        raise NotADirectoryError(f"{what} must be a folder: {p}")
    return p


def _is_int(text: str) -> bool:
    t = text.strip()
    return t.lstrip("-").isdigit() and t != "-"


def _join(root: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else root / p)


def _report_malformed(malformed: list[MalformedLine], strict: bool, limit: int = 20) -> None:
    if not malformed:
        return
    if strict:
        raise ValueError(f"malformed list line (strict=True): {malformed[0]}")
    for m in malformed[:limit]:
        warnings.warn(f"skipping malformed list line {m}", BadVideoWarning, stacklevel=3)
    if len(malformed) > limit:
        warnings.warn(
            f"... and {len(malformed) - limit} more malformed lines in {malformed[limit].file}",
            BadVideoWarning,
            stacklevel=3,
        )


def read_video_list(
    list_file,
    root=None,
    *,
    classes: Sequence[str] | None = None,
    ext: str = ".mp4",
    strict: bool = False,
) -> ParsedList:
    """Read a ``path label`` list, a ``path,label`` CSV or a Kinetics CSV (detected from line 1).

    Args:
        list_file: the list.
        root: folder that relative paths (and Kinetics class folders) are relative to; default:
            the list's own folder.
        classes: Kinetics only: class names in label order; default: the sorted names found in
            the CSV (the order Kinetics' class index files use).
        ext: Kinetics only: file extension of the clips.
        strict: raise on the first malformed line instead of dropping it.

    Returns:
        :class:`ParsedList`. Blank lines and lines starting with ``#`` are ignored; anything else
        that does not parse is a :class:`MalformedLine` (and a :class:`BadVideoWarning`).
    """
    list_file = _require_file(list_file, "video list")
    root = list_file.parent if root is None else _require_dir(root, "video root folder")
    with open(list_file, newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    header = [h.strip().lower() for h in first.split(",")]
    if header[:4] == ["label", "youtube_id", "time_start", "time_end"]:
        parsed = _read_kinetics_csv(list_file, lines, root, classes, ext)
    elif header in (["path", "label"], ["path"]):
        parsed = _read_path_csv(list_file, lines, root)
    else:
        parsed = _read_whitespace_list(list_file, lines, root)
    _report_malformed(parsed.malformed, strict)
    return parsed


def _read_whitespace_list(list_file: Path, lines: list[str], root: Path) -> ParsedList:
    samples, bad = [], []
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) == 1:
            samples.append(VideoSample(_join(root, tok[0])))
        elif len(tok) == 2:
            if not _is_int(tok[1]):
                bad.append(MalformedLine(str(list_file), no, raw, f"label {tok[1]!r} is not an integer"))
            elif int(tok[1]) < 0:
                bad.append(MalformedLine(str(list_file), no, raw, f"label {tok[1]} is negative"))
            else:
                samples.append(VideoSample(_join(root, tok[0]), int(tok[1])))
        elif len(tok) == 4 and all(_is_int(t) for t in tok[1:]):  # VideoMAE V2: path start total label
            if int(tok[3]) < 0:
                bad.append(MalformedLine(str(list_file), no, raw, f"label {tok[3]} is negative"))
            else:
                samples.append(VideoSample(_join(root, tok[0]), int(tok[3])))
        else:
            bad.append(
                MalformedLine(
                    str(list_file), no, raw,
                    f"expected 'path [label]' or 'path start total label', got {len(tok)} fields "
                    "(paths with spaces need the CSV form)",
                )
            )
    return ParsedList(samples, bad)


def _csv_records(list_file: Path, lines: list[str], bad: list):
    """``(line number, raw line, {column: value})`` for each data row of a CSV list with a header.

    Blank and ``#`` lines are skipped; a row with the wrong number of columns goes to ``bad``.
    """
    header = None
    for no, row in enumerate(csv.reader(lines), 1):
        raw = lines[no - 1] if no - 1 < len(lines) else ""
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            continue
        if len(row) != len(header):
            bad.append(MalformedLine(str(list_file), no, raw, f"expected {len(header)} columns {header}, got {len(row)}"))
            continue
        yield no, raw, dict(zip(header, (c.strip() for c in row)))


def _read_path_csv(list_file: Path, lines: list[str], root: Path) -> ParsedList:
    samples, bad = [], []
    for no, raw, rec in _csv_records(list_file, lines, bad):
        if not rec["path"]:
            bad.append(MalformedLine(str(list_file), no, raw, "empty path"))
            continue
        label = rec.get("label")
        if label is None or label == "":
            samples.append(VideoSample(_join(root, rec["path"])))
        elif not _is_int(label) or int(label) < 0:
            bad.append(MalformedLine(str(list_file), no, raw, f"label {label!r} is not a non-negative integer"))
        else:
            samples.append(VideoSample(_join(root, rec["path"]), int(label)))
    return ParsedList(samples, bad)


def _read_kinetics_csv(list_file: Path, lines: list[str], root: Path, classes, ext: str) -> ParsedList:
    rows, bad = [], []
    for no, raw, rec in _csv_records(list_file, lines, bad):
        try:
            start, end = int(float(rec["time_start"])), int(float(rec["time_end"]))
        except ValueError:
            bad.append(MalformedLine(str(list_file), no, raw, "time_start/time_end are not numbers"))
            continue
        if not rec["youtube_id"]:
            bad.append(MalformedLine(str(list_file), no, raw, "empty youtube_id"))
            continue
        rows.append((no, raw, rec["label"], f"{rec['youtube_id']}_{start:06d}_{end:06d}{ext}"))
    names = list(classes) if classes is not None else sorted({r[2] for r in rows if r[2]})
    index = {c: i for i, c in enumerate(names)}
    samples = []
    for no, raw, label, name in rows:
        if label and label not in index:
            bad.append(MalformedLine(str(list_file), no, raw, f"class {label!r} is not in the {len(names)} given classes"))
            continue
        candidates = [root / label / name, root / label.replace(" ", "_") / name, root / name] if label else [root / name]
        path = next((c for c in candidates if c.exists()), candidates[0])
        samples.append(VideoSample(str(path), index[label] if label else None))
    return ParsedList(samples, sorted(bad, key=lambda m: m.line), names)


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def ucf101_samples(video_root, split_dir, split: int = 1, subset: str = "train", *, strict: bool = False) -> ParsedList:
    """UCF101 from its official split files.

    ``classInd.txt`` holds ``<id> <ClassName>`` with ids from 1; ``trainlist0{split}.txt`` holds
    ``<Class>/<video>.avi <id>``; ``testlist0{split}.txt`` holds ``<Class>/<video>.avi`` only, so the
    label comes from the folder name (matched without case: the files spell
    ``HandstandPushups`` / ``HandStandPushups`` both ways). Labels are ``id - 1``. A train line
    whose id disagrees with its folder is malformed.
    """
    video_root = _require_dir(video_root, "UCF101 video folder")
    split_dir = _require_dir(split_dir, "UCF101 split folder")
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3, got {split!r}")
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    class_file = _require_file(split_dir / "classInd.txt", "UCF101 class index")
    list_file = _require_file(split_dir / f"{subset}list0{split}.txt", f"UCF101 {subset} list")
    classes: list[str] = []
    by_name: dict[str, int] = {}
    malformed: list[MalformedLine] = []
    for no, raw in enumerate(_read_lines(class_file), 1):
        tok = raw.split()
        if not tok:
            continue
        if len(tok) != 2 or not _is_int(tok[0]):
            malformed.append(MalformedLine(str(class_file), no, raw, "expected '<id> <ClassName>'"))
            continue
        cid = int(tok[0]) - 1
        if cid != len(classes):
            malformed.append(MalformedLine(str(class_file), no, raw, f"expected id {len(classes) + 1}"))
            continue
        classes.append(tok[1])
        by_name[tok[1].lower()] = cid
    samples = []
    for no, raw in enumerate(_read_lines(list_file), 1):
        tok = raw.split()
        if not tok:
            continue
        rel = tok[0].replace("\\", "/")
        folder = rel.split("/")[0].lower() if "/" in rel else None
        if folder is None or folder not in by_name:
            reason = "the path does not start with a class folder from classInd.txt"
            malformed.append(MalformedLine(str(list_file), no, raw, reason))
            continue
        label = by_name[folder]
        if subset == "train":
            if len(tok) != 2 or not _is_int(tok[1]):
                malformed.append(MalformedLine(str(list_file), no, raw, "expected '<Class>/<video>.avi <id>'"))
                continue
            if int(tok[1]) - 1 != label:
                named = classes[int(tok[1]) - 1] if 0 < int(tok[1]) <= len(classes) else "no class"
                reason = f"id {tok[1]} is {named}, the folder says {classes[label]}"
                malformed.append(MalformedLine(str(list_file), no, raw, reason))
                continue
        elif len(tok) != 1:
            malformed.append(MalformedLine(str(list_file), no, raw, "expected '<Class>/<video>.avi' only"))
            continue
        samples.append(VideoSample(str(video_root / rel), label))
    _report_malformed(malformed, strict)
    return ParsedList(samples, malformed, classes)


def hmdb51_samples(video_root, split_dir, split: int = 1, subset: str = "train", *, strict: bool = False) -> ParsedList:
    """HMDB51 from its official ``<class>_test_split<k>.txt`` files.

    Each line is ``<video>.avi <flag>`` with flag 1 = training, 2 = testing, 0 = not used in this
    split. The video lives at ``<video_root>/<class>/<video>.avi``; labels number the class names
    in alphabetical order (51 classes).
    """
    video_root = _require_dir(video_root, "HMDB51 video folder")
    split_dir = _require_dir(split_dir, "HMDB51 split folder")
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 split must be 1, 2 or 3, got {split!r}")
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in split_dir.iterdir() if p.name.endswith(suffix))
    if not files:
        raise FileNotFoundError(f"no HMDB51 split files '*{suffix}' in {split_dir}")
    classes = [p.name[: -len(suffix)] for p in files]
    want = "1" if subset == "train" else "2"
    samples, malformed = [], []
    for label, (cls, path) in enumerate(zip(classes, files)):
        for no, raw in enumerate(_read_lines(path), 1):
            tok = raw.split()
            if not tok:
                continue
            if len(tok) != 2 or tok[1] not in ("0", "1", "2"):
                malformed.append(MalformedLine(str(path), no, raw, "expected '<video>.avi <0|1|2>'"))
                continue
            if tok[1] == want:
                samples.append(VideoSample(str(video_root / cls / tok[0]), label))
    _report_malformed(malformed, strict)
    return ParsedList(samples, malformed, classes)


def ssv2_label(template: str) -> str:
    """The official SSv2 mapping from a template to a ``labels.json`` key: drop the brackets
    (``"Putting [something] on a surface"`` → ``"Putting something on a surface"``)."""
    return template.replace("[", "").replace("]", "")


def ssv2_samples(video_root, annotation_dir, subset: str = "train", *, ext: str = ".webm", strict: bool = False) -> ParsedList:
    """Something-Something V2: ``<id>.webm`` videos and the JSON annotations.

    ``something-something-v2-{subset}.json`` is a list of ``{"id", "label", "template",
    "placeholders"}``; the class is ``labels.json[ssv2_label(template)]`` (174 classes). The test
    file has only ids: its samples are unlabelled.
    """
    video_root = _require_dir(video_root, "SSv2 video folder")
    annotation_dir = _require_dir(annotation_dir, "SSv2 annotation folder")
    if subset not in ("train", "validation", "test"):
        raise ValueError(f"subset must be 'train', 'validation' or 'test', got {subset!r}")
    labels_file = _require_file(annotation_dir / "labels.json", "SSv2 labels.json")
    list_file = _require_file(annotation_dir / f"something-something-v2-{subset}.json", f"SSv2 {subset} annotations")
    with open(labels_file, encoding="utf-8") as f:
        label_map = {k: int(v) for k, v in json.load(f).items()}
    classes = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    with open(list_file, encoding="utf-8") as f:
        entries = json.load(f)
    if not isinstance(entries, list):
        raise ValueError(f"{list_file} must hold a JSON list of objects, got {type(entries).__name__}")
    samples, malformed = [], []
    for no, e in enumerate(entries, 1):  # "line" = position in the JSON list
        if not isinstance(e, dict) or "id" not in e:
            malformed.append(MalformedLine(str(list_file), no, str(e)[:80], "entry without an 'id'"))
            continue
        path = str(video_root / f"{e['id']}{ext}")
        if "template" not in e:
            samples.append(VideoSample(path))
            continue
        key = ssv2_label(e["template"])
        if key not in label_map:
            malformed.append(MalformedLine(str(list_file), no, str(e.get("template")), "template not found in labels.json"))
            continue
        samples.append(VideoSample(path, label_map[key]))
    _report_malformed(malformed, strict)
    return ParsedList(samples, malformed, classes)


def folder_samples(root, *, labelled: bool = True) -> ParsedList:
    """Every video file or frame folder under ``root``.

    With ``labelled=True`` the layout is ``<root>/<class>/<video file | frame folder>`` and labels
    number the class folders alphabetically; otherwise ``<root>/<video file | frame folder>``.
    A frame folder is a folder that directly holds images.
    """
    root = _require_dir(root, "video folder")

    def items(folder: Path) -> list[Path]:
        out = []
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
                out.append(p)
            elif p.is_dir() and any(q.suffix.lower() in FRAME_EXTENSIONS for q in p.iterdir()):
                out.append(p)
        return out

    if not labelled:
        return ParsedList([VideoSample(str(p)) for p in items(root)])
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    samples = [VideoSample(str(p), k) for k, c in enumerate(classes) for p in items(root / c)]
    return ParsedList(samples, [], classes)
