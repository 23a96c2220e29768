"""VideoMAE's data-efficiency claim, measured: the same fine-tuning from a pre-trained encoder and
from random init, as the number of labelled clips shrinks.

The claim (VideoMAE, Tong et al. 2022, Table 2): a ViT-B trained from scratch on UCF101 reaches
51.4 %; pre-trained with VideoMAE *on UCF101 itself* (no extra data, no labels) and then
fine-tuned, 91.3 %. A ViT has no built-in locality or motion prior; with little labelled data it
cannot find the cues a convolution would be born with, and masked pre-training supplies them.

The experiment here, one *fine-tuning run* per ``(init, num_labelled, seed)``:

- **task** (:data:`TASK`): the four translation classes of the synthetic motion dataset
  (:mod:`maskvid_edu.data.synthetic`, tracking camera, so no single frame tells the class),
  with large relative displacements (0.45–0.6 of the frame over the clip) and no distractor
  object. ``num_labelled`` training clips of dataset seed ``LABELLED_SEED + seed`` (a new draw
  of clips for every seed), :data:`TEST_CLIPS` test clips of seed :data:`TEST_SEED`; the
  pre-training clips (seed 0 of the zoo recipe) are never among them.
- **init**: ``"pretrained"`` — the zoo encoder (:func:`maskvid_edu.zoo.load`); ``"random"`` —
  the same architecture at its initialisation. Everything else is identical: the seed, the
  classifier head's initial weights, the labelled clips and their order, the fine-tuning recipe
  (:data:`FINETUNE`, :data:`CLASSIFIER`; no mixup, cutmix, label smoothing, stochastic depth or
  layer decay, which would treat the two inits differently or blur a 4-class motion cue) and
  the number of steps (the same compute for every ``num_labelled``: more epochs over fewer clips).
- **record**: test accuracy, which test clips were right (a ``"0"``/``"1"`` string, so that
  intervals over clips can be computed later), the training losses as logged, the accuracy on
  the labelled clips, wall time.

Pairing: the two inits share the seed, so :func:`summarise` compares them with
:func:`~maskvid_edu.analysis.stats.paired_difference` over seeds (a *t* interval; with 3 seeds
it resolves only large gaps, and says so). Whether a fine-tune *learns* at all is read from its
training loss against ``ln K`` (the loss of a uniform guess).

Records live in a JSON-lines file (one object per run), rewritten atomically after each run, so
an interrupted :func:`run_grid` resumes where it stopped and loses nothing.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..checkpoints import atomic_write
from ..data.synthetic import SyntheticConfig, SyntheticVideoDataset
from ..evaluate.attentive_probe import attentive_probe, extract_tokens
from ..evaluate.finetune import VideoClassifier, finetune
from ..evaluate.probe import extract_features, knn_predict, linear_probe
from ..train import TrainConfig
from ..utils import read_json_lines
from .stats import Estimate, bootstrap_ci, mean_ci, paired_difference, verdict

__all__ = [
    "TASK", "TEST_SEED", "TEST_CLIPS", "LABELLED_SEED", "FINETUNE", "CLASSIFIER", "INITS",
    "task_clips", "finetune_once", "read_records", "run_grid", "summarise", "format_summary",
    "fit_warnings", "FIT_FRACTION", "frozen_scores", "frozen_accuracy", "FROZEN_HEADS", "format_frozen", "compare_starts",
]

TASK = dict(num_frames=8, size=64, num_classes=4, translation=(0.45, 0.6), distractor_prob=0.0)
"""The labelled task's :class:`~maskvid_edu.data.synthetic.SyntheticConfig` fields (4 classes)."""

TEST_SEED = 3000
TEST_CLIPS = 512
LABELLED_SEED = 2000
"""Labelled clips of run seed ``s`` are clips ``0 … n−1`` of dataset seed ``LABELLED_SEED + s``."""

FINETUNE = dict(steps=400, batch_size=16, lr=1e-3, min_lr=1e-6, warmup_steps=40, betas=(0.9, 0.999),
                weight_decay=0.05, log_every=10)
"""The fine-tuning run (:class:`~maskvid_edu.train.TrainConfig` fields), the same for both inits."""

CLASSIFIER = dict(drop_path=0.0, head_drop=0.0, label_smoothing=0.0, mixup_alpha=0.0, cutmix_alpha=0.0,
                  layer_decay=1.0)
""":class:`~maskvid_edu.evaluate.finetune.ClassifierConfig` fields, the same for both inits."""

INITS = ("pretrained", "random")


def task_clips(num: int, seed: int) -> list[dict]:
    """``num`` rendered clips of the task (dataset seed ``seed``), as a list of dataset items."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"task_clips: num must be a positive int, got {num!r}")
    data = SyntheticVideoDataset(SyntheticConfig(**TASK, num_samples=num, seed=seed))
    return [data[i] for i in range(num)]


def _accuracy(classifier: VideoClassifier, clips: Sequence[dict], batch_size: int = 64) -> list[int]:
    """1/0 per clip: is the arg-max class the label?"""
    classifier.eval()
    right: list[int] = []
    with torch.no_grad():
        for i in range(0, len(clips), batch_size):
            part = clips[i:i + batch_size]
            video = torch.stack([c["video"] for c in part])  # (B, C, T, H, W)
            label = torch.tensor([int(c["label"]) for c in part])
            right += (classifier.logits(video).argmax(1) == label).long().tolist()
    return right


def finetune_once(encoder_factory, init: str, num_labelled: int, seed: int, *, test_clips: Sequence[dict],
                  steps: int | None = None, stop_at: int | None = None) -> dict:
    """One fine-tuning run; returns its record (see the module docstring).

    encoder_factory: ``init -> encoder`` — a fresh encoder, pre-trained or at random init
        (called after seeding with ``seed``, so random init is the same draw for every run of a seed).
    steps: overrides ``FINETUNE["steps"]`` (a shortened run; the record says how many).
    stop_at: end the run after this many steps *of the full schedule* (the learning rate follows
        the ``steps``-long cosine): the first records of a committed run, reproduced in seconds.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    config = dict(FINETUNE, steps=steps or FINETUNE["steps"])
    config["warmup_steps"] = min(config["warmup_steps"], max(1, config["steps"] // 10))
    labelled = task_clips(num_labelled, LABELLED_SEED + seed)
    torch.manual_seed(seed)
    encoder = encoder_factory(init)
    torch.manual_seed(seed)  # the head's initial weights: the same for both inits
    classifier = VideoClassifier(encoder, TASK["num_classes"], **CLASSIFIER)
    train_config = TrainConfig(**config, seed=seed, num_threads=1, progress=False)
    start = time.perf_counter()
    history = finetune(classifier, labelled, train_config, stop_at=stop_at)
    right = _accuracy(classifier, test_clips)
    return {
        "init": init, "num_labelled": num_labelled, "seed": seed, "steps": config["steps"],
        "accuracy": sum(right) / len(right), "num_test": len(right), "correct": "".join(map(str, right)),
        "train_accuracy": sum(_accuracy(classifier, labelled)) / num_labelled,
        "losses": [round(float(r["loss"]), 6) for r in history], "chance_loss": math.log(TASK["num_classes"]),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file (``[]`` when it does not exist). A line that is not a
    JSON object raises ``ValueError`` naming the file and the line."""
    return read_json_lines(path, ("init", "num_labelled", "seed", "accuracy"))


def _key(record: dict) -> tuple:
    return record["init"], record["num_labelled"], record["seed"], record.get("steps", FINETUNE["steps"])


def _write_records(path: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(records, key=_key))
    atomic_write(path, lambda f: f.write(text.encode()))


def run_grid(encoder_factory, path: str | os.PathLike, *, sizes: Iterable[int], seeds: Iterable[int],
             inits: Iterable[str] = INITS, steps: int | None = None, verbose: bool = True) -> list[dict]:
    """Every ``(init, size, seed)`` run not yet in ``path``; each new record is added to the file
    at once (atomically), so an interruption loses at most the run in progress. Returns all
    records of the file. Other processes may add to the same file meanwhile (several processes
    can share a grid, e.g. one per init): it is re-read under an exclusive lock before each write."""
    path = Path(path)
    test = task_clips(TEST_CLIPS, TEST_SEED)
    for size in sizes:
        for seed in seeds:
            for init in inits:
                key = (init, size, seed, steps or FINETUNE["steps"])
                if key in {_key(r) for r in read_records(path)}:
                    continue
                record = finetune_once(encoder_factory, init, size, seed, test_clips=test, steps=steps)
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path.with_name(path.name + ".lock"), "w") as lock:  # one writer at a time
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    _write_records(path, [r for r in read_records(path) if _key(r) != key] + [record])
                if verbose:
                    print(f"{init:>10} n={size:<5} seed {seed}: test {record['accuracy']:.1%}, "
                          f"train {record['train_accuracy']:.1%}, loss {record['losses'][0]:.3f} → "
                          f"{record['losses'][-1]:.3f} ({record['wall_s']:.0f} s)", flush=True)
    return read_records(path)


def summarise(records: Sequence[dict]) -> list[dict]:
    """One row per ``num_labelled``: each init's accuracy (mean and *t* interval over seeds, in
    points), the paired difference pre-trained − random over the seeds both have, its verdict,
    and each init's mean final training loss (the last logged value) against ``ln K``."""
    rows = []
    for size in sorted({r["num_labelled"] for r in records}):
        by_init = {init: {r["seed"]: r for r in records if r["num_labelled"] == size and r["init"] == init}
                   for init in INITS}
        seeds = sorted(set(by_init["pretrained"]) & set(by_init["random"]))
        row: dict = {"num_labelled": size, "seeds": seeds}
        for init in INITS:
            runs = list(by_init[init].values())
            acc = [100 * r["accuracy"] for r in runs]
            row[init] = mean_ci(acc) if len(acc) >= 2 else None
            row[f"{init}_final_loss"] = sum(r["losses"][-1] for r in runs) / len(runs) if runs else None
        if len(seeds) >= 2:
            diff = paired_difference([100 * by_init["pretrained"][s]["accuracy"] for s in seeds],
                                     [100 * by_init["random"][s]["accuracy"] for s in seeds])
            row["difference"] = diff
            row["verdict"] = verdict(f"pre-trained ({size} labelled clips)", "random init", diff)
        else:
            row["difference"], row["verdict"] = None, f"{size} labelled clips: fewer than 2 paired seeds, no interval"
        rows.append(row)
    return rows


# A run fitted its labelled clips when its final training loss fell below this share of ln K.
FIT_FRACTION = 0.5


def compare_starts(starts: dict[str, Sequence[dict]], num_labelled: int) -> tuple[list[str], list[str]]:
    """Several starting points fine-tuned on the same labelled clips, compared pairwise.

    starts: ``{label: records}``, each list holding the runs of one start (e.g. the
        ``"pretrained"`` records of two zoo encoders and the ``"random"`` ones); runs of the same
        seed share their labelled clips, order and head, so every pair of starts is paired by seed.
    Returns ``(lines, verdicts)``: one line per start (test accuracy, mean and *t* interval over
    seeds; mean train accuracy and final training loss, flagged when that loss stays above
    ``FIT_FRACTION · ln K`` as in :func:`fit_warnings`) and
    one verdict per pair, in the order given.
    """
    runs_at = {label: {r["seed"]: r for r in runs if r["num_labelled"] == num_labelled}
               for label, runs in starts.items()}
    acc = {label: {seed: 100 * r["accuracy"] for seed, r in runs.items()} for label, runs in runs_at.items()}
    width = max(len(label) for label in acc)
    lines = []
    for label, runs in runs_at.items():
        fit = "no runs"
        if runs:
            train = sum(r["train_accuracy"] for r in runs.values()) / len(runs)
            loss = sum(r["losses"][-1] for r in runs.values()) / len(runs)
            fit = f"train {train:4.0%}, final loss {loss:.3f}"
            if loss > FIT_FRACTION * next(iter(runs.values()))["chance_loss"]:
                fit += " (did not fit its clips)"
        estimate = mean_ci(list(acc[label].values())) if len(runs) >= 2 else None
        lines.append(f"{label:<{width}}  {_cell(estimate)}  {fit}  ({len(runs)} seeds)")
    verdicts = []
    labels = list(acc)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            seeds = sorted(set(acc[a]) & set(acc[b]))
            if len(seeds) < 2:
                verdicts.append(f"{a} vs {b}: fewer than 2 paired seeds, no interval")
                continue
            diff = paired_difference([acc[a][s] for s in seeds], [acc[b][s] for s in seeds])
            verdicts.append(verdict(a, b, diff))
    return lines, verdicts


def _cell(e: Estimate | None) -> str:
    return "—" if e is None else f"{e.mean:5.1f} [{e.low:5.1f}, {e.high:5.1f}]"


def format_summary(rows: Sequence[dict], chance_loss: float = math.log(TASK["num_classes"])) -> str:
    """A text table of :func:`summarise` (accuracy in %, 95 % CI over seeds) and its verdicts."""
    lines = [f"{'labelled clips':>14}  {'pre-trained':>22}  {'random init':>22}  {'difference':>22}  "
             f"{'final loss (pre / random)':>26}",
             ]
    for row in rows:
        losses = " / ".join("—" if row[f"{i}_final_loss"] is None else f"{row[f'{i}_final_loss']:.3f}" for i in INITS)
        lines.append(f"{row['num_labelled']:>14}  {_cell(row['pretrained']):>22}  {_cell(row['random']):>22}  "
                     f"{_cell(row['difference']):>22}  {losses:>26}")
    lines.append(f"(accuracy in %, mean [95 % CI] over seeds; chance 25 %; ln K = {chance_loss:.3f})")
    lines += [row["verdict"] for row in rows]
    lines += fit_warnings(rows, chance_loss)
    return "\n".join(lines)


def fit_warnings(rows: Sequence[dict], chance_loss: float = math.log(TASK["num_classes"]),
                 fraction: float = FIT_FRACTION) -> list[str]:
    """Sentences naming each run that did not fit its own labelled clips.

    A start whose final training loss stays above ``fraction · ln K`` has not left the uniform
    guess on the clips it trains on, so its test accuracy measures the budget as much as what
    it generalises: a gap against it is not a pure data-efficiency effect.
    """
    out = []
    for row in rows:
        for init in INITS:
            loss = row[f"{init}_final_loss"]
            if loss is not None and loss > fraction * chance_loss:
                out.append(f"{init} init ({row['num_labelled']} labelled clips) did not fit its "
                           f"training clips: final loss {loss:.3f}, above {fraction:g} · ln K = "
                           f"{fraction * chance_loss:.3f}; at this size the gap mixes generalisation "
                           f"with under-fitting in the step budget")
    return out


# --------------------------------------------------------------------------------------------
# Frozen features: the same two encoders, no fine-tuning
# --------------------------------------------------------------------------------------------

def frozen_scores(encoder_factory, *, num_labelled: int = 512, seed: int = 0,
                  test_clips: Sequence[dict] | None = None, batch_size: int = 64) -> dict:
    """Linear probe and k-NN on each init's frozen clip features (mean of the encoder's tokens).

    The probe is trained on ``num_labelled`` clips of ``LABELLED_SEED + seed`` and tested on
    ``test_clips`` (default: the experiment's test set). Returns ``{init: {"linear": [0/1 per test
    clip], "knn": [...]}}``, so that :func:`format_frozen` can pair the inits clip by clip.
    """
    labelled = task_clips(num_labelled, LABELLED_SEED + seed)
    test = list(test_clips) if test_clips is not None else task_clips(TEST_CLIPS, TEST_SEED)
    scores = {}
    for init in INITS:
        torch.manual_seed(seed)
        scores[init] = frozen_accuracy(encoder_factory(init), labelled, test, seed=seed, batch_size=batch_size)
    return scores


FROZEN_HEADS = ("linear", "knn", "attentive")
"""Readers of frozen features :func:`frozen_accuracy` knows."""


def frozen_accuracy(encoder, labelled: Sequence[dict], test: Sequence[dict], *, seed: int = 0,
                    batch_size: int = 64, heads: Sequence[str] = ("linear", "knn")) -> dict[str, list[int]]:
    """One frozen encoder read by each of ``heads``, trained on ``labelled``, scored on ``test``:
    ``{head: [0/1 per test clip]}``.

    - ``"linear"``: a linear probe on the clip feature (the mean of the encoder's tokens);
    - ``"knn"``: k-NN (k = 20) over the same features;
    - ``"attentive"``: V-JEPA's attentive probe on the tokens themselves (a learned query
      cross-attends to them, then a linear layer; :func:`~maskvid_edu.evaluate.attentive_probe.attentive_probe`
      with its defaults), which can weigh tokens instead of averaging them.
    """
    unknown = sorted(set(heads) - set(FROZEN_HEADS))
    if unknown:
        raise ValueError(f"heads must be among {FROZEN_HEADS}, got {unknown}")
    out = {}
    if {"linear", "knn"} & set(heads):
        train_x, train_y = extract_features(encoder, labelled, batch_size=batch_size, device="cpu")
        test_x, test_y = extract_features(encoder, test, batch_size=batch_size, device="cpu")
        if "linear" in heads:
            probe = linear_probe(train_x, train_y, test_x, test_y, seed=seed)
            out["linear"] = (probe.predictions == test_y).long().tolist()
        if "knn" in heads:
            knn = knn_predict(train_x, train_y, test_x, num_classes=TASK["num_classes"]).argmax(dim=1)
            out["knn"] = (knn == test_y).long().tolist()
    if "attentive" in heads:
        train_t, train_y = extract_tokens(encoder, labelled, batch_size=batch_size, device="cpu")  # (N, L, D)
        test_t, test_y = extract_tokens(encoder, test, batch_size=batch_size, device="cpu")
        probe = attentive_probe(train_t, train_y, test_t, test_y, seed=seed)
        out["attentive"] = (probe.predictions == test_y).long().tolist()
    return out


def format_frozen(scores: dict) -> str:
    """Each init's frozen-feature accuracy with its bootstrap interval over test clips, and the
    paired (same clips) difference pre-trained − random with its verdict, per classifier."""
    lines = [f"{'classifier':<14}{'pre-trained':>24}{'random init':>24}"]
    verdicts = []
    for head, label in (("linear", "linear probe"), ("knn", "k-NN (k = 20)")):
        pre, rnd = (100.0 * torch.tensor(scores[i][head], dtype=torch.float64) for i in INITS)
        cells = [bootstrap_ci(pre.tolist()), bootstrap_ci(rnd.tolist())]
        lines.append(f"{label:<14}" + "".join(f"{_cell(e):>24}" for e in cells))
        diff = paired_difference(pre.tolist(), rnd.tolist(), method="bootstrap")
        verdicts.append(verdict(f"{label} on pre-trained features", "random-init features", diff))
    lines.append(f"(accuracy in %, mean [95 % bootstrap CI] over {len(scores['random']['linear'])} test clips)")
    return "\n".join(lines + verdicts)
