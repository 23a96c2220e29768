"""Exercise of the downstream-evaluation chapter: DAVIS's region similarity J.

Checked against :func:`maskvid_edu.evaluate.metrics.jaccard` (the toolkit's ``db_eval_iou``):
``J = |truth ∩ pred| / |truth ∪ pred|`` of two binary masks, and 1 when both are empty.
"""

from __future__ import annotations

import torch

from ..evaluate import metrics as lib
from ._checker import Hint, call, exercise, expect_real

REGION = exercise(
    "region_similarity",
    title="DAVIS's region similarity J of two masks",
    topic="downstream evaluation · evaluate/metrics.py",
    signature="region_similarity(truth, pred) -> float",
    task="""truth and pred: bool tensors (H, W), the true and the propagated mask of one object
    in one frame (True = object). Return the region similarity of DAVIS, the intersection over
    union J = |truth ∩ pred| / |truth ∪ pred|, as a Python float in [0, 1]. When both masks are
    empty there is nothing to find and nothing was found: J = 1, the toolkit's convention.""",
)


def _box(h: int, w: int, top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[top:top + height, left:left + width] = True
    return mask


# (truth, pred) pairs on a 6 × 7 frame: |truth| = 12, |pred| = 8, overlap 6 (J = 6/14); a
# prediction inside the truth; a prediction twice the truth; two masks that do not touch.
_CASES = (
    (_box(6, 7, 1, 1, 3, 4), _box(6, 7, 2, 1, 2, 4)),
    (_box(6, 7, 0, 0, 4, 5), _box(6, 7, 1, 1, 2, 3)),
    (_box(6, 7, 2, 2, 2, 2), _box(6, 7, 1, 2, 4, 2)),
    (_box(6, 7, 0, 0, 2, 3), _box(6, 7, 4, 4, 2, 3)),
)


_TOL = 1e-6  # float32 arithmetic on the counts is right too


def _stats(truth: torch.Tensor, pred: torch.Tensor) -> tuple[int, int, int, int]:
    """``(|truth ∩ pred|, |truth|, |pred|, pixels)``."""
    return int((truth & pred).sum()), int(truth.sum()), int(pred.sum()), truth.numel()


def _j(fn, truth, pred) -> float:
    return expect_real(call(fn, truth.clone(), pred.clone()), "region_similarity")


@REGION.property("returns a Python number")
def _region_type(fn):
    _j(fn, *_CASES[0])


@REGION.property("is |truth ∩ pred| / |truth ∪ pred|")
def _region_rule(fn):
    got = [_j(fn, truth, pred) for truth, pred in _CASES]
    want = [lib.jaccard(truth.numpy(), pred.numpy()) for truth, pred in _CASES]
    if all(abs(a - b) <= _TOL for a, b in zip(got, want)):
        return
    stats = [_stats(truth, pred) for truth, pred in _CASES]
    slips = (
        ([i / t for i, t, p, n in stats],
         "you divided the overlap by the true mask's area (that is recall); J divides by the "
         "union, so a prediction that covers the whole frame cannot score 1"),
        ([i / p if p else 0.0 for i, t, p, n in stats],
         "you divided the overlap by the predicted area (that is precision); J divides by the "
         "union of the two masks"),
        ([2 * i / (t + p) for i, t, p, n in stats],
         "that is the Dice coefficient 2·|A ∩ B| / (|A| + |B|) (the F1 of pixels); J divides the "
         "overlap by the union: |A ∩ B| / |A ∪ B|"),
        ([i / (t + p) for i, t, p, n in stats],
         "you divided by |truth| + |pred|, which counts the overlap twice: the union is "
         "|truth| + |pred| − |truth ∩ pred|, or (truth | pred).sum()"),
        ([(n - t - p + 2 * i) / n for i, t, p, n in stats],
         "you counted the pixels where the two masks agree, background included (pixel "
         "accuracy); J only looks at the object: overlap over union"),
        ([1 - w for w in want],
         "you returned 1 − J, the Jaccard distance; J itself is the overlap over the union"),
    )
    for values, slip in slips:
        if all(abs(a - b) <= _TOL for a, b in zip(got, values)):
            raise Hint(slip)
    k = next(k for k, (a, b) in enumerate(zip(got, want)) if abs(a - b) > _TOL)
    inter, t, p, _ = stats[k]
    raise Hint(f"for masks of {t} and {p} pixels overlapping on {inter} you returned {got[k]:.4g}, "
               f"expected {inter} / {t + p - inter} = {want[k]:.4g}: the overlap "
               "(truth & pred).sum() over the union (truth | pred).sum()")


@REGION.property("gives 1 when both masks are empty",
                 crash_hints=(("division by zero",
                               "both masks are empty, so the union is 0: return 1.0 in that "
                               "case (nothing to find, nothing found)"),))
def _region_empty(fn):
    empty = torch.zeros(6, 7, dtype=torch.bool)
    got = call(fn, empty.clone(), empty.clone())
    if isinstance(got, torch.Tensor) and got.numel() == 1 and torch.isnan(got).item():
        got = float("nan")
    if isinstance(got, float) and got != got:
        raise Hint("both masks are empty and you returned nan (0 / 0): when the union is 0 "
                   "return 1.0, the DAVIS toolkit's convention — nothing to find, nothing found")
    value = expect_real(got, "region_similarity")
    if value != 1.0:
        raise Hint(f"both masks are empty and you returned {value:g}: the DAVIS toolkit scores "
                   "an empty prediction of an empty object 1 (nothing to find, nothing found)")


@REGION.property("works on any frame size and leaves its inputs unchanged")
def _region_sizes(fn):
    truth, pred = _box(9, 13, 2, 3, 5, 6), _box(9, 13, 4, 1, 4, 9)
    t0, p0 = truth.clone(), pred.clone()
    got = expect_real(call(fn, truth, pred), "region_similarity")
    if not (torch.equal(truth, t0) and torch.equal(pred, p0)):
        raise Hint("your function changed the masks it was given: compute on them (or on "
                   "copies), do not modify them in place")
    want = lib.jaccard(t0.numpy(), p0.numpy())
    if abs(got - want) > _TOL:
        raise Hint(f"right on 6 × 7 frames but {got:.4g} instead of {want:.4g} on a 9 × 13 "
                   "frame: do not hard-code the frame size")
