"""Scaling a run up: what a model size costs, and what each optimisation of the step buys.

The course trains CPU presets; the papers train ViT-B/L/H on 64 GPUs. Between the two sit three
questions this module answers with numbers, measured side by side in one run:

1. **How does the cost grow with the model?** :func:`model_sizes` builds each registered size on
   PyTorch's ``meta`` device (shapes without storage: a ViT-H costs no memory) and lists its
   parameters next to the analytic FLOPs of a pre-training step
   (:func:`maskvid_edu.measure.flops.videomae_pretrain_flops`). :func:`measure_step` times real steps, so
   the FLOPs can be turned into seconds: ``time ≈ FLOPs / (peak · MFU)``.
2. **What does each optimisation buy?** :func:`time_variants` times several versions of the same
   training step *interleaved* — one step of each variant in turn, repeated — so that a shared
   machine slowing down hits every variant alike, and reports each median next to the baseline's.
   :func:`vit_variants` and :func:`convnet_variants` build the usual ones (optimizer
   implementation, attention kernel, activation checkpointing, bf16, ``torch.compile``,
   channels-last, the sparse path).
3. **Where does the memory go?** See :mod:`maskvid_edu.measure.memory`.

A *variant* is a zero-argument factory returning a zero-argument ``step`` callable: the factory
builds its own model copy (same weights: every factory seeds the same way) and optimizer, the
step runs forward, backward and the optimizer update. Nothing here asserts a speed: these are
measurements to read, not tests.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable

import torch

from ..models import create
from ..utils import resolve_device, synchronize as _sync
from .flops import ASSUMED_MFU, videomae_pretrain_flops
from .memory import training_memory
from .timing import time_interleaved

__all__ = ["model_sizes", "pretrain_optimizer", "training_step", "measure_step", "time_variants", "vit_variants", "convnet_variants",
           "format_variants", "predicted_step_seconds", "memory_sweep"]

Variant = Callable[[], Callable[[], None]]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_sizes(names, *, batch: int = 1, mask_ratio: float | None = None) -> list[dict]:
    """Parameters and analytic step FLOPs of registered VideoMAE / MAM2 sizes, built on ``meta``.

    Returns one dict per name: ``name``, ``params`` (all), ``encoder_params``, ``input``
    ``(T, H, W)``, ``tokens`` ``N``, ``visible`` ``N_vis``, ``forward_flops`` and
    ``step_flops`` (``3 × forward``) for ``batch`` clips at ``mask_ratio`` (default: the
    model's own), and ``decoder_share`` (the decoder's and head's fraction of the forward FLOPs). FLOPs are counted for the VideoMAE step (encoder on visible tokens, decoder on
    all); for MAM2 sizes that is its encoder + pixel-decoder share only, so use VideoMAE names
    for the comparison.
    """
    rows = []
    for name in names:
        with torch.device("meta"):
            model = create(name)
        config = model.config
        flops = videomae_pretrain_flops(config, mask_ratio, batch=batch)
        rows.append({
            "name": name,
            "params": _count(model),
            "encoder_params": _count(model.encoder),
            "input": (config.num_frames, config.img_size, config.img_size),
            "tokens": flops["num_tokens"],
            "visible": flops["num_visible"],
            "forward_flops": flops["forward"],
            "step_flops": flops["train_step"],
            "decoder_share": (flops["decoder"] + flops["head"]) / flops["forward"],
        })
    return rows


def _random_clip(model, batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """A random input batch ``(B, C, T, H, W)`` of the size ``model.config`` was built for
    (``T + 1`` frames for MAM2, whose motion target needs the frame after the clip)."""
    c = model.config
    frames = c.num_frames + 1 if hasattr(model, "split_clip") else c.num_frames
    return torch.randn(batch, 3, frames, c.img_size, c.img_size, generator=generator).to(device)


def pretrain_optimizer(params, impl: str = "default") -> torch.optim.Optimizer:
    """VideoMAE's pre-training AdamW (the lr does not change the cost); ``impl``: ``"default"`` (PyTorch's choice for the device), ``"forloop"``,
    ``"foreach"`` (one kernel per operation over all tensors) or ``"fused"`` (one kernel)."""
    kw = {"default": {}, "forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    if impl not in kw:
        raise ValueError(f"optimizer impl must be one of {sorted(kw)}, got {impl!r}")
    return torch.optim.AdamW(params, lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05, **kw[impl])


def training_step(name: str, *, batch: int, device, seed: int = 0, overrides: dict | None = None,
                   optimizer: str = "default", amp: str = "none", attention: str = "default",
                   compile: bool = False, channels_last: bool = False, dense: bool = False,
                   mask_ratio: float | None = None, size: int = 224) -> Callable[[], None]:
    """Build ``create(name, **overrides)`` and return one training step over a fixed random batch.

    attention: ``"default"`` (SDPA picks its fused kernel) or ``"math"`` (the explicit
    softmax(QKᵀ)V it falls back to). dense: run the encoder without a mask (ConvNet encoders
    only: ``model(x, None)``), the plain dense step the sparse path is compared with. size,
    mask_ratio: the image side and the share of hidden 32-pixel patches for a bare encoder
    (a pre-training model takes both from its config).
    """
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = create(name, **(overrides or {})).to(dev).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = pretrain_optimizer([p for p in model.parameters() if p.requires_grad], optimizer)
    g = torch.Generator().manual_seed(seed)
    if dense or not hasattr(model, "make_mask"):  # a bare encoder: (B, 3, H, W) images, 32-px mask grid
        x = torch.randn(batch, 3, size, size, generator=g).to(dev)  # (B, 3, H, W)
        n = (size // 32) ** 2
        ratio = 0.6 if mask_ratio is None else mask_ratio
        mask = None if dense else (torch.rand(batch, n, generator=g).argsort(1) < round(ratio * n)).to(dev)
        run = (lambda m: m(x, mask).float().square().mean())
    else:
        x = _random_clip(model, batch, g, dev)  # (B, C, T, H, W)
        mask = model.make_mask(x.cpu(), generator=g).to(dev)
        if mask_ratio is not None:
            raise ValueError("mask_ratio applies to bare encoders; set it in overrides for pre-training models")
        run = (lambda m: m(x, mask).loss)
    forward = torch.compile(model) if compile else model
    if attention == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernel = lambda: sdpa_kernel(SDPBackend.MATH)  # noqa: E731
    elif attention == "default":
        kernel = contextlib.nullcontext
    else:
        raise ValueError(f"attention must be 'default' or 'math', got {attention!r}")
    if amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {amp!r}")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step() -> None:
        with kernel(), (torch.autocast(dev.type, dtype=dtype) if dtype else contextlib.nullcontext()):
            loss = run(forward)
        loss.float().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(dev)

    step.model, step.optimizer, step.inputs = model, opt, x  # for inspection
    return step


def measure_step(name: str, *, batch: int = 1, steps: int = 3, warmup: int = 1, device="auto",
                 overrides: dict | None = None, **options) -> dict:
    """Median seconds of a training step (forward + backward + AdamW) of ``create(name)``.

    ``options`` are those of the variants (``optimizer``, ``amp``, ``attention``, ``compile``,
    ``channels_last``). Returns ``{"name", "batch", "seconds", "times"}``.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be ≥ 1 and warmup ≥ 0, got steps={steps}, warmup={warmup}")
    step = training_step(name, batch=batch, device=device, overrides=overrides, **options)
    times = time_interleaved({name: step}, rounds=steps, warmup=warmup)["wall"][name]
    return {"name": name, "batch": batch, "seconds": statistics.median(times), "times": times}


def predicted_step_seconds(step_flops: float, peak_flops: float, mfu: float) -> float:
    """``step_flops / (peak_flops · mfu)``: the step time a device reaching ``mfu`` of its peak
    would take. A prediction, to be replaced by a measurement (``maskvid-edu bench``)."""
    if not (step_flops > 0 and peak_flops > 0 and 0 < mfu <= 1):
        raise ValueError(f"need step_flops > 0, peak_flops > 0 and 0 < mfu ≤ 1, got {step_flops}, {peak_flops}, {mfu}")
    return step_flops / (peak_flops * mfu)


def time_variants(variants: dict[str, Variant], *, steps: int = 5, warmup: int = 1) -> list[dict]:
    """Time every variant's step, interleaved, and compare each with the first (the baseline).

    Each factory is called once and its step run once (building the model; ``torch.compile``
    variants compile during that first step), timed as ``setup_s``. Then every variant runs
    ``warmup`` more untimed steps, in turn, so that none is timed while another still warms the
    caches; then ``steps`` timed rounds of one step each, the order rotated by one every round so
    that no variant always runs first. Returns one dict per variant: ``name``, ``ms`` (median ms
    per step), ``vs_baseline`` (``ms / ms of the first``; below 1 is faster), ``setup_s`` and
    ``times`` (seconds).
    """
    if not variants:
        raise ValueError("variants is empty: give at least a baseline")
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be ≥ 1 and warmup ≥ 0, got steps={steps}, warmup={warmup}")
    built, setup = {}, {}
    for name, factory in variants.items():
        t0 = time.perf_counter()
        built[name] = factory()
        built[name]()
        setup[name] = time.perf_counter() - t0
    times = time_interleaved(built, rounds=steps, warmup=warmup, order="rotate")["wall"]
    base = statistics.median(next(iter(times.values())))
    return [{"name": name, "ms": 1e3 * statistics.median(t), "vs_baseline": statistics.median(t) / base,
             "setup_s": setup[name], "times": t} for name, t in times.items()]


def vit_variants(name: str = "videomae_vit_demo", *, batch: int = 8, device="auto", compile: bool = False,
                 overrides: dict | None = None) -> dict[str, Variant]:
    """The optimisations of a ViT pre-training step, each alone on top of the baseline.

    baseline: SDPA's fused attention kernel, AdamW as PyTorch picks it for the device, float32.
    Then: AdamW one tensor at a time (``forloop``), over all tensors per operation (``foreach``)
    and as one fused kernel; attention through the explicit math path (what SDPA replaces);
    activation checkpointing (recompute each block in backward: memory for time); bf16 autocast;
    and, with ``compile=True``, ``torch.compile`` (its compile time shows in ``setup_s``).
    """
    o = dict(overrides or {})

    def v(**kw) -> Variant:
        over = {**o, **kw.pop("overrides", {})}
        return lambda: training_step(name, batch=batch, device=device, overrides=over, **kw)

    variants = {
        "baseline (SDPA, AdamW default, fp32)": v(),
        "AdamW one tensor at a time": v(optimizer="forloop"),
        "AdamW foreach": v(optimizer="foreach"),
        "AdamW fused": v(optimizer="fused"),
        "attention without SDPA's kernel (math)": v(attention="math"),
        "activation checkpointing": v(overrides={"use_checkpoint": True}),
        "bf16 autocast": v(amp="bf16"),
    }
    if compile:
        variants["torch.compile"] = v(compile=True)
    return variants


def convnet_variants(name: str = "encoder_convnextv2_demo", *, batch: int = 8, size: int = 64, device="auto",
                     mask_ratio: float = 0.6) -> dict[str, Variant]:
    """A sparse ConvNet encoder step: the dense step (no mask) as baseline, then the
    masked-dense sparse path (what VideoMAC pre-trains with), alone and with channels-last
    weights and activations (NHWC, what GPU tensor cores want), and bf16 autocast."""
    def v(**kw) -> Variant:
        return lambda: training_step(name, batch=batch, device=device, size=size, mask_ratio=mask_ratio, **kw)

    return {
        "dense step (no mask)": v(dense=True),
        "sparse, masked-dense": v(),
        "sparse + channels-last": v(channels_last=True),
        "sparse + bf16 autocast": v(amp="bf16"),
    }


def format_variants(rows: list[dict], title: str = "") -> str:
    """A plain-text table of :func:`time_variants` results."""
    width = max(len(r["name"]) for r in rows)
    lines = [title] if title else []
    lines.append(f"{'variant':<{width}}  {'ms/step':>8}  {'× baseline':>10}")
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['ms']:8.1f}  {r['vs_baseline']:10.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Memory against batch size and mask ratio
# ---------------------------------------------------------------------------------------------


def memory_sweep(name: str, *, batches=(1, 2, 4, 8), ratios=(0.5, 0.75, 0.9, 0.95), amp: str = "none",
                 device="cpu", overrides: dict | None = None, seed: int = 0) -> list[dict]:
    """:func:`maskvid_edu.measure.memory.training_memory` of ``create(name, mask_ratio=ρ)`` for every
    batch size and mask ratio: one dict per pair with ``batch``, ``ratio`` and the byte counts."""
    dev = resolve_device(device)
    rows = []
    for ratio in ratios:
        torch.manual_seed(seed)
        model = create(name, **{**(overrides or {}), "mask_ratio": ratio}).to(dev)
        for batch in batches:
            g = torch.Generator().manual_seed(seed)
            video = _random_clip(model, batch, g, dev)  # (B, C, T, H, W)
            rows.append({"batch": batch, "ratio": ratio, **training_memory(model, video, amp=amp)})
    return rows
