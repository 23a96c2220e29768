"""Exercise of the scaling chapter: the effective batch and the linear learning-rate rule.

Checked against the rule the trainer and :func:`maskvid_edu.launch.plan_launch` apply:
``effective_batch = batch_size × gpus × accum_steps`` clips per optimizer step and
``peak_lr = base_lr × effective_batch / 256`` (:data:`maskvid_edu.launch.LR_REFERENCE_BATCH`).
"""

from __future__ import annotations

import math
import numbers

from ._checker import Hint, call, exercise

SCALING = exercise(
    "linear_lr_scaling",
    title="the effective batch and the linear learning-rate rule",
    topic="scaling up · launch.py",
    signature="linear_lr_scaling(base_lr, batch_size, gpus, accum_steps) -> (int, float)",
    task="""A recipe gives a base learning rate per 256 clips. A run uses batch_size clips per
    GPU and micro-batch, on gpus GPUs, and sums the gradients of accum_steps micro-batches
    before each optimizer step. Return the pair (effective_batch, peak_lr): the number of clips
    one optimizer step averages over (an int), and the peak learning rate of the linear
    scaling rule, base_lr × effective_batch / 256.""",
)

# (base_lr, batch_size, gpus, accum_steps): VideoMAE ViT-B on 64 GPUs and on 8 with
# accumulation, the same run resumed on 2 GPUs, VideoMAC on 8 GPUs, one GPU without
# accumulation — GPUs and accumulation steps differ in most cases, so each factor shows.
_CASES = (
    (1.5e-4, 32, 64, 1),
    (1.5e-4, 32, 8, 8),
    (1.5e-4, 32, 2, 8),
    (1e-3, 64, 8, 1),
    (5e-4, 16, 1, 1),
    (1e-3, 8, 4, 3),
)


def _reference(base_lr, batch_size, gpus, accum_steps) -> tuple[int, float]:
    from ..launch import LR_REFERENCE_BATCH

    effective = batch_size * gpus * accum_steps
    return effective, base_lr * effective / LR_REFERENCE_BATCH


def _pair(fn, case) -> tuple[float, float]:
    out = call(fn, *case)
    if out is None:
        raise Hint("linear_lr_scaling returned None: did you forget the `return` statement?")
    if isinstance(out, numbers.Real):
        raise Hint(f"you returned one number ({out!r}); return the pair "
                   "(effective_batch, peak_lr), e.g. `return effective, lr`")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Hint(f"you returned {type(out).__name__} {out!r}; return the pair "
                   "(effective_batch, peak_lr)")
    values = []
    for name, value in zip(("effective_batch", "peak_lr"), out):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise Hint(f"your {name} is a {type(value).__name__}; return Python numbers "
                       "(use float(...) or .item() on a tensor)")
        values.append(float(value))
    return values[0], values[1]


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


@SCALING.property("returns the pair (effective_batch, peak_lr)")
def _scaling_type(fn):
    _pair(fn, _CASES[0])


@SCALING.property("effective batch = batch_size × gpus × accum_steps")
def _scaling_batch(fn):
    got = [_pair(fn, case)[0] for case in _CASES]
    want = [_reference(*case)[0] for case in _CASES]
    if all(_same(a, b) for a, b in zip(got, want)):
        return
    if got == [b for _, b, _, _ in _CASES]:
        raise Hint("you returned the per-GPU batch: one optimizer step averages over every "
                   "GPU's micro-batches, batch_size × gpus × accum_steps clips")
    if got == [b * g for _, b, g, _ in _CASES]:
        raise Hint("gradient accumulation is missing: accum_steps micro-batches are summed "
                   "before each step, so they count — batch_size × gpus × accum_steps")
    if got == [b * a for _, b, _, a in _CASES]:
        raise Hint("the GPUs are missing: each of the gpus processes contributes its own "
                   "micro-batches to the averaged gradient — batch_size × gpus × accum_steps")
    if got == [b + g + a for _, b, g, a in _CASES] or got == [b * (g + a) for _, b, g, a in _CASES]:
        raise Hint("the three factors multiply: batch_size × gpus × accum_steps")
    k = next(k for k, (a, b) in enumerate(zip(got, want)) if not _same(a, b))
    _, b, g, a = _CASES[k]
    raise Hint(f"for batch_size {b}, gpus {g}, accum_steps {a} your effective batch is "
               f"{got[k]:g}, expected {b} × {g} × {a} = {want[k]}")


@SCALING.property("peak lr = base_lr × effective_batch / 256")
def _scaling_lr(fn):
    got = [_pair(fn, case)[1] for case in _CASES]
    want = [_reference(*case)[1] for case in _CASES]
    if all(_same(a, b) for a, b in zip(got, want)):
        return
    effective = [_reference(*case)[0] for case in _CASES]
    slips = (
        ([base for base, *_ in _CASES],
         "you returned base_lr unchanged: the recipe's learning rate is per 256 clips, so it "
         "scales with the effective batch — base_lr × effective_batch / 256"),
        ([base * 256 / e for (base, *_), e in zip(_CASES, effective)],
         "the ratio is upside down: a larger batch gets a larger step, "
         "base_lr × effective_batch / 256"),
        ([base * b / 256 for base, b, _, _ in _CASES],
         "you scaled by the per-GPU batch; the rule scales by the effective batch, the clips "
         "one optimizer step averages over"),
        ([base * math.sqrt(e / 256) for (base, *_), e in zip(_CASES, effective)],
         "that is the square-root rule; the recipes (MAE, VideoMAE, VideoMAC) use the linear "
         "one, base_lr × effective_batch / 256"),
        ([base * e for (base, *_), e in zip(_CASES, effective)],
         "the reference batch is missing: divide by 256, base_lr × effective_batch / 256"),
    )
    for values, slip in slips:
        if all(_same(a, b) for a, b in zip(got, values)):
            raise Hint(slip)
    k = next(k for k, (a, b) in enumerate(zip(got, want)) if not _same(a, b))
    base = _CASES[k][0]
    raise Hint(f"for base_lr {base:g} and an effective batch of {effective[k]} your peak lr is "
               f"{got[k]:.4g}, expected {base:g} × {effective[k]} / 256 = {want[k]:.4g}")


@SCALING.property("returns the effective batch as an int")
def _scaling_int(fn):
    effective = call(fn, *_CASES[1])[0]
    if isinstance(effective, bool) or not isinstance(effective, numbers.Integral):
        raise Hint(f"your effective batch is a {type(effective).__name__} ({effective!r}): "
                   "it counts clips, return an int")
