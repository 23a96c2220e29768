"""``maskvid-edu pretrain``: its flags, and the dispatch to :func:`maskvid_edu.train.train`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import yaml

from ..data.datasets import UnusableDataError, collate_skip_bad, first_usable
from ..models import create
from ..recipes import (
    DATA_SOURCES,
    METHODS,
    PRETRAIN_OPTIONS,
    RECIPE_SECTIONS,
    build_dataset,
    check_batch,
    check_resume,
    load_vqgan_tokenizer,
    resolve_pretrain,
    shipped_recipes,
)
from ..train import CHECKPOINT_NAME, train
from ..widgets import reconstruction_figure, render_training_curves

__all__ = ["DECODERS", "add_pretrain"]

#: ``--decoder`` choices: ``auto`` and the backends of :mod:`maskvid_edu.data.decoders`.
DECODERS = ("auto", "decord", "pyav", "frames")


# --------------------------------------------------------------------------------------------
# pretrain
# --------------------------------------------------------------------------------------------


def _pretrain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        plan = resolve_pretrain({name: getattr(args, name) for name in PRETRAIN_OPTIONS})
        out = Path(args.out)
        checkpoint = out / CHECKPOINT_NAME
        if checkpoint.exists() and not args.resume:
            raise ValueError(f"--out {str(out)!r} already holds {CHECKPOINT_NAME}: pass --resume to continue it, or choose another --out")
        if args.resume and not checkpoint.exists():
            raise FileNotFoundError(f"--resume: {str(checkpoint)!r} does not exist")
        config = plan["train"]
        torch.manual_seed(config.seed)
        extra = {}
        if args.tokenizer is not None:
            if plan["method"] != "mam2":
                raise ValueError(f"--tokenizer gives MAM2 its appearance codes; --method is {plan['method']!r}")
            extra["tokenizer"] = load_vqgan_tokenizer(args.tokenizer, args.tokenizer_preset)
        model = create(plan["model"], **plan["model_overrides"], **extra)
        if args.resume:
            check_resume(checkpoint, plan, model)
        dataset = build_dataset(plan["data"], model, seed=config.seed)
        check_batch(dataset, config.batch_size, world_size=int(os.environ.get("WORLD_SIZE", "1")))
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"maskvid-edu pretrain: error: {err}\n")

    rank0 = int(os.environ.get("RANK", "0")) == 0
    resolved = {**{k: plan[k] for k in ("method", "model", "model_overrides", "data")}, "train": config.to_dict(),
                "launch": {"gpus": int(os.environ.get("WORLD_SIZE", "1"))}}  # the processes this run used
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"pre-training {plan['model']} ({n_params / 1e6:.2f} M trainable parameters) on {dataset!r}", flush=True)
    meta = {k: plan[k] for k in ("method", "model", "model_overrides", "data")}
    # real clips: drop unreadable items from a batch, count them
    collate = collate_skip_bad if hasattr(dataset, "stats") else None
    try:
        history = train(model, dataset, config, resume=True if args.resume else None, meta=meta, collate_fn=collate)
    except FloatingPointError as err:
        print(f"maskvid-edu pretrain: {err}", file=sys.stderr)
        return 1
    except UnusableDataError as err:
        parser.exit(2, f"maskvid-edu pretrain: error: {err}\n")
    if rank0 and hasattr(dataset, "summary"):
        print(dataset.summary(), flush=True)
    if not rank0:
        return 0
    title = f"{plan['model']} on {plan['data']['source']} data, {history[-1]['step'] if history else 0} steps"
    render_training_curves(history, title=title).savefig(out / "loss_curve.png")
    written = [CHECKPOINT_NAME, "metrics.jsonl", "config.yaml", "loss_curve.png"]
    try:
        item = first_usable(dataset)  # the first clip may be a skipped, unreadable video
        if item is None:
            raise ValueError("none of the first clips of the dataset could be read")
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(config.seed)
        reconstruction_figure(model, item["video"], generator=generator, title=title).savefig(out / "reconstruction.png")
        written.append("reconstruction.png")
    except ValueError as err:
        print(f"reconstruction figure skipped: {err}")
    last = history[-1] if history else {}
    print(f"done: step {last.get('step')}, loss {last.get('loss', float('nan')):.4f}; wrote {out}/"
          f"{{{', '.join(written)}}}")
    return 0


def add_pretrain(sub) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pre-train a masked video model (VideoMAE, VideoMAC, MAM2)",
        description="Pre-train a masked video model. With only --out: VideoMAE's CPU preset on the\n"
        "synthetic motion dataset (one to two minutes on two cores). Settings come from the\n"
        "method's demo recipe, then --config (a section it gives replaces the demo's, one it\n"
        "leaves out keeps the demo's), then these flags; a flag left out keeps the recipe's value.",
        epilog="examples:\n"
        "  maskvid-edu pretrain --out runs/demo\n"
        "  maskvid-edu pretrain --out runs/demo --steps 1000 --mask-ratio 0.75 --model-arg normalization=videomae\n"
        "  maskvid-edu pretrain --out runs/demo --resume --steps 2000\n"
        "  maskvid-edu pretrain --out runs/mgmae --mask motion-guided     # MGMAE's motion-guided mask\n"
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
    g.add_argument("--mask", default=None, metavar="TYPE",
                   choices=("tube", "random", "frame", "motion-guided", "multiblock", "multiblock-long"),
                   help="encoder mask (model config field mask_type): tube, random, frame, motion-guided "
                        "(MGMAE: a tube that follows the clip's block-matched motion; VideoMAE, MAM2), "
                        "multiblock or multiblock-long (V-JEPA)")
    g.add_argument("--mask-ratio", type=float, default=None, metavar="R",
                   help="share of tokens hidden from the encoder (model config field mask_ratio)")
    g.add_argument("--tokenizer", default=None, metavar="CKPT",
                   help="MAM2 only: a taming-transformers VQGAN checkpoint whose codes are the appearance targets "
                        "(frozen, computed on the fly); without it MAM2's appearance decoder predicts normalised pixels")
    g.add_argument("--tokenizer-preset", default="vqgan_imagenet_f16_1024", metavar="NAME",
                   help="architecture of the --tokenizer checkpoint (default: vqgan_imagenet_f16_1024)")
    g.add_argument("--data", default=None, metavar="SOURCE",
                   help=f"training clips: {', '.join(DATA_SOURCES)} (default), a list file (`path label` lines "
                        "or CSV, as VideoMAE's) or a folder of videos")
    g.add_argument("--root", default=None, metavar="DIR", help="folder the list file's video paths are relative to")
    g.add_argument("--decoder", choices=DECODERS, default=None,
                   help="how real videos are read (recipe data.backend; default auto: decord for files, checked "
                        "against PyAV, frames for folders of images)")
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
