"""Launch planning: processes, accumulation steps and learning rate for a recipe on your GPUs.

**What torchrun does.** Data-parallel training runs one Python process per GPU. ``torchrun``
starts them and tells each who it is through environment variables: ``WORLD_SIZE`` (how many
processes in all), ``RANK`` (this one's number, 0 … W−1), ``LOCAL_RANK`` (its number on this
machine, i.e. which GPU it drives) and ``MASTER_ADDR`` / ``MASTER_PORT`` (where the processes
meet). The trainer (:mod:`maskvid_edu.train`) reads them, joins the process group (NCCL on
CUDA, gloo on CPU), wraps the model in DDP — gradients are averaged over all processes after
each backward pass — and gives every process its own share of each epoch: rank ``r`` of ``W``
takes the clips ``r, r + W, r + 2W, …`` of the epoch's seeded permutation. Only rank 0 logs and
writes checkpoints.

On one machine ``torchrun --standalone --nproc-per-node G`` does everything itself. On several
machines the processes must first find each other: every node runs *the same* command,
``torchrun --nnodes N --nproc-per-node G --rdzv-backend c10d --rdzv-endpoint HOST:PORT
--rdzv-id JOB``, where ``HOST:PORT`` is an address of one of the nodes (it hosts the c10d store
that the rendezvous uses) and ``JOB`` a name shared by all nodes of this run. Once ``N``
nodes have arrived, torchrun numbers the ``N · G`` processes and starts them.

**The effective batch.** One optimizer step averages the gradient over

    effective_batch = batch_size × accum_steps × world_size

clips: ``batch_size`` per GPU and micro-batch, ``accum_steps`` micro-batches whose gradients
are summed before the step, ``world_size = nodes × gpus_per_node`` processes.

**The linear scaling rule.** A published recipe gives a *base* learning rate per 256 clips;
the peak learning rate is

    peak_lr = base_lr × effective_batch / 256

(Goyal et al. 2017; MAE and VideoMAE follow it). Doubling the batch halves the gradient's
noise and the number of steps per epoch, and doubling the step size roughly compensates.

**Why keep the recipe's effective batch.** The rule is an approximation that holds over a
range of batches, and every other number of a recipe — warm-up length, weight decay, epochs,
the EMA momentum of VideoMAC — was tuned together with its batch. A run that wants to
reproduce a published result should therefore see the *same* effective batch, not merely a
rescaled learning rate. With fewer GPUs than the paper, gradient accumulation gets there:
VideoMAE ViT-B used 64 GPUs × 32 clips = 2048; on 8 GPUs, 8 accumulation steps of 32 clips
give the same 2048-clip average per step (the same mathematics, 8 times the wall-clock time
per step, the memory of a 32-clip micro-batch).

:func:`plan_launch` does that arithmetic for a recipe and a machine —
``accum_steps = ⌈target / (world_size × batch_size)⌉`` — and says when the target cannot be met
exactly; :func:`torchrun_command` writes the command that runs the plan, :func:`sbatch_script`
the SLURM batch script that runs it under ``srun``; ``maskvid-edu launch`` prints them. A recipe file states the GPU count of its published run in an optional
section ``launch: {gpus: 64}`` (read here only; ``maskvid-edu pretrain`` ignores it).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field

from .data.synthetic import SyntheticConfig
from .recipes import FALLBACK_TRAIN, check_launch_section, check_recipe, load_recipe
from .train import TrainConfig
from .utils import positive_int

__all__ = ["LaunchPlan", "plan_launch", "torchrun_command", "sbatch_script", "format_plan", "recipe_gpus",
           "LR_REFERENCE_BATCH"]
#: The linear scaling rule's reference batch: ``lr = base_lr × effective_batch / 256``.
LR_REFERENCE_BATCH = 256


@dataclass
class LaunchPlan:
    """How a recipe runs on ``nodes × gpus_per_node`` GPUs.

    Batch: ``batch_size`` clips per GPU and micro-batch, ``accum_steps`` micro-batches per
    optimizer step, ``effective_batch = batch_size · accum_steps · world_size`` against the
    ``target_batch`` (the recipe's ``train.batch_size · train.accum_steps · launch.gpus``
    unless set); ``recipe_gpus`` is the recipe's ``launch.gpus`` (1 without that section).

    Schedule, computed as the trainer computes it: each of the ``world_size`` processes gets
    ``⌊num_samples / world_size⌋`` clips per epoch, hence ``batches_per_epoch`` full
    micro-batches (the incomplete last one is dropped); ``steps_per_epoch = batches_per_epoch /
    accum_steps`` (fractional when accumulation does not divide it); ``total_steps`` from the
    recipe's ``epochs`` (``⌈epochs · batches_per_epoch / accum_steps⌉``) or its ``steps``;
    ``warmup_steps`` from ``warmup_steps`` or ``round(warmup_epochs · steps_per_epoch)``.
    ``num_samples``, ``batches_per_epoch``, ``steps_per_epoch`` are None when the recipe gives no
    dataset size; ``total_steps`` and ``warmup_steps`` then too if they depend on it.

    ``peak_lr``: the recipe's ``lr`` if it sets one (then ``base_lr`` is None: no scaling),
    else ``base_lr · effective_batch / 256``. ``notes``: sentences on what differs from the
    recipe and why.
    """

    nodes: int
    gpus_per_node: int
    world_size: int
    batch_size: int
    accum_steps: int
    effective_batch: int
    target_batch: int
    peak_lr: float
    steps_per_epoch: float | None
    total_steps: int | None
    warmup_steps: int | None
    notes: list[str] = field(default_factory=list)
    recipe_gpus: int = 1
    num_samples: int | None = None
    batches_per_epoch: int | None = None
    base_lr: float | None = None


# --------------------------------------------------------------------------------------------
# Reading the recipe
# --------------------------------------------------------------------------------------------


def recipe_gpus(recipe: dict) -> int:
    """GPUs of the recipe's published run: its ``launch.gpus``, 1 when it has no such section."""
    return int(check_launch_section(recipe.get("launch")).get("gpus", 1))


def _load(recipe) -> dict:
    if isinstance(recipe, dict):
        return check_recipe(recipe, "recipe")
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    raise ValueError(f"recipe must be a shipped recipe name, a YAML path or a dict, got {type(recipe).__name__}")


def _dataset_size(recipe: dict) -> int | None:
    """Clips per epoch as the recipe describes them: ``data.num_samples``; for the synthetic
    dataset without that field, the synthetic dataset's default; otherwise unknown (None)."""
    data = recipe.get("data") or {}
    if data.get("num_samples") is not None:
        return positive_int(data["num_samples"], "recipe: data.num_samples")
    if data.get("source", "synthetic") == "synthetic":
        return SyntheticConfig.num_samples
    return None


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


def _exact_batch(target: int, world: int, batch: int) -> tuple[int, int] | None:
    """The largest per-GPU batch ``b ≤ batch`` with ``world · b · k = target`` for an integer
    ``k``; returns ``(b, k)`` or None."""
    for b in range(batch, 0, -1):
        if target % (world * b) == 0:
            return b, target // (world * b)
    return None


def plan_launch(recipe, *, nodes: int = 1, gpus_per_node: int = 1, batch_size: int | None = None,
                target_batch: int | None = None, num_samples: int | None = None) -> LaunchPlan:
    """Plan a recipe on ``nodes × gpus_per_node`` GPUs, keeping its effective batch.

    Args:
        recipe: the name of a recipe shipped in ``maskvid_edu/configs`` (``"videomae_vit_b_k400"``),
            a path to a recipe YAML file, or a recipe already loaded as a dict (sections
            ``method, model, model_overrides, data, train, launch``).
        nodes: machines; gpus_per_node: GPUs (processes) per machine.
        batch_size: clips per GPU and micro-batch (default: the recipe's ``train.batch_size``).
            Lower it when a GPU has less memory than the recipe's.
        target_batch: the effective batch to reach (default: the recipe's
            ``train.batch_size × train.accum_steps × launch.gpus``).
        num_samples: clips per epoch for the step counts (default: the recipe's
            ``data.num_samples``); the trainer counts the clips it actually reads.

    ``accum_steps = ⌈target_batch / (world_size × batch_size)⌉``: the smallest accumulation
    that reaches the target. When ``world_size × batch_size`` does not divide the target, the
    effective batch overshoots it, the learning rate follows the linear rule (unless the recipe
    fixes ``lr``) and ``notes`` say so and suggest a per-GPU batch that meets it exactly.

    Raises ValueError naming the argument for non-positive ``nodes``, ``gpus_per_node``,
    ``batch_size``, ``target_batch``, ``num_samples``, for a dataset too small for one
    micro-batch per process, and for a peak lr that would fall below the recipe's ``min_lr``.
    """
    positive_int(nodes, "nodes")
    positive_int(gpus_per_node, "gpus_per_node")
    positive_int(batch_size, "batch_size", allow_none=True)
    positive_int(target_batch, "target_batch", allow_none=True)
    positive_int(num_samples, "num_samples", allow_none=True)
    recipe = _load(recipe)
    gpus = recipe_gpus(recipe)
    train = dict(recipe.get("train") or {})
    train.pop("out_dir", None)
    if train.get("steps") is None and train.get("epochs") is None:
        train["steps"] = FALLBACK_TRAIN["steps"]  # what `pretrain` runs when a recipe gives no length
    written = TrainConfig.from_dict(train)  # validates the section, fills the trainer's defaults
    recipe_batch = written.batch_size * written.accum_steps * gpus
    target = target_batch if target_batch is not None else recipe_batch
    batch = batch_size if batch_size is not None else written.batch_size
    world = nodes * gpus_per_node
    accum = math.ceil(target / (world * batch))
    config = written.replace(batch_size=batch, accum_steps=accum)
    effective = batch * accum * world
    if config.lr is not None:
        peak_lr = config.lr
    else:
        peak_lr = config.base_lr * effective / LR_REFERENCE_BATCH
    if config.min_lr > peak_lr:
        raise ValueError(
            f"target_batch {target}: effective batch {effective} gives a peak lr {peak_lr:.4g} below the "
            f"recipe's min_lr {config.min_lr:.4g}; choose a larger target_batch"
        )

    notes = []
    gpu_words = f"{world} GPU{'s' if world > 1 else ''}"
    if batch != written.batch_size:
        notes.append(f"{batch} clips per GPU instead of the recipe's {written.batch_size}")
    if target_batch is not None and target_batch != recipe_batch:
        notes.append(f"target batch {target} set explicitly (the recipe's is {recipe_batch} = "
                     f"{gpus} GPU{'s' if gpus > 1 else ''} × {written.batch_size} × {written.accum_steps})")
    if effective == target:
        if accum > 1:
            notes.append(f"effective batch {effective} reached with {accum} accumulation steps "
                         f"({gpu_words} × {batch} clips × {accum})")
        else:
            notes.append(f"effective batch {effective} = {gpu_words} × {batch} clips, no accumulation")
    else:
        if world > target:
            notes.append(f"world size {world} exceeds the target batch {target}: every GPU needs at least one clip")
        if config.lr is None:
            notes.append(f"effective batch {effective} ≠ recipe {target}: lr scaled linearly to {peak_lr:.4g} "
                         f"(base_lr {config.base_lr:g} × {effective} / {LR_REFERENCE_BATCH})")
        else:
            notes.append(f"effective batch {effective} ≠ recipe {target}: the recipe fixes lr = {config.lr:g}, which is "
                         f"not rescaled; the linear rule would give {config.lr * effective / target:.4g} (pass --lr)")
        exact = _exact_batch(target, world, batch)
        if exact is not None:
            b, k = exact
            how = f"{k} accumulation steps" if k > 1 else "no accumulation"
            notes.append(f"batch_size {b} reaches {target} exactly: {gpu_words} × {b} clips, {how}")
        if written.steps is not None:
            notes.append(f"the recipe counts {written.steps} optimizer steps: at {effective} instead of {target} "
                         f"clips per step the run sees {effective / target:.3g}× the clips")

    size = num_samples if num_samples is not None else _dataset_size(recipe)
    batches = steps_per_epoch = None
    if size is not None:
        per_rank = size // world
        batches = per_rank // batch
        if batches < 1:
            raise ValueError(
                f"batch_size {batch}: a dataset of {size} clips on {world} process(es) gives {per_rank} clips per "
                "process, not a single full micro-batch per epoch"
            )
        steps_per_epoch = batches / accum
        dropped = size - batches * batch * world
        if dropped:
            notes.append(f"{dropped} of {size} clips left out each epoch (each process keeps whole micro-batches "
                         f"of {batch}; a different order every epoch)")
    if config.steps is not None:
        total = config.steps
    elif batches is not None:
        total = max(1, math.ceil(config.epochs * batches / accum))
    else:
        total = None
        notes.append("the recipe gives no data.num_samples: the steps follow from the clips the trainer reads")
    if config.warmup_steps is not None:
        warmup = config.warmup_steps
    elif config.warmup_epochs is not None:
        warmup = round(config.warmup_epochs * steps_per_epoch) if steps_per_epoch is not None else None
    else:
        warmup = 0
    if nodes > 1:
        notes.append("run the same command on every node; --out must be on a filesystem all nodes share "
                     "(rank 0 writes the checkpoints), with the same code and data on every node")
    return LaunchPlan(nodes=nodes, gpus_per_node=gpus_per_node, world_size=world, batch_size=batch, accum_steps=accum,
                      effective_batch=effective, target_batch=target, peak_lr=peak_lr, steps_per_epoch=steps_per_epoch,
                      total_steps=total, warmup_steps=warmup, notes=notes, recipe_gpus=gpus, num_samples=size,
                      batches_per_epoch=batches, base_lr=config.base_lr if config.lr is None else None)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _check_endpoint(endpoint: str) -> str:
    host, sep, port = str(endpoint).rpartition(":")
    if not sep or not host or any(c.isspace() for c in host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"rdzv_endpoint must be HOST:PORT (an address of one node and a free port, e.g. "
                         f"node0:29500), got {endpoint!r}")
    return str(endpoint)


def _pretrain_argv(plan: LaunchPlan, config, *, out, data=None, root=None, resume: bool = False) -> list[str]:
    """``pretrain --config … --batch-size B --accum-steps K [--data --root] --out OUT [--resume]``."""
    if not isinstance(plan, LaunchPlan):
        raise ValueError(f"plan must be a LaunchPlan from plan_launch, got {type(plan).__name__}")
    for name, value in (("config", config), ("out", out)):
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ValueError(f"{name} must be a non-empty string or path, got {value!r}")
    if root is not None and data is None:
        raise ValueError("root goes with data (the folder that the list file's paths start from); data is None")
    argv = ["pretrain", "--config", str(config), "--batch-size", str(plan.batch_size),
            "--accum-steps", str(plan.accum_steps)]
    if data is not None:
        argv += ["--data", str(data)]
    if root is not None:
        argv += ["--root", str(root)]
    argv += ["--out", str(out)]
    if resume:
        argv.append("--resume")
    return argv


def torchrun_command(plan: LaunchPlan, config, *, out, data=None, root=None, rdzv_endpoint: str | None = None,
                     job_id: str = "maskvid", resume: bool = False) -> str:
    """The shell command that runs ``plan`` (quoted with :func:`shlex.join`).

    - one GPU: ``maskvid-edu pretrain --config CONFIG --batch-size B --accum-steps K [--data LIST
      --root DIR] --out OUT``;
    - one machine, ``G > 1`` GPUs: ``torchrun --standalone --nproc-per-node G -m maskvid_edu
      pretrain …``;
    - ``N > 1`` machines: ``torchrun --nnodes N --nproc-per-node G --rdzv-backend c10d
      --rdzv-endpoint HOST:PORT --rdzv-id JOB -m maskvid_edu pretrain …``, the same on every
      node (``rdzv_endpoint`` is required).

    Args:
        plan: from :func:`plan_launch`.
        config: what ``--config`` gets: the recipe's shipped name or its path.
        out: the run's folder (on a shared filesystem for several machines).
        data, root: ``pretrain --data`` / ``--root`` (a list file or folder of videos, and the
            folder the list's paths start from); None keeps the recipe's data.
        rdzv_endpoint: ``HOST:PORT`` of one node, for several machines only.
        job_id: the rendezvous id shared by all nodes of the run.
        resume: add ``--resume`` (continue the run in ``out``, possibly on another world size).
    """
    argv = _pretrain_argv(plan, config, out=out, data=data, root=root, resume=resume)
    if plan.nodes > 1:
        if rdzv_endpoint is None:
            raise ValueError(f"rdzv_endpoint is required for {plan.nodes} nodes: HOST:PORT of one of them, e.g. node0:29500")
        if not isinstance(job_id, str) or not job_id or any(c.isspace() for c in job_id):
            raise ValueError(f"job_id must be a non-empty name without spaces, got {job_id!r}")
        launcher = ["torchrun", "--nnodes", str(plan.nodes), "--nproc-per-node", str(plan.gpus_per_node),
                    "--rdzv-backend", "c10d", "--rdzv-endpoint", _check_endpoint(rdzv_endpoint),
                    "--rdzv-id", job_id, "-m", "maskvid_edu"]
    else:
        if rdzv_endpoint is not None:
            raise ValueError(f"rdzv_endpoint is for several nodes; this plan has 1 (got {rdzv_endpoint!r})")
        if plan.gpus_per_node > 1:
            launcher = ["torchrun", "--standalone", "--nproc-per-node", str(plan.gpus_per_node), "-m", "maskvid_edu"]
        else:
            launcher = ["maskvid-edu"]
    return shlex.join(launcher + argv)


_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


def sbatch_script(plan: LaunchPlan, config, *, out, data=None, root=None, resume: bool = False,
                  time: str = "24:00:00", partition: str | None = None, account: str | None = None,
                  job_name: str | None = None, port: int = 29500) -> str:
    """An ``sbatch`` script that runs ``plan`` on a SLURM cluster (``sbatch job.sh`` submits it).

    SLURM allocates ``plan.nodes`` machines with ``plan.gpus_per_node`` GPUs each; ``srun``
    starts one task per node, and in each task ``torchrun`` starts the node's processes. The
    rendezvous comes from SLURM's environment instead of a hand-picked node: the first host of
    ``$SLURM_JOB_NODELIST`` (``scontrol show hostnames … | head -n1``) hosts the c10d store on
    ``port``, ``--rdzv-id $SLURM_JOB_ID`` names the run, ``--nnodes $SLURM_NNODES`` is the size
    of the allocation. The torchrun line is the multi-node command of :func:`torchrun_command`
    with those three values read from the environment, so one script serves any node count
    (``sbatch --nodes 2 job.sh`` overrides the ``#SBATCH`` line; the plan's accumulation assumes
    ``plan.nodes``).

    Args:
        plan, config, out, data, root, resume: as for :func:`torchrun_command`.
        time: wall-clock limit, SLURM's ``[D-]HH:MM:SS`` (or ``MM``, ``HH:MM:SS``);
            partition, account: ``#SBATCH --partition`` / ``--account`` lines when given.
        job_name: ``#SBATCH --job-name`` (default ``maskvid-<recipe name>``); the log goes to
            ``<job name>-<job id>.out`` in the folder ``sbatch`` is called from.
        port: the rendezvous port on the first node.
    """
    argv = _pretrain_argv(plan, config, out=out, data=data, root=root, resume=resume)
    if not isinstance(time, str) or not _SLURM_TIME.match(time):
        raise ValueError(f"time must be SLURM's [D-]HH:MM:SS (e.g. 24:00:00 or 2-00:00:00), got {time!r}")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer in 1…65535, got {port!r}")
    name = job_name if job_name is not None else "maskvid-" + os.path.basename(str(config)).removesuffix(".yaml")
    options = [("job-name", name), ("partition", partition), ("account", account)]
    for option, value in options:
        if value is not None and (not isinstance(value, str) or not value or any(c.isspace() for c in value)):
            raise ValueError(f"{option.replace('-', '_')} must be a non-empty name without spaces, got {value!r}")
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={name}",
             f"#SBATCH --nodes={plan.nodes}",
             "# one task per node: its torchrun starts the node's GPU processes",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --gpus-per-node={plan.gpus_per_node}",
             f"#SBATCH --time={time}",
             "#SBATCH --output=%x-%j.out"]
    lines += [f"#SBATCH --{option}={value}" for option, value in options[1:] if value is not None]
    launcher = ("srun torchrun --nnodes \"$SLURM_NNODES\" --nproc-per-node " + str(plan.gpus_per_node)
                + ' --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$SLURM_JOB_ID"'
                + " -m maskvid_edu " + shlex.join(argv))
    lines += ["",
              "set -eu  # not pipefail: head closing the pipe early must not fail the next line",
              "# the first node of the allocation hosts the c10d rendezvous",
              'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
              f"MASTER_PORT={port}",
              "export MASTER_ADDR MASTER_PORT",
              "",
              launcher]
    return "\n".join(lines) + "\n"


def format_plan(plan: LaunchPlan, title: str = "", command: str | None = None) -> str:
    """The plan as the small table ``maskvid-edu launch`` prints (and the command, if given)."""
    def count(x):
        return "unknown" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))

    if plan.base_lr is not None:
        lr_rule = f" (base_lr {plan.base_lr:g} × {plan.effective_batch} / {LR_REFERENCE_BATCH})"
    else:
        lr_rule = " (the recipe's lr, not scaled)"
    rows = [
        ("processes", f"{plan.nodes} node{'s' if plan.nodes > 1 else ''} × {plan.gpus_per_node} GPU"
                      f"{'s' if plan.gpus_per_node > 1 else ''} = {plan.world_size}"),
        ("clips per GPU", str(plan.batch_size)),
        ("accumulation steps", str(plan.accum_steps)),
        ("effective batch", f"{plan.effective_batch} (target {plan.target_batch}; the recipe ran on "
                            f"{plan.recipe_gpus} GPU{'s' if plan.recipe_gpus > 1 else ''})"),
        ("peak lr", f"{plan.peak_lr:.4g}{lr_rule}"),
        ("clips per epoch", count(plan.num_samples)),
        ("steps per epoch", count(plan.steps_per_epoch)),
        ("total steps", count(plan.total_steps)),
        ("warm-up steps", count(plan.warmup_steps)),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [title] if title else []
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    if plan.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in plan.notes]
    if command is not None:
        lines.append("command (the same on every node):" if plan.nodes > 1 else "command:")
        lines.append(f"  {command}")
    return "\n".join(lines)
