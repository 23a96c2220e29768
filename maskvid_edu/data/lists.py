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
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from maskvid_edu.data.containers import FRAME_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "VIDEO_EXTENSIONS",
    "BadVideoWarning",
    "VideoSample",
    "MalformedLine",
    "ParsedList",
    "IgnoredPath",
    "MIN_FOLDER_FRAMES",
    "read_video_list",
    "ucf101_samples",
    "hmdb51_samples",
    "ssv2_samples",
    "ssv2_label",
    "folder_samples",
    "check_labels",
]

# "utf-8-sig" reads plain UTF-8 and drops the byte-order mark (EF BB BF) that spreadsheet
# programs write at the start of a saved CSV: read as "utf-8", the mark sticks to the first
# header name ("\ufeffpath"), the header is not recognised and every row becomes a bad path.
LIST_ENCODING = "utf-8-sig"

# A folder is one video given as frames when it directly holds at least this many images and no
# video file. A single image is a poster or a thumbnail, not a clip (and a frame pair, the
# shortest input a method here trains on, needs two frames).
MIN_FOLDER_FRAMES = 2


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
    ignored: list["IgnoredPath"] = field(default_factory=list)  # folders only: what was not taken


@dataclass(frozen=True)
class IgnoredPath:
    """A file or folder under a dataset folder that is neither a video nor a frame folder.

    :func:`folder_samples` leaves it out (never reads it as a video) and keeps it here, with the
    reason, for the warning and the dataset's summary.
    """

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


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
        that does not parse is a :class:`MalformedLine` (and a :class:`BadVideoWarning`). The
        file is read as UTF-8; a leading byte-order mark (a CSV saved by a spreadsheet program)
        is dropped, so the header is still recognised.
    """
    list_file = _require_file(list_file, "video list")
    root = list_file.parent if root is None else _require_dir(root, "video root folder")
    with open(list_file, newline="", encoding=LIST_ENCODING) as f:
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
    with open(path, encoding=LIST_ENCODING, errors="replace") as f:
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
    with open(labels_file, encoding=LIST_ENCODING) as f:
        label_map = {k: int(v) for k, v in json.load(f).items()}
    classes = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    with open(list_file, encoding=LIST_ENCODING) as f:
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


@dataclass
class _Listing:
    """One folder as the search sees it (hidden names left out)."""

    files: list[Path]  # name order; not kept for a frame folder (thousands of frames, never needed)
    folders: list[Path]  # name order
    images: int  # image files directly in the folder
    videos: int  # video files directly in the folder

    @property
    def is_frame_folder(self) -> bool:
        return self.images >= MIN_FOLDER_FRAMES and self.videos == 0


class _FolderScan:
    """One search of a dataset folder: each folder is listed once (``os.scandir``: names and
    entry types, no stat per file); every file met is counted by extension and every entry not
    taken is kept with the reason (for the notes and, when nothing is found, the error)."""

    def __init__(self, root: Path):
        self.root = root
        self.ignored: list[IgnoredPath] = []
        self.extensions: Counter = Counter()  # extension -> files met
        self.folders = 0
        self.first: list[str] = []  # the first few entries met, relative to the root
        self._listed: dict[Path, _Listing] = {}

    def listing(self, folder: Path) -> _Listing:
        if folder not in self._listed:
            with os.scandir(folder) as it:
                entries = sorted((e.name, e.is_dir()) for e in it if not e.name.startswith("."))
            files = [folder / name for name, is_dir in entries if not is_dir]
            folders = [folder / name for name, is_dir in entries if is_dir]
            exts = [p.suffix.lower() for p in files]
            self.extensions.update(e or "(none)" for e in exts)
            self.folders += len(folders)
            self.first += [self.relative(folder / name) for name, _ in entries[: max(0, 6 - len(self.first))]]
            images, videos = sum(e in FRAME_EXTENSIONS for e in exts), sum(e in VIDEO_EXTENSIONS for e in exts)
            listing = _Listing(files, folders, images, videos)
            if listing.is_frame_folder and folder != self.root:
                listing.files = []
            self._listed[folder] = listing
        return self._listed[folder]

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path != self.root else "."

    def ignore(self, path: Path, reason: str) -> None:
        self.ignored.append(IgnoredPath(str(path), reason))

    def videos_in(self, folder: Path, expand: Callable[[Path], list[Path]] | None = None) -> list[Path]:
        """The video files and frame folders directly in ``folder``, in name order.

        A sub-folder that is not a frame folder is handed to ``expand`` (a class folder of the
        unlabelled search), or ignored with the reason when there is no ``expand``. Any other
        file is ignored: an image beside videos is a stray (a thumbnail), never a video.
        """
        out: list[Path] = []
        here = self.listing(folder)
        entries = sorted([(p, False) for p in here.files] + [(p, True) for p in here.folders], key=lambda e: e[0].name)
        for p, is_folder in entries:
            ext = p.suffix.lower()
            if not is_folder:
                if ext in VIDEO_EXTENSIONS:
                    out.append(p)
                elif ext in FRAME_EXTENSIONS and here.videos:
                    reason = f"an image beside {here.videos} video(s), not a frame (a frame folder holds images and no videos)"
                    self.ignore(p, reason)
                elif ext in FRAME_EXTENSIONS:
                    self.ignore(p, "an image outside a frame folder (frames go in a folder of their own, one per video)")
                else:
                    self.ignore(p, f"not a video file ({ext or 'no extension'})")
                continue
            sub = self.listing(p)
            if sub.is_frame_folder:
                out.append(p)
            elif expand is not None and (sub.videos or sub.folders):
                out.extend(expand(p))  # a class folder: it holds videos or folders
            else:
                self.ignore(p, self.why_not_frames(sub))
        return out

    @staticmethod
    def why_not_frames(sub: _Listing) -> str:
        """Why a folder is neither a frame folder nor searched further."""
        if sub.videos:
            return f"a folder of {sub.videos} video(s) deeper than <root>/<class>/<video>"
        if sub.images:
            return f"holds {sub.images} image(s): a frame folder needs at least {MIN_FOLDER_FRAMES} frames"
        if sub.folders:
            return "a folder deeper than <root>/<class>/<video>"
        return "holds no video file and no images"

    def nothing_found(self, labelled: bool) -> str:
        """The error when the search took nothing: what was looked for, and what is there instead."""
        frames = "/".join(e.lstrip(".") for e in FRAME_EXTENSIONS)
        layouts = (
            "<root>/<class>/<video file> or <root>/<class>/<frame folder> (labels from the class folder names)"
            if labelled
            else "<root>/<video file>, <root>/<frame folder>, <root>/<class>/<video file> or <root>/<class>/<frame folder>"
        )
        n_files = sum(self.extensions.values())
        by_ext = ", ".join(f"{e} {n}" for e, n in sorted(self.extensions.items(), key=lambda en: (-en[1], en[0]))[:8])
        found = f"{n_files} file(s) ({by_ext}) and {self.folders} folder(s)" if n_files else f"no files and {self.folders} folder(s)"
        if self.first:
            found += ", e.g. " + ", ".join(self.first)
        if self.ignored:
            found += "; not taken: " + "; ".join(f"{self.relative(Path(i.path))}: {i.reason}" for i in self.ignored[:3])
        hints = []
        top = self.listing(self.root)
        images, videos = top.images, top.videos
        if labelled and videos:
            hints.append(f"the {videos} video(s) directly in the root have no class folder: read them unlabelled (labelled=False)")
        if images >= MIN_FOLDER_FRAMES and not videos:
            hints.append("the root itself looks like the frames of one video: give the folder that holds it")
        return (
            f"no samples in folder {str(self.root)!r}: looked for video files ({', '.join(VIDEO_EXTENSIONS)}) and frame "
            f"folders (at least {MIN_FOLDER_FRAMES} {frames} images and no video) laid out as {layouts}; "
            f"found {found}" + "".join(f"; {h}" for h in hints)
        )


def _report_ignored(ignored: list[IgnoredPath], root: Path, limit: int = 5) -> None:
    if not ignored:
        return
    shown = "; ".join(str(i) for i in ignored[:limit]) + (f"; ... and {len(ignored) - limit} more" if len(ignored) > limit else "")
    warnings.warn(f"{root}: ignored {len(ignored)} path(s) that are not videos: {shown}", BadVideoWarning, stacklevel=3)


def folder_samples(root, *, labelled: bool = True) -> ParsedList:
    """Every video file and frame folder of a dataset folder.

    Layouts:

    * ``labelled=True``: ``<root>/<class>/<video file | frame folder>``; labels number the class
      folders alphabetically (``ParsedList.classes``). Files directly in ``root`` are not taken.
    * ``labelled=False``: a flat ``<root>/<video file | frame folder>``, and also
      ``<root>/<class>/<video file | frame folder>`` (the class folders only group the videos).

    A video file has one of :data:`VIDEO_EXTENSIONS`. A frame folder directly holds at least
    :data:`MIN_FOLDER_FRAMES` images (:data:`~maskvid_edu.data.decoders.FRAME_EXTENSIONS`:
    jpg, jpeg, png, bmp, webp, pgm, ppm) and no video file. Everything else met on the way (a
    ``thumb.png`` beside the videos, a ``README``, a folder nested deeper) is never read as a
    video: it is left out and listed in ``ParsedList.ignored`` with the reason, and one
    :class:`BadVideoWarning` names the first few. Hidden entries (names starting with ``.``) are
    not searched.

    Raises:
        FileNotFoundError / NotADirectoryError: ``root`` is not a folder.
        ValueError: nothing was found; the message says what was looked for (extensions and
            layouts) and what the folder holds instead (files per extension, the first names).
    """
    root = _require_dir(root, "video folder")
    scan = _FolderScan(root)
    classes = None
    if labelled:
        classes, samples = [], []
        top = scan.listing(root)
        for p in top.files:
            scan.ignore(p, "not inside a class folder (the labelled layout is <root>/<class>/<video>)")
        for label, p in enumerate(top.folders):
            classes.append(p.name)
            samples += [VideoSample(str(v), label) for v in scan.videos_in(p)]
    else:
        samples = [VideoSample(str(v)) for v in scan.videos_in(root, expand=scan.videos_in)]
    if not samples:
        raise ValueError(scan.nothing_found(labelled))
    _report_ignored(scan.ignored, root)
    return ParsedList(samples, [], classes, scan.ignored)


def check_labels(samples: Sequence[VideoSample], list_file, num_classes: int) -> None:
    """Refuse a label outside ``0 … num_classes − 1`` before anything trains on it: ValueError
    naming the list file, the line that holds the sample (found by its file name), the label and
    ``--num-classes``. Unlabelled samples pass."""
    list_file = Path(list_file)
    for sample in samples:
        if sample.label is None or 0 <= sample.label < num_classes:
            continue
        name = Path(sample.path).name
        with open(list_file, encoding=LIST_ENCODING, errors="replace") as f:
            line = next((no for no, text in enumerate(f, 1) if name in text), None)
        where = f"{list_file}:{line}" if line is not None else f"{list_file} ({name})"
        raise ValueError(f"{where}: label {sample.label} is outside 0..{num_classes - 1} of --num-classes "
                         f"{num_classes}: raise --num-classes, or fix the list")
