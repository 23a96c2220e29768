"""One trainer for every pre-training method.

Every model of the library follows one contract — ``model.make_mask(video, generator)`` draws
the method's mask, ``model(video, mask)`` returns a :class:`~maskvid_edu.models.output.PretrainOutput`
with a scalar ``loss`` and named ``terms`` — so a single loop trains VideoMAE, VideoMAC and MAM2
and logs their losses without knowing which is which. Models with an EMA target also expose
``model.on_optimizer_step(step, total_steps)``, called once after every optimizer step, and
models with a ``fixed_mask_count`` attribute have it set to True while training: the trainer
only feeds masks from ``make_mask``, so the model may take the number of hidden tokens from its
config instead of reading it back from the device. Fine-tuning uses the same loop: a model with
``takes_labels = True`` is called as ``model(video, mask, label=…)``, and a model with a
``param_groups(weight_decay)`` method chooses its own optimizer groups, each of which may carry
an ``lr_scale`` multiplying the scheduled rate (layer-wise lr decay).

What one optimizer step does (``accum_steps`` micro-batches of ``batch_size`` clips each)::

    for each micro-batch k:                       # DDP: gradients all-reduced only at the last k
        mask   = model.make_mask(video, generator)        # seeded per (seed, rank), checkpointed
        loss_k = model(video, mask).loss                  # a mean over the micro-batch's samples
        backward(loss_k / accum_steps)                    # so the sum of grads = grad of the mean
    clip the gradient norm; AdamW step at lr(step); zero grads; model.on_optimizer_step(step, S)

The recipe is VideoMAE's (and MAE's); its pieces live in :mod:`maskvid_edu.schedule`:

- **Learning rate** ``lr = base_lr × effective_batch / 256`` (the linear scaling rule), where
  ``effective_batch = batch_size × accum_steps × world_size``; or set ``lr`` directly.
- **Schedule** per optimizer step: linear warm-up, then a half cosine down to ``min_lr``
  (:func:`~maskvid_edu.schedule.lr_at`). A warm-up not shorter than the run (it would never
  reach ``lr``) is cut to 10 % of the run, with a warning.
- **AdamW** ``betas = (0.9, 0.95)``, weight decay 0.05 on weight matrices only — not on biases,
  norms, position embeddings or learned tokens (:func:`~maskvid_edu.schedule.param_groups`).

Engineering that the loop takes care of:

- **No host syncs in the step.** Losses, loss terms and gradient norms are summed *on the
  device*; they are copied to the host only every ``log_every`` steps (a ``.item()`` per step
  would stall a GPU pipeline on every iteration). A non-finite loss is recorded on the device
  too (the first bad step and its loss terms) and raised as :class:`FloatingPointError` at the
  next log or checkpoint, *before* anything is written — the last good checkpoint stays intact;
  the message names the steps run since the previous check and the clips (``batch["index"]``,
  recorded on the host) of the bad step (:mod:`maskvid_edu.train_metrics`).
  Masks are drawn on the device and, with ``fixed_mask_count`` (above), no model reads a mask's
  count back (``tests/test_sync_free.py`` runs every model's step on value-less fake tensors);
  on CUDA, batches arrive in pinned memory with ``non_blocking=True`` copies, and AdamW is fused.
- **Exact resume.** A checkpoint holds the model (with any EMA target), optimizer, scheduler,
  gradient scaler, every random state (torch, CUDA, numpy, Python, the mask generator — one set
  per rank), the step and the partial logging window. The data order is a function of
  ``(seed, epoch)`` only (:class:`~maskvid_edu.data.sampler.ResumableSampler`), and a resumed
  run skips the clips already consumed in the current epoch, so on CPU "train N steps" and
  "train k steps, stop, resume, finish" give bit-identical weights and the same ``metrics.jsonl``.
- **Fresh clips every epoch.** Before each epoch the trainer calls ``set_epoch(epoch)`` on the
  dataset and on every dataset it wraps (:func:`~maskvid_edu.data.sampler.set_dataset_epoch`):
  a seeded ``VideoDataset`` then draws new temporal windows and crops, the same ones on a rerun.
- **Bad videos counted, never a hang.** Batches from ``collate_skip_bad`` are counted in
  ``dataset.stats``; the usable-data rule (``DataStats.check_usable``) stops a run whose
  epoch yields no usable clip or that skips more than half of its clips.
- **Resume on another number of processes.** The checkpoint keeps the data position as a
  *global* count of clips consumed in the epoch, not a per-process batch index, so a run
  stopped on 8 GPUs can continue on 4 from the very next clip. Keep the effective batch by
  trading processes for accumulation (8 × 32 → 4 × 32 × 2 accumulation steps): every step then
  averages the gradient over the same clips. Only the per-process random streams (masks,
  dropout) cannot carry over; they are re-seeded, with a warning.
- **Atomic checkpoints.** Written to a temporary file in the same folder, flushed, then renamed
  over the old one with ``os.replace``: a crash while writing never leaves a truncated file,
  and the temporary file a kill leaves behind is removed when the run starts or resumes.
- **AMP** (``"bf16"``, or ``"fp16"`` with a gradient scaler on CUDA), **torch.compile**, and
  **DDP** when launched with ``torchrun`` (one process per device, each reading its own shard
  of every epoch's permutation, logging and checkpoints on rank 0 only).

Files in ``out_dir``: ``checkpoint.pt`` (latest, overwritten atomically), ``metrics.jsonl`` and,
with ``tensorboard=True``, TensorBoard event files. A ``metrics.jsonl`` record (one per
``log_every`` steps, the same dicts :func:`train` returns) holds ``step`` (optimizer steps done),
``epoch`` (passes over the data, fractional), ``lr`` (of the interval's last step), ``loss`` and
every loss term (means over the interval's micro-batches and, under DDP, over processes),
``grad_norm`` (mean global gradient norm before clipping), ``time`` (seconds since the run
started, resumes included) and ``sec_per_step``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .checkpoints import check_finite, remove_stale_temporaries, save_checkpoint
from .data.sampler import ResumableSampler, set_dataset_epoch
from .rng import STREAM_GLOBAL, STREAM_LOADER, STREAM_MASK, capture_rng_state, derive_seed, restore_rng_state, seed_everything
from .schedule import NO_DECAY_NAMES, WarmupCosine, clamp_warmup, lr_at, param_groups
from .train_config import TrainConfig, config_differences
from .train_metrics import MetricWindow
from .utils import resolve_device

__all__ = ["TrainConfig", "Trainer", "train", "train_or_load", "lr_at", "param_groups", "load_checkpoint",
           "CHECKPOINT_NAME", "METRICS_NAME", "NO_DECAY_NAMES"]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_FORMAT = "maskvid_edu.train/1"


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path, model: nn.Module | None = None, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by the trainer; with ``model``, also load its weights (strict).

    Returns the checkpoint dict: ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``rng``,
    ``step``, ``total_steps``, ``config``, ``history``, ``meta``, ``model_config``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, not a torch file, unexpected objects, ...
        raise ValueError(f"{str(path)!r} could not be read as a checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a checkpoint written by maskvid_edu.train (format {CHECKPOINT_FORMAT})")
    check_finite(ckpt.get("model", {}), f"checkpoint {str(path)!r}")
    if model is not None:
        model.load_state_dict(ckpt["model"])
    return ckpt


def _model_config(model: nn.Module):
    cfg = getattr(model, "config", None)
    if cfg is not None and dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return None


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


class Trainer:
    """Train ``model`` on ``dataset`` with ``config``; call :meth:`fit`.

    Args:
        model: a pre-training model: ``make_mask(video, generator) -> (B, N) bool``,
            ``forward(video, mask) -> PretrainOutput`` and optionally
            ``on_optimizer_step(step, total_steps)``. Moved to the device in place.
        dataset: a map-style dataset of dicts with ``"video"`` ``(C, T, H, W)`` (ImageNet-normalised).
        config: :class:`TrainConfig`.
        collate_fn: optional batch collation (default: stack every field).
        meta: optional JSON-able dict stored in the checkpoint (e.g. the model's registry name).
    """

    def __init__(self, model: nn.Module, dataset, config: TrainConfig, *, collate_fn=None, meta: dict | None = None):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        for method in ("make_mask", "forward"):
            if not callable(getattr(model, method, None)):
                raise ValueError(f"model must implement {method}(video, ...) (see maskvid_edu.train's docstring)")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ValueError("dataset must be a map-style dataset (with __len__ and __getitem__)")
        self.model = model
        self.dataset = dataset
        self.config = config
        self.collate_fn = collate_fn
        try:  # stored in the checkpoint, which is read back with weights_only=True
            self.meta = json.loads(json.dumps(dict(meta or {})))
        except (TypeError, ValueError) as err:
            raise ValueError(f"meta must be a JSON-serialisable dict, got {meta!r}") from err

        # distributed world (torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT)
        self.world_size = int(os.environ.get("WORLD_SIZE", "1")) if not dist.is_initialized() else dist.get_world_size()
        self.rank = int(os.environ.get("RANK", "0")) if not dist.is_initialized() else dist.get_rank()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", self.local_rank)
        if config.amp == "fp16" and self.device.type != "cuda":
            raise ValueError(
                f"amp='fp16' needs a CUDA device (it relies on a gradient scaler); the device is {self.device}. "
                "Use amp='bf16' or amp='none' on CPU."
            )

        # plan: batches per epoch, total steps, warm-up, peak lr
        per_rank = len(dataset) // self.world_size
        self.batches_per_epoch = per_rank // config.batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"dataset of {len(dataset)} clips is too small for batch_size={config.batch_size} "
                f"on {self.world_size} process(es): not a single full batch per epoch"
            )
        self.steps_per_epoch = self.batches_per_epoch / config.accum_steps
        if config.steps is not None:
            self.total_steps = config.steps
        else:
            self.total_steps = max(1, math.ceil(config.epochs * self.batches_per_epoch / config.accum_steps))
        if config.warmup_steps is not None:
            self.warmup_steps = config.warmup_steps
        elif config.warmup_epochs is not None:
            self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        else:
            self.warmup_steps = 0
        self.warmup_steps = clamp_warmup(self.warmup_steps, self.total_steps)
        self.effective_batch = config.batch_size * config.accum_steps * self.world_size
        self.peak_lr = config.lr if config.lr is not None else config.base_lr * self.effective_batch / 256
        if config.min_lr > self.peak_lr:
            raise ValueError(
                f"TrainConfig.min_lr={config.min_lr:g} is above the peak lr {self.peak_lr:g} "
                f"(base_lr {config.base_lr:g} × effective batch {self.effective_batch} / 256); "
                "lower min_lr or set lr"
            )
        self.out_dir = Path(config.out_dir) if config.out_dir is not None else None
        self.history: list[dict] = []
        stats = getattr(dataset, "stats", None)  # a VideoDataset's skip counts (DataStats)
        self._stats = stats if callable(getattr(stats, "check_usable", None)) else None
        self._epoch_from_start = True

    # -- small helpers -----------------------------------------------------------------------

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def _seed_everything(self, *extra: int) -> None:
        seed_everything(derive_seed(self.config.seed, self.rank, STREAM_GLOBAL, *extra))

    def _autocast(self):
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _epoch_iterator(self, epoch: int, position: int):
        """Iterator over epoch ``epoch``'s micro-batches from global position ``position`` (the
        number of clips of this epoch's order that all processes together have consumed)."""
        self.sampler.set_epoch(epoch, start=position)
        set_dataset_epoch(self.dataset, epoch)  # seeded datasets: this epoch's clip windows and crops
        self._epoch_from_start = position == 0
        if self._stats is not None:
            self._stats.begin_epoch()
        loader_gen = torch.Generator().manual_seed(derive_seed(self.config.seed, self.rank, STREAM_LOADER, epoch))
        loader = DataLoader(
            self.dataset,
            batch_size=self.config.batch_size,
            sampler=self.sampler,
            num_workers=self.config.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",  # page-locked buffers: the copy to the GPU can overlap
            prefetch_factor=self.config.prefetch_factor if self.config.num_workers > 0 else None,
            drop_last=True,
            generator=loader_gen,  # worker seeds; keeps torch's global RNG untouched
        )
        return iter(loader)

    # -- setup -------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        if self.world_size > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend=backend)
            self._owns_process_group = True
        self.distributed = dist.is_initialized() and dist.get_world_size() > 1

        self.model.to(self.device)
        if getattr(self.model, "fixed_mask_count", None) is not None:  # masks come from make_mask only
            self._fixed_before = self.model.fixed_mask_count
            self.model.fixed_mask_count = True
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)  # 4-D weights only; activations follow
        self.model.train()
        make_groups = getattr(self.model, "param_groups", None)  # e.g. layer-wise lr decay for fine-tuning
        groups = make_groups(cfg.weight_decay) if callable(make_groups) else param_groups(self.model, cfg.weight_decay)
        if not any(g["params"] for g in groups):
            raise ValueError("model has no trainable parameters (every requires_grad is False)")
        for g in groups:  # a group's lr_scale multiplies the scheduled rate: lr_g(s) = lr_scale_g · lr(s)
            g.setdefault("lr_scale", 1.0)
            g["lr"] = self.peak_lr * g["lr_scale"]
        self.params = [p for g in groups for p in g["params"]]
        fused = cfg.fused_optimizer if cfg.fused_optimizer is not None else self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=self.peak_lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                           fused=fused or None)
        self.schedule = WarmupCosine(self.total_steps, self.peak_lr, cfg.min_lr, self.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.mask_generator = torch.Generator(device=self.device)
        self.sampler = ResumableSampler(self.dataset, self.world_size, self.rank, cfg.seed)

        forward: nn.Module = self.model
        if self.distributed:
            forward = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        self.ddp = forward if self.distributed else None
        if cfg.compile:
            forward = torch.compile(forward)
        self.forward = forward
        self.hook = getattr(self.model, "on_optimizer_step", None)

        self.writer = None
        if cfg.tensorboard and self.is_main and self.out_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(
                    "TrainConfig.tensorboard=True needs the tensorboard package: pip install tensorboard"
                ) from err
            self.writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    def _resume(self, resume) -> int:
        """Load the checkpoint named by ``resume``; return the step to continue from."""
        if resume is True:
            if self.checkpoint_path is None:
                raise ValueError("resume=True needs TrainConfig.out_dir (or pass the checkpoint path as resume=...)")
            path = self.checkpoint_path
        else:
            path = Path(resume)
        ckpt = load_checkpoint(path, map_location="cpu")
        saved_cfg, data = ckpt["config"], ckpt.get("data", {})
        saved_world = int(data.get("world_size", 1))
        diff = config_differences(saved_cfg, self.config.to_dict())
        saved_batch = saved_cfg["batch_size"] * saved_cfg["accum_steps"] * saved_world
        if saved_batch == self.effective_batch:
            # the same effective batch split differently (e.g. fewer GPUs, more accumulation):
            # every optimizer step still averages the gradient over the same clips
            diff = [k for k in diff if k not in ("batch_size", "accum_steps")]
        if diff:
            warnings.warn(
                f"resuming from {str(path)!r} with a config that differs in {diff}: the run will not "
                "reproduce an uninterrupted one",
                stacklevel=3,
            )
        if saved_world != self.world_size and saved_batch == self.effective_batch and not diff:
            # only the layout changed: keep the schedule's length and warm-up in optimizer steps
            # (an epoch count converts to slightly different step counts on another layout)
            saved_schedule = (ckpt["scheduler"].get("lr_lambdas") or [None])[0] or {}
            self.total_steps = int(ckpt.get("total_steps", self.total_steps))
            self.warmup_steps = int(saved_schedule.get("warmup_steps", self.warmup_steps))
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        # LambdaLR.load_state_dict copied the saved schedule's fields into ours: the current
        # config governs from here on (identical when the config did not change).
        self.schedule = WarmupCosine(self.total_steps, self.peak_lr, self.config.min_lr, self.warmup_steps)
        self.scheduler.lr_lambdas = [self.schedule] * len(self.optimizer.param_groups)
        self.scheduler.base_lrs = [self.peak_lr * g.get("lr_scale", 1.0) for g in self.optimizer.param_groups]
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["initial_lr"] = base
            group["lr"] = base * self.schedule(self.scheduler.last_epoch)
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        if len(rng) == self.world_size:
            restore_rng_state(rng[self.rank], self.mask_generator, self.device)
        else:
            warnings.warn(
                f"checkpoint was written by {len(rng)} process(es), this run has {self.world_size}: the data "
                "order continues where it stopped, but the per-process random streams (masks, dropout, "
                "augmentation) are re-seeded, so the run continues statistically, not bitwise, like the original",
                stacklevel=3,
            )
            self._seed_everything(ckpt["step"])
            self.mask_generator.manual_seed(derive_seed(self.config.seed, self.rank, STREAM_MASK, ckpt["step"]))
        self._data_epoch = int(data.get("epoch", 0))
        if "position" in data:
            self._data_position = int(data["position"])
        else:  # checkpoints written before positions were global: batches consumed per process
            self._data_position = int(data.get("batch_in_epoch", 0)) * saved_cfg["batch_size"] * saved_world
        self.history = list(ckpt.get("history", []))
        self._elapsed_before = float(ckpt.get("elapsed", 0.0))
        windows = ckpt.get("log_window")
        if windows is not None and len(windows) == self.world_size:  # the logging window it stopped in
            self.window.load_state_dict(windows[self.rank])
        self.window.checked_step = int(ckpt["step"])
        return int(ckpt["step"])

    # -- metrics ---------------------------------------------------------------------------

    def _check_finite(self, step: int) -> None:
        """Host sync: raise FloatingPointError if any step so far had a non-finite loss."""
        last = self._last_saved
        kept = (
            f"the last good checkpoint {str(self.checkpoint_path)!r} (step {last}) is intact"
            if last is not None
            else "no checkpoint was written"
        )
        self.window.check_finite(step, self.distributed, getattr(self.dataset, "samples", None), kept)

    def _log(self, step: int, epoch: float, lr: float, pbar) -> None:
        """Host sync: average the window, append a record to history / JSONL / TensorBoard."""
        self._check_finite(step)
        means = self.window.means(self.distributed)
        if means is None:
            return
        now = time.perf_counter()
        record = {"step": step, "epoch": round(epoch, 6), "lr": lr, **means}
        record["time"] = round(self._elapsed_before + now - self._t0, 4)
        record["sec_per_step"] = round((now - self._t_window) / max(1, self.window.steps), 6)
        self._t_window = now
        self.history.append(record)
        if self.is_main:
            if self.out_dir is not None:
                with open(self.out_dir / METRICS_NAME, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            if self.writer is not None:
                for k, v in record.items():
                    if k not in ("step", "epoch", "time"):
                        self.writer.add_scalar(f"train/{k}", v, step)
            if pbar is not None:
                pbar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
        self.window.reset()

    def _save(self, step: int, window: dict | None = None, history: list[dict] | None = None) -> None:
        """Gather every rank's random state and partial logging window; rank 0 writes the
        checkpoint atomically. ``window``/``history``: what to save instead of the current ones
        (a stop between two log steps saves the window as it was before its partial record)."""
        self._check_finite(step)
        mine = (capture_rng_state(self.mask_generator, self.device), window or self.window.state_dict())
        if self.distributed:
            gathered: list = [None] * self.world_size
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        states = [g[0] for g in gathered]
        if self.is_main and self.checkpoint_path is not None:
            ckpt = {
                "format": CHECKPOINT_FORMAT,
                "step": step,
                "total_steps": self.total_steps,
                "config": self.config.to_dict(),
                "model": self.model.state_dict(),
                "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
                "model_config": _model_config(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": states,
                "data": {
                    "epoch": self._data_epoch,
                    "position": self._data_position,  # clips of this epoch's order consumed, all ranks
                    "batches_per_epoch": self.batches_per_epoch,
                    "batch_size": self.config.batch_size,
                    "world_size": self.world_size,
                },
                "history": self.history if history is None else history,
                "log_window": [g[1] for g in gathered],  # partial sums since the last record, per rank
                "elapsed": self._elapsed_before + time.perf_counter() - self._t0,
                "meta": self.meta,
            }
            save_checkpoint(ckpt, self.checkpoint_path)  # temp file + fsync + os.replace
        if self.distributed:
            dist.barrier()
        self._last_saved = step

    # -- the loop ----------------------------------------------------------------------------

    def fit(self, resume: bool | str | Path | None = None, stop_at: int | None = None) -> list[dict]:
        """Run training; return the history (one dict per log interval, as in ``metrics.jsonl``).

        Args:
            resume: ``True`` continues from ``out_dir/checkpoint.pt``, a path from that file,
                ``None``/``False`` starts afresh (an existing ``metrics.jsonl`` is replaced).
            stop_at: stop after this many optimizer steps (saving a checkpoint) instead of
                ``total_steps`` — what an interrupted run looks like; resume it later. A stop
                between two log steps returns a record of the partial window, but the checkpoint
                keeps the window itself, so a resumed run logs what an uninterrupted one would.

        Temporary files that a write killed mid-way left in ``out_dir`` are removed first.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int) or stop_at < 1):
            raise ValueError(f"stop_at must be a positive int or None, got {stop_at!r}")
        threads_before = torch.get_num_threads()
        self._owns_process_group = False
        self._fixed_before = None
        self.writer = None
        try:
            if cfg.num_threads is not None:
                torch.set_num_threads(cfg.num_threads)
            self._setup()
            self._elapsed_before = 0.0
            self._last_saved = None
            self.window = MetricWindow(self.device)
            if self.is_main and self.out_dir is not None:
                for tmp in remove_stale_temporaries(self.out_dir, CHECKPOINT_NAME):
                    warnings.warn(f"removed {str(tmp)!r}, left by a checkpoint write that was interrupted", stacklevel=2)
            if resume:
                step = self._resume(resume)
                self._last_saved = step
            else:
                step = 0
                self._seed_everything()
                self.mask_generator.manual_seed(derive_seed(cfg.seed, self.rank, STREAM_MASK))
                self.history = []
                self._data_epoch, self._data_position = 0, 0
            if self.is_main and self.out_dir is not None:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                with open(self.out_dir / METRICS_NAME, "w", encoding="utf-8") as f:  # rewrite what the checkpoint knows
                    f.writelines(json.dumps(r) + "\n" for r in self.history)
            end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
            self._run(step, end, tqdm)
        finally:
            if self.writer is not None:
                self.writer.close()
            if self._owns_process_group and dist.is_initialized():
                dist.destroy_process_group()
            if self._fixed_before is not None:
                self.model.fixed_mask_count = self._fixed_before
            torch.set_num_threads(threads_before)
        return self.history

    def _run(self, step: int, end: int, tqdm) -> None:
        cfg = self.config
        accum = cfg.accum_steps
        clips_per_micro = cfg.batch_size * self.world_size  # global positions one micro-batch consumes
        clips_per_epoch = self.batches_per_epoch * clips_per_micro
        if self._data_position + clips_per_micro > self.sampler.usable:  # no full batch left in this epoch
            self._data_epoch, self._data_position = self._data_epoch + 1, 0
        batches = self._epoch_iterator(self._data_epoch, self._data_position)
        self._t0 = self._t_window = time.perf_counter()
        pbar = tqdm(total=self.total_steps, initial=step, desc="pretrain", dynamic_ncols=True,
                    disable=not (self.is_main and cfg.progress))
        try:
            while step < end:
                lr = self.optimizer.param_groups[0]["lr"]
                for k in range(accum):
                    while True:
                        try:
                            batch = next(batches)
                        except StopIteration:
                            if self._stats is not None and self._epoch_from_start:
                                self._stats.check_usable(epoch_ended=True)  # a whole epoch of skips stops here
                            self._data_epoch, self._data_position = self._data_epoch + 1, 0
                            batches = self._epoch_iterator(self._data_epoch, 0)
                            batch = next(batches)
                        self._data_position += clips_per_micro
                        if self._count_skips(batch):
                            break
                    self.window.note_clips(step, batch)  # host-side ids: which clips a bad loss came from
                    self._micro_step(batch, step, last=k == accum - 1)
                self._optimizer_step(step)
                step += 1
                pbar.update(1)
                epoch = self._data_epoch + self._data_position / clips_per_epoch
                boundary = step % cfg.log_every == 0 or step == self.total_steps
                window, history = None, None
                if boundary:
                    self._log(step, epoch, lr, pbar)
                elif step == end:  # a stop inside a window: report it, but checkpoint the window itself
                    window, history = self.window.state_dict(), list(self.history)
                    self._log(step, epoch, lr, pbar)
                if self.out_dir is not None and (
                    step == end or (cfg.ckpt_every is not None and step % cfg.ckpt_every == 0)
                ):
                    self._save(step, window=window, history=history)
        finally:
            pbar.close()

    def _count_skips(self, batch) -> bool:
        """Real-clip datasets drop unreadable videos from a batch (``collate_skip_bad``): count
        them in ``dataset.stats`` here, in the main process, whatever the number of workers.
        Returns False for a batch left with no clip at all (every video in it was skipped)."""
        stats = self._stats
        if stats is None or not isinstance(batch, dict) or "skipped" not in batch:
            return True
        stats.update(batch)
        stats.check_usable()  # the usable-data rule (data/datasets.py): too many skips stop the run
        return "video" in batch and batch["video"].shape[0] > 0

    def _micro_step(self, batch, step: int, last: bool) -> None:
        """Forward + backward on one micro-batch. No host synchronisation."""
        if not isinstance(batch, dict) or "video" not in batch:
            raise ValueError("dataset items must be dicts with a 'video' (C, T, H, W) tensor")
        video = batch["video"].to(self.device, non_blocking=True)  # (B, C, T, H, W) or (B, R, C, T, H, W)
        extra = {}
        if getattr(self.model, "takes_labels", False):  # fine-tuning: the labels reach the model
            if "label" not in batch:
                raise ValueError(f"{type(self.model).__name__} trains on labels: dataset items need a 'label' (int)")
            extra["label"] = torch.as_tensor(batch["label"]).to(self.device, non_blocking=True)  # (B,)
        if video.ndim == 6:  # repeated sampling: R augmented views of each decoded clip
            if "label" in extra:
                extra["label"] = extra["label"].repeat_interleave(video.shape[1])  # (B·R,)
            video = video.flatten(0, 1)  # (B·R, C, T, H, W)
        mask = self.model.make_mask(video, generator=self.mask_generator)  # (B, N) bool, True = masked
        no_sync = self.ddp.no_sync() if (self.ddp is not None and not last) else contextlib.nullcontext()
        with no_sync:
            with self._autocast():
                out = self.forward(video, mask, **extra)
            loss = out.loss.float() / self.config.accum_steps  # grads sum to the grad of the mean
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self.window.add(out, step)

    def _optimizer_step(self, step: int) -> None:
        """Clip, step, schedule, zero grads, EMA hook. No host synchronisation (except fp16's scaler)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.config.clip_grad is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.params, self.config.clip_grad)
        else:
            grads = [p.grad for p in self.params if p.grad is not None]
            grad_norm = nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.hook is not None:
            self.hook(step, self.total_steps)
        self.window.add_grad_norm(grad_norm, step)



# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def train(
    model: nn.Module,
    dataset,
    config: TrainConfig,
    *,
    resume: bool | str | Path | None = None,
    stop_at: int | None = None,
    collate_fn=None,
    meta: dict | None = None,
) -> list[dict]:
    """Train ``model`` in place and return the metric history (see :class:`Trainer`)."""
    return Trainer(model, dataset, config, collate_fn=collate_fn, meta=meta).fit(resume=resume, stop_at=stop_at)


def train_or_load(
    model: nn.Module,
    dataset,
    config: TrainConfig,
    *,
    collate_fn=None,
    meta: dict | None = None,
    verbose: bool = True,
) -> list[dict]:
    """For notebooks: reuse a finished run when one matches, otherwise train.

    If ``out_dir/checkpoint.pt`` exists and was written with the same training config (fields
    that only affect logging and devices may differ), the same model class and model config
    and the same ``meta``, then: a finished run is loaded into ``model`` and its history
    returned; an interrupted one is resumed. Anything else trains from scratch.
    """
    if config.out_dir is None:
        raise ValueError("train_or_load needs TrainConfig.out_dir (where the checkpoint is looked for)")
    trainer = Trainer(model, dataset, config, collate_fn=collate_fn, meta=meta)
    path = trainer.checkpoint_path
    say = print if verbose and trainer.is_main else (lambda *a, **k: None)
    if path.is_file():
        ckpt = load_checkpoint(path)
        why = []
        diff = config_differences(ckpt["config"], config.to_dict())
        if diff:
            why.append(f"training config differs in {diff}")
        if ckpt.get("total_steps") != trainer.total_steps:
            why.append(f"total steps {ckpt.get('total_steps')} != {trainer.total_steps}")
        model_class = f"{type(model).__module__}.{type(model).__qualname__}"
        if ckpt.get("model_class") != model_class:
            why.append(f"model class {ckpt.get('model_class')} != {model_class}")
        if ckpt.get("model_config") != _model_config(model):
            why.append("model config differs")
        if ckpt.get("meta", {}) != trainer.meta:
            why.append("meta differs")
        if not why:
            if ckpt["step"] >= ckpt["total_steps"]:
                model.load_state_dict(ckpt["model"])
                model.to(trainer.device)
                say(f"loaded the finished run from {path} (step {ckpt['step']}); delete it to retrain")
                return list(ckpt["history"])
            say(f"resuming the interrupted run in {path} at step {ckpt['step']} of {ckpt['total_steps']}")
            return trainer.fit(resume=path)
        say(f"not reusing {path}: {'; '.join(why)}; training from scratch")
    return trainer.fit()
