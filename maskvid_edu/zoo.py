"""The course model zoo: checkpoints trained once, long enough to learn, and read by the book.

A chapter that trains its model inside the notebook can afford a couple of minutes — a few
thousand clips, far too few for a masked autoencoder to learn more than the mean colour. The zoo
separates *training* from *reading*: each checkpoint the book needs is described by a recipe,
trained once by the one trainer (:class:`maskvid_edu.train.Trainer`), and its result committed
under ``data/zoo/NAME/``; chapters load it and can retrain it with one switch.

A zoo recipe is a YAML file ``maskvid_edu/configs/zoo/NAME.yaml`` in the format of the shipped
recipes (``method``, ``model``, ``model_overrides``, ``data``, ``train``; see
``configs/videomae_demo.yaml``) plus a ``zoo:`` section::

    zoo:
      seed: 0                 # the run's seed: model initialisation, data order, masks
      keep: encoder+decoder   # what weights.pt holds: "encoder", or "encoder+decoder" (the
                              # whole model) when a chapter reconstructs pixels
      about: one line saying which claim of the book the checkpoint serves
      dtype: float16          # optional: store weights.pt as float16 (half the bytes) even
                              # when float32 would fit; default float32 (float16 only past 8 MB)
      snapshots: [250, 500]   # optional: steps at which the kept weights are also saved, in
                              # the work folder (snapshots/step_000250.pt, not committed), for
                              # curves of a downstream score against pre-training steps

:func:`build` trains a recipe in a git-ignored work folder (``runs/zoo/NAME/`` at the repository
root), resuming from its checkpoint after an interruption, then exports three files, each
written atomically (a temporary file in the same folder, then ``os.replace``):

- ``weights.pt`` — the kept state dict. Stored as float32 when that fits in
  :data:`MAX_BYTES` (8 MB), as float16 otherwise; :func:`load` casts float16 back to float32
  (the card says which: ``weights.dtype``).
- ``metrics.jsonl`` — the run's training records, exactly as the trainer wrote them.
- ``card.json`` — the recipe, the code commit (``git rev-parse HEAD``, with ``-dirty`` when
  tracked files were changed, when the code lives in a git checkout), seed, steps, clips seen, wall time, the machine (CPU model, cores, torch
  version) and the sha256 and size of ``weights.pt``.

Why a checkpoint can be trusted: the trainer is deterministic on CPU (data order a function of
the seed and epoch, masks from a seeded generator, fixed thread count), so rerunning the first
steps of a recipe reproduces the committed ``metrics.jsonl`` records to the last bit
(``tests/test_zoo.py`` does, for every committed checkpoint). The committed weights are then
provably what this code, given this recipe, produces.

Reading::

    from maskvid_edu import zoo
    zoo.list_zoo()                       # name, steps, wall time, final loss, sha256
    model = zoo.load("videomae_tube90_raw")  # the recipe's model, weights loaded strictly

Building (nothing is downloaded; the data are the synthetic clips or files on disk)::

    maskvid-edu zoo build videomae_tube90_raw
    maskvid-edu zoo list
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
from importlib import resources
from pathlib import Path

import torch
import yaml

from .checkpoints import atomic_write
from .data.datasets import collate_skip_bad
from .models import create
from .recipes import build_dataset, check_recipe
from .train import CHECKPOINT_NAME, METRICS_NAME, TrainConfig, Trainer, load_checkpoint

__all__ = ["MAX_BYTES", "KEEP", "ZOO_DIR", "WORK_DIR", "zoo_recipes", "load_zoo_recipe", "make_trainer", "build",
           "export", "list_zoo", "read_card", "fresh", "load", "sha256_of", "format_zoo_table", "snapshot_path",
           "train_or_load"]

MAX_BYTES = 8 * 1024 * 1024
"""Largest ``weights.pt`` the zoo commits (8 MB)."""

KEEP = ("encoder", "encoder+decoder")
"""What a checkpoint keeps: the encoder alone, or the whole model (encoder, decoder, mask token)."""

_REPO_ROOT = Path(__file__).resolve().parents[1]  # maskvid_edu/zoo.py → repository root
ZOO_DIR: Path = _REPO_ROOT / "data" / "zoo"
"""Where the exported checkpoints live (committed): ``ZOO_DIR / NAME / {weights.pt, metrics.jsonl, card.json}``."""
WORK_DIR: Path = _REPO_ROOT / "runs" / "zoo"
"""Where :func:`build` trains (git-ignored): ``WORK_DIR / NAME / {checkpoint.pt, metrics.jsonl}``."""

WEIGHTS, METRICS, CARD = "weights.pt", "metrics.jsonl", "card.json"
ZOO_FIELDS = ("seed", "keep", "about", "dtype", "snapshots")
DTYPES = ("float32", "float16")
SNAPSHOTS = "snapshots"


# --------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------


def _recipe_folder():
    return resources.files("maskvid_edu") / "configs" / "zoo"


def zoo_recipes() -> list[str]:
    """Names of the zoo recipes (``maskvid_edu/configs/zoo/*.yaml``), sorted."""
    folder = _recipe_folder()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_zoo_recipe(name: str) -> dict:
    """Read and check zoo recipe ``name``: the shipped-recipe sections plus ``zoo``.

    The ``zoo`` section's ``seed`` becomes the training seed (a ``train.seed`` that disagrees is
    an error); ``keep`` must be one of :data:`KEEP`. Returns the whole recipe as a dict.
    """

    path = _recipe_folder() / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no zoo recipe {name!r}; zoo recipes: {', '.join(zoo_recipes()) or 'none'}")
    where = f"zoo recipe {name!r} ({path})"
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where} is not valid YAML: {err}") from err
    if not isinstance(recipe, dict):
        raise ValueError(f"{where} must hold a mapping")
    section = recipe.get("zoo")
    if not isinstance(section, dict):
        raise ValueError(f"{where} needs a 'zoo:' mapping with fields {list(ZOO_FIELDS)}")
    unknown = sorted(set(section) - set(ZOO_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown zoo field(s) {unknown}; valid fields: {list(ZOO_FIELDS)}")
    if section.get("keep") not in KEEP:
        raise ValueError(f"{where}: zoo.keep must be one of {list(KEEP)}, got {section.get('keep')!r}")
    seed = section.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{where}: zoo.seed must be an int, got {seed!r}")
    if section.get("dtype", "float32") not in DTYPES:
        raise ValueError(f"{where}: zoo.dtype must be one of {list(DTYPES)}, got {section.get('dtype')!r}")
    train = recipe.get("train") or {}
    steps = train.get("steps")
    snapshots = section.get("snapshots", [])
    if (not isinstance(snapshots, list) or any(isinstance(s, bool) or not isinstance(s, int) for s in snapshots)
            or snapshots != sorted(set(snapshots)) or (snapshots and snapshots[0] < 1)
            or (snapshots and isinstance(steps, int) and snapshots[-1] >= steps)):
        raise ValueError(f"{where}: zoo.snapshots must be increasing positive step counts below train.steps "
                         f"({steps!r}), got {snapshots!r}")
    if "seed" in train and train["seed"] != seed:
        raise ValueError(f"{where}: train.seed {train['seed']!r} contradicts zoo.seed {seed!r}; give the seed once, in zoo:")
    if recipe.get("model") is None or recipe.get("method") is None:
        raise ValueError(f"{where}: needs 'method' and 'model'")
    check_recipe({k: v for k, v in recipe.items() if k != "zoo"}, where)
    return recipe


def _build_model(recipe: dict, **overrides):
    """The recipe's model, initialised from the zoo seed (as ``maskvid-edu pretrain`` does)."""

    torch.manual_seed(recipe["zoo"]["seed"])
    return create(recipe["model"], **{**(recipe.get("model_overrides") or {}), **overrides})


def make_trainer(name: str, out_dir: str | os.PathLike | None):
    """The :class:`~maskvid_edu.train.Trainer` that builds zoo recipe ``name`` into ``out_dir``.

    Everything comes from the recipe (the full step count included, so the learning-rate
    schedule of a shortened ``fit(stop_at=…)`` is the one of the whole run); only ``out_dir``
    and the progress bar are set here.
    """

    recipe = load_zoo_recipe(name)
    seed = recipe["zoo"]["seed"]
    train = {**(recipe.get("train") or {}), "seed": seed, "progress": False,
             "out_dir": None if out_dir is None else str(out_dir)}
    config = TrainConfig.from_dict(train)
    model = _build_model(recipe)
    data = {"source": "synthetic", **(recipe.get("data") or {})}
    dataset = build_dataset(data, model, seed=seed)
    collate = None
    if hasattr(dataset, "stats"):  # real clips: drop unreadable items from a batch, count them
        collate = collate_skip_bad
    meta = {"zoo": name, **{k: recipe.get(k) for k in ("method", "model", "model_overrides", "data")}}
    return Trainer(model, dataset, config, collate_fn=collate, meta=meta)


# --------------------------------------------------------------------------------------------
# Building and exporting
# --------------------------------------------------------------------------------------------


def build(name: str, *, resume: bool = True, work_dir: str | os.PathLike | None = None,
          zoo_dir: str | os.PathLike | None = None) -> Path:
    """Train zoo recipe ``name`` (resuming its checkpoint when ``resume``) and export it.

    Trains in ``work_dir / name`` (default :data:`WORK_DIR`), then writes
    ``zoo_dir / name / {weights.pt, metrics.jsonl, card.json}`` (default :data:`ZOO_DIR`).
    Returns the export folder.
    """

    out = Path(work_dir if work_dir is not None else WORK_DIR) / name
    recipe = load_zoo_recipe(name)
    trainer = make_trainer(name, out)
    resumable = resume and (out / CHECKPOINT_NAME).is_file()
    for step in recipe["zoo"].get("snapshots", []):
        path = snapshot_path(name, step, work_dir=work_dir)
        if resumable and path.is_file():
            continue
        done = load_checkpoint(out / CHECKPOINT_NAME, map_location="cpu")["step"] if resumable else 0
        if done > step:
            raise ValueError(f"{out / CHECKPOINT_NAME} is at step {done}, past snapshot step {step}, and "
                             f"{path} is missing: rebuild with resume=False (maskvid-edu zoo build --restart)")
        trainer.fit(resume=True if resumable else None, stop_at=step)
        resumable = True
        state = _kept_state(recipe, trainer.model, trainer.model.state_dict())
        _atomic_write(path, _serialise({k: v.detach().clone().contiguous() for k, v in state.items()}))
    trainer.fit(resume=True if resumable else None)
    return export(name, work_dir=work_dir, zoo_dir=zoo_dir)


def snapshot_path(name: str, step: int, *, work_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`build` saves the kept weights of recipe ``name`` at ``step`` (a ``zoo.snapshots``
    entry): ``WORK_DIR / name / snapshots / step_000250.pt``, git-ignored."""
    return Path(work_dir if work_dir is not None else WORK_DIR) / name / SNAPSHOTS / f"step_{step:06d}.pt"


def _encoder_prefix(model) -> str:
    """Where the downstream encoder (``model.downstream_encoder()``) sits in the model's state
    dict: ``"encoder."`` for a ViT masked autoencoder, ``"online.encoder."`` for VideoMAC (whose
    EMA target holds a second copy, not kept), ``"target.module."`` for V-JEPA (whose
    evaluations use the EMA target). :func:`load` puts the kept tensors into ``model.encoder``."""
    encoder = model.downstream_encoder()
    for name, module in model.named_modules():
        if module is encoder:
            return name + "."
    raise ValueError(f"the model {type(model).__name__} has no encoder among its modules")


def _kept_state(recipe: dict, model, model_state: dict) -> dict[str, torch.Tensor]:
    """What ``weights.pt`` holds: for ``keep: encoder`` the encoder's tensors as ``encoder.*``
    (wherever ``model`` nests it), else the whole state dict."""
    if recipe["zoo"]["keep"] == "encoder":
        prefix = _encoder_prefix(model)
        kept = {"encoder." + k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
        if not kept:
            raise ValueError(f"zoo recipe for {recipe['model']!r}: no tensor under {prefix!r} to keep")
        return kept
    return dict(model_state)


def _atomic_write(path: Path, data: bytes | str) -> None:
    data = data.encode("utf-8") if isinstance(data, str) else data
    atomic_write(path, lambda f: f.write(data))


def _serialise(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_commit() -> str | None:
    """``git rev-parse HEAD`` of the code's checkout, with ``-dirty`` when tracked files differ
    from it; None outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "torch": torch.__version__, "python": platform.python_version()}


def export(name: str, *, work_dir: str | os.PathLike | None = None, zoo_dir: str | os.PathLike | None = None) -> Path:
    """Write ``weights.pt``, ``metrics.jsonl`` and ``card.json`` of a finished run (see the module
    docstring). Refuses a run that has not reached the recipe's step count."""

    recipe = load_zoo_recipe(name)
    src = Path(work_dir if work_dir is not None else WORK_DIR) / name
    ckpt = load_checkpoint(src / CHECKPOINT_NAME, map_location="cpu")
    if ckpt["step"] != ckpt["total_steps"]:
        raise ValueError(f"{src / CHECKPOINT_NAME} stopped at step {ckpt['step']} of {ckpt['total_steps']}: "
                         f"finish it with zoo.build({name!r}) before exporting")
    state = {k: v.detach().clone().contiguous() for k, v in _kept_state(recipe, _build_model(recipe), ckpt["model"]).items()}
    data, dtype = _serialise(state), "float32"
    if recipe["zoo"].get("dtype") == "float16" or len(data) > MAX_BYTES:  # halve it: float16 keeps ~3 significant digits, plenty for reading
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        data, dtype = _serialise(state), "float16"
    if len(data) > MAX_BYTES:
        raise ValueError(f"the weights of {name!r} take {len(data) / 2**20:.1f} MB even as float16, over the zoo's "
                         f"{MAX_BYTES / 2**20:.0f} MB: make the recipe's model smaller")
    dest = Path(zoo_dir if zoo_dir is not None else ZOO_DIR) / name
    weights = dest / WEIGHTS
    _atomic_write(weights, data)
    size = len(data)
    metrics = (src / METRICS_NAME).read_text(encoding="utf-8")
    _atomic_write(dest / METRICS, metrics)
    history = ckpt.get("history") or []
    train = ckpt["config"]
    card = {
        "name": name,
        "recipe": recipe,
        "commit": _git_commit(),
        "seed": recipe["zoo"]["seed"],
        "steps": int(ckpt["step"]),
        "clips_seen": int(ckpt["step"]) * train["batch_size"] * train["accum_steps"] * int(ckpt["data"].get("world_size", 1)),
        "wall_time_s": round(float(ckpt.get("elapsed", 0.0)), 1),
        "final_loss": history[-1]["loss"] if history else None,
        "machine": _machine(),
        "weights": {
            "file": WEIGHTS, "keep": recipe["zoo"]["keep"], "dtype": dtype, "bytes": size, "sha256": sha256_of(weights),
            "tensors": len(state), "parameters": sum(v.numel() for v in state.values()),
            "note": ("stored as float32, as trained" if dtype == "float32" else
                     "stored as float16 (the recipe's zoo.dtype); zoo.load casts back to float32"
                     if recipe["zoo"].get("dtype") == "float16" else
                     "stored as float16 to stay within 8 MB; zoo.load casts back to float32"),
        },
    }
    _atomic_write(dest / CARD, json.dumps(card, indent=2) + "\n")
    return dest


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_card(name: str, zoo_dir: str | os.PathLike | None = None) -> dict:
    """The card of committed checkpoint ``name``."""
    path = Path(zoo_dir if zoo_dir is not None else ZOO_DIR) / name / CARD
    if not path.is_file():
        raise FileNotFoundError(f"no zoo checkpoint {name!r}: {path} does not exist (build it with zoo.build({name!r}))")
    return json.loads(path.read_text(encoding="utf-8"))


def list_zoo(zoo_dir: str | os.PathLike | None = None) -> list[dict]:
    """One row per zoo recipe: ``name``, ``built`` and, for built ones, ``steps``,
    ``wall_time_s``, ``final_loss`` and ``sha256`` (of ``weights.pt`` as it is on disk)."""
    root = Path(zoo_dir if zoo_dir is not None else ZOO_DIR)
    rows = []
    for name in zoo_recipes():
        weights = root / name / WEIGHTS
        if not (root / name / CARD).is_file() or not weights.is_file():
            rows.append({"name": name, "built": False})
            continue
        card = read_card(name, root)
        rows.append({"name": name, "built": True, "steps": card["steps"], "wall_time_s": card["wall_time_s"],
                     "final_loss": card["final_loss"], "sha256": sha256_of(weights)})
    return rows


def fresh(name: str, **overrides):
    """The model of zoo recipe ``name`` at its initialisation (no weights loaded): the
    random-init twin of :func:`load`, for comparisons against the trained checkpoint."""
    return _build_model(load_zoo_recipe(name), **overrides)


def load(name: str, *, zoo_dir: str | os.PathLike | None = None, snapshot: int | None = None,
         work_dir: str | os.PathLike | None = None, **overrides):
    """The model of zoo recipe ``name`` with its committed weights loaded strictly.

    ``snapshot=step`` loads instead the weights :func:`build` saved at that step (one of the
    recipe's ``zoo.snapshots``; they live in the work folder, so only where the recipe was built).

    ``overrides`` change the model's config as in :func:`maskvid_edu.models.create` (e.g.
    ``mask_ratio=0.75``); they must not change a weight's shape. For a recipe that keeps the
    encoder only, the encoder is loaded and the rest of the model stays at its initialisation.
    Float16 weights are cast back to the model's float32. Raises ``ValueError`` naming the file
    and the keys or shapes that do not match.
    """
    recipe = load_zoo_recipe(name)
    if snapshot is None:
        path = Path(zoo_dir if zoo_dir is not None else ZOO_DIR) / name / WEIGHTS
    elif snapshot not in recipe["zoo"].get("snapshots", []):
        raise ValueError(f"zoo recipe {name!r} has no snapshot at step {snapshot!r}; its snapshots: "
                         f"{recipe['zoo'].get('snapshots', [])}")
    else:
        path = snapshot_path(name, snapshot, work_dir=work_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no zoo weights for {name!r}: {path} does not exist (build it with zoo.build({name!r}))")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = _build_model(recipe, **overrides)
    expected = _kept_state(recipe, model, model.state_dict())
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {items[:8]}{' …' if len(items) > 8 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if items]
        raise ValueError(f"{path} does not fit the model of zoo recipe {name!r}: " + "; ".join(parts))
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}  # float16 on disk → the model's float32
    if recipe["zoo"]["keep"] == "encoder":
        model.encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items()}, strict=True)
    else:
        model.load_state_dict(state, strict=True)
    return model


def train_or_load(name: str, *, retrain: bool = False, stop_at: int | None = None,
                  work_dir: str | os.PathLike | None = None):
    """What a chapter calls: the committed checkpoint, or the recipe retrained here.

    ``retrain=False`` (the default): :func:`load` — nothing trains. ``retrain=True`` with
    ``stop_at=None``: :func:`build` the whole recipe (resuming a build in progress) and load
    the export, which replaces the committed files — to check them or rebuild them after a code
    change. ``retrain=True, stop_at=N``: the recipe's first ``N`` steps (on the whole run's
    learning-rate schedule) in ``work_dir / NAME_stepN``, the trained model returned as it is
    and nothing exported: a shortened run that fits in a chapter's two minutes and never
    overwrites a committed checkpoint.
    """
    if not retrain:
        if stop_at is not None:
            raise ValueError("train_or_load: stop_at shortens a retraining; pass retrain=True with it")
        return load(name)
    if stop_at is None:
        build(name, work_dir=work_dir)
        return load(name)
    out = Path(work_dir if work_dir is not None else WORK_DIR) / f"{name}_step{stop_at}"
    trainer = make_trainer(name, out)
    trainer.fit(resume=True if (out / CHECKPOINT_NAME).is_file() else None, stop_at=stop_at)
    return trainer.model


def format_zoo_table(rows: list[dict] | None = None) -> str:
    """The zoo as ``maskvid-edu zoo list`` prints it: one line per recipe (steps, wall time, final
    loss and the start of the weights' sha256), or ``not built``."""
    lines = []
    for row in list_zoo() if rows is None else rows:
        if not row["built"]:
            lines.append(f"{row['name']:<24} not built")
        else:
            lines.append(f"{row['name']:<24} {row['steps']:>7} steps {row['wall_time_s'] / 60:7.1f} min "
                         f"loss {row['final_loss']:.4f}  sha256 {row['sha256'][:16]}")
    return "\n".join(lines)

