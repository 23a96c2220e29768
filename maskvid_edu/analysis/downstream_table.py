"""One table of every zoo encoder on every downstream measure, from the committed records.

Chapter 6 ends on the question a practitioner asks: *which pre-training gives the best
encoder, and for what?* Each zoo encoder (:data:`ENCODERS`) is read, where the measure applies,
on four yardsticks, all on clips no zoo recipe trained on:

========================  =========================================================  ==========================
column                    what it measures                                           interval
========================  =========================================================  ==========================
J&F                       label propagation on the 128 held-out sequences            bootstrap over sequences
                          (:mod:`~maskvid_edu.analysis.propagation_scores`)
linear probe, k-NN        frozen clip features of 512 labelled clips (seed 0),       bootstrap over test clips
                          512 test clips (:mod:`~maskvid_edu.analysis.pretraining_curves`)
fine-tune                 the data-efficiency fine-tune at 512 labelled clips        *t* over 3 seeds
                          (:mod:`~maskvid_edu.analysis.data_efficiency`)
========================  =========================================================  ==========================

The VideoMAE encoders have one pre-training run (8 000 steps), fine-tuned with seeds 0–2 (*t*
interval over the seeds); the MAM2 encoders one pre-training run of 1 000 steps each, fine-tuned
once with seed 0 (bootstrap over the test clips; chapter 5 shows these runs have not left the
predict-nothing loss). The labelled clips of seed 0 are the same for all. J&F and the
probes read the seed-0 checkpoint. The VideoMAC ConvNet encodes frames (the paper evaluates
it by propagation only): its probes read each frame's last map averaged over space and then
over the clip (:func:`~maskvid_edu.analysis.pretraining_curves.encoder_at`), which keeps where
the object was but not in which order, and it is not fine-tuned as a clip classifier (``n/a``).
The last row is no encoder at all: the first frame's mask copied to every frame, the J&F floor.
Nothing here trains: the rows are read from the record files, and a measure with no record is
shown as ``—`` and listed as missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .. import zoo
from . import data_efficiency, pretraining_curves, propagation_scores
from .stats import Estimate, bootstrap_ci, mean_ci, paired_difference, rank_correlation, verdict

__all__ = ["ENCODERS", "COLUMNS", "ALL_COLUMNS", "BEYOND_ENCODERS", "BEYOND_COLUMNS", "MASKING_ENCODERS", "COPY_ROW",
           "Samples",
           "downstream_rows", "compare_rows", "format_comparison", "format_column_comparison", "format_downstream", "format_leaders",
           "column_agreement", "format_agreement", "format_pretraining_losses"]

ENCODERS = {
    "VideoMAE, tube 0.9": "videomae_tube90",
    "VideoMAE, tube 0.75": "videomae_tube75",
    "VideoMAE, tube 0.95": "videomae_tube95",
    "VideoMAE, random mask 0.9": "videomae_random90",
    "VideoMAE, frame mask 0.75": "videomae_frame75",
    "MAM2 app.+motion, 1k steps": "mam2_appmotion",
    "MAM2 pixels, 1k steps": "mam2_pixels",
    "MAM2 motion only, 1k steps": "mam2_motion",
    "ViT at random init": None,
    "VideoMAC ConvNet": "videomac_sparse",
    "ConvNet at random init": None,
}
"""Row label → zoo recipe (seed 0); the two random inits are the ViT's and the ConvNet's."""

RANDOM_TWIN = {"ViT at random init": "videomae_tube90", "ConvNet at random init": "videomac_sparse"}
COLUMNS = ("J&F", "linear probe", "k-NN", "fine-tune")
"""Chapter 6's columns."""
FROZEN_KINDS = {"linear probe": "linear", "k-NN": "knn", "attentive probe": "attentive"}
"""Frozen-feature column → record kind (:data:`~maskvid_edu.analysis.pretraining_curves.KINDS`)."""
ALL_COLUMNS = ("J&F", "linear probe", "attentive probe", "k-NN", "fine-tune")

BEYOND_ENCODERS = {
    "V-JEPA, multi-block 0.6": "vjepa_multiblock",
    "VideoMAE, motion-guided 0.9": "videomae_mgmae90",
    "VideoMAE, tube 0.9": "videomae_tube90",
    "VideoMAE, random mask 0.9": "videomae_random90",
    "ViT at random init": None,
}
"""Chapter 8's rows: the two successors against the chapter 6 encoders of the same budget
(8 000 steps at batch 16 on the same clips, the same ViT) and the random init."""
BEYOND_COLUMNS = ALL_COLUMNS
MASKING_ENCODERS = {
    "VideoMAE, tube 0.9": "videomae_tube90",
    "VideoMAE, random mask 0.9": "videomae_random90",
    "VideoMAE, frame mask 0.75": "videomae_frame75",
    "VideoMAE, tube 0.75": "videomae_tube75",
    "VideoMAE, tube 0.95": "videomae_tube95",
    "ViT at random init": None,
}
"""Chapter 1's rows: one ViT pre-trained under each mask at one budget (8 000 steps at batch 16
on the same clips; frame masking at 0.75, the closest ratio to 0.9 on the demo's 4 temporal
slots), and the random init."""
COPY_ROW = "copy first mask (no encoder)"
"""The last row: J&F of copying the first frame's mask to every frame, the floor any encoder's
propagation must clear (:func:`~maskvid_edu.analysis.propagation_scores.copy_first_frame_scores`)."""


def _frozen(records: Sequence[dict], name: str, step: int, kind: str) -> Samples | None:
    for r in records:
        if r["name"] == name and r["step"] == step and r["kind"] == kind:
            return Samples("bootstrap", {str(i): 100.0 * int(c) for i, c in enumerate(r["correct"])})
    return None


def _finetune(name: str, curves: Sequence[dict], random: bool) -> Samples | None:
    """Fine-tune accuracy at 512 labelled clips (400 steps): the zoo encoder's ``finetune.jsonl``
    (or its random-init runs), else the curve records of a recipe's three seeds at the end."""
    size = pretraining_curves.NUM_LABELLED
    path = zoo.ZOO_DIR / name / "finetune.jsonl"
    runs = [r for r in data_efficiency.read_records(path)
            if r["num_labelled"] == size and r["init"] == ("random" if random else "pretrained")
            and r.get("steps", data_efficiency.FINETUNE["steps"]) == data_efficiency.FINETUNE["steps"]]
    if not runs and not random:
        names = [name + suffix for suffix in pretraining_curves.SEEDS]
        runs = [r for r in curves if r["kind"] == "finetune" and r["name"] in names
                and r["step"] == pretraining_curves.checkpoint_steps(r["name"])[-1]]
    if len(runs) == 1:  # one pre-training run fine-tuned once: bootstrap over its test clips
        return Samples("bootstrap", {str(i): 100.0 * int(c) for i, c in enumerate(runs[0]["correct"])})
    if len(runs) >= 2:
        return Samples("t", {f"seed {r['seed']}": 100.0 * r["accuracy"] for r in runs})
    return None


@dataclass(frozen=True)
class Samples:
    """The measurements behind one cell: ``values`` keyed by what they pair on (a sequence, a
    test clip, a seed), summarised with ``method`` (``"bootstrap"`` over items, ``"t"`` over
    seeds). Two cells of one column pair up key by key (:func:`compare_rows`)."""

    method: str
    values: dict[str, float]

    def estimate(self) -> Estimate:
        values = list(self.values.values())
        return bootstrap_ci(values) if self.method == "bootstrap" else mean_ci(values)


def _row_samples(name: str | None, columns: Sequence[str], jf: dict,
                 probes: Sequence[dict], curves: Sequence[dict], random_twin: str | None) -> dict:
    """``{column: Samples or None}`` for one encoder row; a frame encoder's clip-level columns
    (fine-tune, attentive probe) are left out (``n/a``)."""
    random = name is None
    name = random_twin if random else name
    convnet = pretraining_curves.frame_encoder(name)
    key = (name, "random" if random else "pretrained")
    step = 0 if random else zoo.load_zoo_recipe(name)["train"]["steps"]
    row = {}
    for column in columns:
        if column == "J&F":
            row[column] = Samples("bootstrap", dict(jf[key])) if key in jf else None
        elif column in FROZEN_KINDS:
            if not (convnet and column == "attentive probe"):
                row[column] = _frozen(probes, name, step, FROZEN_KINDS[column])
        elif column == "fine-tune":
            if not convnet:
                row[column] = _finetune(name, curves, random)
        else:
            raise ValueError(f"unknown column {column!r}; columns are among {ALL_COLUMNS}")
    return row


def downstream_rows(*, propagation: str | Path | None = None, frozen: str | Path | None = None,
                    curves: str | Path | None = None, encoders: dict[str, str | None] | None = None,
                    columns: Sequence[str] = COLUMNS, random_twin: dict[str, str] | None = None,
                    copy_row: bool = True) -> dict:
    """``{"rows": {label: {column: Estimate or None}}, "samples": {label: {column: Samples}},
    "columns": columns, "missing": [(label, column), …]}`` from the record files (defaults:
    ``data/zoo/propagation.jsonl``, ``data/zoo/frozen.jsonl``, ``data/zoo/mam2_curves.jsonl``).

    ``encoders``: row label → zoo recipe, None for a random init whose recipe ``random_twin``
    names (defaults: chapter 6's :data:`ENCODERS` and :data:`RANDOM_TWIN`); ``columns``: among
    :data:`ALL_COLUMNS`; ``copy_row``: end on the no-encoder J&F baseline."""
    jf = propagation_scores.read_scores(propagation or zoo.ZOO_DIR / "propagation.jsonl")
    frozen_records = pretraining_curves.read_records(frozen or zoo.ZOO_DIR / "frozen.jsonl")
    curve_records = pretraining_curves.read_records(curves or zoo.ZOO_DIR / "mam2_curves.jsonl")
    probes = list(frozen_records) + list(curve_records)
    twins = RANDOM_TWIN if random_twin is None else random_twin
    samples, missing = {}, []
    for label, name in (ENCODERS if encoders is None else encoders).items():
        samples[label] = _row_samples(name, columns, jf, probes, curve_records, twins.get(label))
        missing += [(label, c) for c, v in samples[label].items() if v is None]
    if copy_row and "J&F" in columns:
        copied = jf.get(propagation_scores.COPY_FIRST_FRAME)
        samples[COPY_ROW] = {"J&F": Samples("bootstrap", dict(copied)) if copied else None}
        if copied is None:
            missing.append((COPY_ROW, "J&F"))
    rows = {label: {c: (v.estimate() if v is not None else None) for c, v in row.items()}
            for label, row in samples.items()}
    return {"rows": rows, "samples": samples, "columns": tuple(columns), "missing": missing}


def compare_rows(table: dict, a: str, b: str) -> dict[str, Estimate]:
    """``{column: a − b}`` for every column both rows have, paired: by sequence (J&F), by test
    clip (probes; bootstrap) or by seed (fine-tune; *t*); a column whose cells do not pair up
    (another method or other keys) is left out."""
    out = {}
    for column in table["columns"]:
        diff = _paired(table["samples"][a].get(column), table["samples"][b].get(column))
        if diff is not None:
            out[column] = diff
    return out


def _paired(x: Samples | None, y: Samples | None) -> Estimate | None:
    """``x − y`` paired key by key, or None when the two cells do not pair up (a cell missing,
    another interval method, other keys)."""
    if x is None or y is None or x.method != y.method or set(x.values) != set(y.values):
        return None
    keys = sorted(x.values)
    return paired_difference([x.values[k] for k in keys], [y.values[k] for k in keys], method=x.method)


def format_comparison(table: dict, a: str, b: str) -> str:
    """One computed sentence per column for ``a − b`` (:func:`compare_rows`,
    :func:`~maskvid_edu.analysis.stats.verdict`)."""
    return "\n".join(f"{column}: " + verdict(a, b, diff)
                     for column, diff in compare_rows(table, a, b).items())


def format_column_comparison(table: dict, a: str, b: str) -> str:
    """For every row with both columns: ``a − b`` paired item by item (the same test clips),
    one computed sentence each — e.g. does the attentive probe read more than the linear one?"""
    lines = []
    for label, row in table["samples"].items():
        diff = _paired(row.get(a), row.get(b))
        if diff is not None:
            lines.append(f"{label}: " + verdict(a, b, diff))
    return "\n".join(lines)


def format_downstream(table: dict) -> str:
    """The table as text (points, mean [95 % CI]), then what is missing."""
    def cell(e: Estimate | None) -> str:
        return "—" if e is None else f"{e.mean:5.1f} [{e.low:5.1f}, {e.high:5.1f}]"

    columns = table.get("columns", COLUMNS)
    width = max(28, max(len(label) for label in table["rows"]))
    lines = [f"{'encoder':<{width}}" + "".join(f"{c:>22}" for c in columns)]
    for label, row in table["rows"].items():
        lines.append(f"{label:<{width}}" + "".join(f"{cell(row[c]) if c in row else 'n/a':>22}" for c in columns))
    lines.append("(J&F in points, bootstrap over 128 sequences; probes: accuracy in %, bootstrap over 512 test "
                 "clips; fine-tune: accuracy in %, t over 3 seeds, or bootstrap over the test clips for a single "
                 "run (MAM2); chance 25 %; ConvNet probes: per-frame features averaged over the clip; n/a: "
                 "a frame encoder is not fine-tuned as a clip classifier here, nor the no-encoder baseline "
                 "probed; 1k steps: "
                 "1 000 pre-training steps, against 8 000 for VideoMAE — see chapter 5)")
    if table["missing"]:
        lines.append("no record yet: " + "; ".join(f"{label} / {c}" for label, c in table["missing"]))
    return "\n".join(lines)


def format_leaders(table: dict) -> str:
    """One sentence per column, computed from the intervals: the highest row, and the rows
    whose 95 % interval overlaps its own (not separated from it by this experiment; an overlap
    does not show equality, only that these intervals cannot order the two)."""
    lines = []
    for column in table.get("columns", COLUMNS):
        cells = {label: row[column] for label, row in table["rows"].items() if row.get(column) is not None}
        if not cells:
            continue
        best = max(cells, key=lambda label: cells[label].mean)
        top = cells[best]
        tied = [label for label, e in cells.items() if label != best and e.high >= top.low]
        lines.append(f"{column}: highest {best}, {top.mean:.1f} [{top.low:.1f}, {top.high:.1f}]; "
                     + (f"not separated from it: {', '.join(tied)}" if tied else "above every other row's interval"))
    return "\n".join(lines)


def column_agreement(table: dict, a: str, b: str) -> Estimate:
    """Spearman's ρ between columns ``a`` and ``b`` over the encoders that have both (the
    baseline row has no encoder and is left out), with a bootstrap interval over encoders: do
    the two yardsticks rank the zoo alike?"""
    pairs = [(row[a].mean, row[b].mean) for label, row in table["rows"].items()
             if label != COPY_ROW and row.get(a) is not None and row.get(b) is not None]
    return rank_correlation([x for x, _ in pairs], [y for _, y in pairs])


def format_agreement(table: dict, pairs: Sequence[tuple[str, str]] = (("J&F", "fine-tune"), ("J&F", "linear probe"),
                                                                       ("linear probe", "fine-tune"))) -> str:
    """One line per pair of columns: ρ with its interval and what it says, computed."""
    lines = []
    for a, b in pairs:
        e = column_agreement(table, a, b)
        if e.low > 0:
            reading = "they rank the encoders alike"
        elif e.high < 0:
            reading = "they rank the encoders in opposite orders"
        else:
            reading = "no agreement or disagreement resolvable"
        lines.append(f"{a} against {b}: Spearman ρ = {e.mean:+.2f}, 95 % CI [{e.low:+.2f}, {e.high:+.2f}] "
                     f"over {e.n} encoders: {reading}")
    return "\n".join(lines)


def format_pretraining_losses(encoders: dict[str, str | None] | None = None) -> str:
    """One line per VideoMAE row: its final pre-training loss against the loss of predicting
    nothing for the normalised-pixel target (0 for every hidden patch, ≈ 1 by construction;
    computed by :func:`~maskvid_edu.analysis.pretraining_curves.trivial_losses` on the
    ``mam2_pixels`` recipe's clips, the same synthetic clips of seed 0), and whether it left that
    level by :data:`~maskvid_edu.analysis.pretraining_curves.TRIVIAL_MARGIN` — chapter 5's test
    of a run that trained, applied to every VideoMAE encoder of the table."""
    level = pretraining_curves.trivial_losses("mam2_pixels")["loss_appearance"]
    lines = []
    for label, name in (encoders or ENCODERS).items():
        if name and name.startswith("videomae"):
            final = zoo.read_card(name)["final_loss"]
            state = "left it" if final < (1 - pretraining_curves.TRIVIAL_MARGIN) * level else "at it"
            lines.append(f"{label:<28} final loss {final:.3f}: {final / level:6.1%} of predicting nothing "
                         f"({level:.4f}), {state}")
    return "\n".join(lines)

