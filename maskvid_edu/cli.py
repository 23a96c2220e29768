"""The command line: ``maskvid-edu <command> ...`` over the same functions the notebooks call.

``maskvid-edu pretrain --out runs/demo`` pre-trains the CPU preset of VideoMAE on the synthetic
motion dataset and writes, in ``runs/demo``:

- ``checkpoint.pt``     — model (with any EMA target), optimizer, scheduler, RNG states, step;
- ``metrics.jsonl``     — one record per log interval (step, lr, loss and every loss term, …);
- ``config.yaml``       — the resolved recipe; ``--config runs/demo/config.yaml`` reruns it;
- ``loss_curve.png``    — the loss (and its terms) against the step;
- ``reconstruction.png``— a clip: original / masked / reconstructed frames.

Settings come from three layers, later ones winning: the method's shipped demo recipe
(``maskvid_edu/configs/<method>_demo.yaml``), a ``--config`` file (a path, or the name of a shipped
recipe such as ``videomae_vit_b_k400``), then the flags. A recipe file has the sections::

    method: videomae
    model: videomae_vit_demo          # a name from maskvid_edu.models.list_models()
    model_overrides: {mask_ratio: 0.9}
    data: {source: synthetic, num_samples: 512}   # + any SyntheticConfig field
    train: {steps: 400, batch_size: 8, lr: 3.0e-3}  # any TrainConfig field

Launch with ``torchrun --nproc_per_node N -m maskvid_edu pretrain ...`` for data-parallel
training; the trainer picks the process group up from the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import yaml
from matplotlib.figure import Figure

__all__ = ["main", "build_parser", "resolve_pretrain", "reconstruction_figure", "loss_curve_figure", "METHODS"]

METHODS = ("videomae", "videomac", "mam2")
DATA_SOURCES = ("synthetic",)
RECIPE_SECTIONS = ("method", "model", "model_overrides", "data", "train")
# preferred demo preset per method; otherwise the first registered "<method>_*_demo"
_PREFERRED_DEMO = {"videomae": "videomae_vit_demo"}
DPI = 80
# training settings for a method that has no shipped demo recipe yet: short, CPU-sized
_FALLBACK_TRAIN = {"steps": 100, "batch_size": 8, "lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 10}


# --------------------------------------------------------------------------------------------
# Recipes
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
    if not isinstance(recipe, dict):
        raise ValueError(f"--config {str(name_or_path)!r} must hold a mapping with sections {RECIPE_SECTIONS}")
    unknown = sorted(set(recipe) - set(RECIPE_SECTIONS))
    if unknown:
        raise ValueError(f"--config {str(name_or_path)!r}: unknown section(s) {unknown}; valid sections: {list(RECIPE_SECTIONS)}")
    for section in ("model_overrides", "data", "train"):
        if recipe.get(section) is not None and not isinstance(recipe[section], dict):
            raise ValueError(f"--config {str(name_or_path)!r}: section {section!r} must be a mapping")
    return recipe


def _demo_model(method: str) -> str:
    from .models import list_models

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


def _parse_key_value(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ValueError(f"--model-arg expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key.isidentifier():
        raise ValueError(f"--model-arg: {key!r} is not a config field name")
    return key, yaml.safe_load(value)


def resolve_pretrain(args: argparse.Namespace) -> dict:
    """Merge demo recipe < ``--config`` < flags into ``{method, model, model_overrides, data, train}``.

    ``train`` is a validated :class:`~maskvid_edu.train.TrainConfig`; everything else is plain
    data (written to ``config.yaml``). Raises ValueError / FileNotFoundError naming the flag.
    """
    from .models import list_models
    from .train import TrainConfig

    recipe = load_recipe(args.config) if args.config else {}
    method = args.method or recipe.get("method")
    if method is None and args.model:
        method = next((m for m in METHODS if args.model.startswith(m + "_")), None)
    method = method or "videomae"
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if args.config is None:  # start from the method's demo recipe when one is shipped
        if f"{method}_demo" in shipped_recipes():
            recipe = load_recipe(f"{method}_demo")
        else:
            recipe = {"train": dict(_FALLBACK_TRAIN)}
    elif recipe.get("method") not in (None, method):
        raise ValueError(f"--method {method} contradicts --config, whose method is {recipe['method']!r}")

    model = args.model or (recipe.get("model") if recipe.get("method", method) == method else None) or _demo_model(method)
    if model not in list_models():
        raise ValueError(f"--model {model!r} is not registered; registered models: {', '.join(list_models())}")
    if not model.startswith(method + "_"):
        raise ValueError(f"--model {model!r} is not a {method} model (expected a name starting with '{method}_')")

    overrides = dict(recipe.get("model_overrides") or {})
    for item in args.model_arg or []:
        key, value = _parse_key_value(item)
        overrides[key] = value
    if args.mask_ratio is not None:
        if not 0.0 < args.mask_ratio < 1.0:
            raise ValueError(f"--mask-ratio must be in (0, 1), got {args.mask_ratio}")
        overrides["mask_ratio"] = args.mask_ratio

    data = {"source": "synthetic", **(recipe.get("data") or {})}
    if args.data is not None:
        data["source"] = args.data
    if data["source"] not in DATA_SOURCES:
        where = "an existing path" if Path(str(data["source"])).exists() else "not a known source"
        raise ValueError(
            f"--data {data['source']!r} ({where}): `maskvid-edu pretrain` accepts {list(DATA_SOURCES)} for now; "
            "pre-training on real clip folders or lists is not supported by the command line yet"
        )
    if args.num_samples is not None:
        data["num_samples"] = args.num_samples

    train = dict(recipe.get("train") or {})
    flags = {
        "steps": args.steps, "epochs": args.epochs, "batch_size": args.batch_size, "accum_steps": args.accum_steps,
        "lr": args.lr, "base_lr": args.base_lr, "min_lr": args.min_lr, "warmup_steps": args.warmup_steps,
        "warmup_epochs": args.warmup_epochs, "weight_decay": args.weight_decay, "clip_grad": args.clip_grad,
        "amp": args.amp, "device": args.device, "seed": args.seed, "num_workers": args.num_workers,
        "num_threads": args.threads,
        "log_every": args.log_every, "ckpt_every": args.ckpt_every,
    }
    for a, b in (("steps", "epochs"), ("warmup_steps", "warmup_epochs"), ("lr", "base_lr")):
        if flags[a] is not None:
            train.pop(b, None)
        if flags[b] is not None:
            train.pop(a, None)
    train.update({k: v for k, v in flags.items() if v is not None})
    if args.compile:
        train["compile"] = True
    if args.tensorboard:
        train["tensorboard"] = True
    if args.no_progress:
        train["progress"] = False
    if "steps" not in train and "epochs" not in train:
        train["steps"] = _FALLBACK_TRAIN["steps"]
    train["out_dir"] = str(args.out)
    return {"method": method, "model": model, "model_overrides": overrides, "data": data,
            "train": TrainConfig.from_dict(train)}


def _input_shape(model) -> tuple[int, int]:
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


def build_dataset(data: dict, model, seed: int):
    """The dataset named by a recipe's ``data`` section (only ``synthetic`` for now)."""
    from .data.synthetic import SyntheticConfig, SyntheticVideoDataset

    fields = {f.name for f in dataclasses.fields(SyntheticConfig)}
    options = {k: v for k, v in data.items() if k != "source"}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"data: unknown synthetic dataset field(s) {unknown}; valid fields: {sorted(fields)}")
    for key in ("radius", "translation", "rotation", "zoom"):
        if isinstance(options.get(key), list):
            options[key] = tuple(options[key])
    if "num_frames" not in options or "size" not in options:
        frames, size = _input_shape(model)
        options.setdefault("num_frames", frames)
        options.setdefault("size", size)
    options.setdefault("seed", seed)
    return SyntheticVideoDataset(SyntheticConfig(**options))


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def loss_curve_figure(history: list[dict], title: str = "", dpi: int = DPI) -> Figure:
    """The loss and every loss term of a run's history against the optimizer step."""
    fig = Figure(figsize=(6, 3.4), dpi=dpi)
    ax = fig.add_subplot()
    if not history:
        raise ValueError("history is empty: nothing to plot")
    steps = [r["step"] for r in history]
    keys = ["loss"] + [k for k in history[0] if k.startswith("loss_")]
    for k in keys:
        values = [r[k] for r in history]
        if k != "loss" and np.allclose(values, [r["loss"] for r in history]):
            continue  # a term equal to the total loss adds nothing
        ax.plot(steps, values, label=k, lw=1.6 if k == "loss" else 1.0)
    if all(r["loss"] > 0 for r in history):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over the log interval)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _pixel_target_normalization(model) -> str:
    """How ``model``'s ``pred`` is normalised, or ValueError if it does not predict pixels."""
    cfg = getattr(model, "config", None)
    if not isinstance(getattr(cfg, "tubelet", None), int) or not isinstance(getattr(cfg, "patch", None), int):
        raise ValueError(f"{type(model).__name__} has no config.tubelet / config.patch: cannot lay out its predictions")
    if hasattr(cfg, "normalization"):  # VideoMAE
        return cfg.normalization
    target = getattr(cfg, "appearance_target", None)  # MAM2's appearance head
    if target == "pixels_norm":
        return "videomae"
    if target is not None:
        raise ValueError(f"{type(model).__name__} predicts {target!r}, not pixels: no reconstruction to draw")
    return "none"


def reconstruction_figure(model, video: torch.Tensor, *, generator: torch.Generator | None = None,
                          num_frames: int = 4, title: str = "", dpi: int = DPI) -> Figure:
    """Original / masked / reconstructed frames of one clip (the first of ``video``).

    ``video``: ``(C, T, H, W)`` or ``(B, C, T, H, W)``, ImageNet-normalised. The model draws its
    own mask (``model.make_mask``); the reconstruction row shows the visible patches as they
    are and the model's prediction in place of every reconstructed patch. A model trained on
    per-patch normalised targets predicts each patch's pattern but not its mean and contrast;
    those are taken from the true patch (:func:`~maskvid_edu.patches.denormalize_patches`), and
    the figure says so. Needs ``model.config.tubelet`` and ``model.config.patch``.
    """
    from .data.transforms import denormalize
    from .patches import denormalize_patches, patchify, unpatchify
    from .widgets import PIXELS_NOTE, masked_frames

    norm = _pixel_target_normalization(model)
    tubelet, patch = model.config.tubelet, model.config.patch
    video = video if video.dim() == 5 else video.unsqueeze(0)
    video = video[:1].to(next(model.parameters()).device)  # (1, C, F, H, W), F ≥ T frames
    T = getattr(model.config, "num_frames", video.shape[2])
    C, _, H, W = video.shape[1:]
    grid = (T // tubelet, H // patch, W // patch)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mask = model.make_mask(video, generator=generator)  # (1, N)
            out = model(video, mask)
    finally:
        model.train(was_training)
    decoded = out.extras.get("decoded", out.mask) if isinstance(out.extras, dict) else out.mask  # (1, N)
    if out.pred is None or out.pred.dim() != 3 or out.pred.shape[-1] != tubelet * patch * patch * C:
        raise ValueError(f"{type(model).__name__}'s pred is not one row of tubelet pixels per token")
    video = video[:, :, :T]  # the frames the tokens cover
    pixels = denormalize(video.float(), channel_dim=1)  # (1, C, T, H, W) in [0, 1]
    patches = patchify(pixels, tubelet, patch)  # (1, N, P)
    index = decoded[0].nonzero().squeeze(1)  # reconstructed tokens, raster order
    pred = denormalize_patches(out.pred.float(), patches[:, index], norm, channels=C)  # (1, N_dec, P)
    recon = patches.clone()
    recon[:, index] = pred
    recon = unpatchify(recon, grid, tubelet, patch).clamp(0, 1)[0]  # (C, T, H, W)

    frames = sorted({int(round(f)) for f in np.linspace(0, T - 1, min(num_frames, T))})
    rows = [
        ("original", (pixels[0].clamp(0, 1)[:, frames].permute(1, 2, 3, 0).cpu().numpy())),
        (f"masked ({mask.float().mean().item():.0%} hidden)", masked_frames(video.cpu(), mask.cpu(), grid, frames) / 255.0),
        ("visible + predicted", recon[:, frames].permute(1, 2, 3, 0).cpu().numpy()),
    ]
    fig = Figure(figsize=(1.6 * len(frames) + 0.6, 5.4), dpi=dpi)
    axes = fig.subplots(3, len(frames), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, f in enumerate(frames):
            ax = axes[r][c]
            ax.imshow(images[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    note = PIXELS_NOTE
    if norm != "none":
        note += f";\npredictions of the {norm!r}-normalised target un-normalised with each true patch's mean and std"
    fig.suptitle(title, fontsize=9)
    fig.text(0.5, 0.01, note, ha="center", fontsize=6.5)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _pretrain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .models import create
    from .train import CHECKPOINT_NAME, train

    try:
        plan = resolve_pretrain(args)
        out = Path(args.out)
        checkpoint = out / CHECKPOINT_NAME
        if checkpoint.exists() and not args.resume:
            raise ValueError(f"--out {str(out)!r} already holds {CHECKPOINT_NAME}: pass --resume to continue it, or choose another --out")
        if args.resume and not checkpoint.exists():
            raise FileNotFoundError(f"--resume: {str(checkpoint)!r} does not exist")
        config = plan["train"]
        torch.manual_seed(config.seed)
        model = create(plan["model"], **plan["model_overrides"])
        dataset = build_dataset(plan["data"], model, seed=config.seed)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"maskvid-edu pretrain: error: {err}\n")

    rank0 = int(os.environ.get("RANK", "0")) == 0
    resolved = {**{k: plan[k] for k in ("method", "model", "model_overrides", "data")}, "train": config.to_dict()}
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"pre-training {plan['model']} ({n_params / 1e6:.2f} M trainable parameters) on {dataset!r}", flush=True)
    meta = {k: plan[k] for k in ("method", "model", "model_overrides", "data")}
    try:
        history = train(model, dataset, config, resume=True if args.resume else None, meta=meta)
    except FloatingPointError as err:
        print(f"maskvid-edu pretrain: {err}", file=sys.stderr)
        return 1
    if not rank0:
        return 0
    title = f"{plan['model']} on {plan['data']['source']} data, {history[-1]['step'] if history else 0} steps"
    loss_curve_figure(history, title=title).savefig(out / "loss_curve.png")
    try:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(config.seed)
        reconstruction_figure(model, dataset[0]["video"], generator=generator, title=title).savefig(out / "reconstruction.png")
    except ValueError as err:
        print(f"reconstruction figure skipped: {err}")
    last = history[-1] if history else {}
    print(f"done: step {last.get('step')}, loss {last.get('loss', float('nan')):.4f}; wrote {out}/"
          f"{{{CHECKPOINT_NAME}, metrics.jsonl, config.yaml, loss_curve.png, reconstruction.png}}")
    return 0


def _add_pretrain(sub) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pre-train a masked video model (VideoMAE, VideoMAC, MAM2)",
        description="Pre-train a masked video model. With only --out: VideoMAE's CPU preset on the\n"
        "synthetic motion dataset (one to two minutes on two cores). Settings come from the\n"
        "method's demo recipe, then --config, then these flags; a flag left out keeps the\n"
        "recipe's value.",
        epilog="examples:\n"
        "  maskvid-edu pretrain --out runs/demo\n"
        "  maskvid-edu pretrain --out runs/demo --steps 1000 --mask-ratio 0.75 --model-arg normalization=videomae\n"
        "  maskvid-edu pretrain --out runs/demo --resume --steps 2000\n"
        "  torchrun --nproc_per_node 2 -m maskvid_edu pretrain --out runs/ddp   # data-parallel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what to train")
    g.add_argument("--method", choices=METHODS, default=None,
                   help="pre-training method (default: from --config, else inferred from --model, else videomae)")
    g.add_argument("--model", default=None, metavar="NAME",
                   help="registered model name, e.g. videomae_vit_demo or videomae_vit_b (default: the method's demo preset)")
    g.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="override one field of the model's config (repeatable; VALUE parsed as YAML)")
    g.add_argument("--mask-ratio", type=float, default=None, metavar="R",
                   help="share of tokens hidden from the encoder (model config field mask_ratio)")
    g.add_argument("--data", default=None, metavar="SOURCE",
                   help=f"training clips; accepted: {', '.join(DATA_SOURCES)} (default: synthetic)")
    g.add_argument("--num-samples", type=int, default=None, metavar="N", help="size of the synthetic dataset")
    g.add_argument("--config", default=None, metavar="YAML",
                   help="recipe file (path, or a shipped recipe name: "
                   f"{', '.join(shipped_recipes()) or 'none'}) with sections {', '.join(RECIPE_SECTIONS)}")
    g.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: checkpoint.pt, metrics.jsonl, config.yaml, loss_curve.png, reconstruction.png")

    g = p.add_argument_group("how long")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps")
    length.add_argument("--epochs", type=float, default=None, metavar="E", help="passes over the data (instead of --steps)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pt")

    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=None, metavar="B", help="clips per process and micro-batch")
    g.add_argument("--accum-steps", type=int, default=None, metavar="K", help="micro-batches per optimizer step")
    lr = g.add_mutually_exclusive_group()
    lr.add_argument("--lr", type=float, default=None, help="peak learning rate")
    lr.add_argument("--base-lr", type=float, default=None,
                    help="peak learning rate per 256 clips: lr = base_lr × effective batch / 256")
    g.add_argument("--min-lr", type=float, default=None, help="learning rate at the end of the cosine")
    warm = g.add_mutually_exclusive_group()
    warm.add_argument("--warmup-steps", type=int, default=None, metavar="N", help="linear warm-up steps")
    warm.add_argument("--warmup-epochs", type=float, default=None, metavar="E", help="linear warm-up epochs")
    g.add_argument("--weight-decay", type=float, default=None, metavar="WD", help="AdamW weight decay (not on norms, biases, tokens)")
    g.add_argument("--clip-grad", type=float, default=None, metavar="NORM", help="clip the global gradient norm")

    g = p.add_argument_group("execution")
    g.add_argument("--amp", choices=("none", "bf16", "fp16"), default=None,
                   help="mixed precision (fp16 needs CUDA)")
    g.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    g.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--seed", type=int, default=None, help="seed of model init, masks, data order (default: 0)")
    g.add_argument("--num-workers", type=int, default=None, metavar="N", help="data-loader worker processes")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="intra-op CPU threads while training (default: from the recipe, else torch's)")
    g.add_argument("--log-every", type=int, default=None, metavar="N", help="steps between metric records")
    g.add_argument("--ckpt-every", type=int, default=None, metavar="N", help="steps between checkpoints (always at the end)")
    g.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars (needs tensorboard)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_pretrain, parser=p)


def build_parser() -> argparse.ArgumentParser:
    """The ``maskvid-edu`` argument parser (one sub-parser per command)."""
    parser = argparse.ArgumentParser(
        prog="maskvid-edu",
        description="Masked video modeling — VideoMAE, VideoMAC, MAM2 — from the command line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_pretrain(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maskvid-edu`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args, args.parser)


if __name__ == "__main__":
    raise SystemExit(main())
