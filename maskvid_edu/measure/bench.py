"""Benchmarks: our models side by side with the reference implementation, in one run.

:func:`bench_pretrain` times one VideoMAE pre-training step — forward, backward and an AdamW
update — of our model and of transformers' ``VideoMAEForPreTraining`` built with the same
config, holding the *same weights* (copied with :func:`maskvid_edu.checkpoints.to_transformers`),
fed the same clip and the same mask. Steps alternate between the two (ours, theirs, theirs,
ours, …) so a slowdown of a shared machine hits both alike, and the ratio of medians is reported.
Before timing, both compute the loss of the same batch; they must agree within a stated
tolerance, so we compare two implementations of the same function.

Peak memory: on CUDA the allocator's peak (``torch.cuda.max_memory_allocated``) during a step;
on CPU the peak resident set size of a fresh process that builds the model and runs two steps,
minus that process's size before building it (``VmHWM`` − ``VmRSS`` from ``/proc/self/status``,
the peak mark reset first), measured for each implementation in its own process so one cannot
hide the other's peak.

:func:`bench_sparse` times a ConvNet encoder's step on the sparse backends (``masked``,
``packed``) against the plain dense path, beside the FLOP limit of each
(:func:`sparse_route_macs`), and :func:`bench_rows` runs the parts of ``maskvid-edu bench`` (pretrain, FLOPs
and MFU, sparse, MAM2, optimisations, loader) into the one table :func:`format_bench_table`
prints. Every timing goes through :func:`maskvid_edu.measure.timing.time_interleaved`.

Benchmarks are not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import resource
import statistics
import subprocess
import sys

import torch
import torch.nn as nn
from torch import Tensor

from ..data.synthetic import SyntheticConfig, SyntheticVideoDataset
from ..masking import tube_mask
from ..models import create, list_models
from ..models.convnextv2 import build_convnextv2
from ..models.videomae import VideoMAE
from ..sparse import PackedMap, SparseMap, SparseStem, set_backend
from ..utils import resolve_device
from .flops import loader_throughput, measured_matmul_peak, mfu, videomae_pretrain_flops
from .loader import bench_loader
from .scaling import pretrain_optimizer, time_variants, training_step, vit_variants
from .throughput import bench_throughput
from .timing import time_interleaved

__all__ = ["bench_pretrain", "format_result", "transformers_config", "transformers_twin", "bench_sparse",
           "BENCH_PARTS", "bench_rows", "format_bench_table"]


def transformers_config(config, attn_implementation: str = "sdpa"):
    """The ``transformers.VideoMAEConfig`` describing the same network as our ``VideoMAEConfig``."""
    import transformers

    if config.normalization not in ("videomae", "none"):
        raise ValueError(f"transformers' VideoMAE supports normalization 'videomae' or 'none', got {config.normalization!r}")
    if config.layer_scale_init is not None or config.decoder_mask_ratio > 0:
        raise ValueError("transformers' VideoMAE has neither layer scale nor decoder masking")
    return transformers.VideoMAEConfig(
        image_size=config.img_size,
        patch_size=config.patch,
        num_channels=config.in_chans,
        num_frames=config.num_frames,
        tubelet_size=config.tubelet,
        hidden_size=config.dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.heads,
        intermediate_size=int(config.dim * config.mlp_ratio),
        decoder_hidden_size=config.decoder_dim,
        decoder_num_hidden_layers=config.decoder_depth,
        decoder_num_attention_heads=config.decoder_heads,
        decoder_intermediate_size=int(config.decoder_dim * config.mlp_ratio),
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=config.ln_eps,
        qkv_bias=config.qkv_bias,
        use_mean_pooling=False,  # the pre-training encoder ends with a LayerNorm
        norm_pix_loss=config.normalization == "videomae",
        attn_implementation=attn_implementation,
    )


def transformers_twin(model: VideoMAE, attn_implementation: str = "sdpa", copy_weights: bool = True):
    """transformers' ``VideoMAEForPreTraining`` with our model's config (and weights).

    transformers builds its decoder's final LayerNorm with PyTorch's default ``eps = 1e-5``
    whatever the config says; it is set to ours (1e-6, the official value) here.
    """
    import transformers
    from ..checkpoints import to_transformers

    twin = transformers.VideoMAEForPreTraining(transformers_config(model.config, attn_implementation))
    twin.decoder.norm.eps = model.config.ln_eps
    if copy_weights:
        twin.load_state_dict(to_transformers(model), strict=True)
    return twin


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _step_fn(kind: str, model, video, mask, device, dtype):
    opt = pretrain_optimizer(model.parameters())
    hf_video = video.transpose(1, 2).contiguous() if kind == "transformers" else None  # (B, T, C, H, W)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            if kind == "ours":
                loss = model(video, mask).loss
            else:
                loss = model(hf_video, bool_masked_pos=mask).loss
        loss.backward()
        opt.step()
        return loss.item()

    return step


def _cpu_peak_worker(kind: str, name: str, overrides: dict, batch: int, dtype_name: str, seed: int) -> float:
    """Run in a fresh process: peak RSS growth (MiB) for building ``kind`` and two training steps."""
    # both import transformers' model code before the baseline, so neither is charged for code
    from transformers import VideoMAEForPreTraining

    with torch.device("meta"):
        config = create(name, **overrides).config  # the config only, nothing allocated
    before = _rss_kib(reset_peak=True)
    torch.manual_seed(seed)
    if kind == "ours":
        model = create(name, **overrides)
    else:
        model = VideoMAEForPreTraining(transformers_config(config))
    video = torch.randn(batch, config.in_chans, config.num_frames, config.img_size, config.img_size)
    mask = tube_mask(batch, config.grid, config.mask_ratio, generator=torch.Generator().manual_seed(seed))
    step = _step_fn(kind, model, video, mask, torch.device("cpu"), getattr(torch, dtype_name))
    step()
    step()
    return (_peak_rss_kib() - before) / 1024


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kib(reset_peak: bool = False) -> int:
    """Current resident set size (KiB); optionally reset the kernel's peak mark to it (Linux).

    ``getrusage``'s ``ru_maxrss`` would not do here: Linux carries the parent's peak into a
    child across ``exec``, so a child started by a big process reports the parent's peak.
    """
    if reset_peak:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # "5" resets the peak RSS (VmHWM) to the current RSS
        except OSError:
            pass
    rss = _status_kib("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss_kib() -> int:
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_peak_mib(kind: str, name: str, overrides: dict, batch: int, dtype: torch.dtype, seed: int) -> float:
    """:func:`_cpu_peak_worker` in a child interpreter (a clean process, whatever the caller is)."""
    args = json.dumps([kind, name, overrides, batch, str(dtype).replace("torch.", ""), seed])
    code = (
        "import json, sys; from maskvid_edu.measure.bench import _cpu_peak_worker; "
        "print(json.dumps(_cpu_peak_worker(*json.loads(sys.argv[1]))))"
    )
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {kind} failed:\n{proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1]))


def bench_pretrain(
    model_name: str = "videomae_vit_b",
    batch: int = 1,
    frames: int = 16,
    size: int = 224,
    steps: int = 3,
    warmup: int = 2,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
    mask_ratio: float = 0.9,
    attn_implementation: str = "sdpa",
    memory: bool = True,
    threads: int | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> dict:
    """Time our pre-training step against transformers' on the same weights, mask and clip.

    model_name: a registered VideoMAE model; frames, size: the clip ``(batch, 3, frames, size, size)``.
    steps: timed steps per implementation (after ``warmup`` untimed ones).
    dtype: ``torch.float32``, or ``torch.bfloat16`` / ``torch.float16`` to run under autocast.
    attn_implementation: transformers' attention backend (``"sdpa"``, its default, or ``"eager"``).
    memory: also measure peak memory (on CPU this spawns one process per implementation).

    threads: torch's intra-op threads during the run (None: leave as is).

    Returns a dict with ``ms_ours``, ``ms_transformers`` (median wall-clock ms per step),
    ``speedup`` (theirs / ours), ``cpu_ms_*`` and ``cpu_speedup`` (process CPU time per step: on
    a shared machine less sensitive to other load than wall clock),
    the raw ``times_*`` lists, ``loss_ours``, ``loss_transformers``, ``loss_abs_diff``,
    ``loss_tolerance``, ``peak_mib_*`` (when measured) and the settings; prints a table when
    ``verbose``. Raises ``AssertionError`` if the two losses disagree beyond the tolerance:
    ``|Δ| ≤ 1e-4·max(1, |loss|)`` in float32, ``2e-2·max(1, |loss|)`` under autocast.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be ≥ 1 and warmup ≥ 0, got steps={steps}, warmup={warmup}")
    if threads is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return bench_pretrain(model_name, batch, frames, size, steps, warmup, device, dtype, mask_ratio,
                                  attn_implementation, memory, None, seed, verbose)
        finally:
            torch.set_num_threads(previous)
    dev = resolve_device(device)
    overrides = dict(num_frames=frames, img_size=size, mask_ratio=mask_ratio)
    torch.manual_seed(seed)
    ours = create(model_name, **overrides)
    if not isinstance(ours, VideoMAE):
        raise ValueError(f"{model_name!r} is not a VideoMAE model")
    theirs = transformers_twin(ours, attn_implementation)
    ours.to(dev).train()
    theirs.to(dev).train()

    g = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, 3, frames, size, size, generator=g).to(dev)  # (B, C, T, H, W)
    mask = ours.make_mask(video.cpu(), generator=g).to(dev)  # (B, N)

    # 1. the same function: equal losses on the same batch before any update
    with torch.no_grad(), _autocast(dev, dtype):
        loss_ours = ours(video, mask).loss.item()
        loss_theirs = theirs(video.transpose(1, 2), bool_masked_pos=mask).loss.item()
    tolerance = (1e-4 if dtype == torch.float32 else 2e-2) * max(1.0, abs(loss_ours))
    diff = abs(loss_ours - loss_theirs)
    if not diff <= tolerance:
        raise AssertionError(f"losses differ: ours {loss_ours:.6g} vs transformers {loss_theirs:.6g} (|Δ| {diff:.3g} > {tolerance:.3g})")

    # 2. interleaved timing
    fns = {
        "ours": _step_fn("ours", ours, video, mask, dev, dtype),
        "transformers": _step_fn("transformers", theirs, video, mask, dev, dtype),
    }
    peak_cuda = {"ours": 0.0, "transformers": 0.0}
    base = {}

    def reset_peak(kind: str) -> None:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base[kind] = torch.cuda.memory_allocated(dev)

    def read_peak(kind: str) -> None:
        if dev.type == "cuda":
            peak_cuda[kind] = max(peak_cuda[kind], (torch.cuda.max_memory_allocated(dev) - base[kind]) / 2**20)

    seconds = time_interleaved(fns, rounds=steps, warmup=warmup, order="alternate", clocks=("wall", "process"),
                               device=dev, before=reset_peak, after=read_peak)
    times = {kind: [s * 1000 for s in t] for kind, t in seconds["wall"].items()}
    cpu_times = {kind: [s * 1000 for s in t] for kind, t in seconds["process"].items()}

    result = {
        "model": model_name, "batch": batch, "frames": frames, "size": size, "mask_ratio": mask_ratio,
        "device": str(dev), "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
        "attn_implementation": attn_implementation, "steps": steps,
        "times_ours": times["ours"], "times_transformers": times["transformers"],
        "ms_ours": statistics.median(times["ours"]), "ms_transformers": statistics.median(times["transformers"]),
        "cpu_ms_ours": statistics.median(cpu_times["ours"]),
        "cpu_ms_transformers": statistics.median(cpu_times["transformers"]),
        "loss_ours": loss_ours, "loss_transformers": loss_theirs, "loss_abs_diff": diff, "loss_tolerance": tolerance,
    }
    result["speedup"] = result["ms_transformers"] / result["ms_ours"]
    result["cpu_speedup"] = result["cpu_ms_transformers"] / result["cpu_ms_ours"]
    if memory:
        if dev.type == "cuda":
            result["peak_mib_ours"], result["peak_mib_transformers"] = peak_cuda["ours"], peak_cuda["transformers"]
            result["memory_kind"] = "CUDA allocator peak during a step, above the memory held before it"
        else:
            del fns, ours, theirs
            for kind in ("ours", "transformers"):
                result[f"peak_mib_{kind}"] = _cpu_peak_mib(kind, model_name, overrides, batch, dtype, seed)
            result["memory_kind"] = "peak RSS growth of a fresh process: build + 2 training steps"
    if verbose:
        print(format_result(result))
    return result


def format_result(r: dict) -> str:
    """The table :func:`bench_pretrain` prints."""
    head = (
        f"VideoMAE pre-training step (forward + backward + AdamW) — {r['model']}, batch {r['batch']}, "
        f"{r['frames']}×{r['size']}×{r['size']}, mask {r['mask_ratio']}, {r['device']} {r['dtype']}, "
        f"{r['threads']} threads, transformers attention '{r['attn_implementation']}', {r['steps']} timed steps each"
    )
    rows = [f"{'implementation':<16}{'median ms/step':>16}{'min ms':>10}{'CPU ms/step':>13}{'peak MiB':>11}"]
    for kind, label in (("ours", "maskvid_edu"), ("transformers", "transformers")):
        mem = r.get(f"peak_mib_{kind}")
        rows.append(
            f"{label:<16}{r['ms_' + kind]:>16.1f}{min(r['times_' + kind]):>10.1f}{r['cpu_ms_' + kind]:>13.1f}"
            f"{(f'{mem:.0f}' if mem is not None else '-'):>11}"
        )
    tail = (
        f"speed-up (transformers / ours): {r['speedup']:.2f}× wall clock, {r['cpu_speedup']:.2f}× CPU time; loss ours {r['loss_ours']:.6f} vs transformers "
        f"{r['loss_transformers']:.6f} (|Δ| {r['loss_abs_diff']:.2e} ≤ {r['loss_tolerance']:.1e})"
    )
    if "memory_kind" in r:
        tail += f"\nmemory: {r['memory_kind']}"
    return "\n".join([head, *rows, tail])


# --------------------------------------------------------------------------------------------
# the sparse path of a ConvNet against its dense path
# --------------------------------------------------------------------------------------------


def sparse_route_macs(model: nn.Module, x: Tensor, mask: Tensor | None = None) -> int:
    """Multiply-adds of the convolutions and linear layers of one forward pass, counted the way
    the model's sparse backend computes them (forward hooks on every ``nn.Conv2d``/``nn.Linear``).

    A layer's cost is ``sites × C_out × C_in / groups × k²``, where ``sites`` is what the backend
    actually touches: every site of the dense grid for the ``masked`` backend and for any
    convolution that mixes sites, the visible rows for the ``packed`` backend's per-site layers
    (linears and 1×1 stride-1 convolutions). The ratio of two such counts is the *FLOP limit* of
    a backend: the step-time ratio it would reach if time went only into multiply-adds (the
    backward pass costs twice the forward for every layer alike, so the ratio holds for a step).
    Element-wise work (norms, activations, gathers) is left out, as in :mod:`~maskvid_edu.measure.flops`.
    """
    total = 0

    def sites(t) -> int:
        if isinstance(t, PackedMap):
            return t.rows.shape[0]
        if isinstance(t, SparseMap):
            return t.features.shape[:-1].numel()
        return t.numel() // t.shape[1] if t.dim() == 4 else t.numel() // t.shape[-1]

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += sites(inputs[0]) * module.in_features * module.out_features
            return
        k = module.kernel_size[0] * module.kernel_size[1]
        per_site = module.out_channels * module.in_channels // module.groups * k
        n = sites(output)
        if isinstance(output, PackedMap) and not (k == 1 and module.stride[0] == 1 and module.groups == 1):
            n = math.prod(output.grid)  # scatter → dense convolution → gather: every site of the grid
        total += n * per_site

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()
            model(x, mask)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total


def _backend_of(model: nn.Module) -> str | None:
    return next((m.backend for m in model.modules() if isinstance(m, SparseStem)), None)


def bench_sparse(model: nn.Module | None = None, *, batch: int = 2, size: int = 224, mask_ratio: float = 0.6,
                 steps: int = 3, warmup: int = 1, device: str = "cpu", print_result: bool = True,
                 backends: tuple[str, ...] = ("masked",)) -> dict:
    """Time a training step (forward + backward) of an encoder on each sparse backend of
    ``backends`` versus the plain dense path (``mask=None``), measured in the same run (the steps
    in the same order every round, :func:`~maskvid_edu.measure.timing.time_interleaved`).

    Every backend runs a copy of ``model`` with the same weights (:func:`~maskvid_edu.sparse.set_backend`).

    Args:
        model: an encoder ``model(x, mask) -> (B, C, h, w)`` with a 32-pixel mask grid; by default
            ``convnextv2_atto``.
        batch, size: input ``(batch, 3, size, size)``.
        mask_ratio: fraction of 32-pixel patches hidden in the sparse steps.
        backends: sparse backends to time (``"masked"``, ``"packed"``, ``"minkowski"``).
    Returns:
        ``{"dense_s": …, "<backend>_s": …, "<backend>_ratio": <backend>_s / dense_s,
        "<backend>_flop_ratio": …}`` (median seconds per step; the FLOP ratio is
        :func:`sparse_route_macs` of the backend over the dense count). With ``"masked"`` among the
        backends, ``"sparse_s"`` and ``"ratio"`` repeat its time and ratio.
    """
    if model is None:
        model = build_convnextv2("atto")
    model = model.to(device).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    n = (size // 32) ** 2
    n_masked = int(round(mask_ratio * n))
    mask = torch.zeros(batch, n, dtype=torch.bool)
    for i in range(batch):
        mask[i, torch.randperm(n, generator=g)[:n_masked]] = True
    mask = mask.to(device)
    models = {b: model if b == _backend_of(model) else set_backend(copy.deepcopy(model), b) for b in backends}

    def step(m, msk):
        def run() -> None:
            m.zero_grad(set_to_none=True)
            m(x, msk).float().square().mean().backward()
        return run

    times = time_interleaved({"dense": step(model, None), **{b: step(models[b], mask) for b in backends}},
                             rounds=steps, warmup=warmup, order="fixed", device=device)["wall"]

    def median(ts: list[float]) -> float:
        return sorted(ts)[len(ts) // 2]

    dense_macs = sparse_route_macs(model, x, None)
    result = {"dense_s": median(times["dense"])}
    for b in backends:
        result[f"{b}_s"] = median(times[b])
        result[f"{b}_ratio"] = result[f"{b}_s"] / result["dense_s"]
        result[f"{b}_flop_ratio"] = sparse_route_macs(models[b], x, mask) / dense_macs
    if "masked" in backends:
        result["sparse_s"], result["ratio"] = result["masked_s"], result["masked_ratio"]
    if print_result:
        parts = [f"dense step {result['dense_s'] * 1e3:.1f} ms"]
        parts += [f"{'masked-sparse' if b == 'masked' else b} step {result[f'{b}_s'] * 1e3:.1f} ms" for b in backends]
        ratios = ", ".join(f"{result[f'{b}_ratio']:.2f}" for b in backends)
        print(" | ".join(parts) + f" | ratio {ratios} (batch {batch}, {size}², mask {mask_ratio:.0%}, {device})")
    return result


# --------------------------------------------------------------------------------------------
# ``maskvid-edu bench``: side-by-side measurements in one run, one table
# --------------------------------------------------------------------------------------------

#: the parts ``maskvid-edu bench --what`` can run, in the order of its table
BENCH_PARTS = ("pretrain", "flops", "sparse", "mam2", "optim", "loader", "train")


def bench_rows(args) -> tuple[str, list[tuple[str, str, str, str, str]]]:
    """Run the measurements ``args.what`` asks for; return the table's title and rows
    ``(measurement, maskvid_edu, reference, ratio, notes)``.

    ``args``: what ``maskvid-edu bench`` parses — ``what`` (comma-separated parts of
    :data:`BENCH_PARTS`), ``model``, ``batch``, ``steps``, ``device``, ``dtype``, ``workers``,
    ``threads``, ``no_memory``, ``quick`` (any object with those attributes).
    """
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = sorted(set(what) - set(BENCH_PARTS))
    if unknown or not what:
        raise ValueError(f"--what: unknown part(s) {unknown or what}; choose a comma-separated subset of {','.join(BENCH_PARTS)}")
    for name, value in (("--batch", args.batch), ("--steps", args.steps)):
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    dev = resolve_device(args.device)
    model_name = args.model or ("videomae_vit_demo" if args.quick else "videomae_vit_b")
    if model_name not in list_models() or not model_name.startswith("videomae_"):
        raise ValueError(f"--model {model_name!r} must be a registered VideoMAE model: {', '.join(list_models('videomae_'))}")
    with torch.device("meta"):
        config = create(model_name).config  # sizes only, nothing allocated
    frames, size = config.num_frames, config.img_size
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    title = (f"maskvid-edu bench — {model_name}, batch {args.batch}, {frames}×{size}×{size}, mask {config.mask_ratio}, "
             f"{dev} {args.dtype}, {torch.get_num_threads()} threads, median of {args.steps} steps")
    rows = []

    timing = None
    if "pretrain" in what or "flops" in what:
        timing = bench_pretrain(model_name, batch=args.batch, frames=frames, size=size, steps=args.steps,
                                warmup=1 if args.quick else 2, device=dev, dtype=dtype, mask_ratio=config.mask_ratio,
                                memory="pretrain" in what and not args.no_memory, verbose=False)
    if "pretrain" in what:
        rows.append(("pretrain step ms (fwd+bwd+AdamW)", f"{timing['ms_ours']:.1f}",
                     f"transformers {timing['ms_transformers']:.1f}", f"{timing['speedup']:.2f}×",
                     f"speed-up = theirs / ours; same weights, clip, mask; |Δloss| {timing['loss_abs_diff']:.1e}"))
        if "peak_mib_ours" in timing:
            rows.append(("pretrain peak memory MiB", f"{timing['peak_mib_ours']:.0f}",
                         f"transformers {timing['peak_mib_transformers']:.0f}",
                         f"{timing['peak_mib_ours'] / max(timing['peak_mib_transformers'], 1e-9):.2f}×",
                         "ours / theirs; " + timing["memory_kind"]))
    if "flops" in what:
        counts = videomae_pretrain_flops(config, batch=args.batch)
        step_s = timing["ms_ours"] / 1000
        peak = measured_matmul_peak(dev, dtype, repeats=3)
        achieved = counts["train_step"] / step_s
        rows.append(("model FLOPs per step", f"{counts['train_step'] / 1e9:.2f} G", "-", "-",
                     f"3 × forward; forward {counts['forward'] / 1e9:.2f} G (encoder on {counts['num_visible']} visible, "
                     f"decoder on {counts['num_tokens']} tokens)"))
        rows.append(("achieved FLOP/s (MFU)", f"{achieved / 1e9:.1f} G/s", f"matmul peak {peak / 1e9:.1f} G/s",
                     f"{mfu(counts['train_step'], step_s, peak):.1%}",
                     f"MFU = FLOPs / step time / measured {args.dtype} matmul peak"))
    if "sparse" in what:
        cases = ([("encoder_convnextv2_demo", 64, 0.6)] if args.quick else
                 [("encoder_convnextv2_small", 224, 0.6), ("encoder_convnextv2_small", 224, 0.75),
                  ("encoder_mac_resnet50", 224, 0.75)])
        for sparse_name, sparse_size, ratio in cases:
            torch.manual_seed(0)
            r = bench_sparse(create(sparse_name), batch=args.batch, size=sparse_size, mask_ratio=ratio,
                             steps=args.steps, warmup=1, device=str(dev), print_result=False,
                             backends=("masked", "packed"))
            label = "ConvNeXt V2" if "convnextv2" in sparse_name else "ResNet"
            rows.append((f"{label} step ms (fwd+bwd)",
                         f"packed {r['packed_s'] * 1e3:.1f}  masked {r['masked_s'] * 1e3:.1f}",
                         f"dense {r['dense_s'] * 1e3:.1f}",
                         f"{r['packed_ratio']:.2f}× (FLOPs {r['packed_flop_ratio']:.2f}×)  "
                         f"{r['masked_ratio']:.2f}× ({r['masked_flop_ratio']:.2f}×)",
                         f"{sparse_name}, {sparse_size}², mask {ratio}; ratio = backend / dense, "
                         "FLOPs = the backend's multiply-adds / dense"))
    if "mam2" in what or "optim" in what:
        amp = "bf16" if dtype == torch.bfloat16 else "none"
    if "mam2" in what:  # the MAM2 step of the same size next to VideoMAE's, interleaved
        mam2_name = model_name.replace("videomae_", "mam2_")
        if mam2_name not in list_models():
            raise ValueError(f"--what mam2: no MAM2 model of the size of {model_name!r} ({', '.join(list_models('mam2_'))})")

        def step(name):
            return lambda: training_step(name, batch=args.batch, device=dev, amp=amp)

        r = time_variants({"videomae": step(model_name), "mam2": step(mam2_name)}, steps=args.steps)
        rows.append(("MAM2 step ms (fwd+bwd+AdamW)", f"{r[1]['ms']:.1f}", f"VideoMAE {r[0]['ms']:.1f}",
                     f"{r[1]['vs_baseline']:.2f}×", f"{mam2_name}: appearance + motion decoders, pixel targets; "
                                                    "ratio = MAM2 / VideoMAE"))
    if "optim" in what:  # what each optimisation of the step buys, each against the plain step
        variants = vit_variants(model_name, batch=args.batch, device=dev, compile=dev.type == "cuda")
        for r in time_variants(variants, steps=args.steps)[1:]:
            rows.append((f"step with {r['name']}", f"{r['ms']:.1f}", "default step", f"{r['vs_baseline']:.2f}×",
                         "ms / ms of the default step (SDPA, AdamW default, fp32)"
                         + (f"; compiling took {r['setup_s']:.0f} s" if r["name"] == "torch.compile" else "")))
    if "loader" in what:
        batches = 3 if args.quick else 10
        workers = 0 if args.quick and args.workers is None else (2 if args.workers is None else args.workers)
        batch_size = max(args.batch, 2)
        dataset = SyntheticVideoDataset(SyntheticConfig(num_frames=frames, size=size,
                                                        num_samples=(batches + 1) * batch_size))
        r = loader_throughput(dataset, batch_size=batch_size, num_workers=workers, batches=batches)
        rows.append(("data loader clips/s", f"{r['clips_per_s']:.1f}", "-", "-",
                     f"synthetic {frames}×{size}², render + normalise, {workers} workers, batch {batch_size}"))
        rows.extend(video_loader_rows(args))
    if "train" in what:  # the demo recipes through the trainer, as shipped and with each speed lever
        quick = dict(methods=("videomae",), steps=8, rounds=1)  # --quick: one recipe, a few steps
        table = bench_throughput(**(quick if args.quick else dict(steps=60, rounds=2)))
        for r in table:
            if r["lever"] == "as shipped":
                shipped = r["clips_per_s"]
                rows.append((f"{r['method']}_demo training clips/s", f"{shipped:.1f}", "-", "-",
                             f"recipe as shipped, batch {r['batch_size']}, steps 1–{r['steps']}"))
                continue
            rows.append((f"{r['method']}_demo with {r['lever']}", f"{r['clips_per_s']:.1f}",
                         f"as shipped {shipped:.1f}", f"{r['vs_shipped']:.2f}×",
                         f"clips/s / clips/s as shipped; |Δ loss| at step {r['steps']} {r['loss_diff']:.1e}"))
    return title, rows


def video_loader_rows(args) -> list[tuple[str, str, str, str, str]]:
    """The ``loader`` part on video files (``args.videos``, default the shipped clip): the bare
    decode, VideoMAE's reference pipeline and ours, 16 × 224² clips, in clips/s per process
    (see :mod:`maskvid_edu.measure.loader`)."""
    quick = bool(getattr(args, "quick", False))
    chosen = getattr(args, "workers", None)
    workers = (0,) if quick and chosen is None else ((0, 1, 2) if chosen is None else tuple(sorted({0, chosen})))
    table = bench_loader(getattr(args, "videos", None) or None, clips=8 if quick else 24,
                         workers=workers, views=(1, 2) if quick else (1, 2, 4),
                         batch_size=2 if quick else 4, rounds=1 if quick else 3)
    reference = next(r["clips_per_s"] for r in table if r["name"].startswith("VideoMAE reference"))
    rows = []
    for r in table:
        ours = "workers" in r
        note = "clips/s per process, one thread"
        if ours:
            note = "clips/s (16×224², stride 4), median of rounds; views count as clips"
            if r["workers"] is not None:
                note += "; batches assembled"
        rows.append((f"video {r['name']}", f"{r['clips_per_s']:.1f}", f"VideoMAE {reference:.1f}" if ours else "-",
                     f"{r['vs_reference']:.2f}× ref, {r['vs_decode']:.2f}× decode", note))
    return rows


def format_bench_table(title: str, rows) -> str:
    """The table ``maskvid-edu bench`` prints: one row per measurement, reference side by side."""
    head = ("measurement", "maskvid_edu", "reference", "ratio", "notes")
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(4)] if rows else [len(h) for h in head[:4]]
    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells[:4], widths)) + "  " + cells[4]
    rule = "-" * (sum(widths) + 2 * 4 + len(head[4]))
    return "\n".join([title, line(head), rule, *(line(r) for r in rows)])
