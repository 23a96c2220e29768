"""One interleaved timer: several steps measured side by side, in turn, in one run.

Every benchmark of the course and every chapter that times something goes through
:func:`time_interleaved`. The rule it implements: on a shared machine the load changes from one
second to the next, so a comparison of two steps timed one after the other measures the load as
much as the steps. Timing them *in turn* — one step of each, repeated — lets a slowdown hit all
of them alike, and the ratio of their medians is what to read.

A *step* is a zero-argument callable that runs one unit of work (a forward + backward, an
optimizer update, …). Rounds before ``warmup`` run untimed (kernel selection, caches, allocator
pools); after them each round runs every step once and appends its time. ``order`` decides who
goes first in each round:

- ``"alternate"``: the given order, then reversed, and so on (A B, B A, A B, …), counting the
  warm-up rounds too;
- ``"rotate"``: warm-up rounds in the given order, then timed round ``r`` starts at step
  ``r mod len(steps)`` (A B C, B C A, C A B, …), so that no step always runs first;
- ``"fixed"``: the given order every round.

Clocks: ``"wall"`` (``time.perf_counter``, elapsed time) and ``"process"``
(``time.process_time``, CPU time of this process: the work a step costs, whatever else the
machine runs; meaningful on the CPU only). With ``device`` set, the device is synchronised
before each clock starts and before it stops, so a CUDA step is timed to its end, not to the
launch of its last kernel.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import torch

from ..utils import synchronize

__all__ = ["CLOCKS", "ORDERS", "time_interleaved", "round_order"]

CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
ORDERS = ("alternate", "rotate", "fixed")


def round_order(names: Sequence[str], round_: int, *, warmup: int = 0, order: str = "alternate") -> list[str]:
    """The order in which round ``round_`` (counting warm-up rounds from 0) runs ``names``."""
    names = list(names)
    if order == "alternate":
        return names if round_ % 2 == 0 else names[::-1]
    if order == "rotate":
        shift = max(round_ - warmup, 0) % len(names)
        return names[shift:] + names[:shift]
    if order == "fixed":
        return names
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def time_interleaved(steps: Mapping[str, Callable[[], object]], *, rounds: int, warmup: int = 0,
                     order: str = "alternate", clocks: Sequence[str] = ("wall",),
                     device: str | torch.device | None = None,
                     before: Callable[[str], None] | None = None,
                     after: Callable[[str], None] | None = None) -> dict[str, dict[str, list[float]]]:
    """Time every step of ``steps``, interleaved (see the module docstring).

    Args:
        steps: ``{name: step}``, each ``step()`` one unit of work; the first is the baseline by
            convention of the callers.
        rounds: timed rounds (each step runs once per round); warmup: untimed rounds before them.
        order: ``"alternate"``, ``"rotate"`` or ``"fixed"``.
        clocks: which clocks to read, ``"wall"`` and/or ``"process"``.
        device: synchronise this device around each timed region (None: no synchronisation).
        before, after: called with the step's name just before its clocks start and just after
            they stop, in every round, warm-up included (e.g. to reset and read a peak-memory
            counter outside the timed region).

    Returns:
        ``{clock: {name: [seconds of each timed round]}}``.
    """
    for name, value in (("rounds", rounds), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "rounds" else 0):
            raise ValueError(f"{name} must be an int ≥ {1 if name == 'rounds' else 0}, got {value!r}")
    if not steps:
        raise ValueError("steps must name at least one step")
    unknown = [c for c in clocks if c not in CLOCKS]
    if unknown or not clocks:
        raise ValueError(f"clocks must be a non-empty subset of {sorted(CLOCKS)}, got {list(clocks)!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    dev = torch.device(device) if device is not None else None
    readers = [CLOCKS[c] for c in clocks]
    times: dict[str, dict[str, list[float]]] = {c: {name: [] for name in steps} for c in clocks}
    for i in range(warmup + rounds):
        for name in round_order(list(steps), i, warmup=warmup, order=order):
            if before is not None:
                before(name)
            if dev is not None:
                synchronize(dev)
            starts = [read() for read in readers]
            steps[name]()
            if dev is not None:
                synchronize(dev)
            ends = [read() for read in readers]
            if after is not None:
                after(name)
            if i >= warmup:
                for clock, t0, t1 in zip(clocks, starts, ends):
                    times[clock][name].append(t1 - t0)
    return times
