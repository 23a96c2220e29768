"""The trainer's configuration: one dataclass a recipe's ``train:`` section or CLI flags fill in.

:class:`TrainConfig` holds everything :class:`~maskvid_edu.train.Trainer` needs besides the
model and the data, validated on construction (the error names the field and what was
expected). :func:`config_differences` tells whether two configs describe the same training
trajectory: fields that only change how a run is executed or recorded (devices, logging,
workers) may differ between a checkpoint and the run that resumes or reloads it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["TrainConfig", "config_differences", "AMP_MODES", "RUN_ONLY_FIELDS"]

AMP_MODES = ("none", "bf16", "fp16")

# Fields that change how a run is executed or recorded, not the numbers it produces. They may
# differ between a checkpoint and the run that resumes or reloads it.
RUN_ONLY_FIELDS = frozenset(
    {"out_dir", "log_every", "ckpt_every", "num_workers", "prefetch_factor", "num_threads", "tensorboard",
     "progress", "device", "compile", "fused_optimizer", "channels_last"}
)


@dataclass
class TrainConfig:
    """Everything the trainer needs besides the model and the data.

    Length (set exactly one): ``steps`` optimizer steps, or ``epochs`` passes over the data
    (may be fractional; converted to ``ceil(epochs · batches_per_epoch / accum_steps)`` steps).

    Batch: ``batch_size`` clips per process and micro-batch; ``accum_steps`` micro-batches per
    optimizer step. The effective batch is ``batch_size · accum_steps · world_size``.

    Optimizer: peak ``lr`` if given, else ``base_lr · effective_batch / 256``; ``min_lr`` is
    the floor of the cosine; warm-up over ``warmup_steps`` (or ``warmup_epochs``) steps;
    AdamW with ``betas`` and ``weight_decay``; ``clip_grad`` = max global gradient norm (None:
    no clipping, the norm is still logged).

    Numerics: ``amp`` one of ``"none"``, ``"bf16"`` (autocast to bfloat16, CPU or CUDA),
    ``"fp16"`` (autocast to float16 with a gradient scaler; CUDA only); ``compile`` wraps the
    forward pass in ``torch.compile``; ``device`` ``"auto"`` | ``"cpu"`` | ``"cuda[:N]"``.

    Bookkeeping: ``seed`` (global RNGs, mask generator and data order all derive from it);
    ``out_dir`` (None: nothing is written); ``log_every`` steps between JSONL records;
    ``ckpt_every`` steps between checkpoints (None: only at the end); ``num_workers`` data-loader
    processes; ``num_threads`` intra-op CPU threads while training (None: leave torch's setting;
    small models on a busy machine often run much faster with 1); ``tensorboard`` also write TensorBoard scalars; ``progress`` show a tqdm bar;
    ``find_unused_parameters`` passed to DDP for models whose forward skips some parameters.

    Speed (none of these changes what is computed, only how): ``fused_optimizer`` runs AdamW as
    one fused kernel over all parameters (None: on CUDA only; the CPU kernel exists too, see
    ``maskvid-edu bench --what optim``); ``channels_last`` stores ConvNet weights, hence their
    activations, as NHWC (what tensor-core convolutions want on a GPU); ``prefetch_factor``
    batches each loader worker keeps ready (with ``num_workers > 0``). On CUDA, batches come in
    pinned host memory and are copied with ``non_blocking=True``, and masks are drawn on the device.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    accum_steps: int = 1
    base_lr: float = 1.5e-4
    lr: float | None = None
    min_lr: float = 1e-5
    warmup_steps: int | None = None
    warmup_epochs: float | None = None
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float | None = None
    amp: str = "none"
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    out_dir: str | None = None
    log_every: int = 10
    ckpt_every: int | None = None
    num_workers: int = 0
    prefetch_factor: int = 2
    num_threads: int | None = None
    tensorboard: bool = False
    progress: bool = True
    find_unused_parameters: bool = False
    fused_optimizer: bool | None = None
    channels_last: bool = False

    def __post_init__(self):
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if isinstance(self.out_dir, Path):
            self.out_dir = str(self.out_dir)
        self.validate()

    # -- checks ------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""

        def positive_int(name, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")

        def number(name, low=0.0, allow_none=False, strict=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low or (strict and v == low):
                bound = f"> {low}" if strict else f">= {low}"
                raise ValueError(f"TrainConfig.{name} must be a finite number {bound}, got {v!r}")

        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"TrainConfig needs exactly one of steps or epochs, got steps={self.steps!r}, epochs={self.epochs!r}"
            )
        positive_int("steps", allow_none=True)
        number("epochs", allow_none=True, strict=True)
        positive_int("batch_size")
        positive_int("accum_steps")
        number("base_lr", strict=True)
        number("lr", allow_none=True, strict=True)
        number("min_lr")
        if self.warmup_steps is not None and self.warmup_epochs is not None:
            raise ValueError("TrainConfig: set warmup_steps or warmup_epochs, not both")
        if self.warmup_steps is not None and (
            isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0
        ):
            raise ValueError(f"TrainConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        number("warmup_epochs", allow_none=True)
        number("weight_decay")
        if (
            not isinstance(self.betas, tuple)
            or len(self.betas) != 2
            or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in self.betas)
        ):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        number("clip_grad", allow_none=True, strict=True)
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"TrainConfig.compile must be True or False, got {self.compile!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be an int >= 0, got {self.seed!r}")
        positive_int("log_every")
        positive_int("ckpt_every", allow_none=True)
        positive_int("num_threads", allow_none=True)
        positive_int("prefetch_factor")
        for name in ("channels_last", "find_unused_parameters"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.fused_optimizer not in (None, True, False):
            raise ValueError(f"TrainConfig.fused_optimizer must be True, False or None (auto), got {self.fused_optimizer!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be an int >= 0, got {self.num_workers!r}")
        if self.out_dir is not None and not isinstance(self.out_dir, str):
            raise ValueError(f"TrainConfig.out_dir must be a path or None, got {self.out_dir!r}")
        if not isinstance(self.device, (str, torch.device)):
            raise ValueError(f"TrainConfig.device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")

    # -- conversions -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain-Python view (saved in checkpoints, written as YAML by the CLI)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        d["device"] = str(d["device"])
        return d

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a mapping (e.g. a YAML section); unknown keys are an error."""
        if not isinstance(values, dict):
            raise ValueError(f"TrainConfig.from_dict expects a mapping, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated). Setting ``steps`` clears ``epochs`` and
        vice versa, and likewise for ``warmup_steps`` / ``warmup_epochs``."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields: {sorted(known)}")
        d = dataclasses.asdict(self)
        for a, b in (("steps", "epochs"), ("warmup_steps", "warmup_epochs")):
            if changes.get(a) is not None and b not in changes:
                d[b] = None
            if changes.get(b) is not None and a not in changes:
                d[a] = None
        d.update(changes)
        return type(self)(**d)


def config_differences(saved: dict, current: dict) -> list[str]:
    """Names of the fields (outside :data:`RUN_ONLY_FIELDS`) whose values differ, sorted."""
    a, b = ({k: v for k, v in d.items() if k not in RUN_ONLY_FIELDS} for d in (saved, current))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
