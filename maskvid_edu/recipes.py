"""Recipes: the shipped YAML files in ``maskvid_edu/configs`` and how one becomes a run.

A recipe file has the sections::

    method: videomae
    model: videomae_vit_demo          # a name from maskvid_edu.models.list_models()
    model_overrides: {mask_ratio: 0.9}
    data: {source: synthetic, num_samples: 512}   # + any SyntheticConfig field
    train: {steps: 400, batch_size: 8, lr: 3.0e-3}  # any TrainConfig field
    launch: {gpus: 64}                # the published run's GPU count; read by `launch` only

:func:`load_recipe` reads one (a path or a shipped name) and :func:`check_recipe` checks its
sections. :func:`resolve_pretrain` layers the settings of a pre-training run — the method's demo
recipe (``<method>_demo``), then a ``--config`` recipe, then single values (the command line's
flags) — into ``{method, model, model_overrides, data, train}`` with a validated
:class:`~maskvid_edu.train.TrainConfig`; :func:`build_dataset` turns the ``data`` section into
the dataset: synthetic clips, or a list file / folder of real videos (:func:`build_real_dataset`).
Nothing here parses a command line: :mod:`maskvid_edu.cli` does, and hands the values over.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from .data.augment import ClipAugment
from .data.datasets import VideoDataset
from .data.lists import check_labels
from .data.synthetic import SyntheticConfig, SyntheticVideoDataset
from .data.wrappers import FramePairs
from .models import list_models
from .tokenizers import TamingVQGANEncoder
from .train import TrainConfig, load_checkpoint
from .utils import parse_key_value, positive_int, require_path, state_dict_mismatch

__all__ = [
    "METHODS",
    "DATA_SOURCES",
    "RECIPE_SECTIONS",
    "LAUNCH_FIELDS",
    "FALLBACK_TRAIN",
    "REAL_DATA_FIELDS",
    "PRETRAIN_OPTIONS",
    "CLASSIFY_DATA_HELP",
    "classification_data",
    "clip_shape",
    "shipped_recipes",
    "load_recipe",
    "recipe_schedule",
    "check_recipe",
    "check_launch_section",
    "demo_model",
    "resolve_pretrain",
    "input_shape",
    "pretrain_sampling",
    "build_real_dataset",
    "build_dataset",
    "check_batch",
    "check_resume",
    "load_vqgan_tokenizer",
]

METHODS = ("videomae", "videomac", "mam2", "vjepa")
DATA_SOURCES = ("synthetic",)
RECIPE_SECTIONS = ("method", "model", "model_overrides", "data", "train", "launch")
#: Keys of a recipe's optional ``launch`` section.
LAUNCH_FIELDS = ("gpus",)
# preferred demo preset per method; otherwise the first registered "<method>_*_demo"
_PREFERRED_DEMO = {"videomae": "videomae_vit_demo"}
#: Training settings for a method that has no shipped demo recipe yet: short, CPU-sized (also
#: the length ``pretrain`` and ``launch`` give a recipe that sets neither steps nor epochs).
FALLBACK_TRAIN = {"steps": 100, "batch_size": 8, "lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 10}
# recipe ``data`` keys that real-clip pre-training passes on to VideoDataset
REAL_DATA_FIELDS = ("root", "sampling", "stride", "gap", "max_gap", "num_repeats", "backend", "strict")
#: The values :func:`resolve_pretrain` reads (``maskvid-edu pretrain``'s flags); a value left
#: out or None keeps the recipe's.
PRETRAIN_OPTIONS = (
    "config", "method", "model", "model_arg", "mask", "mask_ratio", "data", "root", "num_samples", "decoder", "out",
    "steps", "epochs", "batch_size", "accum_steps", "lr", "base_lr", "min_lr", "warmup_steps", "warmup_epochs",
    "weight_decay", "clip_grad", "amp", "device", "seed", "num_workers", "threads", "log_every", "ckpt_every",
    "compile", "tensorboard", "no_progress",
)
# settings that exclude each other: a layer that sets one drops the other from the layers below
_EXCLUSIVE = (("steps", "epochs"), ("warmup_steps", "warmup_epochs"), ("lr", "base_lr"))


# --------------------------------------------------------------------------------------------
# Reading and checking a recipe
# --------------------------------------------------------------------------------------------


def shipped_recipes() -> list[str]:
    """Names of the recipe files shipped in ``maskvid_edu/configs``."""
    folder = resources.files("maskvid_edu") / "configs"
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str | os.PathLike) -> dict:
    """Read a recipe: a YAML file path, or the name of a shipped recipe. Checks its sections."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = resources.files("maskvid_edu") / "configs" / f"{name_or_path}.yaml"
        if not shipped.is_file():
            raise FileNotFoundError(
                f"--config {str(name_or_path)!r}: no such file, nor a shipped recipe "
                f"(shipped: {', '.join(shipped_recipes()) or 'none'})"
            )
        text = shipped.read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        recipe = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"--config {str(name_or_path)!r} is not valid YAML: {err}") from err
    return check_recipe(recipe, f"--config {str(name_or_path)!r}")


def recipe_schedule(recipe: dict) -> dict:
    """How long and how hard a recipe trains, as the trainer will run it: the length
    (``epochs`` or ``steps``), the effective batch ``batch_size × accum_steps × launch.gpus``
    (clips per optimizer step) and the peak learning rate, ``lr`` itself or
    ``base_lr × effective batch / 256`` (the linear scaling rule of :mod:`maskvid_edu.train`).

    Returns ``{"length": "800 epochs", "batch": 2048, "lr": 0.0012}``.
    """
    train = recipe.get("train") or {}
    gpus = int((recipe.get("launch") or {}).get("gpus", 1))
    batch = int(train.get("batch_size", FALLBACK_TRAIN["batch_size"])) * int(train.get("accum_steps", 1)) * gpus
    if train.get("epochs") is not None:
        length = f"{train['epochs']:,} epochs"
    else:
        length = f"{train.get('steps', FALLBACK_TRAIN['steps']):,} steps"
    if train.get("lr") is not None:
        lr = float(train["lr"])
    elif train.get("base_lr") is not None:
        lr = float(train["base_lr"]) * batch / 256
    else:
        lr = float(FALLBACK_TRAIN["lr"])
    return {"length": length, "batch": batch, "lr": lr}


def check_launch_section(section, where: str = "recipe") -> dict:
    """Validate a recipe's ``launch`` section (None or a mapping of :data:`LAUNCH_FIELDS`)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValueError(f"{where}: section 'launch' must be a mapping such as {{gpus: 64}}, got {section!r}")
    unknown = sorted(set(section) - set(LAUNCH_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} in section 'launch'; valid fields: {list(LAUNCH_FIELDS)}")
    positive_int(section.get("gpus", 1), f"{where}: launch.gpus")
    return section


def check_recipe(recipe, where: str = "recipe") -> dict:
    """Check a recipe's sections (``where`` names it in errors); return it unchanged.

    The ``launch`` section (the GPU count of the published run) is checked here but read only
    by ``maskvid-edu launch`` (:mod:`maskvid_edu.launch`); ``pretrain`` ignores it.
    """
    if not isinstance(recipe, dict):
        raise ValueError(f"{where} must hold a mapping with sections {RECIPE_SECTIONS}")
    unknown = sorted(set(recipe) - set(RECIPE_SECTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown section(s) {unknown}; valid sections: {list(RECIPE_SECTIONS)}")
    for section in ("model_overrides", "data", "train"):
        if recipe.get(section) is not None and not isinstance(recipe[section], dict):
            raise ValueError(f"{where}: section {section!r} must be a mapping")
    check_launch_section(recipe.get("launch"), where)
    return recipe


def demo_model(method: str) -> str:
    """The registered CPU preset of a method: its preferred one, else the first ``<method>_*_demo``."""
    names = list_models()
    preferred = _PREFERRED_DEMO.get(method)
    if preferred in names:
        return preferred
    candidates = [n for n in names if n.startswith(method + "_") and n.endswith("_demo")]
    if not candidates:
        raise ValueError(
            f"--method {method}: no model of this method is registered yet "
            f"(registered models: {', '.join(names)})"
        )
    return candidates[0]


# --------------------------------------------------------------------------------------------
# Demo recipe < --config < flags
# --------------------------------------------------------------------------------------------


def _demo_recipe(method: str) -> dict:
    """The method's shipped demo recipe, or the fallback train section when it has none."""
    if f"{method}_demo" in shipped_recipes():
        return load_recipe(f"{method}_demo")
    return {"train": dict(FALLBACK_TRAIN)}


def _layer(demo: dict, recipe: dict) -> dict:
    """``recipe`` over ``demo``, section by section: a section the recipe gives replaces the
    demo's whole (its values were chosen together: an lr goes with its batch and warm-up); a
    section it leaves out keeps the demo's. The demo's ``model_overrides`` stay only with the
    demo's model."""
    layered = {**demo, **{k: v for k, v in recipe.items() if v is not None}}
    if "model_overrides" not in recipe and recipe.get("model") not in (None, demo.get("model")):
        layered.pop("model_overrides", None)
    return layered


def _options(options, values: dict) -> dict:
    """The values of :data:`PRETRAIN_OPTIONS` from a mapping or an object with those attributes
    (parsed flags), then keywords; a name outside :data:`PRETRAIN_OPTIONS` in a mapping or
    keyword is an error (a typo would otherwise be ignored)."""
    if options is None or isinstance(options, Mapping):
        merged = dict(options or {})
    else:
        merged = {name: getattr(options, name, None) for name in PRETRAIN_OPTIONS}
    merged.update(values)
    unknown = sorted(set(merged) - set(PRETRAIN_OPTIONS))
    if unknown:
        raise ValueError(f"resolve_pretrain: unknown option(s) {unknown}; valid: {list(PRETRAIN_OPTIONS)}")
    return {name: merged.get(name) for name in PRETRAIN_OPTIONS}


def resolve_pretrain(options=None, /, **values) -> dict:
    """Layer demo recipe < ``config`` < single values into ``{method, model, model_overrides, data, train}``.

    options: a mapping of the values of :data:`PRETRAIN_OPTIONS` (``maskvid-edu pretrain``'s
        flags with ``_`` for ``-``; an object with those attributes, such as parsed flags, does
        too); ``values``: more of them as keywords. A value left out or None keeps the recipe's.
        ``config`` names a recipe (path or shipped name) layered over the method's demo recipe
        section by section (a section it gives replaces the demo's; one it leaves out keeps it);
        ``decoder`` sets ``data.backend``; ``out`` is required.

    ``train`` is a validated :class:`~maskvid_edu.train.TrainConfig`; everything else is plain
    data (written to ``config.yaml``). Raises ValueError / FileNotFoundError naming the flag.
    """
    args = _options(options, values)
    recipe = load_recipe(args["config"]) if args["config"] else {}
    method = args["method"] or recipe.get("method")
    if method is None and args["model"]:
        method = next((m for m in METHODS if args["model"].startswith(m + "_")), None)
    method = method or "videomae"
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if recipe.get("method") not in (None, method):
        raise ValueError(f"--method {method} contradicts --config, whose method is {recipe['method']!r}")
    recipe = _layer(_demo_recipe(method), recipe)

    model = args["model"] or (recipe.get("model") if recipe.get("method", method) == method else None) or demo_model(method)
    if model not in list_models():
        raise ValueError(f"--model {model!r} is not registered; registered models: {', '.join(list_models())}")
    if not model.startswith(method + "_"):
        raise ValueError(f"--model {model!r} is not a {method} model (expected a name starting with '{method}_')")

    overrides = dict(recipe.get("model_overrides") or {})
    for item in args["model_arg"] or []:
        key, value = parse_key_value(item)
        overrides[key] = value
    if args.get("mask") is not None:
        if method == "videomac":
            raise ValueError("--mask: VideoMAC always draws its symmetric frame-pair mask; "
                             "it takes --mask-ratio only")
        overrides["mask_type"] = args["mask"].replace("-", "_")  # the model config checks the name
    if args["mask_ratio"] is not None:
        if not 0.0 < args["mask_ratio"] < 1.0:
            raise ValueError(f"--mask-ratio must be in (0, 1), got {args['mask_ratio']}")
        overrides["mask_ratio"] = args["mask_ratio"]

    data = {"source": "synthetic", **(recipe.get("data") or {})}
    if args["data"] is not None:
        data["source"] = args["data"]
    if data["source"] not in DATA_SOURCES and not Path(str(data["source"])).exists():
        raise FileNotFoundError(
            f"--data {data['source']!r}: neither one of {list(DATA_SOURCES)} nor an existing list file "
            "(`path label` lines or CSV) or folder of videos"
        )
    if args["root"] is not None:
        data["root"] = str(require_path(args["root"], "--root", "video folder the list's paths are relative to", kind="dir"))
    if args["num_samples"] is not None:
        data["num_samples"] = args["num_samples"]
    if args["decoder"] is not None:
        if data["source"] in DATA_SOURCES:
            raise ValueError(f"--decoder {args['decoder']} reads video files: give a list file or folder with --data")
        data["backend"] = args["decoder"]

    train = dict(recipe.get("train") or {})
    flags = {
        "steps": args["steps"], "epochs": args["epochs"], "batch_size": args["batch_size"],
        "accum_steps": args["accum_steps"], "lr": args["lr"], "base_lr": args["base_lr"], "min_lr": args["min_lr"],
        "warmup_steps": args["warmup_steps"], "warmup_epochs": args["warmup_epochs"],
        "weight_decay": args["weight_decay"], "clip_grad": args["clip_grad"], "amp": args["amp"],
        "device": args["device"], "seed": args["seed"], "num_workers": args["num_workers"],
        "num_threads": args["threads"], "log_every": args["log_every"], "ckpt_every": args["ckpt_every"],
    }
    for a, b in _EXCLUSIVE:
        if flags[a] is not None:
            train.pop(b, None)
        if flags[b] is not None:
            train.pop(a, None)
    train.update({k: v for k, v in flags.items() if v is not None})
    if args["compile"]:
        train["compile"] = True
    if args["tensorboard"]:
        train["tensorboard"] = True
    if args["no_progress"]:
        train["progress"] = False
    if "steps" not in train and "epochs" not in train:
        train["steps"] = FALLBACK_TRAIN["steps"]
    if args["out"] is None:
        raise ValueError("--out is required: the folder the run writes to")
    train["out_dir"] = str(args["out"])
    return {"method": method, "model": model, "model_overrides": overrides, "data": data,
            "train": TrainConfig.from_dict(train)}


# --------------------------------------------------------------------------------------------
# The dataset of a recipe
# --------------------------------------------------------------------------------------------


def input_shape(model) -> tuple[int, int]:
    """``(frames, size)`` of the clips a model reads, from its config (``input_frames`` when a
    model reads an extra frame, as MAM2's motion target does)."""
    cfg = getattr(model, "config", None)
    # a model that reads an extra frame (MAM2's motion target) says so with input_frames
    frames = getattr(cfg, "input_frames", None) or getattr(cfg, "num_frames", None)
    size = getattr(cfg, "img_size", None)
    if not isinstance(frames, int) or not isinstance(size, int):
        raise ValueError(
            f"{type(model).__name__}'s config does not give its input size (num_frames, img_size); "
            "set data.num_frames and data.size in --config"
        )
    return frames, size


def pretrain_sampling(model) -> str:
    """How a pre-training model wants its frames: pairs (VideoMAC), T+1 frames (MAM2) or a clip."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "frame_gap", None) is not None and getattr(cfg, "num_frames", None) == 2:
        return "pair"
    if getattr(cfg, "input_frames", None) not in (None, getattr(cfg, "num_frames", None)):
        return "motion"
    return "dense"


def build_real_dataset(data: dict, model, seed: int):
    """Pre-training clips from a list file (``path label`` lines or CSV) or a folder of videos.

    Frames are sampled as the model needs them (:func:`pretrain_sampling`), cropped with
    VideoMAE's multi-scale crop and normalised; unreadable videos are skipped and counted, never
    replaced (see :mod:`maskvid_edu.data.datasets`).
    """
    # a recipe's synthetic stand-in fields (num_frames, size, num_samples, …) do not apply to
    # real clips: the model's config gives the clip shape
    synthetic_only = {f.name for f in dataclasses.fields(SyntheticConfig)} - set(REAL_DATA_FIELDS)
    options = {k: v for k, v in data.items() if k != "source" and k not in synthetic_only}
    unknown = sorted(set(options) - set(REAL_DATA_FIELDS))
    if unknown:
        raise ValueError(f"data: unknown field(s) {unknown} for real clips; valid fields: {list(REAL_DATA_FIELDS)}")
    cfg = model.config
    frames, size = input_shape(model)
    sampling = options.pop("sampling", None) or pretrain_sampling(model)
    clip_len = getattr(cfg, "num_frames", frames)
    common = dict(mode="pretrain", sampling=sampling, clip_len=clip_len, size=size, seed=seed, **options)
    source = Path(str(data["source"]))
    root = common.pop("root", None)
    try:
        if source.is_dir():
            return VideoDataset.from_folder(source, labelled=False, **common)
        return VideoDataset.from_list(source, root, **common)
    except ValueError as err:
        what = "folder of videos" if source.is_dir() else "list file"
        raise ValueError(f"--data {str(source)!r} ({what}): {err}") from err


def build_dataset(data: dict, model, seed: int):
    """The dataset named by a recipe's ``data`` section: ``synthetic``, or a list file / folder
    of real videos (:func:`build_real_dataset`).

    Synthetic ``data`` takes :class:`~maskvid_edu.data.synthetic.SyntheticConfig`'s fields
    (``num_frames`` and ``size`` default to the model's input) and ``pair_gap``: render clips
    of ``num_frames`` and give the model two frames ``pair_gap`` apart of each, at a new random
    position every epoch (:class:`~maskvid_edu.data.wrappers.FramePairs`; VideoMAC's adjacent
    frames, where a 2-frame clip would span the whole motion)."""
    if data["source"] not in DATA_SOURCES:
        return build_real_dataset(data, model, seed)

    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    options = {k: v for k, v in data.items() if k not in ("source", "pair_gap")}
    pair_gap = data.get("pair_gap")
    if pair_gap is not None and (isinstance(pair_gap, bool) or not isinstance(pair_gap, int) or pair_gap < 1):
        raise ValueError(f"data: pair_gap must be a positive int (frames between the two of a pair), got {pair_gap!r}")
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"data: unknown synthetic dataset field(s) {unknown}; valid fields: {sorted(fields)}")
    for key in ("radius", "translation", "rotation", "zoom"):
        if isinstance(options.get(key), list):
            options[key] = tuple(options[key])
    if "num_frames" not in options or "size" not in options:
        frames, size = input_shape(model)
        options.setdefault("num_frames", frames)
        options.setdefault("size", size)
    options.setdefault("seed", seed)
    dataset = SyntheticVideoDataset(SyntheticConfig(**options))
    if pair_gap is not None:  # VideoMAC: two frames pair_gap apart of each longer clip, a new t each epoch
        return FramePairs(dataset, gap=pair_gap, keys=("video",))
    return dataset


# --------------------------------------------------------------------------------------------
# Before a run starts
# --------------------------------------------------------------------------------------------


def check_batch(dataset, batch_size: int, world_size: int = 1) -> None:
    """Refuse, before anything is written, a dataset without one full batch per process
    (ValueError suggesting the ``--batch-size`` that fits)."""
    per_rank = len(dataset) // world_size
    if per_rank < batch_size:
        fix = f"pass --batch-size {per_rank} or less" if per_rank >= 1 else "give more clips (or fewer processes)"
        raise ValueError(f"the dataset has {len(dataset)} clips, fewer than one batch of --batch-size {batch_size} "
                         f"on each of {world_size} process(es): {fix}")


def check_resume(path: Path, plan: dict, model) -> None:
    """Refuse ``--resume`` before training when the checkpoint cannot continue the run of
    ``plan`` (:func:`resolve_pretrain`) with ``model``: an unreadable file, another model, or
    weights of other shapes. Each ValueError names the file, what it holds, what the plan builds
    and the flags that fix it."""
    path = Path(path)
    try:
        ckpt = load_checkpoint(path)
    except ValueError as err:
        raise ValueError(f"--resume: {err}; resume from an intact checkpoint, or start afresh in another --out") from err
    meta = ckpt.get("meta") or {}
    rerun = f"--config {str(path.parent / 'config.yaml')!r}"
    if meta.get("model") not in (None, plan["model"]):
        method = meta.get("method") or "?"
        raise ValueError(f"--resume: {str(path)!r} holds a {method} run of model {meta['model']!r}, but this command "
                         f"builds {plan['model']!r} ({plan['method']}): pass --method {method} --model {meta['model']} "
                         f"(or {rerun})")
    mismatch = state_dict_mismatch(model.state_dict(), ckpt.get("model") or {})
    if mismatch:
        raise ValueError(f"--resume: {str(path)!r} does not fit model {plan['model']!r} with overrides "
                         f"{plan['model_overrides']}: {mismatch}; pass the run's --model-arg values (or {rerun})")


def load_vqgan_tokenizer(path, preset: str = "vqgan_imagenet_f16_1024"):
    """A frozen taming-transformers VQGAN encoder + codebook from a checkpoint file, for MAM2's
    appearance codes (the decoder and loss tensors of the checkpoint are ignored)."""
    path = require_path(path, "--tokenizer", "VQGAN checkpoint (taming-transformers .ckpt)")
    tokenizer = TamingVQGANEncoder.from_preset(preset)
    ignored = tokenizer.load_taming(path)
    print(f"tokenizer: {preset} from {path} ({len(ignored)} decoder/loss tensors ignored)", flush=True)
    return tokenizer.eval()


#: What ``--data`` accepts besides ``synthetic`` for ``finetune`` / ``probe``.
CLASSIFY_DATA_HELP = (
    "training clips: 'synthetic' (the motion dataset, default), a list file ('path label' lines, "
    "'path,label' CSV or a Kinetics CSV; needs --val-data), or a UCF101 folder (videos in "
    "<DIR>/<Class>/*.avi, split files in --split-dir, default <DIR>/ucfTrainTestlist)"
)


def classification_data(args, clip_len: int, size: int, *, train_mode: str, val_mode: str):
    """``(train, val, num_classes, words)``: the labelled clips ``finetune`` / ``probe`` read.

    args: an object with the values of those commands' data flags as attributes (``data``,
    ``val_data``, ``root``, ``split_dir``, ``split``, ``num_classes``, ``num_samples``,
    ``val_samples``, ``seed``, ``stride``, ``sampling``, ``test_clips``, ``test_crops``), e.g. the
    parsed command line; errors name the flag. ``data`` is one of :data:`CLASSIFY_DATA_HELP`.
    Labels are checked against ``num_classes`` before anything trains.

    Fine-tuning's augmentation: with ``train_mode="train"`` and real videos, ``args.rand_augment``
    (timm's notation, None = off) and ``args.erasing`` (a probability) make the training clips'
    :class:`~maskvid_edu.data.augment.ClipAugment`; the synthetic CPU preset has none.
    """
    augment = None
    if train_mode == "train" and args.data != "synthetic":
        augment = ClipAugment(getattr(args, "rand_augment", None), getattr(args, "erasing", 0.0)) or None
    common = dict(clip_len=clip_len, stride=args.stride, size=size, test_clips=args.test_clips, test_crops=args.test_crops,
                  sampling=args.sampling)
    if args.data == "synthetic":
        k = args.num_classes or 8
        if args.val_data is not None or args.split_dir is not None:
            raise ValueError("--val-data and --split-dir go with a list file or a UCF101 folder, not --data synthetic")
        base = dict(num_frames=clip_len, size=size, num_classes=k)
        train = SyntheticVideoDataset(SyntheticConfig(**base, num_samples=args.num_samples, seed=args.seed))
        val_cfg = dict(base, num_samples=args.val_samples, seed=args.seed + 1)
        if val_mode == "test" and (args.test_clips > 1 or args.test_crops > 1):
            # render longer and larger clips and cut views the size of the training clips
            val_cfg.update(num_frames=clip_len + (args.test_clips - 1) * max(1, clip_len // 2),
                           size=size + (size // 8 if args.test_crops > 1 else 0))
        val = SyntheticVideoDataset(SyntheticConfig(**val_cfg))
        return train, val, k, f"synthetic motion data ({k} classes, {len(train)} training clips)"
    path = Path(args.data)
    if not path.exists():
        raise FileNotFoundError(f"--data {args.data!r}: no such file or folder (nor 'synthetic')")
    if path.is_file():
        if args.val_data is None:
            raise ValueError(f"--data {args.data!r} is a list file: give the evaluation list with --val-data")
        require_path(args.val_data, "--val-data", "evaluation list file")
        if args.root is not None:
            require_path(args.root, "--root", "video folder", kind="dir")
        train = VideoDataset.from_list(path, args.root, mode=train_mode, augment=augment, **common)
        val = VideoDataset.from_list(args.val_data, args.root, mode=val_mode, **common)
        labels = [s.label for s in train.samples + val.samples if s.label is not None]
        k = args.num_classes or (len(train.classes) if train.classes else max(labels) + 1)
        check_labels(train.samples, path, k)
        check_labels(val.samples, args.val_data, k)
        return train, val, k, f"{path.name} ({len(train)} training videos, {k} classes)"
    split_dir = Path(args.split_dir) if args.split_dir is not None else path / "ucfTrainTestlist"
    require_path(split_dir, "--split-dir", "UCF101 split folder (holding classInd.txt)", kind="dir")
    for name in ("classInd.txt", f"trainlist0{args.split}.txt", f"testlist0{args.split}.txt"):
        require_path(split_dir / name, "--split-dir", f"UCF101 split file {name}")
    train = VideoDataset.ucf101(path, split_dir, args.split, "train", mode=train_mode, augment=augment, **common)
    val = VideoDataset.ucf101(path, split_dir, args.split, "test", mode=val_mode, **common)
    k = args.num_classes or len(train.classes)
    check_labels(train.samples, split_dir / f"trainlist0{args.split}.txt", k)
    check_labels(val.samples, split_dir / f"testlist0{args.split}.txt", k)
    return train, val, k, f"UCF101 split {args.split} ({len(train)} training videos)"


def clip_shape(model, args) -> tuple[int, int]:
    """``(frames, size)`` of the clips ``model`` reads; ``args.clip_len`` / ``args.size`` override."""
    frames, size = (None, None)
    for candidate in (model, getattr(model, "encoder", None)):  # a fine-tuned classifier: its encoder's
        try:
            frames, size = input_shape(candidate)
            break
        except ValueError:
            pass
    frames = args.clip_len or frames
    size = args.size or size
    if not frames or not size:
        raise ValueError("the model's config does not give its input size: pass --clip-len and --size")
    return frames, size
