"""Training throughput of the demo recipes, and what each speed lever buys.

The course zoo and every chapter that trains spend their minutes in the demo recipes
(``configs/videomae_demo.yaml``, ``videomac_demo.yaml``, ``mam2_demo.yaml``: batch 8, one
intra-op thread, one worker rendering the synthetic clips). :func:`bench_throughput` runs each
recipe through the real :class:`~maskvid_edu.train.Trainer` for a few steps with the recipe as
shipped and with each lever of :data:`LEVERS` applied on top, and reads clips per second from
the trainer's own ``sec_per_step`` records (the first window, which holds the worker's start,
is left out). The levers change only *how* a step runs, so the losses must agree; each row
carries the loss difference at the last step against the recipe as shipped, the proof that
the numbers being compared train the same thing.

The rounds interleave (every recipe and lever once per round, median over rounds), so a machine
that slows down for a while slows every row alike. ``maskvid-edu bench --what train`` prints
the table.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Sequence

import torch

from ..models import create
from ..recipes import build_dataset, resolve_pretrain
from ..train import Trainer

__all__ = ["LEVERS", "DEMO_METHODS", "demo_run", "bench_throughput"]

LEVERS: dict[str, dict] = {
    "as shipped": {},
    "fused AdamW": {"fused_optimizer": True},
    "2 threads, clips rendered in the main process": {"num_threads": 2, "num_workers": 0},
    "2 threads and the render worker": {"num_threads": 2},
}
"""Lever name → the :class:`~maskvid_edu.train.TrainConfig` fields it sets over the recipe."""

DEMO_METHODS = ("videomae", "videomac", "mam2")


def demo_run(method: str, steps: int, **train: object) -> dict:
    """Train ``method``'s demo recipe for ``steps`` steps (of its full schedule) with ``train``
    fields set over the recipe's; returns ``{"clips_per_s", "loss", "batch_size", "steps"}``."""
    if steps < 4:
        raise ValueError(f"steps must be ≥ 4 (two logged windows of two steps), got {steps!r}")
    plan = resolve_pretrain(method=method, out="unused")
    config = dataclasses.replace(plan["train"], out_dir=None, progress=False,
                                 log_every=max(2, steps // 6), **train)
    torch.manual_seed(config.seed)
    model = create(plan["model"], **plan["model_overrides"])
    dataset = build_dataset(plan["data"], model, seed=config.seed)
    threads = torch.get_num_threads()
    try:
        history = Trainer(model, dataset, config).fit(stop_at=steps)
    finally:
        torch.set_num_threads(threads)
    seconds = statistics.median(r["sec_per_step"] for r in history[1:])  # after the first window
    return {"clips_per_s": config.batch_size / seconds, "loss": history[-1]["loss"],
            "batch_size": config.batch_size, "steps": history[-1]["step"]}


def bench_throughput(methods: Sequence[str] = DEMO_METHODS, levers: Sequence[str] = tuple(LEVERS), *,
                     steps: int = 60, rounds: int = 2) -> list[dict]:
    """Clips/s of every demo recipe under every lever, interleaved over ``rounds``.

    Returns one dict per (method, lever): ``{"method", "lever", "clips_per_s", "vs_shipped",
    "loss", "loss_diff", "batch_size", "steps"}``; ``vs_shipped`` above 1 is faster than the
    recipe as shipped, ``loss_diff`` is ``|loss − loss as shipped|`` at the last step (the first
    round's runs; every round trains the same steps from the same seed).
    """
    unknown = [name for name in levers if name not in LEVERS]
    if unknown:
        raise ValueError(f"unknown lever(s) {unknown}; choose from {list(LEVERS)}")
    if "as shipped" not in levers:
        levers = ("as shipped", *levers)
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds!r}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(rounds):
        for method in methods:
            for lever in levers:
                runs.setdefault((method, lever), []).append(demo_run(method, steps, **LEVERS[lever]))
    rows = []
    for method in methods:
        shipped = runs[(method, "as shipped")]
        base = statistics.median(r["clips_per_s"] for r in shipped)
        for lever in levers:
            done = runs[(method, lever)]
            rate = statistics.median(r["clips_per_s"] for r in done)
            rows.append({"method": method, "lever": lever, "clips_per_s": rate, "vs_shipped": rate / base,
                         "loss": done[0]["loss"], "loss_diff": abs(done[0]["loss"] - shipped[0]["loss"]),
                         "batch_size": done[0]["batch_size"], "steps": done[0]["steps"]})
    return rows
