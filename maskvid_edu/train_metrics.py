"""What the training loop records between two host syncs: loss sums, gradient norms, the first
non-finite step, and which clips each step saw.

A ``.item()`` per step would stall a GPU pipeline on every iteration, so a
:class:`MetricWindow` keeps its sums *on the device* and is read back only when the trainer logs
or checkpoints (every ``log_every`` / ``ckpt_every`` steps). Two consequences it takes care of:

- A non-finite loss is noticed late. The window records, on the device, the first step whose
  loss or terms were not finite; on the host, cheaply, the clip ids of every step since the last
  check (``batch["index"]``, a CPU tensor: no device sync). :meth:`check_finite` then names the
  step, the steps since the last check, and the clips of the offending step.
- A checkpoint may fall inside a logging window. :meth:`state_dict` saves the partial sums, so a
  resumed run writes the very record the uninterrupted run would have written.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["MetricWindow", "describe_clips"]

_NO_STEP = 2**62  # "no bad step" while all-reducing the minimum over processes


def describe_clips(ids: list[int], samples=None, limit: int = 8) -> str:
    """Clip ids (``batch["index"]``) with their paths when ``samples[i].path`` exists."""
    names = []
    for i in ids[:limit]:
        path = getattr(samples[i], "path", None) if samples is not None and 0 <= i < len(samples) else None
        names.append(f"{i} ({path})" if path else str(i))
    return ", ".join(names) + (f", … (+{len(ids) - limit})" if len(ids) > limit else "")


class MetricWindow:
    """Device-side sums of one logging window (and the run's first non-finite step).

    ``names`` (the loss terms, fixed by the first micro-batch) order ``sums``:
    ``sums = [Σ loss, Σ term_1, …]`` over the window's micro-batches, shape ``(1 + n_terms,)``.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.names: list[str] | None = None
        self.first_bad_step = None  # (,) long on the device, -1 while every loss and gradient was finite
        self.first_bad_values = None  # (1 + n_terms,) the loss and terms of that step
        self.bad_gradient = None  # (,) bool: the first bad step had finite losses but a non-finite gradient
        self.checked_step = 0  # the step of the last successful check_finite
        self.clips: dict[int, list[int]] = {}  # step -> clip ids of its micro-batches (this process)
        self.reset()

    def reset(self) -> None:
        """Start a new logging window (the first bad step is kept)."""
        self.sums = None
        self.micro = 0
        self.grad_norm = torch.zeros((), device=self.device)
        self.steps = 0

    # -- recording (no host sync) ------------------------------------------------------------

    def add(self, out, step: int) -> None:
        """Add one micro-batch's ``out.loss`` and ``out.terms`` to the device-side sums."""
        if self.names is None:
            self._start(list(out.terms))
        elif list(out.terms) != self.names:
            raise ValueError(f"the model's loss terms changed during training: {self.names} -> {list(out.terms)}")
        values = torch.stack([out.loss.detach().float()] + [out.terms[k].detach().float().reshape(()) for k in self.names])
        self.sums = values if self.sums is None else self.sums + values
        self.micro += 1
        new_bad = (~torch.isfinite(values).all()) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(new_bad, torch.full_like(self.first_bad_step, step), self.first_bad_step)
        self.first_bad_values = torch.where(new_bad, values, self.first_bad_values)

    def add_grad_norm(self, grad_norm: torch.Tensor, step: int) -> None:
        """Add one optimizer step's global gradient norm (a 0-d device tensor). A non-finite
        norm with finite losses marks the step too: an ``inf`` in an input the loss never reads
        (a visible token of a model without token mixing) still poisons the weights through
        ``0 · inf`` in the backward pass, and the loss turns non-finite only a step later."""
        grad_norm = grad_norm.detach().float()
        self.grad_norm = self.grad_norm + grad_norm
        self.steps += 1
        if self.names is None:
            return
        new_bad = (~torch.isfinite(grad_norm)) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(new_bad, torch.full_like(self.first_bad_step, step), self.first_bad_step)
        self.bad_gradient = self.bad_gradient | new_bad

    def note_clips(self, step: int, batch) -> None:
        """Remember which clips step ``step`` trained on, if the batch says (``batch["index"]``)."""
        index = batch.get("index") if isinstance(batch, dict) else None
        if index is None:
            return
        ids = index.tolist() if isinstance(index, torch.Tensor) else list(index)  # a CPU tensor: no device sync
        self.clips.setdefault(step, []).extend(int(i) for i in ids)

    def _start(self, names: list[str]) -> None:
        self.names = names
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self.first_bad_values = torch.zeros(1 + len(names), device=self.device)
        self.bad_gradient = torch.zeros((), dtype=torch.bool, device=self.device)

    # -- reading back (host syncs) -----------------------------------------------------------

    def check_finite(self, step: int, distributed: bool, samples, kept: str) -> None:
        """Raise ``FloatingPointError`` if any step so far had a non-finite loss.

        ``step``: the steps done now; ``samples``: the dataset's ``samples`` (objects with a
        ``path``, to name the clips) or None; ``kept``: what is left on disk. The message gives the first bad step with its loss terms,
        the steps since the previous check (the range the bad one was found in) and the clips of
        the bad step's micro-batches on this process.
        """
        if self.names is None:
            return
        bad = self.first_bad_step.clone()
        if distributed:
            sentinel = torch.where(bad < 0, torch.full_like(bad, _NO_STEP), bad)
            dist.all_reduce(sentinel, op=dist.ReduceOp.MIN)
            bad = torch.where(sentinel == _NO_STEP, torch.full_like(bad, -1), sentinel)
        bad_step = int(bad)
        if bad_step < 0:
            self.checked_step = step
            self.clips.clear()
            return
        what = "loss"
        if int(self.first_bad_step) != bad_step:
            terms = "on another process"
        elif bool(self.bad_gradient):
            what, terms = "gradient", "the loss terms were finite, the gradient norm was not"
        else:
            vals = self.first_bad_values.tolist()
            terms = ", ".join(f"{n}={v:.6g}" for n, v in zip(["loss"] + self.names, vals))
        ids = self.clips.get(bad_step)
        clips = f"; clips of step {bad_step}: {describe_clips(ids, samples)}" if ids else ""
        raise FloatingPointError(
            f"non-finite {what} at step {bad_step} ({terms}); training stopped, {kept}. Found at step {step}: the "
            f"loss is checked every log/checkpoint, so steps {self.checked_step}–{step - 1} were run since the "
            f"last check{clips}"
        )

    def means(self, distributed: bool) -> dict | None:
        """The window's averages ``{"loss", <terms>…, "grad_norm"}`` (one host sync), or None if empty."""
        if self.micro == 0:
            return None
        sums = torch.cat([self.sums, self.grad_norm.reshape(1)])
        if distributed:
            dist.all_reduce(sums)
            sums /= dist.get_world_size()
        host = sums.tolist()
        record = {name: v / self.micro for name, v in zip(["loss"] + self.names, host[:-1])}
        record["grad_norm"] = host[-1] / max(1, self.steps)
        return record

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The partial window (host tensors), for a checkpoint written between two log steps."""
        return {
            "names": self.names,
            "sums": self.sums.detach().cpu() if self.sums is not None else None,
            "micro": self.micro,
            "grad_norm": self.grad_norm.detach().cpu(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue the window saved by :meth:`state_dict`."""
        if state.get("names") is not None:
            self._start(list(state["names"]))
        self.sums = state["sums"].to(self.device) if state.get("sums") is not None else None
        self.micro = int(state.get("micro", 0))
        self.grad_norm = state["grad_norm"].to(self.device).float()
        self.steps = int(state.get("steps", 0))
