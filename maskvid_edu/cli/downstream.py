"""``maskvid-edu propagate | finetune | probe | features``: judging an encoder (:mod:`maskvid_edu.evaluate`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import torch

from ..data.augment import VIDEOMAE_ERASING, VIDEOMAE_RAND_AUGMENT
from ..data.datasets import collate_skip_bad
from ..data.wrappers import ClipViews
from ..evaluate.davis import downstream_encoder, evaluate_davis, load_pretrained
from ..evaluate.features import write_features
from ..evaluate.finetune import VideoClassifier, evaluate_views, finetune
from ..evaluate.attentive_probe import attentive_probe, extract_tokens
from ..evaluate.probe import FrameEncoder, extract_features, knn_accuracy, linear_probe
from ..evaluate.propagation import PropagationConfig
from ..models.vit import VisionTransformer
from ..recipes import CLASSIFY_DATA_HELP, classification_data, clip_shape
from ..train import CHECKPOINT_NAME, TrainConfig, load_checkpoint
from ..utils import parse_key_value, require_path
from .pretrain import DECODERS

__all__ = ["add_downstream", "add_features"]


# --------------------------------------------------------------------------------------------
# Downstream commands: propagate, finetune, probe
# --------------------------------------------------------------------------------------------

def _propagate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        root = require_path(args.data, "--data", "DAVIS root", kind="dir")
        if args.ckpt is None and not args.random_init:
            raise ValueError("--ckpt is required (or --random-init with --model for an untrained encoder)")
        if args.ckpt is not None and args.random_init:
            raise ValueError("--ckpt and --random-init exclude each other")
        make = PropagationConfig.crw if args.config == "crw" else PropagationConfig.dino
        changes = {k: v for k, v in (("topk", args.topk), ("radius", args.radius), ("n_last", args.n_last),
                                      ("temperature", args.temperature)) if v is not None}
        config = make(**changes)
        model, words = load_pretrained(args.ckpt, args.model or ("videomae_vit_demo" if args.random_init else None),
                                       args.model_arg)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        scores = evaluate_davis(downstream_encoder(model), root, args.out, config, split=args.split, year=args.year,
                                resolution=args.resolution, sequences=args.sequences.split(",") if args.sequences else None,
                                size=args.size, stage=args.stage, device=args.device)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        parser.exit(2, f"maskvid-edu propagate: error: {err}\n")
    print(f"label propagation with {words}, {args.config} protocol "
          f"(top-k {config.topk}, radius {config.radius}, context first + {config.n_last}, τ = {config.temperature})")
    width = max(len(n) for n in scores["sequences"]) if scores["sequences"] else 8
    print(f"{'sequence':<{width}}  {'J&F':>6} {'J':>6} {'F':>6}")
    for name, s in scores["sequences"].items():
        print(f"{name:<{width}}  {s['J&F']:6.3f} {s['J']:6.3f} {s['F']:6.3f}")
    print(f"J&F-Mean {scores['J&F-Mean']:.3f}  J-Mean {scores['J-Mean']:.3f}  F-Mean {scores['F-Mean']:.3f}  "
          f"({len(scores['per_object'])} objects in {len(scores['sequences'])} sequences)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in scores.items() if k != "predictions"}
    summary["config"] = dataclasses.asdict(config)
    summary["model"] = words
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"wrote the predicted masks and results.json to {out}/")
    return 0


def _classification_encoder(model, stage: int | None):
    encoder = model.encoder if isinstance(model, VideoClassifier) else downstream_encoder(model)
    if isinstance(encoder, VisionTransformer) or callable(getattr(encoder, "forward_features", None)):
        return encoder
    return FrameEncoder(encoder, stage=stage)  # an image encoder: frame by frame


def _finetune(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        out = Path(args.out)
        if (out / CHECKPOINT_NAME).exists() and not args.resume:
            raise ValueError(f"--out {str(out)!r} already holds {CHECKPOINT_NAME}: pass --resume to continue it, or choose another --out")
        if args.resume and not (out / CHECKPOINT_NAME).exists():
            raise FileNotFoundError(f"--resume: {str(out / CHECKPOINT_NAME)!r} does not exist")
        torch.manual_seed(args.seed)
        pretrained, words = load_pretrained(args.ckpt, args.model or (None if args.ckpt else "videomae_vit_demo"), args.model_arg)
        clip_len, size = clip_shape(pretrained, args)
        train_set, val_set, k, data_words = classification_data(args, clip_len, size, train_mode="train", val_mode="test")
        recipe = {"drop_path": args.drop_path, "layer_decay": args.layer_decay, "mixup_alpha": args.mixup,
                  "cutmix_alpha": args.cutmix, "label_smoothing": args.smoothing, "head_init_scale": args.head_init_scale,
                  "head_drop": args.head_drop}
        encoder = _classification_encoder(pretrained, args.stage)
        model = VideoClassifier(encoder, k, **recipe)
        recipe["feature_dim"] = model.config.feature_dim
        length = {"epochs": args.epochs} if args.epochs is not None else {"steps": args.steps or 200}
        train_cfg = dict(length, batch_size=args.batch_size, accum_steps=args.accum_steps, weight_decay=args.weight_decay,
                         betas=(0.9, 0.999), min_lr=args.min_lr,
                         clip_grad=args.clip_grad, amp=args.amp, device=args.device, seed=args.seed,
                         out_dir=str(out), num_workers=args.num_workers, num_threads=args.threads,
                         log_every=args.log_every, progress=not args.no_progress)
        if args.warmup_epochs is not None:
            train_cfg["warmup_epochs"] = args.warmup_epochs
        else:
            train_cfg["warmup_steps"] = args.warmup_steps
        if args.base_lr is not None:
            train_cfg["base_lr"] = args.base_lr
        else:
            train_cfg["lr"] = args.lr
        config = TrainConfig(**train_cfg)
        if args.val_data is None and args.data == "synthetic" and (args.test_clips > 1 or args.test_crops > 1):
            val_set = ClipViews(val_set, num_clips=args.test_clips, num_crops=args.test_crops, clip_len=clip_len, crop_size=size)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        parser.exit(2, f"maskvid-edu finetune: error: {err}\n")
    meta = {"kind": "finetune", "model": _pretrained_name(args, words), "model_overrides": _recorded_overrides(args),
            "num_classes": k, "classifier": recipe, "data": str(args.data)}
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"fine-tuning {words} ({n_params / 1e6:.2f} M parameters) on {data_words}", flush=True)
    collate = None if args.data == "synthetic" else collate_skip_bad
    try:
        history = finetune(model, train_set, config, resume=True if args.resume else None, collate_fn=collate, meta=meta)
    except FloatingPointError as err:
        print(f"maskvid-edu finetune: {err}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, the first process evaluates and reports
    result = evaluate_views(model, val_set, batch_size=args.batch_size, device=args.device)
    summary = {"accuracy": result.accuracy, "view_accuracy": result.view_accuracy, "top5": result.top5,
               "num_views": result.num_views, "num_clips": int(result.labels.numel()),
               "final_loss": history[-1]["loss"] if history else None, "model": words, "data": data_words}
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    top5 = f", top-5 {result.top5:.3f}" if result.top5 is not None else ""
    print(f"done: step {history[-1]['step'] if history else 0}, loss {summary['final_loss']:.4f}; "
          f"accuracy {result.accuracy:.3f} over {result.num_views} view(s) per clip "
          f"(single view {result.view_accuracy:.3f}){top5} on {summary['num_clips']} clips; wrote {out}/")
    return 0


def _pretrained_name(args, words: str) -> str:
    return args.model or words.split(" ", 1)[0]


def _recorded_overrides(args) -> dict:
    overrides = {}
    if args.ckpt is not None:
        meta = load_checkpoint(args.ckpt).get("meta") or {}
        if args.model in (None, meta.get("model")):
            overrides.update(meta.get("model_overrides") or {})
    overrides.update(dict(parse_key_value(item) for item in args.model_arg or ()))
    return overrides


def _frozen_model(args) -> tuple[torch.nn.Module, str]:
    """``probe`` / ``features``: threads and seed set, the checkpoint's model (a random demo without one)."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return load_pretrained(args.ckpt, args.model or (None if args.ckpt else "videomae_vit_demo"), args.model_arg)


def _probe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        pretrained, words = _frozen_model(args)
        clip_len, size = clip_shape(pretrained, args)
        train_set, val_set, k, data_words = classification_data(args, clip_len, size, train_mode="val", val_mode="val")
        encoder = _classification_encoder(pretrained, args.stage)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        parser.exit(2, f"maskvid-edu probe: error: {err}\n")
    print(f"frozen features of {words} on {data_words}", flush=True)
    chance = 1.0 / k
    summary = {"chance": chance, "model": words, "data": data_words}
    if args.head in ("linear", "all"):
        train_x, train_y = extract_features(encoder, train_set, batch_size=args.batch_size, device=args.device)
        val_x, val_y = extract_features(encoder, val_set, batch_size=args.batch_size, device=args.device)
        probe = linear_probe(train_x, train_y, val_x, val_y, epochs=args.epochs, lr=args.lr,
                             weight_decay=args.weight_decay, seed=args.seed)
        knn = knn_accuracy(train_x, train_y, val_x, val_y, k=args.knn_k, temperature=args.knn_temperature)
        print(f"features {tuple(train_x.shape)} train, {tuple(val_x.shape)} val; chance {chance:.3f}")
        print(f"linear probe: accuracy {probe.accuracy:.3f} (train {probe.train_accuracy:.3f})")
        print(f"k-NN (k={args.knn_k}, τ={args.knn_temperature:g}): accuracy {knn:.3f}")
        summary.update(linear_probe=probe.accuracy, linear_probe_train=probe.train_accuracy, knn=knn)
    if args.head in ("attentive", "all"):
        train_t, train_y = extract_tokens(encoder, train_set, batch_size=args.batch_size, device=args.device)
        val_t, val_y = extract_tokens(encoder, val_set, batch_size=args.batch_size, device=args.device)
        attentive = attentive_probe(train_t, train_y, val_t, val_y, epochs=args.attentive_epochs,
                                    lr=args.attentive_lr, seed=args.seed)
        print(f"tokens {tuple(train_t.shape)} train, {tuple(val_t.shape)} val; chance {chance:.3f}")
        print(f"attentive probe: accuracy {attentive.accuracy:.3f} (train {attentive.train_accuracy:.3f})")
        summary.update(attentive_probe=attentive.accuracy, attentive_probe_train=attentive.train_accuracy)
    summary.update(num_train=int(train_y.numel()), num_val=int(val_y.numel()))
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print(f"wrote {out}/results.json")
    return 0


def _add_model_flags(g, *, ckpt_required: bool = False) -> None:
    g.add_argument("--ckpt", default=None, metavar="CKPT",
                   help="checkpoint.pt written by the trainer (pretrain / finetune / train_or_load)"
                   + ("" if ckpt_required else "; default: a randomly initialised --model"))
    g.add_argument("--model", default=None, metavar="NAME",
                   help="registered model name (default: the one the checkpoint records; videomae_vit_demo without one)")
    g.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="override one field of the model's config (repeatable; VALUE parsed as YAML)")
    g.add_argument("--stage", type=int, default=2, metavar="I",
                   help="ConvNet encoders only: which stage's feature map to use (default 2: stride 16)")


def _add_classify_data_flags(g, *, views: bool) -> None:
    g.add_argument("--data", default="synthetic", metavar="SOURCE", help=CLASSIFY_DATA_HELP)
    g.add_argument("--val-data", default=None, metavar="LIST", help="evaluation list file (with a list-file --data)")
    g.add_argument("--root", default=None, metavar="DIR", help="folder that the list files' relative paths start from")
    g.add_argument("--split-dir", default=None, metavar="DIR", help="UCF101 split files (default <DATA>/ucfTrainTestlist)")
    g.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="UCF101 split (default 1)")
    g.add_argument("--num-classes", type=int, default=None, metavar="K",
                   help="number of classes (default: 8 for synthetic, else from the data)")
    g.add_argument("--num-samples", type=int, default=1024, metavar="N", help="synthetic training clips (default 1024)")
    g.add_argument("--val-samples", type=int, default=256, metavar="N", help="synthetic evaluation clips (default 256)")
    g.add_argument("--clip-len", type=int, default=None, metavar="T", help="frames per clip (default: the model's)")
    g.add_argument("--size", type=int, default=None, metavar="S", help="frame side in pixels (default: the model's)")
    g.add_argument("--stride", type=int, default=4, metavar="N", help="frame step of real clips (default 4)")
    g.add_argument("--sampling", choices=("dense", "segment"), default="dense",
                   help="real clips: 'dense' (clip-len frames every stride-th; Kinetics, UCF101) or 'segment' "
                   "(one frame per segment; Something-Something V2)")
    g.add_argument("--test-clips", type=int, default=2 if views else 1, metavar="N",
                   help="temporal views per evaluation clip" + (" (default 2; VideoMAE: 5 on K400, 2 on SSv2)" if views else ""))
    g.add_argument("--test-crops", type=int, default=3 if views else 1, metavar="N",
                   help="spatial views per evaluation clip" + (" (default 3)" if views else ""))


def add_downstream(sub) -> None:
    """The ``propagate``, ``finetune`` and ``probe`` sub-commands."""
    p = sub.add_parser(
        "propagate",
        help="label propagation on a DAVIS-layout folder (video object segmentation), prints J&F",
        description="Propagate the first-frame masks of every sequence with a frozen encoder's features\n"
        "(the DINO or CRW protocol) and score the result with DAVIS J&F. Writes the predicted\n"
        "masks as DAVIS PNGs and results.json to --out.",
        epilog="examples:\n"
        "  maskvid-edu propagate --ckpt runs/demo/checkpoint.pt --data data/DAVIS --out runs/davis\n"
        "  maskvid-edu propagate --random-init --model videomae_vit_demo --data data/DAVIS --out runs/davis_rand\n"
        "  maskvid-edu propagate --ckpt runs/demo/checkpoint.pt --data data/DAVIS --out runs/crw --config crw --topk 7",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what")
    _add_model_flags(g, ckpt_required=True)
    g.add_argument("--random-init", action="store_true", help="use a randomly initialised --model instead of --ckpt")
    g.add_argument("--data", required=True, metavar="DAVIS_ROOT",
                   help="folder with JPEGImages/<resolution>/, Annotations/<resolution>/, ImageSets/<year>/<split>.txt")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder: <sequence>/00000.png … and results.json")
    g.add_argument("--split", default="val", help="split file name (default val)")
    g.add_argument("--year", default="2017", help="ImageSets year folder (default 2017)")
    g.add_argument("--resolution", default="480p", help="resolution folder name (default 480p)")
    g.add_argument("--sequences", default=None, metavar="A,B", help="only these sequences (comma-separated)")
    g.add_argument("--size", type=int, default=None, metavar="S",
                   help="resize frames so that the shorter side is S (rounded down to the encoder's stride) before encoding")
    g = p.add_argument_group("protocol")
    g.add_argument("--config", choices=("dino", "crw"), default="dino",
                   help="dino: context first + 7, top-5, square radius 12, τ 0.1; crw: first + 20, top-10, disk 12, τ 0.05")
    g.add_argument("--topk", type=int, default=None, metavar="K", help="context cells each cell takes its label from")
    g.add_argument("--radius", type=float, default=None, metavar="R", help="spatial window in feature cells (0 = none)")
    g.add_argument("--n-last", type=int, default=None, metavar="N", help="preceding frames in the context besides the first")
    g.add_argument("--temperature", type=float, default=None, metavar="T", help="τ of the affinity softmax")
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op CPU threads")
    g.add_argument("--seed", type=int, default=0, help="seed of a random initialisation (default 0)")
    p.set_defaults(func=_propagate, parser=p)

    p = sub.add_parser(
        "finetune",
        help="fine-tune an encoder for action recognition (VideoMAE's recipe), prints multi-view accuracy",
        description="Fine-tune a pre-trained (or randomly initialised) encoder with VideoMAE's recipe:\n"
        "mean pooling + fc_norm, head init x0.001, drop path, label smoothing, mixup/cutmix,\n"
        "layer-wise lr decay, AdamW (0.9, 0.999), and on real videos RandAugment m7-n4 + random\n"
        "erasing 0.25 (torchvision, one draw per clip); then test with clips x crops views.\n"
        "Writes checkpoint.pt, metrics.jsonl and results.json to --out.",
        epilog="examples:\n"
        "  maskvid-edu finetune --ckpt runs/demo/checkpoint.pt --out runs/ft\n"
        "  maskvid-edu finetune --ckpt runs/demo/checkpoint.pt --out runs/ft --data train.csv --val-data val.csv --root videos/\n"
        "  maskvid-edu finetune --ckpt vit_b.pt --model videomae_vit_b --out runs/ucf --data data/UCF101 --epochs 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what")
    _add_model_flags(g)
    _add_classify_data_flags(g, views=True)
    g.add_argument("--out", required=True, metavar="DIR", help="output folder: checkpoint.pt, metrics.jsonl, results.json")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pt")
    g = p.add_argument_group("recipe")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps (default 200)")
    length.add_argument("--epochs", type=float, default=None, metavar="E", help="passes over the data (instead of --steps)")
    g.add_argument("--batch-size", type=int, default=16, metavar="B", help="clips per micro-batch (default 16)")
    g.add_argument("--accum-steps", type=int, default=1, metavar="K", help="micro-batches per optimizer step")
    lr = g.add_mutually_exclusive_group()
    lr.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    lr.add_argument("--base-lr", type=float, default=None, help="peak lr per 256 clips (VideoMAE: 1e-3 × batch / 256)")
    g.add_argument("--min-lr", type=float, default=1e-6, help="learning rate at the end of the cosine (default 1e-6)")
    warm = g.add_mutually_exclusive_group()
    warm.add_argument("--warmup-steps", type=int, default=20, metavar="N", help="linear warm-up steps (default 20)")
    warm.add_argument("--warmup-epochs", type=float, default=None, metavar="E", help="linear warm-up epochs (VideoMAE: 5)")
    g.add_argument("--weight-decay", type=float, default=0.05, metavar="WD", help="AdamW weight decay (default 0.05)")
    g.add_argument("--clip-grad", type=float, default=None, metavar="NORM", help="clip the global gradient norm")
    g.add_argument("--layer-decay", type=float, default=0.75, help="layer-wise lr decay (default 0.75; 1 = off)")
    g.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth of the last block (default 0.1)")
    g.add_argument("--mixup", type=float, default=0.8, metavar="ALPHA", help="mixup Beta(α, α) (default 0.8; 0 = off)")
    g.add_argument("--cutmix", type=float, default=1.0, metavar="ALPHA", help="cutmix Beta(α, α) (default 1.0; 0 = off)")
    g.add_argument("--smoothing", type=float, default=0.1, help="label smoothing (default 0.1)")
    g.add_argument("--head-init-scale", type=float, default=0.001, help="scale of the head's initial weights (default 0.001)")
    g.add_argument("--head-drop", type=float, default=0.0, help="dropout before the head (default 0; VideoMAE's UCF101 recipe: 0.5)")
    g.add_argument("--rand-augment", default=VIDEOMAE_RAND_AUGMENT, type=lambda v: None if v == "none" else v, metavar="SPEC",
                   help=f"real videos: RandAugment, timm's notation, 'none' = off (default {VIDEOMAE_RAND_AUGMENT}, VideoMAE's)")
    g.add_argument("--erasing", type=float, default=VIDEOMAE_ERASING, metavar="P",
                   help=f"real videos: random-erasing probability (default {VIDEOMAE_ERASING}; 0 = off); synthetic data: neither")
    g = p.add_argument_group("execution")
    g.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision (fp16 needs CUDA)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--seed", type=int, default=0, help="seed of data order, head init, mixing (default 0)")
    g.add_argument("--num-workers", type=int, default=0, metavar="N", help="data-loader worker processes")
    g.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op CPU threads while training")
    g.add_argument("--log-every", type=int, default=10, metavar="N", help="steps between metric records")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_finetune, parser=p)

    p = sub.add_parser(
        "probe",
        help="linear probe and k-NN, or the attentive probe, on a frozen encoder; prints the accuracies",
        description="Extract mean-pooled clip features of a frozen encoder on the training and\n"
        "evaluation clips, then train a softmax regression on them (linear probe) and run the\n"
        "weighted k-NN classifier of DINO; with --head attentive, keep every token and train\n"
        "V-JEPA's attentive probe on them instead.",
        epilog="examples:\n"
        "  maskvid-edu probe --ckpt runs/demo/checkpoint.pt\n"
        "  maskvid-edu probe --model videomae_vit_demo            # a random encoder, for comparison\n"
        "  maskvid-edu probe --ckpt runs/vjepa/checkpoint.pt --head attentive\n"
        "  maskvid-edu probe --ckpt vit_b.pt --model videomae_vit_b --data data/UCF101 --size 224 --clip-len 16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what")
    _add_model_flags(g)
    _add_classify_data_flags(g, views=False)
    g.add_argument("--out", default=None, metavar="DIR", help="also write results.json here")
    g = p.add_argument_group("probe")
    g.add_argument("--head", choices=("linear", "attentive", "all"), default="linear",
                   help="linear: linear probe and k-NN on mean-pooled features (default); attentive: V-JEPA's "
                        "attentive probe (a learned query cross-attending to the frozen tokens, then a linear "
                        "layer); all: both")
    g.add_argument("--epochs", type=int, default=100, help="full-batch epochs of the linear probe (default 100)")
    g.add_argument("--lr", type=float, default=0.1, help="SGD learning rate of the linear probe (default 0.1)")
    g.add_argument("--weight-decay", type=float, default=1e-4, metavar="WD", help="L2 penalty of the linear probe")
    g.add_argument("--knn-k", type=int, default=20, metavar="K", help="neighbours of the k-NN classifier (default 20)")
    g.add_argument("--knn-temperature", type=float, default=0.07, metavar="T", help="τ of the k-NN vote weights (default 0.07)")
    g.add_argument("--attentive-epochs", type=int, default=50, metavar="E",
                   help="mini-batch epochs of the attentive probe (default 50)")
    g.add_argument("--attentive-lr", type=float, default=1e-3, metavar="LR",
                   help="AdamW peak learning rate of the attentive probe (default 1e-3)")
    g = p.add_argument_group("execution")
    g.add_argument("--batch-size", type=int, default=16, metavar="B", help="clips per forward pass (default 16)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and the probe (default 0)")
    g.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op CPU threads")
    p.set_defaults(func=_probe, parser=p)


# --------------------------------------------------------------------------------------------
# features: sliding-window features of whole videos, written to disk
# --------------------------------------------------------------------------------------------


def _features(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        model, words = _frozen_model(args)
        encoder = _classification_encoder(model, args.stage if args.layer is None else args.layer)  # ConvNet: that stage
        print(f"features of {words}", flush=True)
        run = write_features(encoder, args.data, args.out, root=args.root, window=args.window, stride=args.stride,
                             size=args.size, layer=args.layer, tokens=args.tokens, batch_size=args.batch_size,
                             num_workers=args.num_workers, device=args.device, amp=args.amp, backend=args.decoder,
                             progress=not args.no_progress)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        parser.exit(2, f"maskvid-edu features: error: {err}\n")
    print(run.summary(), flush=True)
    return 0


def add_features(sub) -> None:
    p = sub.add_parser(
        "features", help="sliding-window features of whole videos to disk: one .npy per video + index.csv",
        description="Encode every video of --data in windows of --window frames every --stride frames with a frozen\n"
        "encoder: <out>/<video>.npy (windows × features) and index.csv (a row per window: frames, seconds, shape).\n"
        "Resumable (written videos are skipped); bad files are skipped and listed in skipped.csv; a video\n"
        "shorter than a window gives one window padded with its last frame (padded=1).",
        epilog="example:\n  maskvid-edu features --ckpt runs/demo/checkpoint.pt --data videos/ --out feats/ --stride 8",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what")
    _add_model_flags(g)
    g.add_argument("--data", required=True, metavar="LIST|DIR", help="a list file (path [label] lines, CSV) or a folder of videos")
    g.add_argument("--root", default=None, metavar="DIR", help="folder that the list's relative paths start from")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder: <video>.npy, index.csv, skipped.csv")
    g.add_argument("--decoder", choices=DECODERS, default="auto", help="how videos are read (default auto)")
    g.add_argument("--window", type=int, default=None, metavar="T", help="frames per window (default: the encoder's clip)")
    g.add_argument("--stride", type=int, default=None, metavar="S", help="frames between window starts (default: --window)")
    g.add_argument("--size", type=int, default=None, metavar="S", help="frame side after resize + centre crop (default: the encoder's)")
    g.add_argument("--layer", type=int, default=None, metavar="I",
                   help="ViT block (0-based, negative from the end; default the last); ConvNet stage (default --stage)")
    g.add_argument("--tokens", action="store_true", help="ViT: keep every token of a window instead of their mean")
    g = p.add_argument_group("execution")
    g.add_argument("--batch-size", type=int, default=8, metavar="B", help="windows per forward pass (default 8)")
    g.add_argument("--num-workers", type=int, default=0, metavar="N", help="decoding worker processes")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="autocast (fp16 needs CUDA)")
    g.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op CPU threads")
    g.add_argument("--seed", type=int, default=0, help="seed of a random initialisation (default 0)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_features, parser=p)
