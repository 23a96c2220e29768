"""The optimizer recipe of masked video pre-training: learning-rate schedule and AdamW groups.

VideoMAE (after MAE) warms the learning rate up linearly, then decays it along a half cosine,
per optimizer step ``s`` of ``S`` with ``W`` warm-up steps::

    lr(s) = lr · s / W                                               for s < W
    lr(s) = min_lr + (lr − min_lr) · (1 + cos(π (s − W) / (S − W))) / 2   after

and decays only weight matrices: biases, norm weights (every 1-D parameter) and the position
embedding / learned tokens are left alone — shrinking them towards zero has no regularising
meaning. :class:`~maskvid_edu.train.Trainer` uses both; they are plain functions so a chapter
can plot the schedule or list the groups without training.
"""

from __future__ import annotations

import math
import warnings

from torch import nn

__all__ = ["lr_at", "WarmupCosine", "param_groups", "clamp_warmup", "NO_DECAY_NAMES", "WARMUP_SHARE"]

#: A parameter whose own name (last component of its dotted name) contains one of these is not
#: weight-decayed, nor is any parameter with at most one dimension (biases, norm weights).
NO_DECAY_NAMES = ("pos_embed", "mask_token", "cls_token", "token")

#: Share of the run a warm-up that would not end before the run does is shortened to. The
#: shipped recipes warm up over 10 % of their length (VideoMAE 40 of 400 demo steps, MAC 10 of
#: 100 epochs), so a shortened run keeps the recipe's shape.
WARMUP_SHARE = 0.1


def lr_at(step: int, total_steps: int, peak_lr: float, min_lr: float = 0.0, warmup_steps: int = 0) -> float:
    """Learning rate at optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up ``peak_lr · step / warmup_steps`` for ``step < warmup_steps`` (so the very
    first step has lr 0, as in MAE and VideoMAE), then a half cosine from ``peak_lr`` down to
    ``min_lr`` reached at ``step = total_steps``:
    ``min_lr + (peak_lr − min_lr) · (1 + cos(π (step − W) / (total_steps − W))) / 2``.
    """
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """``LambdaLR`` factor ``lr_at(step) / peak_lr``; a plain object so its state is saved."""

    def __init__(self, total_steps: int, peak_lr: float, min_lr: float, warmup_steps: int):
        self.total_steps = total_steps
        self.peak_lr = peak_lr
        self.min_lr = min_lr
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.peak_lr, self.min_lr, self.warmup_steps) / self.peak_lr


def clamp_warmup(warmup_steps: int, total_steps: int) -> int:
    """The warm-up a run of ``total_steps`` can use: ``warmup_steps`` itself when the warm-up
    ends before the run does, else ``⌊WARMUP_SHARE · total_steps⌋`` with a warning.

    A warm-up at least as long as the run never reaches the peak learning rate (``--steps 20``
    with a recipe's 40 warm-up steps climbs to half of it and stops): the cosine never starts
    and the run is not the recipe shortened, but a different one.
    """
    if warmup_steps < total_steps:
        return warmup_steps
    clamped = int(WARMUP_SHARE * total_steps)
    warnings.warn(
        f"warm-up of {warmup_steps} steps is not shorter than the run ({total_steps} steps): the learning rate "
        f"would never reach its peak; warming up over {clamped} steps ({WARMUP_SHARE:.0%} of the run) instead "
        "(set warmup_steps below the run's length to choose)",
        UserWarning,
        stacklevel=3,
    )
    return clamped


def _no_decay(name: str, param) -> bool:
    own_name = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or any(key in own_name for key in NO_DECAY_NAMES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: ``[decay group, no-decay group]``.

    Only parameters with ``requires_grad`` are included (an EMA target is left out). A
    parameter is *not* decayed when it has at most one dimension (biases, LayerNorm / GRN
    weights) or when its own name contains one of :data:`NO_DECAY_NAMES` (``pos_embed``,
    ``mask_token``, ``cls_token``, …). Each group also carries the parameter ``names``.
    """
    decay, no_decay = ([], []), ([], [])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        names, params = no_decay if _no_decay(name, p) else decay
        names.append(name)
        params.append(p)
    return [
        {"params": decay[1], "names": decay[0], "weight_decay": weight_decay},
        {"params": no_decay[1], "names": no_decay[0], "weight_decay": 0.0},
    ]
