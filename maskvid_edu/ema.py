"""The EMA target: a slow-moving copy of a network that supplies targets to its fast twin.

VideoMAC (like BYOL, DINO and MoCo before it) trains an *online* network by gradient descent
and keeps a *target* network that is never trained directly. After every optimizer step the
target drifts a little towards the online weights — an exponential moving average (EMA)::

    θ_t ← m · θ_t + (1 − m) · θ_o

``m`` (the momentum) is close to 1, so the target averages the online network over roughly
``1 / (1 - m)`` recent steps: it changes slowly, which keeps the targets it produces stable.
Two details decide whether this works as intended:

**Which side gets the momentum.** ``m`` multiplies the *target*. Writing
``θ_o ← m θ_o + (1 − m) θ_t`` instead (a common slip) drags the online network back towards
a stale copy and leaves the target almost where it started.

**How the momentum is scheduled.** ``m`` rises from ``base = 0.996`` to ``final = 1`` along a
half cosine over the *whole* run, indexed by the **global** optimizer step ``s`` out of ``S``::

    m(s) = final − (final − base) · (cos(π s / S) + 1) / 2

so the target follows the online network closely at first and freezes towards the end.
VideoMAC's public release builds exactly this array over ``epochs × steps_per_epoch`` entries
but then indexes it with the step *within the current epoch*. The momentum therefore only ever
walks the first ``1/epochs`` of its schedule, restarting at 0.996 every epoch and never
approaching 1 (over 100 epochs it never exceeds ~0.99600 + 1e-6). That release also updates the
target after every data-loader iteration, i.e. once per *micro-batch* when gradients are
accumulated. :func:`cosine_momentum_per_epoch_buggy` reproduces the indexing so the two
schedules can be plotted side by side; train with :func:`cosine_momentum`.

A model that owns an :class:`EMATarget` implements ``on_optimizer_step(step, total_steps)``
and calls :meth:`EMATarget.update` there; :mod:`maskvid_edu.train` calls that hook exactly once
per optimizer step (never per micro-batch). Because the target is a registered submodule, its
weights live in the model's ``state_dict`` and checkpoints restore them.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["cosine_momentum", "cosine_momentum_per_epoch_buggy", "EMATarget"]


def _check_momentum(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """EMA momentum at global optimizer step ``step`` (0-based) of a ``total_steps`` run.

    ``m(step) = final − (final − base)·(cos(π·step/total_steps) + 1)/2``: ``base`` at step 0,
    ``(base + final)/2`` half way, ``final`` at ``step = total_steps``.

    Args:
        step: the optimizer step just taken, counted over the whole run (not within an epoch),
            ``0 ≤ step ≤ total_steps``.
        total_steps: number of optimizer steps of the run (``≥ 1``).
        base, final: momentum at the start and at the end, in ``[0, 1]``.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= total_steps:
        raise ValueError(f"step must be an int in [0, total_steps={total_steps}], got {step!r}")
    base = _check_momentum(base, "base")
    final = _check_momentum(final, "final")
    return final - (final - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


def cosine_momentum_per_epoch_buggy(
    step_in_epoch: int, steps_per_epoch: int, epochs: int, base: float = 0.996, final: float = 1.0
) -> float:
    """The momentum VideoMAC's public release actually uses — kept only to *show* the bug.

    The release builds the cosine schedule over ``epochs · steps_per_epoch`` iterations, as
    :func:`cosine_momentum` does, but indexes it with the iteration counter of the current
    epoch (``step_in_epoch``), which restarts at 0 every epoch. The result is
    ``cosine_momentum(step_in_epoch, epochs · steps_per_epoch)``: a saw-tooth that repeats every
    epoch and stays within the first ``1/epochs`` of the intended curve. Do not train with it.
    """
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(step_in_epoch, bool) or not isinstance(step_in_epoch, int) or not 0 <= step_in_epoch < steps_per_epoch:
        raise ValueError(f"step_in_epoch must be an int in [0, steps_per_epoch={steps_per_epoch}), got {step_in_epoch!r}")
    return cosine_momentum(step_in_epoch, epochs * steps_per_epoch, base, final)


class EMATarget(nn.Module):
    """A frozen deep copy of ``online`` that only moves by :meth:`update`.

    - Its parameters have ``requires_grad = False`` (the optimizer never sees them) and the copy
      stays in eval mode even when the parent model is put in train mode (no dropout, no
      drop-path in the target branch).
    - Calling it runs the copied module under ``torch.no_grad()``.
    - It is an ordinary submodule: assign it as an attribute of the model
      (``self.target = EMATarget(self.encoder)``) and its weights appear in the model's
      ``state_dict`` under ``target.module.*``, so saving and resuming restore it exactly.

    Args:
        online: the module to copy (the online encoder, or encoder + decoder).
    """

    def __init__(self, online: nn.Module):
        super().__init__()
        if not isinstance(online, nn.Module):
            raise ValueError(f"online must be an nn.Module, got {type(online).__name__}")
        self.module = copy.deepcopy(online)
        for p in self.module.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "EMATarget":
        # The target is never trained: ignore requests to switch to train mode.
        return super().train(False)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float) -> None:
        """One EMA step, in place: ``θ_t ← m·θ_t + (1 − m)·θ_o``; buffers are copied.

        Args:
            online: the module the target was copied from (same parameter names and shapes).
            momentum: ``m`` in ``[0, 1]``; 1 leaves the target unchanged, 0 copies the online
                weights.
        """
        if isinstance(momentum, torch.Tensor):
            raise ValueError("momentum must be a Python float (a tensor would force a host sync per step)")
        m = _check_momentum(momentum, "momentum")
        target_params = dict(self.module.named_parameters())
        online_params = dict(online.named_parameters())
        if target_params.keys() != online_params.keys():
            missing = sorted(set(target_params) ^ set(online_params))[:5]
            raise ValueError(f"online does not match the EMA target's parameters (differing names, e.g. {missing})")
        for name, p_t in target_params.items():
            p_o = online_params[name].detach()
            if p_o.shape != p_t.shape:
                raise ValueError(f"parameter {name!r}: online shape {tuple(p_o.shape)} != target {tuple(p_t.shape)}")
            p_t.mul_(m).add_(p_o, alpha=1.0 - m)  # θ_t ← m·θ_t + (1 − m)·θ_o
        online_buffers = dict(online.named_buffers())
        for name, b_t in self.module.named_buffers():
            if name in online_buffers:
                b_t.copy_(online_buffers[name])
