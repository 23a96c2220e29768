"""Exercise of the scaling chapter: how many loader workers keep a GPU fed.

The arithmetic behind :func:`maskvid_edu.measure.flops.loader_throughput`'s clips per second: a step
of ``batch_size`` clips every ``step_seconds`` asks for ``batch_size / step_seconds`` clips per
second; a worker that decodes ``decodes_per_second`` videos and cuts ``views`` clips from each
delivers ``views · decodes_per_second``; the GPU needs the next whole number of workers.
"""

from __future__ import annotations

import math
import numbers

from ._checker import Hint, call, exercise, expect_real

WORKERS = exercise(
    "loader_workers",
    title="the loader workers a training step needs",
    topic="scaling up · flops.py (loader_throughput)",
    signature="loader_workers(batch_size, step_seconds, decodes_per_second, views=1) -> int",
    task="""A training step takes step_seconds for batch_size clips. One loader worker decodes
    decodes_per_second videos per second and cuts views clips from each decoded video (repeated
    sampling; cropping is cheap next to decoding). Return the smallest whole number of workers
    that delivers at least the clips per second the step consumes.""",
)

# (batch, step seconds, decodes/s, views): the chapter's ViT-B step with and without repeated
# sampling, cases whose exact need is just above and just below a whole number, and one that is
# a whole number exactly (where rounding up must not add a worker).
_CASES = ((32, 0.06, 30, 1), (32, 0.06, 30, 4), (64, 0.5, 10, 2), (48, 0.2, 25, 1),
          (30, 0.5, 20, 3), (40, 0.5, 10, 2))


def _need(batch, step, rate, views) -> float:
    return batch / step / (rate * views)


def _reference(batch, step, rate, views) -> int:
    return math.ceil(round(_need(batch, step, rate, views), 9))  # 4.000000001 needs 4, not 5


def _count(fn, case) -> float:
    return expect_real(call(fn, *case), "loader_workers")


@WORKERS.property("returns a number")
def _workers_type(fn):
    _count(fn, _CASES[0])


@WORKERS.property("rounds the clips the step needs up to whole workers")
def _workers_rule(fn):
    got = [_count(fn, case) for case in _CASES]
    want = [_reference(*case) for case in _CASES]
    if got == want:
        return
    need = [_need(*case) for case in _CASES]
    slips = (
        ([round(x, 9) for x in need],
         "you returned the exact need, a fraction of a worker: a worker is a whole process, "
         "round up with math.ceil"),
        ([round(x) for x in need],
         "you rounded to the nearest whole number: 4.4 workers' worth of decoding needs 5 "
         "workers, not 4 — round up with math.ceil"),
        ([math.floor(x + 1e-9) for x in need],
         "you rounded down, which leaves the GPU waiting for the missing fraction: round up "
         "with math.ceil"),
        ([math.floor(x + 1e-9) + 1 for x in need],
         "you added one worker to the floor, which is one too many when the need is a whole "
         "number (4.0 needs 4): use math.ceil"),
        ([_reference(b, s, r, 1) for b, s, r, _ in _CASES],
         "you ignored views: with repeated sampling each decoded video gives views clips, so a "
         "worker delivers views · decodes_per_second clips per second"),
        ([math.ceil(round(b * s / (r * v), 9)) for b, s, r, v in _CASES],
         "the step consumes batch_size / step_seconds clips per second; you multiplied by the "
         "step time"),
    )
    for values, slip in slips:
        if all(abs(a - b) <= 1e-6 for a, b in zip(got, values)):
            raise Hint(slip)
    k = next(k for k, (a, b) in enumerate(zip(got, want)) if a != b)
    b, s, r, v = _CASES[k]
    raise Hint(f"loader_workers({b}, {s}, {r}, {v}) returned {got[k]:g}, expected "
               f"⌈({b} / {s}) / ({v} · {r})⌉ = ⌈{need[k]:.3g}⌉ = {want[k]}")


@WORKERS.property("returns an int")
def _workers_int(fn):
    out = call(fn, *_CASES[0])
    if isinstance(out, bool) or not isinstance(out, numbers.Integral):
        raise Hint(f"you returned a {type(out).__name__} ({out!r}): a number of processes is an "
                   "int — math.ceil returns one")
