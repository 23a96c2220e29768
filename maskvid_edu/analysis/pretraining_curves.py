"""Downstream accuracy against pre-training steps: MAM2's "half the epochs" claim, measured.

The claim (MAM2, Song et al. 2024): asking the decoder for *motion* (RGB differences) beside
appearance makes the encoder reach its downstream accuracy in about half the pre-training
epochs a pixel target needs. A claim about *speed of learning* is tested by reading the same
encoder at several points of its pre-training, not only at the end:

- **checkpoints**: the MAM2 zoo recipes (:data:`VARIANTS`: appearance + motion, pixels,
  motion only; seeds 0–2 each), read at step 0 (the initialisation), at each of the recipe's
  ``zoo.snapshots`` and at the end (:func:`checkpoint_steps`). The three variants of one seed
  share initial weights, masks and data order: only the loss differs.
- **scores** (:data:`KINDS`): on the labelled task of :mod:`~maskvid_edu.analysis.data_efficiency`
  (four translation classes, :data:`NUM_LABELLED` labelled clips of seed ``LABELLED_SEED + s``,
  512 test clips of ``TEST_SEED``, none of them pre-trained on), a linear probe and k-NN on the
  frozen features, and the experiment's fine-tune (400 steps, the same head and clip order for
  every checkpoint of a seed). The pre-training seed is the probe's and fine-tune's seed, so
  every comparison between variants is paired by seed.
- **record** (one per ``(recipe, step, kind)``): the test accuracy, which test clips were right,
  the sha256 of the encoder's weights, and for a fine-tune its losses and training accuracy.
  Checkpoints with identical weights (step 0 of the three variants of a seed) are measured once
  and the record copied, naming the source (``same_weights_as``): the measurement is
  deterministic, so the copy is what a rerun would give.

Snapshots live in the git-ignored build folder, so :func:`measure` can only read the steps of
recipes built on this machine; a checkpoint that is not there is skipped and counted (the
committed records are what the book reads). Records are rewritten atomically after each
measurement, so an interrupted run resumes.

Reading the race (:func:`race`): the *level* is what the pixel target reaches at the end of
its budget (its mean over seeds); for each variant, the first step at which each seed reaches
that level; and the paired difference of each variant at *half* the budget against pixels at
the full budget — the claim says the first is not below the second.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .. import zoo
from ..checkpoints import atomic_write
from ..evaluate.probe import FrameEncoder
from ..utils import read_json_lines
from . import data_efficiency
from .stats import Estimate, bootstrap_ci, mean_ci, paired_difference, verdict

__all__ = ["VARIANTS", "SEEDS", "KINDS", "ALL_KINDS", "NUM_LABELLED", "checkpoint_steps", "encoder_at", "measure",
           "read_records", "frame_encoder", "curve_table", "format_curves", "race", "format_race", "trivial_losses",
           "logged_losses", "format_learning", "TRIVIAL_MARGIN",
           "first_step_below"]

VARIANTS = {"appearance + motion": "mam2_appmotion", "pixels": "mam2_pixels", "motion only": "mam2_motion"}
"""Label → zoo recipe stem (seed 0; ``_s1``, ``_s2`` for seeds 1 and 2)."""

SEEDS = ("", "_s1", "_s2")
KINDS = ("linear", "knn", "finetune")
"""The race's measures (chapter 5): what :func:`measure` scores by default."""
ALL_KINDS = ("linear", "knn", "attentive", "finetune")
"""Every measure :func:`measure` knows; ``"attentive"`` (V-JEPA's attentive probe over the
frozen tokens) is asked for by name (chapter 8)."""
KIND_LABELS = {"linear": "linear probe", "knn": "k-NN (k = 20)", "attentive": "attentive probe",
               "finetune": "fine-tune"}
NUM_LABELLED = 512
"""Labelled clips of every probe and fine-tune (the data-efficiency experiment's largest size)."""


def checkpoint_steps(name: str) -> list[int]:
    """``[0, *snapshots, total]`` of zoo recipe ``name``."""
    recipe = zoo.load_zoo_recipe(name)
    return [0, *recipe["zoo"].get("snapshots", []), int(recipe["train"]["steps"])]


def frame_encoder(name: str) -> bool:
    """Whether zoo recipe ``name`` pre-trains an image (frame) encoder: VideoMAC's ConvNets."""
    return zoo.load_zoo_recipe(name)["method"] == "videomac"


def encoder_at(name: str, step: int):
    """The encoder of zoo recipe ``name`` after ``step`` pre-training steps: its initialisation
    (0), a snapshot, or the committed weights (the last step). A frame encoder comes wrapped
    in :class:`~maskvid_edu.evaluate.probe.FrameEncoder`: each frame's last map averaged over
    space, then over the frames — so its clip features keep *where* things were, not in which
    order, which is all a frame encoder offers a clip-level probe."""
    steps = checkpoint_steps(name)
    if step not in steps:
        raise ValueError(f"zoo recipe {name!r} is read at steps {steps}, not {step!r}")
    if step == 0:
        encoder = zoo.fresh(name).encoder
    elif step == steps[-1]:
        encoder = zoo.load(name).encoder
    else:
        encoder = zoo.load(name, snapshot=step).encoder
    return FrameEncoder(encoder) if frame_encoder(name) else encoder


def _sha(encoder) -> str:
    h = hashlib.sha256()
    for key, value in sorted(encoder.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file (``[]`` when it does not exist)."""
    return read_json_lines(path, ("name", "seed", "step", "kind", "accuracy"))


def _key(r: dict) -> tuple:
    return r["name"], r["step"], r["kind"]


def _write(path: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(records, key=_key))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def measure(names: Iterable[str], path: str | os.PathLike, *, kinds: Sequence[str] = KINDS,
            finetune_steps: Sequence[int] | None = None, verbose: bool = True) -> dict:
    """Score every ``(recipe, step, kind)`` of ``names`` not yet in ``path`` (see the module
    docstring). ``finetune_steps``: the pre-training steps that are also fine-tuned (default:
    all; a fine-tune costs minutes, a probe seconds). Returns ``{"records": [...], "skipped":
    [(name, step, reason), ...]}``."""
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise ValueError(f"kinds must be among {ALL_KINDS}, got {unknown}")
    path = Path(path)
    test = data_efficiency.task_clips(data_efficiency.TEST_CLIPS, data_efficiency.TEST_SEED)
    skipped = []
    if {"finetune", "attentive"} & set(kinds):
        frames = [name for name in names if frame_encoder(name)]
        if frames:
            raise ValueError(f"{frames} pre-train frame encoders: they are probed (kinds linear, "
                             "knn) and propagated, not fine-tuned as clip classifiers nor read by an "
                             "attentive probe over clip tokens")
    for name in names:
        seed = zoo.load_zoo_recipe(name)["zoo"]["seed"]
        labelled = data_efficiency.task_clips(NUM_LABELLED, data_efficiency.LABELLED_SEED + seed)
        for step in checkpoint_steps(name):
            wanted = [k for k in kinds if k != "finetune" or finetune_steps is None or step in finetune_steps]
            done = {_key(r) for r in read_records(path)}
            wanted = [k for k in wanted if (name, step, k) not in done]
            if not wanted:
                continue
            try:
                encoder = encoder_at(name, step)
            except FileNotFoundError as err:
                skipped.append((name, step, str(err)))
                continue
            sha = _sha(encoder)
            for kind in wanted:
                twin = next((r for r in read_records(path) if r["kind"] == kind and r["seed"] == seed
                             and r["weights_sha256"] == sha and "same_weights_as" not in r), None)
                base = {"name": name, "seed": seed, "step": step, "kind": kind, "num_labelled": NUM_LABELLED,
                        "weights_sha256": sha}
                if twin is not None:
                    record = {**{k: v for k, v in twin.items() if k not in base}, **base,
                              "same_weights_as": twin["name"]}
                elif kind == "finetune":
                    run = data_efficiency.finetune_once(lambda _init, e=encoder: copy.deepcopy(e), "pretrained" if step else "random", NUM_LABELLED,
                                                        seed, test_clips=test)
                    record = {**base, "accuracy": run["accuracy"], "correct": run["correct"],
                              "train_accuracy": run["train_accuracy"], "losses": run["losses"],
                              "chance_loss": run["chance_loss"], "finetune_steps": run["steps"], "wall_s": run["wall_s"]}
                else:
                    right = data_efficiency.frozen_accuracy(encoder, labelled, test, seed=seed, heads=(kind,))[kind]
                    record = {**base, "accuracy": sum(right) / len(right), "correct": "".join(map(str, right))}
                _write(path, [r for r in read_records(path) if _key(r) != _key(record)] + [record])
                if verbose:
                    print(f"{name:<22} step {step:>5} {KIND_LABELS[kind]:<14} {record['accuracy']:6.1%}"
                          + (f" (same weights as {record['same_weights_as']})" if "same_weights_as" in record else ""),
                          flush=True)
    if verbose and skipped:
        print(f"skipped {len(skipped)} checkpoint(s) not built here: "
              + ", ".join(f"{n}@{s}" for n, s, _ in skipped), flush=True)
    return {"records": read_records(path), "skipped": skipped}


def _by(records: Sequence[dict], kind: str) -> dict[tuple[str, int], dict[int, dict]]:
    """``{(variant label, step): {seed: record}}`` for one kind."""
    stems = {f"{stem}{suffix}": label for label, stem in VARIANTS.items() for suffix in SEEDS}
    out: dict = {}
    for r in records:
        if r["kind"] == kind and r["name"] in stems:
            out.setdefault((stems[r["name"]], r["step"]), {})[r["seed"]] = r
    return out


def _estimate(runs: dict[int, dict]) -> Estimate | None:
    """Accuracy in points: *t* over seeds for several runs, bootstrap over the test clips for one."""
    if len(runs) >= 2:
        return mean_ci([100 * r["accuracy"] for r in runs.values()])
    if len(runs) == 1 and "correct" in next(iter(runs.values())):
        return bootstrap_ci([100.0 * int(c) for c in next(iter(runs.values()))["correct"]])
    return None


def _difference(a: dict[int, dict], b: dict[int, dict]) -> Estimate | None:
    """``a − b`` in points, paired: over the seeds both have (*t*), or, with one run each,
    clip by clip over the shared test clips (bootstrap)."""
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        return paired_difference([100 * a[s]["accuracy"] for s in common], [100 * b[s]["accuracy"] for s in common])
    if len(a) == 1 and len(b) == 1 and all("correct" in next(iter(x.values())) for x in (a, b)):
        ca, cb = next(iter(a.values()))["correct"], next(iter(b.values()))["correct"]
        return paired_difference([100.0 * int(c) for c in ca], [100.0 * int(c) for c in cb], method="bootstrap")
    return None


def _cell(e: Estimate | None) -> str:
    return "—" if e is None else f"{e.mean:5.1f} [{e.low:5.1f}, {e.high:5.1f}]"


def curve_table(records: Sequence[dict], kind: str) -> dict[str, dict[int, Estimate | None]]:
    """``{variant: {step: accuracy with its interval}}``: *t* over seeds where there are several,
    bootstrap over the test clips where there is one."""
    by = _by(records, kind)
    table: dict = {}
    for (label, step), runs in sorted(by.items(), key=lambda kv: kv[0][1]):
        table.setdefault(label, {})[step] = _estimate(runs)
    return {label: table[label] for label in VARIANTS if label in table}


def format_curves(records: Sequence[dict], kind: str) -> str:
    """:func:`curve_table` as text: one row per variant, one column per pre-training step."""
    table = curve_table(records, kind)
    steps = sorted({s for row in table.values() for s in row})
    lines = [f"{KIND_LABELS[kind]:<20}" + "".join(f"{'step ' + str(s):>22}" for s in steps)]
    for label, row in table.items():
        lines.append(f"{label:<20}" + "".join(f"{_cell(row.get(s)):>22}" for s in steps))
    seeds = {r["seed"] for r in records if r["kind"] == kind}
    over = f"t over {len(seeds)} seeds" if len(seeds) > 1 else "bootstrap over the test clips, one seed"
    lines.append(f"(test accuracy in %, mean [95 % CI], {over}; {NUM_LABELLED} labelled clips; chance 25 %)")
    return "\n".join(lines)


def race(records: Sequence[dict], kind: str, *, baseline: str = "pixels") -> dict:
    """The "half the epochs" reading of one kind (see the module docstring).

    Returns ``{"level", "total", "half", "first_reach": {variant: {seed: step or None}},
    "half_vs_full": {variant: (Estimate, verdict)}, "at_end": {variant: (Estimate, verdict)}}``;
    ``half`` is the checkpoint closest to half the budget.
    """
    by = _by(records, kind)
    steps = sorted({s for (_, s) in by})
    if not steps:
        raise ValueError(f"no {kind!r} records of the MAM2 variants")
    total = steps[-1]
    half = min(steps, key=lambda s: abs(s - total / 2))
    final = by.get((baseline, total), {})
    if not final:
        raise ValueError(f"{baseline!r} has no {kind!r} record at step {total}")
    level = sum(100 * r["accuracy"] for r in final.values()) / len(final)
    first_reach, half_vs_full, at_end = {}, {}, {}
    for label in VARIANTS:
        seeds = sorted({seed for (lab, _), runs in by.items() if lab == label for seed in runs})
        first_reach[label] = {seed: next((s for s in steps if seed in by.get((label, s), {})
                                          and 100 * by[label, s][seed]["accuracy"] >= level), None)
                              for seed in seeds}
        for target, at in ((half_vs_full, half), (at_end, total)):
            if label == baseline and at == total:
                continue
            diff = _difference(by.get((label, at), {}), final)
            if diff is not None:
                target[label] = (diff, verdict(f"{label} at step {at}", f"{baseline} at step {total}", diff))
    return {"level": level, "total": total, "half": half, "first_reach": first_reach,
            "half_vs_full": half_vs_full, "at_end": at_end, "kind": kind, "baseline": baseline}


def trivial_losses(name: str, num_clips: int = 64) -> dict[str, float]:
    """The losses of a model that learnt nothing about the clips, for MAM2 recipe ``name``:
    predicting 0 for every hidden token, i.e. the mean squared target, on the first
    ``num_clips`` training clips (the mask picks tokens at random, so the mean over all tokens is
    the expected loss over the hidden ones). For the normalised-pixel appearance target that is
    ≈ 1 by construction (each patch has zero mean and unit variance); for the RGB differences it
    is the motion energy of the data. A logged loss at this level means the decoder predicts the
    trivial answer and the encoder's features are not being used."""
    from ..targets import make_targets, motion_targets

    model = zoo.fresh(name)
    dataset = zoo.make_trainer(name, None).dataset
    c = model.config
    video = torch.stack([dataset[i]["video"] for i in range(min(num_clips, len(dataset)))])  # (B, C, T+1, H, W)
    frames = video[:, :, : c.num_frames]  # (B, C, T, H, W): the encoder's frames
    appearance = make_targets(frames.float(), "pixels_norm", c.tubelet, c.patch)  # (B, N, P)
    motion = motion_targets(video, c.tubelet, c.patch, c.motion_normalization)  # (B, N, P)
    return {"loss_appearance": float(appearance.pow(2).mean()), "loss_motion": float(motion.pow(2).mean())}


def logged_losses(name: str) -> dict[str, float]:
    """The last logged loss terms of committed zoo checkpoint ``name`` (its ``metrics.jsonl``)."""
    last = read_json_lines(zoo.ZOO_DIR / name / "metrics.jsonl", ("step", "loss"))[-1]
    return {k: float(v) for k, v in last.items() if k.startswith("loss_")}


TRIVIAL_MARGIN = 0.02
"""A logged loss above ``(1 − TRIVIAL_MARGIN)`` × the trivial loss has not left the trivial solution."""


def format_learning(names: Sequence[str], num_clips: int = 64) -> str:
    """One line per committed checkpoint: its last logged loss terms against
    :func:`trivial_losses`, and whether each term has left the trivial solution."""
    lines = []
    for name in names:
        trivial, logged = trivial_losses(name, num_clips), logged_losses(name)
        w = zoo.load_zoo_recipe(name).get("model_overrides") or {}
        parts, stuck = [], []
        for term, weight in (("loss_appearance", w.get("w_appearance", 1.0)), ("loss_motion", w.get("w_motion", 1.0))):
            ratio = logged[term] / trivial[term]
            trained = "" if weight else ", not trained (weight 0)"
            parts.append(f"{term[5:]} {logged[term]:.4f} vs {trivial[term]:.4f} ({ratio:.1%} of it{trained})")
            if weight and ratio > 1 - TRIVIAL_MARGIN:
                stuck.append(term[5:])
        state = (f"at the trivial solution ({' and '.join(stuck)} not {TRIVIAL_MARGIN:.0%} below predicting 0)"
                 if stuck else "below the trivial solution in every trained term")
        lines.append(f"{name}: {'; '.join(parts)} → {state}")
    return "\n".join(lines)


def first_step_below(name: str, level: float, term: str = "loss") -> int | None:
    """The first logged step at which committed checkpoint ``name``'s ``term`` is below
    ``level`` (None if it never is): when a run left a plateau."""
    for r in read_json_lines(zoo.ZOO_DIR / name / "metrics.jsonl", ("step", term)):
        if r[term] < level:
            return int(r["step"])
    return None


def format_race(result: dict) -> str:
    """:func:`race` as sentences: the level, the step each seed first reaches it, the verdicts."""
    lines = [f"{KIND_LABELS[result['kind']]}: the level is {result['baseline']}'s accuracy at the end of its "
             f"{result['total']} steps, {result['level']:.1f} %"]
    for label, seeds in result["first_reach"].items():
        reached = ", ".join(f"seed {seed}: " + ("not within the budget" if s is None else f"step {s}")
                            for seed, s in seeds.items())
        lines.append(f"- {label} first reaches it at {reached}")
    for label, (_, sentence) in result["half_vs_full"].items():
        lines.append(f"- half the budget: {sentence}")
    for label, (_, sentence) in result["at_end"].items():
        lines.append(f"- the same budget: {sentence}")
    return "\n".join(lines)
