"""``maskvid-edu bench | launch | zoo | weights``: measuring, planning multi-GPU runs, the course zoo, published weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import utils, weights, zoo
from ..launch import format_plan, plan_launch, sbatch_script, torchrun_command
from ..measure.bench import BENCH_PARTS, bench_rows, format_bench_table
from ..recipes import shipped_recipes

__all__ = ["add_bench", "add_launch", "add_zoo", "add_weights"]


# --------------------------------------------------------------------------------------------
# bench: side-by-side measurements in one run, one table
# --------------------------------------------------------------------------------------------

def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        title, rows = bench_rows(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"maskvid-edu bench: error: {err}\n")
    print(format_bench_table(title, rows), flush=True)
    return 0


def add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time our pre-training step against transformers', FLOPs and MFU, sparse vs dense, the loader",
        description="Side-by-side measurements in one run, printed as one table:\n"
        "  pretrain  our VideoMAE step vs transformers' VideoMAEForPreTraining (same weights, clip, mask),\n"
        "            interleaved; median ms and peak memory\n"
        "  flops     analytic model FLOPs per step, achieved FLOP/s, fraction of the measured matmul peak (MFU)\n"
        "  sparse    ConvNeXt V2 / ResNet step on the packed and masked sparse backends vs the dense path,\n"
        "            beside each backend's FLOP limit\n"
        "  mam2      MAM2 step of the same size vs the VideoMAE step, interleaved\n"
        "  optim     each optimisation of the step (AdamW kernels, SDPA, checkpointing, bf16; compile on CUDA)\n"
        "            against the default step, interleaved\n"
        "  loader    clips/s of the synthetic dataset through a DataLoader; on video files (--videos), the\n"
        "            bare decode (decord, PyAV), VideoMAE's reference pipeline and ours (0-2 workers, 1-4 views)\n"
        "  train     clips/s of the demo recipes through the trainer, as shipped and with each speed lever\n"
        "            (fused AdamW, 2 threads with or without the render worker), and each lever's loss\n"
        "            difference at the last step\n"
        "Benchmarks, not tests: numbers vary with the machine and its load.",
        epilog="examples:\n"
        "  maskvid-edu bench --quick\n"
        "  maskvid-edu bench --what pretrain,flops --model videomae_vit_b --batch 1 --steps 2\n"
        "  maskvid-edu bench --device cuda --dtype bfloat16 --batch 32",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--what", default=",".join(BENCH_PARTS), metavar="A,B",
                   help=f"comma-separated parts to run (default: {','.join(BENCH_PARTS)})")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="VideoMAE model (default videomae_vit_b; videomae_vit_demo with --quick)")
    p.add_argument("--batch", type=int, default=1, metavar="B", help="clips (images for sparse) per step (default 1)")
    p.add_argument("--steps", type=int, default=3, metavar="N", help="timed steps per implementation (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="float32, or bfloat16 autocast (default float32)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="loader worker processes (default 2; 0 with --quick)")
    p.add_argument("--videos", nargs="+", default=None, metavar="PATH",
                   help="video files for the loader part (default: the shipped clip)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op CPU threads")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement (on CPU it spawns processes)")
    p.add_argument("--quick", action="store_true", help="demo sizes: runs in seconds on a CPU")
    p.set_defaults(func=_bench, parser=p)


# --------------------------------------------------------------------------------------------
# launch: the plan and the command for a recipe on several GPUs / machines
# --------------------------------------------------------------------------------------------


def _launch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        if args.root is not None and args.data is None:
            raise ValueError("--root goes with --data: it is the folder that the list file's paths start from")
        plan = plan_launch(args.config, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                           batch_size=args.batch_size, target_batch=args.target_batch)
        out = args.out if args.out is not None else str(Path("runs") / Path(args.config).name.removesuffix(".yaml"))
        if args.slurm:  # an sbatch script; the rendezvous comes from SLURM's environment
            if args.rdzv_endpoint is not None:
                raise ValueError("--rdzv-endpoint goes without --slurm: under SLURM the first node of the job hosts it")
            print(sbatch_script(plan, args.config, out=out, data=args.data, root=args.root, resume=args.resume,
                                time=args.time, partition=args.partition, account=args.account), end="", flush=True)
            return 0
        command = torchrun_command(plan, args.config, out=out, data=args.data, root=args.root,
                                   rdzv_endpoint=args.rdzv_endpoint, job_id=args.job_id, resume=args.resume)
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        for name in ("nodes", "gpus_per_node", "batch_size", "target_batch", "rdzv_endpoint", "job_id", "time",
                     "partition", "account"):
            if message.startswith(name + " ") or message.startswith(name + ":"):
                message = "--" + name.replace("_", "-") + message[len(name):]
        parser.exit(2, f"maskvid-edu launch: error: {message}\n")
    print(format_plan(plan, f"maskvid-edu launch — {args.config}", command), flush=True)
    return 0


def add_launch(sub) -> None:
    p = sub.add_parser(
        "launch",
        help="plan a recipe on N machines × G GPUs (accumulation, effective batch, lr) and print the command",
        description="Print how a recipe runs on --nodes × --gpus-per-node GPUs: the accumulation steps that\n"
        "keep the recipe's effective batch (batch per GPU × accumulation × GPUs), the peak learning\n"
        "rate (base_lr × effective batch / 256), steps per epoch, total and warm-up steps; then the\n"
        "exact command: maskvid-edu on one GPU, torchrun --standalone on one machine, torchrun\n"
        "with a c10d rendezvous (the same command on every node) on several. Nothing is run.",
        epilog="examples:\n"
        "  maskvid-edu launch --config videomae_vit_b_k400 --gpus-per-node 8\n"
        "  maskvid-edu launch --config videomae_vit_b_k400 --nodes 8 --gpus-per-node 8 --rdzv-endpoint node0:29500 \\\n"
        "      --data data/kinetics400/train.csv --root data/kinetics400/train --out /shared/runs/vit_b\n"
        "  maskvid-edu launch --config videomae_vit_b_k400 --gpus-per-node 4 --batch-size 16   # smaller GPUs\n"
        "  maskvid-edu launch --config videomae_vit_b_k400 --nodes 8 --gpus-per-node 8 --slurm --partition gpu > job.sh",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, metavar="YAML",
                   help=f"recipe file (path, or a shipped recipe name: {', '.join(shipped_recipes()) or 'none'})")
    p.add_argument("--nodes", type=int, default=1, metavar="N", help="machines (default 1)")
    p.add_argument("--gpus-per-node", type=int, default=1, metavar="G", help="GPUs, i.e. processes, per machine (default 1)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="clips per GPU and micro-batch (default: the recipe's train.batch_size)")
    p.add_argument("--target-batch", type=int, default=None, metavar="T",
                   help="effective batch to reach (default: the recipe's batch_size × accum_steps × launch.gpus)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the run's folder, shared by all nodes (default: runs/<recipe name>)")
    p.add_argument("--data", default=None, metavar="LIST", help="pretrain --data: list file or folder of videos")
    p.add_argument("--root", default=None, metavar="DIR", help="pretrain --root: folder the list's paths start from")
    p.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="several nodes: address of one node and a free port for the c10d rendezvous")
    p.add_argument("--job-id", default="maskvid", metavar="JOB", help="rendezvous id shared by all nodes (default maskvid)")
    p.add_argument("--resume", action="store_true",
                   help="add pretrain --resume: continue the run in --out (also on another number of GPUs)")
    g = p.add_argument_group("SLURM")
    g.add_argument("--slurm", action="store_true",
                   help="print an sbatch script instead (srun + torchrun, rendezvous from SLURM's environment)")
    g.add_argument("--time", default="24:00:00", metavar="D-HH:MM:SS", help="--slurm: wall-clock limit (default 24:00:00)")
    g.add_argument("--partition", default=None, metavar="NAME", help="--slurm: #SBATCH --partition")
    g.add_argument("--account", default=None, metavar="NAME", help="--slurm: #SBATCH --account")
    p.set_defaults(func=_launch, parser=p)


# --------------------------------------------------------------------------------------------
# zoo: the course's trained checkpoints
# --------------------------------------------------------------------------------------------

def _zoo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        if args.zoo_command == "build":
            for name in args.names or zoo.zoo_recipes():
                print(f"zoo: building {name} → {zoo.build(name, resume=not args.restart)}", flush=True)
        elif args.zoo_command == "finetune":
            _zoo_finetune(args)
        elif args.zoo_command == "propagate":
            _zoo_propagate(args)
        elif args.zoo_command == "curves":
            _zoo_curves(args)
        else:
            print(zoo.format_zoo_table())
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _zoo_finetune(args: argparse.Namespace) -> None:
    """Fine-tune zoo encoder ``args.name`` against its random-init twin (the data-efficiency grid)."""
    from ..analysis import data_efficiency

    recipe = zoo.load_zoo_recipe(args.name)  # an unknown name fails here, before anything trains
    if not (zoo.ZOO_DIR / args.name / "weights.pt").is_file():
        raise FileNotFoundError(f"zoo encoder {args.name!r} is not built: run `maskvid-edu zoo build {args.name}` first")
    for size in args.sizes:
        utils.positive_int(size, "--sizes")

    def encoder(init: str):
        return (zoo.load(args.name) if init == "pretrained" else zoo.fresh(args.name)).encoder

    out = Path(args.out) if args.out else zoo.ZOO_DIR / args.name / "finetune.jsonl"
    records = data_efficiency.run_grid(encoder, out, sizes=args.sizes, seeds=args.seeds, inits=args.inits,
                                       steps=args.steps)
    print(f"{len(records)} records in {out} ({recipe['model']} pre-trained by zoo recipe {args.name})")
    print(data_efficiency.format_summary(data_efficiency.summarise(records)))


def _zoo_propagate(args: argparse.Namespace) -> None:
    """Label-propagation J&F of zoo encoders (and their random inits) on the held-out sequences."""
    from ..analysis import propagation_scores

    encoders = {}
    for name in args.names:
        zoo.load_zoo_recipe(name)  # an unknown name fails here, before anything runs
        if not (zoo.ZOO_DIR / name / "weights.pt").is_file():
            raise FileNotFoundError(f"zoo encoder {name!r} is not built: run `maskvid-edu zoo build {name}` first")
        encoders[name, "pretrained"] = lambda name=name: zoo.load(name).encoder
        if args.random:
            encoders[name, "random"] = lambda name=name: zoo.fresh(name).encoder
    if args.copy_first_frame:
        encoders[propagation_scores.COPY_FIRST_FRAME] = None  # no encoder: the first mask, copied
    if not encoders:
        raise ValueError("zoo propagate: name at least one zoo recipe, or pass --copy-first-frame")
    root = propagation_scores.heldout_sequences(args.sequences)
    out = Path(args.out)
    scores = propagation_scores.score_encoders(encoders, out, root)
    print(f"{len(scores)} records in {out}")


def _zoo_curves(args: argparse.Namespace) -> None:
    """Probe, k-NN and fine-tune accuracy of zoo encoders at each of their checkpoints."""
    from ..analysis import pretraining_curves

    for name in args.names:
        zoo.load_zoo_recipe(name)  # an unknown name fails here, before anything runs
    result = pretraining_curves.measure(args.names, Path(args.out), kinds=args.kinds,
                                        finetune_steps=args.finetune_steps)
    print(f"{len(result['records'])} records in {args.out}; {len(result['skipped'])} checkpoint(s) skipped")
    stems = tuple(pretraining_curves.VARIANTS.values())
    if any(name.startswith(stems) for name in args.names):  # the MAM2 race: its table per kind
        for kind in args.kinds:
            print(pretraining_curves.format_curves(result["records"], kind))


def add_zoo(sub) -> None:
    p = sub.add_parser("zoo", help="build or list the course's trained checkpoints (data/zoo)",
                       description="Train the zoo recipes (maskvid_edu/configs/zoo) with the one trainer, "
                                   "resuming an interrupted run, and export them to data/zoo; or list them.")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
    b = zsub.add_parser("build", help="train (resuming) and export zoo recipes")
    b.add_argument("names", nargs="*", help="recipes to build (default: all)")
    b.add_argument("--restart", action="store_true", help="start afresh instead of resuming a checkpoint")
    zsub.add_parser("list", help="every recipe with its steps, wall time, final loss and sha256")
    f = zsub.add_parser("finetune", help="fine-tune a zoo encoder and its random-init twin over labelled-set sizes and seeds",
                        description="VideoMAE's data-efficiency experiment (maskvid_edu.analysis.data_efficiency): "
                                    "one fine-tuning run per (init, labelled clips, seed), resumable; records go to "
                                    "data/zoo/NAME/finetune.jsonl.")
    f.add_argument("name", help="a built zoo recipe with an encoder (e.g. videomae_tube90)")
    f.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 512], help="labelled clips per run (default: 32 128 512)")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds (default: 0 1 2)")
    f.add_argument("--inits", nargs="+", choices=["pretrained", "random"], default=["pretrained", "random"])
    f.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the experiment's 400)")
    f.add_argument("--out", default=None, help="records file (default: data/zoo/NAME/finetune.jsonl)")
    g = zsub.add_parser("propagate", help="label-propagation J&F of zoo encoders on held-out synthetic sequences",
                        description="Chapter 4's and 6's propagation measurements (maskvid_edu.analysis."
                                    "propagation_scores): DINO's protocol on a 16 × 16 feature grid, one record "
                                    "of per-sequence J&F per encoder, resumable.")
    g.add_argument("names", nargs="*", help="built zoo recipes (e.g. videomac_sparse videomae_tube90)")
    g.add_argument("--random", action="store_true", help="also score each recipe's model at its initialisation")
    g.add_argument("--copy-first-frame", action="store_true",
                   help="also score the no-encoder baseline: the first frame's mask copied to every frame")
    g.add_argument("--sequences", default="runs/heldout_davis",
                   help="where the held-out DAVIS-layout export is written once (default: runs/heldout_davis)")
    g.add_argument("--out", default=str(zoo.ZOO_DIR / "propagation.jsonl"),
                   help="records file (default: data/zoo/propagation.jsonl)")
    c = zsub.add_parser("curves", help="probe, k-NN and fine-tune accuracy of zoo encoders against pre-training steps",
                        description="Chapter 5's race (maskvid_edu.analysis.pretraining_curves): each recipe read at "
                                    "step 0, at its zoo.snapshots (in the build folder, so only where it was built) "
                                    "and at the end; one record per (recipe, step, kind), resumable.")
    c.add_argument("names", nargs="+", help="zoo recipes with snapshots (e.g. mam2_appmotion mam2_pixels)")
    c.add_argument("--kinds", nargs="+", choices=["linear", "knn", "attentive", "finetune"],
                   default=["linear", "knn", "finetune"])
    c.add_argument("--finetune-steps", type=int, nargs="+", default=None,
                   help="pre-training steps that are also fine-tuned (default: every checkpoint)")
    c.add_argument("--out", default=str(zoo.ZOO_DIR / "mam2_curves.jsonl"),
                   help="records file (default: data/zoo/mam2_curves.jsonl)")
    p.set_defaults(func=_zoo, parser=p)
# -- weights: the published checkpoints (maskvid_edu.weights) -----------------------------


def _weights(args, parser) -> int:
    if args.action != "list" and not args.name:
        parser.exit(2, f"maskvid-edu weights {args.action}: error: NAME is required\n")
    try:
        if args.action == "list":
            print(weights.format_table())
        else:
            print(weights.fetch(args.name) if args.action == "fetch" else weights.path(args.name))
    except (KeyError, weights.FetchError) as err:
        parser.exit(2, f"maskvid-edu weights {args.action}: error: {err.args[0]}\n")
    return 0


def add_weights(sub) -> None:
    p = sub.add_parser("weights", help="list, fetch or locate published checkpoints (VideoMAE, VideoMAE V2)",
                       description="Published checkpoints: 'list' shows the registry and what is cached, 'fetch NAME'\n"
                       "downloads one into the cache ($MASKVID_CACHE, default ~/.cache/maskvid_edu/weights),\n"
                       "'path NAME' prints where it is. Load it with maskvid_edu.pretrained.from_pretrained(NAME).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("list", "fetch", "path"))
    p.add_argument("name", nargs="?", metavar="NAME", help="a name from 'maskvid-edu weights list'")
    p.set_defaults(func=_weights, parser=p)
