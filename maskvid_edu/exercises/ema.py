"""Exercises on the EMA target: the update rule and the momentum schedule.

Checked against :meth:`maskvid_edu.ema.EMATarget.update` (``θ_t ← m·θ_t + (1 − m)·θ_o``, in
place, outside autograd) and :func:`maskvid_edu.ema.cosine_momentum` indexed by the *global*
optimizer step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import ema as lib
from ._checker import Hint, call, close, exercise, expect_real

# --------------------------------------------------------------------------------------------
# ema_update
# --------------------------------------------------------------------------------------------

EMA = exercise(
    "ema_update",
    title="one step of the EMA target",
    topic="the EMA target · ema.py",
    signature="ema_update(target_params, online_params, momentum) -> None",
    task="""target_params and online_params are matching sequences (or generators, such as
    model.parameters()) of tensors of the same shapes; momentum is a float m in [0, 1]. Move every
    target tensor towards its online twin, in place: θ_t ← m·θ_t + (1 − m)·θ_o. The online tensors
    must not change and autograd must not record the update. Return nothing.""",
)

_SHAPES = ((4, 3), (5,), (2, 3, 3))


def _params(seed: int, requires_grad: bool = False) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(*s, generator=g, dtype=torch.float64) for s in _SHAPES]
    return [nn.Parameter(t) if requires_grad else t for t in tensors]


def _expected(target, online, m):
    return [m * t.detach() + (1 - m) * o.detach() for t, o in zip(target, online)]


def _all_close(xs, ys) -> bool:
    return len(xs) == len(ys) and all(close(x, y, rtol=1e-12, atol=1e-12) for x, y in zip(xs, ys))


@EMA.property("moves the target in place: θ_t ← m·θ_t + (1 − m)·θ_o")
def _ema_rule(fn):
    for m in (0.9, 0.996, 0.0, 1.0):
        target, online = _params(0), _params(1)
        before_t = [t.clone() for t in target]
        before_o = [o.clone() for o in online]
        returned = call(fn, target, online, m)
        if not _all_close(online, before_o):
            if _all_close(online, _expected(before_o, before_t, m)):
                raise Hint("you moved the online parameters towards the target — the wrong network. The "
                           "optimizer trains the online network; the EMA only writes the target: "
                           "θ_t ← m·θ_t + (1 − m)·θ_o")
            raise Hint("the online parameters changed: the EMA must only write to the target")
        if _all_close(target, _expected(before_t, before_o, m)):
            continue
        if m not in (0.0, 1.0) and _all_close(target, _expected(before_t, before_o, 1 - m)):
            raise Hint("the momentum multiplies the wrong side: you computed θ_t ← (1 − m)·θ_t + m·θ_o, which with "
                       "m near 1 all but copies the online weights at every step. The target keeps the share m "
                       "of itself: θ_t ← m·θ_t + (1 − m)·θ_o")
        if _all_close(target, before_t):
            returned_ok = isinstance(returned, (list, tuple)) and _all_close(list(returned), _expected(before_t, before_o, m))
            detail = " You returned the new values instead;" if returned_ok else ""
            raise Hint(f"the target did not change (m = {m}).{detail} Update each target tensor in place — "
                       "p_t.mul_(m).add_(p_o, alpha=1 - m) or p_t.copy_(...); `p_t = m * p_t + ...` only rebinds a "
                       "local name")
        if _all_close(target, before_o):
            raise Hint(f"with m = {m} the target became a copy of the online parameters; it should keep the share m "
                       "of itself: θ_t ← m·θ_t + (1 − m)·θ_o")
        raise Hint(f"with m = {m} the target is not m·θ_t + (1 − m)·θ_o")


@EMA.property("keeps the update out of autograd (the target gets no grad_fn)")
def _ema_no_grad(fn):
    online = _params(1, requires_grad=True)  # the trained network: parameters that require grad
    online_sum = sum((o * o).sum() for o in online)
    online_sum.backward()  # as after a real optimizer step: .grad is set
    target = _params(0)  # an EMATarget's parameters: requires_grad=False
    call(fn, target, online, 0.9)
    recorded = [t for t in target if t.requires_grad or t.grad_fn is not None]
    if recorded:
        link = type(recorded[0].grad_fn).__name__ if recorded[0].grad_fn is not None else "requires_grad=True"
        raise Hint(f"autograd recorded your update: the target now has a grad_fn ({link}) linking it to the online "
                   "network's graph, so every step grows the graph and gradients can flow through the target. "
                   "Run the update under torch.no_grad() (decorate ema_update with @torch.no_grad()) or use "
                   "p_o.detach()")


@EMA.property("works when the target's parameters require grad (a plain copy.deepcopy of the model)",
              crash_hints=(("leaf Variable that requires grad",
                            "in-place updates of parameters must run under torch.no_grad(): decorate ema_update "
                            "with @torch.no_grad() (or use p_t.data)"),))
def _ema_leaf(fn):
    target, online = _params(0, requires_grad=True), _params(1, requires_grad=True)
    expected = _expected(target, online, 0.9)
    call(fn, target, online, 0.9)
    if any(t.grad_fn is not None for t in target):
        raise Hint("a target parameter stopped being a leaf (it has a grad_fn): run the update under torch.no_grad()")
    if not _all_close(target, expected):
        raise Hint("the target parameters (nn.Parameter, requires_grad=True) did not get m·θ_t + (1 − m)·θ_o: update "
                   "them in place under torch.no_grad()")


@EMA.property("accepts generators such as model.parameters()",
              crash_hints=(("has no len()", "target_params and online_params may be generators (model.parameters()): "
                            "iterate over them once with zip(target_params, online_params), or call list() first"),
                           ("not subscriptable", "target_params and online_params may be generators "
                            "(model.parameters()): use zip(...) instead of indexing, or call list() first")))
def _ema_generators(fn):
    target_model, online_model = nn.Linear(3, 2).double(), nn.Linear(3, 2).double()
    for p in target_model.parameters():
        p.requires_grad_(False)
    expected = _expected(list(target_model.parameters()), list(online_model.parameters()), 0.9)
    call(fn, target_model.parameters(), online_model.parameters(), 0.9)
    if not _all_close(list(target_model.parameters()), expected):
        raise Hint("called with model.parameters() (generators, which can be read only once) the target did not get "
                   "m·θ_t + (1 − m)·θ_o: iterate once with zip(target_params, online_params), or call list() first")


@EMA.property("agrees with maskvid_edu.ema.EMATarget.update on a small network")
def _ema_library(fn):
    torch.manual_seed(1)
    online = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    reference = lib.EMATarget(online)
    mine = lib.EMATarget(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))  # the online network moves away
    for step in range(3):
        reference.update(online, 0.99)
        call(fn, list(mine.module.parameters()), list(online.parameters()), 0.99)
    for (name, a), b in zip(mine.module.named_parameters(), reference.module.parameters()):
        if not close(a, b, rtol=1e-6, atol=1e-7):
            raise Hint(f"after 3 updates with m = 0.99, parameter {name!r} differs from EMATarget.update by "
                       f"{float((a - b).abs().max()):.3g}")


# --------------------------------------------------------------------------------------------
# cosine_momentum
# --------------------------------------------------------------------------------------------

COSINE = exercise(
    "cosine_momentum",
    title="the EMA momentum schedule, indexed by the global step",
    topic="the EMA target · ema.py",
    signature="cosine_momentum(epoch, step_in_epoch, steps_per_epoch, epochs, base=0.996, final=1.0) -> float",
    task="""Return the EMA momentum to use after optimizer step `step_in_epoch` (0-based) of epoch
    `epoch` (0-based), in a run of `epochs` epochs of `steps_per_epoch` optimizer steps. The
    momentum rises from `base` to `final` along a half cosine over the whole run, indexed by the
    global step s = epoch·steps_per_epoch + step_in_epoch out of S = epochs·steps_per_epoch:
    m(s) = final − (final − base)·(cos(π·s/S) + 1)/2. Return a Python float.""",
)

_EPOCHS, _SPE = 4, 25


def _curve(fn, epochs=_EPOCHS, spe=_SPE, **kw) -> list[float]:
    return [expect_real(call(fn, e, i, spe, epochs, **kw), "cosine_momentum")
            for e in range(epochs) for i in range(spe)]


def _reference(epochs=_EPOCHS, spe=_SPE, base=0.996, final=1.0) -> list[float]:
    return [lib.cosine_momentum(s, epochs * spe, base, final) for s in range(epochs * spe)]


def _same(a, b, tol=1e-10) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


@COSINE.property("returns a Python float")
def _cos_type(fn):
    expect_real(call(fn, 0, 0, _SPE, _EPOCHS), "cosine_momentum")


@COSINE.property("starts at base = 0.996")
def _cos_start(fn):
    first = expect_real(call(fn, 0, 0, _SPE, _EPOCHS), "cosine_momentum")
    if abs(first - 0.996) <= 1e-10:
        return
    if abs(first - 1.0) <= 1e-10:
        raise Hint("your schedule starts at final = 1 (a frozen target): it must start at base = 0.996 and rise "
                   "to final — check the sign of the cosine term")
    raise Hint(f"cosine_momentum(0, 0, ...) returned {first}; the schedule starts at base (default 0.996)")


@COSINE.property("keeps rising across epoch boundaries (indexed by the global step)")
def _cos_global(fn):
    got = _curve(fn)
    buggy = [lib.cosine_momentum_per_epoch_buggy(i, _SPE, _EPOCHS) for _ in range(_EPOCHS) for i in range(_SPE)]
    if _same(got, buggy):
        raise Hint(f"your momentum restarts at 0.996 every epoch: you indexed the schedule with the step within the "
                   f"epoch. Index it by the global step s = epoch·steps_per_epoch + step_in_epoch (VideoMAC's public "
                   f"code has exactly this bug: over {_EPOCHS} epochs its momentum never exceeds {max(buggy):.6f})")
    per_epoch = [lib.cosine_momentum(i, _SPE) for _ in range(_EPOCHS) for i in range(_SPE)]
    if _same(got, per_epoch):
        raise Hint("your cosine spans one epoch and restarts at every epoch: it must span the whole run, "
                   "S = epochs·steps_per_epoch steps, indexed by the global step")
    for s in range(1, len(got)):
        if got[s] < got[s - 1] - 1e-12:
            e0, i0 = divmod(s - 1, _SPE)
            e1, i1 = divmod(s, _SPE)
            raise Hint(f"the momentum falls from {got[s - 1]:.6f} (epoch {e0}, step {i0}) to {got[s]:.6f} "
                       f"(epoch {e1}, step {i1}); from base to final it must never decrease")


@COSINE.property("follows m(s) = final − (final − base)·(cos(π·s/S) + 1)/2 over the whole run")
def _cos_shape(fn):
    got, ref = _curve(fn), _reference()
    if _same(got, ref):
        return
    S = _EPOCHS * _SPE
    if _same(got, [lib.cosine_momentum(s + 1, S) for s in range(S)]):
        raise Hint("off by one step: the first optimizer step (epoch 0, step 0) is s = 0, where m = base")
    if _same(got, [lib.cosine_momentum(s, S - 1) for s in range(S)]):
        raise Hint("you divided by S − 1: the schedule runs over S = epochs·steps_per_epoch steps, "
                   "m(s) uses π·s/S")
    if _same(got, [0.996 + (1 - 0.996) * s / S for s in range(S)]):
        raise Hint("that is a linear ramp; the schedule is a half cosine: "
                   "m = final − (final − base)·(cos(π·s/S) + 1)/2")
    s = max(range(S), key=lambda k: abs(got[k] - ref[k]))
    e, i = divmod(s, _SPE)
    raise Hint(f"at epoch {e}, step {i} (s = {s} of S = {S}) you return {got[s]:.8f}, expected {ref[s]:.8f} "
               "= final − (final − base)·(cos(π·s/S) + 1)/2")


@COSINE.property("uses the base and final it is given")
def _cos_args(fn):
    got = _curve(fn, 3, 10, base=0.99, final=0.999)
    ref = _reference(3, 10, base=0.99, final=0.999)
    if not _same(got, ref):
        raise Hint(f"with base=0.99, final=0.999 you start at {got[0]:.6f} (expected 0.99): use the base and final "
                   "arguments instead of fixed numbers")
    if not math.isclose(expect_real(call(fn, 0, 0, 10, 3), "cosine_momentum"), 0.996, abs_tol=1e-12):
        raise Hint("the default base must be 0.996 (VideoMAC, BYOL)")
