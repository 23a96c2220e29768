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
recipe such as ``videomae_vit_b_k400``), then the flags; :mod:`maskvid_edu.recipes` reads the
recipes and layers them. ``propagate``, ``finetune`` and ``probe`` judge an encoder
(:mod:`maskvid_edu.evaluate`); ``features`` writes an encoder's features of whole videos to
disk; ``bench`` measures; ``launch`` plans a multi-GPU run (or prints a SLURM script).

Launch with ``torchrun --standalone --nproc-per-node N -m maskvid_edu pretrain ...`` for
data-parallel training; the trainer picks the process group up from the environment.
``maskvid-edu launch --config NAME --nodes N --gpus-per-node G`` prints the batch, accumulation
and learning-rate plan for a recipe on those GPUs and the exact command that runs it
(:mod:`maskvid_edu.launch`).
"""

from __future__ import annotations

import argparse

from .downstream import add_downstream, add_features
from .pretrain import add_pretrain
from .tools import add_bench, add_launch, add_weights, add_zoo

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``maskvid-edu`` argument parser (one sub-parser per command)."""
    parser = argparse.ArgumentParser(
        prog="maskvid-edu",
        description="Masked video modeling — VideoMAE, VideoMAC, MAM2 — from the command line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_pretrain(sub)
    add_downstream(sub)
    add_features(sub)
    add_bench(sub)
    add_launch(sub)
    add_zoo(sub)
    add_weights(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``maskvid-edu`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args, args.parser)
