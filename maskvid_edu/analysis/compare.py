"""Does predicting motion make pre-training converge faster? A fair race between targets.

MAM2 (Song et al., 2022) reports that predicting appearance (VQ codes) *and* motion (RGB
differences) reaches VideoMAE's accuracy in half the pre-training epochs (400 vs 800 on
Kinetics-400). That is a claim about **convergence**, and testing it takes more care than
training two models and comparing their last numbers:

- **Same budget, same everything else.** Every method gets the same optimizer steps, the same
  clips in the same order, the same learning-rate schedule and (where the token grids agree)
  the same masks: one :class:`~maskvid_edu.train.TrainConfig` per seed, shared by all methods.
  Only the target — and the decoder that predicts it — differs.
- **The same starting point.** For a seed, every method's encoder starts from the same weights
  (the first method's initialisation is copied into the others), so step 0 is one point that
  all curves share.
- **A yardstick that does not depend on the target.** Losses cannot be compared across targets
  (a cross-entropy over codes and a squared error over differences have different units).
  What a pre-trained encoder is *for* is features: a linear probe (softmax regression on
  frozen, pooled encoder features, :func:`~maskvid_edu.evaluate.probe.linear_probe`) and a
  weighted k-NN on a labelled task measure all methods alike.
- **Along the way.** Convergence is a curve, so the encoders are probed at several checkpoints
  (e.g. step 0, S/2, S). The trainer stops at each checkpoint, writes its checkpoint and
  resumes from it; its resume is exact, so stopping does not change the trajectory.
- **Several seeds.** Small runs are noisy: one seed cannot tell a real difference from luck.
  :meth:`ComparisonResult.summary` gives the mean and standard deviation over seeds.

Clips: a model whose motion target needs one frame more than its encoder sees (MAM2's
``clip_frames="plus_one"``) reads ``T + 1`` frames, the others ``T``. Give the runner datasets
of ``T + 1`` frames; each model gets a :class:`~maskvid_edu.data.wrappers.FirstFrames` view of as many as it reads, and
every probe sees the first ``T`` frames — the frames all encoders were trained on.

The module also holds the one measurement of the motion chapter that is not a target itself:
:func:`still_pixel_share`, how much of a clip an RGB difference leaves at (nearly) zero.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from ..data.transforms import denormalize
from ..data.wrappers import FirstFrames, frames_per_clip
from ..targets import frame_differences
from ..train import CHECKPOINT_NAME, TrainConfig, Trainer

__all__ = [
    "still_pixel_share",
    "MethodSpec",
    "convergence_methods",
    "ComparisonResult",
    "compare_pretraining",
]


# --------------------------------------------------------------------------------------------
# What an RGB difference removes
# --------------------------------------------------------------------------------------------


def still_pixel_share(
    video: torch.Tensor,
    threshold: float = 0.02,
    *,
    input_normalized: bool = True,
    per_frame: bool = False,
) -> torch.Tensor:
    """Share of pixels whose RGB difference to the next frame is (nearly) zero.

    A pixel ``(i, y, x)`` is *still* when ``max_c |x_{i+1}(c, y, x) − x_i(c, y, x)| < threshold``,
    differences taken in [0, 1] pixel space (the ImageNet normalisation undone first when
    ``input_normalized``). Still pixels are those the motion target ``d_i`` (see
    :mod:`maskvid_edu.targets`) asks the model to predict as zero.

    Args:
        video: ``(B, C, F, H, W)`` or ``(C, F, H, W)`` with ``F ≥ 2`` frames; the ``F − 1``
            true differences are used.
        threshold: in [0, 1] pixel units (0.02 ≈ 5 grey levels of 255: compression noise of a
            still camera stays below it).
        per_frame: return one share per difference ``(F − 1,)`` (averaged over the batch)
            instead of a single number.

    Returns:
        A 0-dim tensor (or ``(F − 1,)``) of shares in [0, 1].
    """
    if not isinstance(video, torch.Tensor) or video.dim() not in (4, 5):
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a (B, C, F, H, W) or (C, F, H, W) tensor, got {shape}")
    if video.dim() == 4:
        video = video.unsqueeze(0)  # (1, C, F, H, W)
    if video.shape[2] < 2:
        raise ValueError(f"video needs at least 2 frames to take a difference, got {video.shape[2]}")
    if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be a number in (0, 1] (pixel units), got {threshold!r}")
    pixels = denormalize(video.float(), channel_dim=1) if input_normalized else video.float()  # (B, C, F, H, W)
    diffs = frame_differences(pixels)  # (B, C, F-1, H, W): next minus current
    still = (diffs.abs().amax(dim=1) < threshold).float()  # (B, F-1, H, W)
    return still.mean(dim=(0, 2, 3)) if per_frame else still.mean()


# --------------------------------------------------------------------------------------------
# The methods in the race
# --------------------------------------------------------------------------------------------


@dataclass
class MethodSpec:
    """One contestant: a label, a registered model name and its overrides.

    ``build()`` is ``maskvid_edu.models.create(model, **overrides)``; ``overrides`` may hold a
    ``tokenizer`` (MAM2's code targets).
    """

    label: str
    model: str
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"label must be a non-empty string, got {self.label!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a registered model name, got {self.model!r}")
        if not isinstance(self.overrides, Mapping):
            raise ValueError(f"overrides must be a dict of config fields, got {type(self.overrides).__name__}")
        self.overrides = dict(self.overrides)

    def build(self) -> nn.Module:
        from ..models import create

        return create(self.model, **self.overrides)


def convergence_methods(tokenizer=None, size: str = "demo", pixel_normalization: str = "none") -> list[MethodSpec]:
    """The three contestants of the motion chapter, at one model size.

    - ``"VideoMAE (pixels)"``: ``videomae_vit_<size>`` predicting pixels (``normalization=
      pixel_normalization``; ``"none"`` is the CPU demo's raw-pixel target, ``"videomae"`` the
      published per-patch normalised one).
    - ``"MAM2 (appearance + motion)"``: ``mam2_vit_<size>`` with VQ codes from ``tokenizer``
      (normalised pixels if ``tokenizer`` is None) and RGB differences, weights 1 and 1.
    - ``"MAM2 (motion only)"``: the same model with ``w_appearance = 0``. Its appearance decoder
      then gets no gradient and the encoder learns from motion alone; it is built without the
      tokenizer (the appearance target is never used, so computing codes would only cost time).
    """
    if not isinstance(size, str) or not size:
        raise ValueError(f"size must be a model size such as 'demo', 's' or 'b', got {size!r}")
    mam2 = {} if tokenizer is None else {"tokenizer": tokenizer}
    return [
        MethodSpec("VideoMAE (pixels)", f"videomae_vit_{size}", {"normalization": pixel_normalization}),
        MethodSpec("MAM2 (appearance + motion)", f"mam2_vit_{size}", mam2),
        MethodSpec("MAM2 (motion only)", f"mam2_vit_{size}", {"w_appearance": 0.0}),
    ]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

METRICS = ("accuracy", "train_accuracy", "knn_accuracy")


@dataclass
class ComparisonResult:
    """What :func:`compare_pretraining` measured.

    records: one dict per (method, seed, checkpoint): ``method``, ``seed``, ``step``,
        ``accuracy`` (linear probe, test), ``train_accuracy`` (linear probe, train),
        ``knn_accuracy``, ``loss`` (training loss of the last log interval before ``step``;
        None at step 0) and ``train_seconds`` (wall-clock training time of that run so far).
    histories: ``{(method, seed): trainer history}`` (one dict per log interval).
    """

    methods: list[str]
    seeds: list[int]
    checkpoints: list[int]
    steps: int
    num_classes: int
    records: list[dict] = field(default_factory=list)
    histories: dict = field(default_factory=dict)

    def values(self, method: str, step: int, metric: str = "accuracy") -> list[float]:
        """The per-seed values of ``metric`` for ``method`` at ``step``, in seed order."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; methods: {self.methods}")
        if step not in self.checkpoints:
            raise ValueError(f"step {step} is not a checkpoint; checkpoints: {self.checkpoints}")
        by_seed = {r["seed"]: r[metric] for r in self.records if r["method"] == method and r["step"] == step}
        return [by_seed[s] for s in self.seeds if s in by_seed]

    def summary(self, metric: str = "accuracy") -> list[dict]:
        """Per (method, checkpoint): ``mean``, ``std`` (over seeds, ``n − 1`` in the
        denominator; 0 for a single seed), ``n`` and the per-seed ``values``."""
        rows = []
        for method in self.methods:
            for step in self.checkpoints:
                v = self.values(method, step, metric)
                if not v:
                    continue
                mean = sum(v) / len(v)
                std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
                rows.append({"method": method, "step": step, "mean": mean, "std": std, "n": len(v), "values": v})
        return rows

    def format_table(self, metric: str = "accuracy") -> str:
        """A text table: one row per method, one column per checkpoint, ``mean ± std`` in %."""
        stats = {(r["method"], r["step"]): r for r in self.summary(metric)}
        width = max(len(m) for m in self.methods) + 2
        head = f"{'':{width}}" + "".join(f"{'step ' + str(s):>16}" for s in self.checkpoints)
        lines = [f"{metric} over seeds {self.seeds} (mean ± std, %); chance {100 / self.num_classes:.1f} %", head]
        for method in self.methods:
            cells = []
            for step in self.checkpoints:
                r = stats.get((method, step))
                cells.append(f"{100 * r['mean']:8.1f} ± {100 * r['std']:4.1f}" if r else f"{'—':>15}")
            lines.append(f"{method:{width}}" + "".join(f"{c:>16}" for c in cells))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _threads(n: int | None):
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _input_frames(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    frames = getattr(cfg, "input_frames", None) or getattr(cfg, "num_frames", None)
    if not isinstance(frames, int):
        raise ValueError(f"{type(model).__name__}'s config does not say how many frames it reads (num_frames)")
    return frames


def _encoder_of(model: nn.Module) -> nn.Module:
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module) or not callable(getattr(encoder, "forward_features", None)):
        raise ValueError(f"{type(model).__name__} has no encoder with forward_features(video) to probe")
    return encoder


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "method"


def _check_checkpoints(checkpoints, steps: int) -> list[int]:
    if checkpoints is None:
        checkpoints = (0, steps // 2, steps)
    checkpoints = list(checkpoints)
    if not checkpoints or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) for c in checkpoints):
        raise ValueError(f"checkpoints must be a non-empty list of optimizer steps (ints), got {checkpoints!r}")
    points = sorted({int(c) for c in checkpoints})
    if points[0] < 0 or points[-1] > steps:
        raise ValueError(f"checkpoints must lie in [0, steps={steps}], got {points}")
    return points


def compare_pretraining(
    methods: Sequence[MethodSpec],
    train_data,
    probe_train,
    probe_test,
    *,
    train: TrainConfig,
    checkpoints: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    work_dir: str | Path | None = None,
    probe: Mapping | None = None,
    knn_k: int = 10,
    feature_batch: int = 32,
    share_encoder_init: bool = True,
    progress: bool = True,
) -> ComparisonResult:
    """Pre-train every method with the same budget and probe its encoder along the way.

    For each seed ``s``:

    1. ``torch.manual_seed(s)``, then every method's model is built; with
       ``share_encoder_init`` the first method's encoder weights are copied into the others.
    2. Each model is trained with ``train.replace(seed=s)`` (same steps, batch, schedule, data
       order and mask stream for all methods), stopping at each checkpoint ``> 0``; there its
       encoder's pooled features (``encoder.forward_features``) of ``probe_train`` and
       ``probe_test`` are extracted (encoder frozen, eval mode) and scored with a linear probe
       and a weighted k-NN. Step 0 probes the initial encoder (once per seed when the
       initialisation is shared: it is the same for all methods).

    Args:
        methods: the contestants (:func:`convergence_methods` gives the chapter's three).
            All encoders must read the same number of frames ``T``.
        train_data: pre-training clips, dicts with ``"video" (C, F, H, W)``; ``F`` at least the
            largest number of frames a model reads (``T + 1`` for MAM2's default clips).
        probe_train, probe_test: labelled clips (``"label"``), ``F ≥ T`` frames; the first ``T``
            are used. Use clips the models were not pre-trained on.
        train: the shared :class:`~maskvid_edu.train.TrainConfig`; ``train.steps`` is the budget
            (``epochs`` is not accepted: the budget must be steps, equal for all). Its ``seed``
            and ``out_dir`` are replaced per run.
        checkpoints: optimizer steps at which to probe (default ``(0, S/2, S)``).
        seeds: one full race per seed.
        work_dir: where the runs' checkpoints go (``<work_dir>/<method>-seed<s>/``); None: a
            temporary folder, deleted at the end.
        probe: keyword arguments of :func:`~maskvid_edu.evaluate.probe.linear_probe`
            (e.g. ``{"epochs": 100, "lr": 0.1}``).
        knn_k: neighbours of the k-NN score.
        feature_batch: clips per forward pass when extracting features.
        share_encoder_init: start all methods of a seed from the same encoder weights.
        progress: one progress bar over the runs (the trainer's own bars are turned off).

    Returns:
        :class:`ComparisonResult`.
    """
    from tqdm.auto import tqdm

    from ..evaluate.probe import extract_features, knn_accuracy, linear_probe

    methods = list(methods)
    if not methods or not all(isinstance(m, MethodSpec) for m in methods):
        raise ValueError("methods must be a non-empty list of MethodSpec")
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be unique, got {labels}")
    if not isinstance(train, TrainConfig):
        raise ValueError(f"train must be a TrainConfig, got {type(train).__name__}")
    if train.steps is None:
        raise ValueError("train must set steps (the shared budget), not epochs")
    steps = train.steps
    points = _check_checkpoints(checkpoints, steps)
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct ints >= 0, got {seeds!r}")
    for name, ds in (("probe_train", probe_train), ("probe_test", probe_test)):
        if not hasattr(ds, "__len__") or len(ds) == 0 or "label" not in ds[0]:
            raise ValueError(f"{name} must be a non-empty dataset of dicts with 'video' and 'label'")
    probe = dict(probe or {})
    data_frames = frames_per_clip(train_data)

    result = ComparisonResult(methods=labels, seeds=seeds, checkpoints=points, steps=steps, num_classes=0)
    temp = tempfile.TemporaryDirectory(prefix="maskvid_compare_") if work_dir is None else None
    root = Path(temp.name if temp is not None else work_dir)
    threads = train.num_threads
    classes: set[int] = set()

    def score(encoder: nn.Module, frames: int, seed: int) -> dict:
        with _threads(threads):
            tx, ty = extract_features(encoder, FirstFrames(probe_train, frames), batch_size=feature_batch,
                                      device=train.device)  # (N, D), (N,)
            vx, vy = extract_features(encoder, FirstFrames(probe_test, frames), batch_size=feature_batch,
                                      device=train.device)  # (M, D), (M,)
            classes.update(ty.tolist())
            classes.update(vy.tolist())
            lin = linear_probe(tx, ty, vx, vy, **{"seed": seed, **probe})
            knn = knn_accuracy(tx, ty, vx, vy, k=knn_k)
        return {"accuracy": lin.accuracy, "train_accuracy": lin.train_accuracy, "knn_accuracy": knn}

    bar = tqdm(total=len(seeds) * len(methods), desc="runs", disable=not progress)
    try:
        for seed in seeds:
            torch.manual_seed(seed)
            models = [m.build() for m in methods]
            encoders = [_encoder_of(model) for model in models]
            frames = {_encoder_of(model).config.num_frames for model in models}
            if len(frames) != 1:
                raise ValueError(f"all encoders must read the same number of frames, got {sorted(frames)}")
            T = frames.pop()
            for model, spec in zip(models, methods):
                if _input_frames(model) > data_frames:
                    raise ValueError(f"{spec.label} reads {_input_frames(model)} frames but train_data clips have "
                                     f"{data_frames}: build the dataset with num_frames={_input_frames(model)}")
            if share_encoder_init:
                state = encoders[0].state_dict()
                for enc in encoders[1:]:
                    enc.load_state_dict(state)
            shared_start = score(encoders[0], T, seed) if share_encoder_init and 0 in points else None

            for spec, model, encoder in zip(methods, models, encoders):
                run_dir = root / f"{_slug(spec.label)}-seed{seed}"
                config = train.replace(seed=seed, out_dir=str(run_dir), progress=False)
                data = train_data if _input_frames(model) == data_frames else FirstFrames(train_data, _input_frames(model))
                trainer = Trainer(model, data, config, meta={"method": spec.label, "model": spec.model})
                history: list[dict] = []
                seconds, done = 0.0, 0
                for point in points:
                    if point > done:
                        start = time.perf_counter()
                        resume = run_dir / CHECKPOINT_NAME if done > 0 else None
                        history = trainer.fit(resume=resume, stop_at=point)
                        seconds += time.perf_counter() - start
                        done = point
                    scores = shared_start if (point == 0 and shared_start is not None) else score(encoder, T, seed)
                    logged = [r for r in history if r["step"] <= point]
                    result.records.append({
                        "method": spec.label, "seed": seed, "step": point, **scores,
                        "loss": logged[-1]["loss"] if logged and point > 0 else None,
                        "train_seconds": seconds,
                    })
                result.histories[(spec.label, seed)] = list(history)
                bar.update(1)
            del models, encoders
    finally:
        bar.close()
        if temp is not None:
            temp.cleanup()
    result.num_classes = len(classes)
    return result
