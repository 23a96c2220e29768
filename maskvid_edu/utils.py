"""Small helpers shared across the library."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU. For timing, never in a step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def frozen(model, device: torch.device):
    """``with frozen(model, device):`` — a module in eval mode on ``device`` for the block, put
    back in training mode afterwards if it was (errors included); anything else (a plain
    callable) passes through untouched. For evaluation loops, under ``torch.no_grad``."""
    was_training = None
    if isinstance(model, torch.nn.Module):
        was_training = model.training
        model.eval()
        model.to(device)
    try:
        yield model
    finally:
        if was_training:
            model.train()


def require_path(path, flag: str, what: str, kind: str = "file") -> Path:
    """``path`` as a Path, or an error naming the flag, the path and what was expected.

    kind: ``"file"`` (ValueError for a folder), ``"dir"`` (NotADirectoryError for a file) or
    anything else (either will do). A missing path raises FileNotFoundError.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag} {str(p)!r}: {what} not found")
    if kind == "file" and not p.is_file():
        raise ValueError(f"{flag} {str(p)!r}: expected {what} (a file), got a folder")
    if kind == "dir" and not p.is_dir():
        raise NotADirectoryError(f"{flag} {str(p)!r}: expected {what} (a folder), got a file")
    return p


def parse_key_value(text: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` (a ``--model-arg``) → ``(key, value)`` with VALUE parsed as YAML."""
    if "=" not in text:
        raise ValueError(f"--model-arg expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key.isidentifier():
        raise ValueError(f"--model-arg: {key!r} is not a config field name")
    return key, yaml.safe_load(value)


def positive_int(value, name: str, allow_none: bool = False):
    """``value`` when it is an int ≥ 1 (or None with ``allow_none``), else ValueError naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], limit: int = 5) -> str:
    """What differs between a model's state dict (``expected``) and a loaded one (``found``):
    missing keys, unexpected keys and tensors of another shape (key, both shapes), at most
    ``limit`` of each, in one line; ``""`` when keys and shapes agree."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}"
              for k in expected if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(expected[k].shape)]

    def listing(words: str, items: list[str]) -> str:
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        return f"{len(items)} {words}: {', '.join(items[:limit])}{more}"

    parts = [listing(w, items) for w, items in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                                                ("tensor(s) of another shape", shapes)) if items]
    return "; ".join(parts)


def read_json_lines(path, fields: tuple[str, ...]) -> list[dict]:
    """The records of a JSON-lines file, one object per line (``[]`` when the file does not
    exist; blank lines skipped). A line that is not JSON, or an object without every name in
    ``fields``, raises ``ValueError`` naming the file and the line."""
    import json

    path = Path(path)
    if not path.is_file():
        return []
    wanted = ", ".join(fields[:-1]) + f" and {fields[-1]}" if len(fields) > 1 else fields[0]
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from err
        if not isinstance(record, dict) or not set(fields) <= set(record):
            raise ValueError(f"{path}, line {number}: expected a record with {wanted}")
        records.append(record)
    return records
