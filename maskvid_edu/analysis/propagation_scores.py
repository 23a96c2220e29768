"""Label propagation of zoo encoders on held-out sequences, compared with intervals.

VideoMAC's claims are about *correspondence*: features that match the same surface point
across frames, measured by semi-supervised video object segmentation (DAVIS J&F, chapter 6).
This module measures them on clips no zoo recipe trained on, for each zoo encoder and for the
same architecture at its initialisation:

- **sequences** (:func:`heldout_sequences`): :data:`SEQUENCES` synthetic clips of dataset seed
  :data:`SEQUENCE_SEED`, 16 frames of 128², exported in the DAVIS-2017 layout with their
  instance masks (the moving shape and, in some clips, a distractor);
- **protocol**: DINO's propagation settings (:meth:`~maskvid_edu.evaluate.propagation.PropagationConfig.dino`)
  on a **16 × 16 feature grid** for every encoder, so that no architecture wins by resolution
  (chapter 6 shows how much the grid matters): a patch-8 ViT reads 128² frames directly; a
  ConvNet gives stage :data:`CONVNET_STAGE` (stride 8) of 128² frames;
- **record** (one per ``(encoder, init)``): the J&F of every sequence, in points (× 100).

Comparisons (:func:`compare`) are paired. Between two *recipes* with the same seeds (e.g.
sparse against dense, seeds 0–2: each seed shares initial weights, masks and data order) the
interval is the *t* interval over seeds of the per-seed mean J&F — it includes the spread of
training runs, which is what a claim about a method is about. Between the two inits of one
checkpoint, or two single checkpoints, it is the bootstrap over sequences. Records live in a
JSON-lines file rewritten atomically after each encoder, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

from ..checkpoints import atomic_write
from ..data.davis import list_davis_sequences, read_davis_sequence, write_davis_dataset
from ..data.synthetic import SyntheticConfig, SyntheticVideoDataset
from ..evaluate.davis import evaluate_davis, sequence_jf
from ..evaluate.propagation import PropagationConfig
from ..utils import read_json_lines
from .stats import Estimate, bootstrap_ci, mean_ci, paired_difference, verdict

__all__ = ["SEQUENCE_SEED", "SEQUENCES", "SIZE", "CONVNET_STAGE", "heldout_sequences", "sequence_scores",
           "score_encoders", "read_scores", "COPY_FIRST_FRAME", "copy_first_frame_scores", "jf_estimate", "compare", "format_comparisons",
           "VIDEOMAC_ABLATIONS", "ZOO_SEEDS", "videomac_comparisons"]

SEQUENCE_SEED = 4000
"""Dataset seed of the held-out sequences; no zoo recipe and no fine-tuning set uses it."""

SEQUENCES = dict(num_samples=128, num_frames=16, size=128)
""":class:`~maskvid_edu.data.synthetic.SyntheticConfig` fields of the held-out sequences."""

SIZE = 128
"""Frame side the encoders read (16 × 16 cells for a patch-8 ViT and a stride-8 ConvNet stage)."""

CONVNET_STAGE = 1
"""ConvNet stage whose map is propagated: stride 8 (stages 0–3 have strides 4, 8, 16, 32)."""


def heldout_sequences(root: str | os.PathLike, *, seed: int = SEQUENCE_SEED, **fields) -> Path:
    """The DAVIS-layout export of the held-out clips at ``root``, written on first use.

    ``fields`` override :data:`SEQUENCES`. An existing ``root`` must list exactly the expected
    sequences (ValueError otherwise: delete it, or pass another root)."""
    root = Path(root)
    config = SyntheticConfig(**{**SEQUENCES, **fields, "seed": seed})
    data = SyntheticVideoDataset(config)
    expected = [f"{i:05d}_{data.classes[data.clip(i)['label']]}" for i in range(len(data))]
    if (root / "ImageSets").is_dir():
        found = list_davis_sequences(root)
        if found != expected:
            raise ValueError(f"{root} holds {len(found)} sequences, not the {len(expected)} of seed {seed} "
                             f"({config.num_frames} frames of {config.size}²): delete it or pass another root")
        return root
    write_davis_dataset(data, root)
    return root


def sequence_scores(encoder, root: str | os.PathLike, *, device="cpu") -> dict[str, float]:
    """``{sequence: J&F in points}`` of ``encoder`` on the DAVIS-layout ``root`` (the protocol above)."""
    result = evaluate_davis(encoder, root, None, PropagationConfig.dino(), size=SIZE, stage=CONVNET_STAGE,
                            device=device)
    return {name: 100 * float(s["J&F"]) for name, s in sorted(result["sequences"].items())}


COPY_FIRST_FRAME = ("copy_first_frame", "baseline")
"""Record key of the no-encoder baseline (:func:`copy_first_frame_scores`)."""


def copy_first_frame_scores(root: str | os.PathLike) -> dict[str, float]:
    """``{sequence: J&F in points}`` of predicting the first frame's mask for every frame — no
    features at all. An encoder's propagation is worth something on these sequences only where
    it beats this: an object that barely moves is segmented as well by copying."""
    pairs = {}
    for name in list_davis_sequences(root):
        _, gt = read_davis_sequence(root, name)  # gt: (T, H, W) instance ids
        pairs[name] = (gt, gt[:1].expand_as(gt).clone())  # (T, H, W): frame 0's mask everywhere
    return {name: 100 * float(s["J&F"]) for name, s in sorted(sequence_jf(pairs)["sequences"].items())}


def read_scores(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, float]]:
    """``{(encoder, init): {sequence: J&F}}`` from a records file (``{}`` when it is missing).
    A line that is not such a record raises ValueError naming the file and the line."""
    return {(r["encoder"], r["init"]): r["scores"] for r in read_json_lines(path, ("encoder", "init", "scores"))}


def score_encoders(encoders: dict[tuple[str, str], object], path: str | os.PathLike, root: str | os.PathLike,
                   *, verbose: bool = True) -> dict[tuple[str, str], dict[str, float]]:
    """Score every ``(name, init) → encoder factory`` not yet in ``path`` and add its record at
    once (atomically); a factory ``None`` scores the no-encoder baseline
    (:func:`copy_first_frame_scores`, key :data:`COPY_FIRST_FRAME`). ``root`` is the held-out
    export (:func:`heldout_sequences`). Returns all scores of the file."""
    path = Path(path)
    for key, factory in encoders.items():
        if key in read_scores(path):
            continue
        start = time.perf_counter()
        scores = copy_first_frame_scores(root) if factory is None else sequence_scores(factory(), root)
        records = list(read_json_lines(path, ("encoder", "init", "scores")))
        records.append({"encoder": key[0], "init": key[1], "scores": scores,
                        "wall_s": round(time.perf_counter() - start, 1)})
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(records, key=lambda r: (r["encoder"], r["init"])))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(text.encode()))
        if verbose:
            mean = sum(scores.values()) / len(scores)
            print(f"{key[0]:<24} {key[1]:<10} J&F {mean:5.1f} over {len(scores)} sequences "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    return read_scores(path)


def _runs(scores: dict, keys: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
    missing = [k for k in keys if k not in scores]
    if missing:
        raise KeyError(f"no propagation record for {missing}: score them first (score_encoders)")
    runs = [scores[k] for k in keys]
    if any(set(r) != set(runs[0]) for r in runs):
        raise ValueError(f"records {list(keys)} were measured on different sequences")
    return runs


def _seed_means(runs: Sequence[dict[str, float]]) -> list[float]:
    return [sum(r.values()) / len(r) for r in runs]


def jf_estimate(scores: dict, keys: Sequence[tuple[str, str]]) -> Estimate:
    """Mean J&F of one or more runs: *t* over runs (seeds) for several, bootstrap over the
    sequences for one."""
    runs = _runs(scores, keys)
    if len(runs) > 1:
        return mean_ci(_seed_means(runs))
    return bootstrap_ci(list(runs[0].values()))


def compare(scores: dict, label_a: str, keys_a: Sequence[tuple[str, str]], label_b: str,
            keys_b: Sequence[tuple[str, str]]) -> dict:
    """A − B in J&F points, paired: over seeds (``keys_a[i]`` with ``keys_b[i]``, *t*) when each
    side has several runs, over sequences (bootstrap) when each has one. Returns
    ``{"a", "b", "diff": Estimate, "verdict": str, "label_a", "label_b", "over"}``."""
    if len(keys_a) != len(keys_b):
        raise ValueError(f"compare pairs runs: {label_a} has {len(keys_a)}, {label_b} {len(keys_b)}")
    runs_a, runs_b = _runs(scores, keys_a), _runs(scores, keys_b)
    if set(runs_a[0]) != set(runs_b[0]):
        raise ValueError(f"{label_a} and {label_b} were measured on different sequences")
    if len(keys_a) > 1:
        diff = paired_difference(_seed_means(runs_a), _seed_means(runs_b), method="t")
        over = f"{len(keys_a)} seeds"
    else:
        names = sorted(runs_a[0])
        diff = paired_difference([runs_a[0][n] for n in names], [runs_b[0][n] for n in names], method="bootstrap")
        over = f"{len(names)} sequences"
    return {"label_a": label_a, "label_b": label_b, "a": jf_estimate(scores, keys_a), "b": jf_estimate(scores, keys_b),
            "diff": diff, "over": over, "verdict": verdict(label_a, label_b, diff, unit="J&F points")}


def format_comparisons(rows: Iterable[dict]) -> str:
    """A text table of :func:`compare` results, one line each, then the verdicts."""
    rows = list(rows)

    def cell(e: Estimate) -> str:
        return f"{e.mean:5.1f} [{e.low:5.1f}, {e.high:5.1f}]"

    lines = [f"{'A':<22}{'J&F A':>20}{'B':>24}{'J&F B':>20}{'A − B':>22}  paired over"]
    for r in rows:
        lines.append(f"{r['label_a']:<22}{cell(r['a']):>20}{r['label_b']:>24}{cell(r['b']):>20}"
                     f"{cell(r['diff']):>22}  {r['over']}")
    lines.append("")
    lines.extend(f"- {r['verdict']}" for r in rows)
    return "\n".join(lines)


VIDEOMAC_ABLATIONS = {"dense with zeros": "dense", "γ = 0": "gamma0", "no EMA (m = 0)": "noema"}
"""Chapter 4's ablations: label → zoo recipe stem (``videomac_<stem>``, ``_s1``, ``_s2``)."""

ZOO_SEEDS = ("", "_s1", "_s2")
"""Suffixes of the seeds 0, 1, 2 of a zoo recipe."""


def videomac_comparisons(scores: dict) -> list[dict]:
    """Chapter 4's table from the records: VideoMAC as published against each ablation
    (paired over seeds 0–2), against its own random initialisation and against the VideoMAE
    ViT of the zoo (seed 0, paired over sequences)."""

    def runs(stem: str) -> list[tuple[str, str]]:
        return [(f"videomac_{stem}{s}", "pretrained") for s in ZOO_SEEDS]

    rows = [compare(scores, "VideoMAC", runs("sparse"), label, runs(stem)) for label, stem in VIDEOMAC_ABLATIONS.items()]
    rows.append(compare(scores, "VideoMAC, seed 0", [("videomac_sparse", "pretrained")],
                        "its random init", [("videomac_sparse", "random")]))
    rows.append(compare(scores, "VideoMAC, seed 0", [("videomac_sparse", "pretrained")],
                        "VideoMAE ViT, tube 0.9", [("videomae_tube90", "pretrained")]))
    rows.append(compare(scores, "VideoMAE ViT, tube 0.9", [("videomae_tube90", "pretrained")],
                        "its random init", [("videomae_tube90", "random")]))
    return rows
