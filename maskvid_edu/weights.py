"""Published weights: where each checkpoint lives, and a local cache to fetch it into.

    from maskvid_edu import weights
    weights.list_weights()                 # the registry: name → source, licence, model
    weights.fetch("videomae-base")         # download into the cache (only when asked)
    weights.path("videomae-base")          # the cached file or folder; error if not fetched

Every entry names its source — a Hugging Face Hub repository and file(s), or a release URL — the
licence the authors publish, and the registered model (:func:`maskvid_edu.models.create`) its
weights load into. A size or sha256 is written down only where the source itself publishes
one; elsewhere it is ``None`` and the listing says the file is not verified.

The cache is ``$MASKVID_CACHE`` (default ``~/.cache/maskvid_edu/weights``), one folder per
entry. :func:`fetch` uses ``huggingface_hub`` for Hub files when it is installed, and otherwise
(and for release URLs) a streamed download that resumes a partial file with an HTTP ``Range``
request. A file is complete only once it has the expected size and checksum: it is written to a
``.part`` file first and renamed into place, so the cache never holds a half-written checkpoint.
Without network, :func:`fetch` fails at once, naming the file to download and where to put it.

Not in the registry: the VideoMAC ResNet / ConvNeXt V2 encoders, because
NUST-Machine-Intelligence-Laboratory/VideoMAC's README links no released weights; the VideoMAE
V2 ViT-g checkpoints, which are handed out through a request form; and the MCG-NJU ViT-S and
ViT-H pre-training checkpoints, published on cloud drives rather than at a direct URL. Any of
them, downloaded by hand, loads with ``from_pretrained(path)``.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen  # noqa: F401  (urlopen: replaced in tests)

__all__ = [
    "WeightFile",
    "Weights",
    "REGISTRY",
    "FetchError",
    "cache_dir",
    "get",
    "list_weights",
    "is_cached",
    "fetch",
    "path",
    "format_table",
]

HUB = "https://huggingface.co"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A published checkpoint could not be downloaded, verified or found in the cache."""


@dataclass(frozen=True)
class WeightFile:
    """One file of a checkpoint: its name in the cache, where to get it, and what the source
    publishes about it (``size`` in bytes, ``sha256`` hex digest; None when not published)."""

    filename: str
    url: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Weights:
    """A published checkpoint.

    name: what to type (``maskvid-edu weights fetch NAME``).
    model: the registered model it loads into. kind: ``"pretrain"`` (the full pre-training
        model) or ``"finetune"`` (the encoder with a ``num_classes`` head).
    layout: ``"transformers"`` (a folder with ``config.json`` and the weights) or ``"official"``
        (one ``.pth`` of the authors' code).
    repo: the Hugging Face Hub repository, when the files live there.
    num_frames, img_size: the clip the weights were trained on (16 frames of 224², all here).
    """

    name: str
    model: str
    kind: str
    layout: str
    files: tuple[WeightFile, ...]
    licence: str
    repo: str | None = None
    num_classes: int = 0
    num_frames: int = 16
    img_size: int = 224
    note: str = ""

    @property
    def source(self) -> str:
        if self.repo is not None:
            return f"hf:{self.repo}"
        return self.files[0].url


def _hub(name, repo, model, kind="pretrain", num_classes=0, licence="CC-BY-NC-4.0", note="") -> Weights:
    files = tuple(WeightFile(f, f"{HUB}/{repo}/resolve/main/{f}") for f in ("config.json", "pytorch_model.bin"))
    return Weights(name, model, kind, "transformers", files, licence, repo=repo, num_classes=num_classes, note=note)


def _v2(name, filename, model, num_classes) -> Weights:
    repo = "OpenGVLab/VideoMAE2"
    url = f"{HUB}/{repo}/resolve/main/distill/{filename}"
    return Weights(name, model, "finetune", "official", (WeightFile(filename, url),), "CC-BY-NC-4.0",
                   repo=repo, num_classes=num_classes,
                   note="VideoMAE V2: distilled from ViT-g on Kinetics-710, mean-pooled head")


#: The published checkpoints. MCG-NJU's VideoMAE on the Hub (its model cards state CC-BY-NC-4.0),
#: VideoMAE V2's distilled encoders (OpenGVLab/VideoMAE2 on the Hub, the MODEL_ZOO's direct links).
REGISTRY: dict[str, Weights] = {w.name: w for w in (
    _hub("videomae-base", "MCG-NJU/videomae-base", "videomae_vit_b", note="K400, 1600 epochs"),
    _hub("videomae-base-short", "MCG-NJU/videomae-base-short", "videomae_vit_b", note="K400, 800 epochs"),
    _hub("videomae-base-ssv2", "MCG-NJU/videomae-base-ssv2", "videomae_vit_b", note="SSv2 pre-training"),
    _hub("videomae-large", "MCG-NJU/videomae-large", "videomae_vit_l", note="K400, 1600 epochs"),
    _hub("videomae-small-k400", "MCG-NJU/videomae-small-finetuned-kinetics", "videomae_vit_s", "finetune", 400),
    _hub("videomae-small-ssv2", "MCG-NJU/videomae-small-finetuned-ssv2", "videomae_vit_s", "finetune", 174),
    _hub("videomae-base-k400", "MCG-NJU/videomae-base-finetuned-kinetics", "videomae_vit_b", "finetune", 400),
    _hub("videomae-base-ssv2-ft", "MCG-NJU/videomae-base-finetuned-ssv2", "videomae_vit_b", "finetune", 174),
    _hub("videomae-large-k400", "MCG-NJU/videomae-large-finetuned-kinetics", "videomae_vit_l", "finetune", 400),
    _hub("videomae-huge-k400", "MCG-NJU/videomae-huge-finetuned-kinetics", "videomae_vit_h", "finetune", 400),
    _v2("videomaev2-small-k710", "vit_s_k710_dl_from_giant.pth", "videomae_vit_s", 710),
    _v2("videomaev2-base-k710", "vit_b_k710_dl_from_giant.pth", "videomae_vit_b", 710),
)}


def cache_dir() -> Path:
    """The weights cache: ``$MASKVID_CACHE`` or ``~/.cache/maskvid_edu/weights``."""
    return Path(os.environ.get("MASKVID_CACHE") or Path.home() / ".cache" / "maskvid_edu" / "weights")


def get(name: str | Weights) -> Weights:
    """The registry entry ``name`` (an entry passes through); ``KeyError`` listing the names."""
    if isinstance(name, Weights):
        return name
    if name not in REGISTRY:
        raise KeyError(f"no published weights named {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def list_weights() -> list[Weights]:
    return list(REGISTRY.values())


def _entry_dir(entry: Weights) -> Path:
    return cache_dir() / entry.name


def _target(entry: Weights) -> Path:
    """What :func:`path` gives: the folder of a transformers layout, the file of a single .pth."""
    return _entry_dir(entry) if entry.layout == "transformers" else _entry_dir(entry) / entry.files[0].filename


def _complete(file: WeightFile, dest: Path) -> bool:
    return dest.is_file() and (file.size is None or dest.stat().st_size == file.size)


def is_cached(name: str | Weights) -> bool:
    """Whether every file of ``name`` is in the cache (with the published size, where known)."""
    entry = get(name)
    return all(_complete(f, _entry_dir(entry) / f.filename) for f in entry.files)


def path(name: str | Weights) -> Path:
    """The cached file (or folder) of ``name``; ``FetchError`` saying how to fetch it if absent."""
    entry = get(name)
    missing = [f.filename for f in entry.files if not _complete(f, _entry_dir(entry) / f.filename)]
    if missing:
        raise FetchError(f"weights {entry.name!r} are not in the cache ({_entry_dir(entry)} lacks "
                         f"{', '.join(missing)}): run `maskvid-edu weights fetch {entry.name}`")
    return _target(entry)


def fetch(name: str | Weights) -> Path:
    """Download ``name`` into the cache (files already there are kept) and return :func:`path`.

    Each file is checked against the published size and sha256 where they exist. A mismatch
    deletes the download and raises ``FetchError`` naming the expected and the received values;
    a download cut short keeps its ``.part`` file, and fetching again resumes it.
    """
    entry = get(name)
    folder = _entry_dir(entry)
    folder.mkdir(parents=True, exist_ok=True)
    for file in entry.files:
        dest = folder / file.filename
        if _complete(file, dest):
            continue
        client = _hub_client() if entry.repo is not None else None
        if client is not None:
            _download_hub(client, entry.repo, file, dest)
        else:
            _download_url(file, dest)
    return path(entry)


def _hub_client():
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    return hf_hub_download


def _offline(file: WeightFile, dest: Path, why) -> FetchError:
    return FetchError(f"cannot download {file.url} ({why}); without network, download that file "
                      f"elsewhere and put it at {dest}")


def _download_hub(client, repo: str, file: WeightFile, dest: Path) -> None:
    """``huggingface_hub.hf_hub_download`` into the entry's folder, then the same checks."""
    filename = file.url.split("/resolve/main/", 1)[1]
    try:
        got = Path(client(repo, filename, local_dir=str(dest.parent / ".hub")))
    except Exception as err:  # offline, unknown repo, HTTP errors: the client raises many types
        raise _offline(file, dest, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    _verify(file, got)
    os.replace(got, dest)


def _download_url(file: WeightFile, dest: Path) -> None:
    """Stream ``file.url`` to ``dest``: resume a ``.part`` file with ``Range``, verify, rename."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = Request(file.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urlopen(request, timeout=30)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the range starts at the end: the part file is already whole
            response = None
        else:
            raise FetchError(f"downloading {file.url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise _offline(file, dest, getattr(err, "reason", err)) from None
    expected = file.size
    if response is not None:
        with response:
            resumed = have and getattr(response, "status", 200) == 206
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            if expected is None and length is not None:
                expected = int(length) + (have if resumed else 0)
            with open(part, "ab" if resumed else "wb") as out:
                try:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                except (urllib.error.URLError, OSError) as err:
                    raise FetchError(f"download of {file.url} stopped at {out.tell()} bytes ({err}); "
                                     "fetch again to resume it") from None
    if expected is not None and part.stat().st_size < expected:
        raise FetchError(f"download of {file.url} stopped at {part.stat().st_size} of {expected} bytes; "
                         "fetch again to resume it")
    _verify(file, part)
    os.replace(part, dest)


def _verify(file: WeightFile, got: Path) -> None:
    """Published size and sha256 of ``got``, or ``FetchError`` (and ``got`` deleted)."""
    problems = []
    if file.size is not None and got.stat().st_size != file.size:
        problems.append(f"size: expected {file.size} bytes, got {got.stat().st_size}")
    if file.sha256 is not None:
        digest = hashlib.sha256()
        with open(got, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != file.sha256.lower():
            problems.append(f"sha256: expected {file.sha256.lower()}, got {digest.hexdigest()}")
    if problems:
        got.unlink(missing_ok=True)
        raise FetchError(f"{file.url} does not match what its source publishes ({'; '.join(problems)}); "
                         "the download was deleted")


def format_table() -> str:
    """The registry as a text table: name, model, source, size, sha256, cached."""
    rows = [("name", "model", "kind", "source", "size", "sha256", "cached")]
    for w in list_weights():
        sizes = [f.size for f in w.files]
        size = f"{sum(sizes) / 2**20:.0f} MiB" if all(s is not None for s in sizes) else "not published"
        sha = "published" if all(f.sha256 for f in w.files) else "not published (unverified)"
        rows.append((w.name, w.model, w.kind if not w.num_classes else f"{w.kind}/{w.num_classes}",
                     w.source, size, sha, "yes" if is_cached(w) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(n) for c, n in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines + [f"cache: {cache_dir()}  (set MASKVID_CACHE to move it)"])
