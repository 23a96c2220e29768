"""What a step costs: analytic FLOP counts, the machine's matmul peak, MFU, loader throughput.

This is the course's one analytic FLOP model: :func:`vit_block_flops` counts a transformer
block, and everything else is built from it — a ViT encoder (:func:`vit_flops`), a VideoMAE
pre-training pass part by part (:func:`pretrain_flops`, with the tokens each part sees from
:func:`token_counts`, whose hidden count is :func:`~maskvid_edu.masking.mask_count`), and its
dict form for a batch (:func:`videomae_pretrain_flops`). Chapter 2, chapter 7
(:func:`maskvid_edu.measure.scaling.model_sizes`) and ``maskvid-edu bench`` all call it, so
they agree to the digit.

Counting convention (the one ``torch.utils.flop_counter`` uses): only matrix products count,
and a product of an ``(m × k)`` by a ``(k × n)`` matrix costs ``2·m·k·n`` FLOPs (one multiply
and one add per term). Element-wise work — LayerNorm, GELU, softmax, bias adds, residuals — is
left out: in a ViT it is well under 1 % of the total.

Papers often quote *multiply-accumulates* under the name "FLOPs" (fvcore's convention): the
VideoMAE paper's "180 G" for a ViT-B forward on 16×224² is ``≈ 180·10⁹`` multiply-adds, i.e.
``≈ 361·10⁹`` FLOPs in the convention here. Divide by 2 to compare with such tables.

One transformer block of width ``D``, MLP width ``H = mlp_ratio·D``, on ``n`` tokens::

    qkv projection        2·n·D·3D
    attention Q·Kᵀ        2·n·n·D      (heads × 2·n·n·(D/heads))
    attention A·V         2·n·n·D
    output projection     2·n·D·D
    MLP                   2·n·D·H + 2·n·H·D
    ─────────────────────────────────────────
    total                 8·n·D² + 4·n·H·D + 4·n²·D     (= 24·n·D² + 4·n²·D at H = 4D)

A training step (forward + backward) is counted as **3 × forward**: the backward pass of a
matrix product needs two products of the same size, one for the gradient of the input and one
for the gradient of the weight. (The patch embedding's input gradient is not needed, as pixels
do not require grad; the 3× rule overcounts that one product, a fraction of a percent at full
size.)

MFU (model FLOP utilisation) = model FLOPs per step / step time / peak FLOP/s of the device,
where the peak here is *measured* (a large square matmul, :func:`measured_matmul_peak`), not
the datasheet number.

The course's one GPU cost model
-------------------------------
Every GPU-hour estimate in the book is :func:`gpu_hours`: the training FLOPs of a run divided
by a datasheet peak (:data:`H100_BF16_PEAK`, 989 TFLOP/s of dense bf16 on an H100 SXM) times
one stated utilisation (:data:`ASSUMED_MFU`, 40 %, what a well-tuned ViT-B pre-training run
sustains when the loader keeps up). It is a prediction of compute alone. Papers report wall
time on their own machines, which includes waiting for video decoding; :func:`sustained_flops`
turns such a report into the FLOP/s it implies per GPU, the number to set beside a datasheet
peak (:data:`V100_FP16_PEAK` for VideoMAE's V100s).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch

from ..masking import mask_count
from ..utils import resolve_device
from .timing import time_interleaved

__all__ = [
    "vit_block_flops",
    "vit_flops",
    "FlopCount",
    "token_counts",
    "pretrain_flops",
    "videomae_pretrain_flops",
    "vjepa_pretrain_flops",
    "train_step_flops",
    "measured_matmul_peak",
    "mfu",
    "loader_throughput",
    "H100_BF16_PEAK",
    "V100_FP16_PEAK",
    "ASSUMED_MFU",
    "run_flops",
    "gpu_hours",
    "sustained_flops",
]

H100_BF16_PEAK = 989e12
"""NVIDIA H100 SXM datasheet: dense bfloat16 tensor-core FLOP/s (without sparsity)."""
V100_FP16_PEAK = 125e12
"""NVIDIA V100 SXM2 datasheet: float16 tensor-core FLOP/s."""
ASSUMED_MFU = 0.40
"""The one utilisation every GPU-hour estimate of the book assumes (a share of the peak)."""


def _matmul(m: int, k: int, n: int) -> int:
    """FLOPs of an ``(m × k) · (k × n)`` product: ``2·m·k·n``."""
    return 2 * m * k * n


def vit_block_flops(dim: int, num_tokens: int, mlp_ratio: float = 4.0) -> int:
    """Forward FLOPs of one transformer block on ``num_tokens`` tokens of width ``dim``.

    ``8·n·D² + 4·n·H·D + 4·n²·D`` with ``H = int(D·mlp_ratio)`` (see the module docstring);
    independent of the number of heads.
    """
    n, d = num_tokens, dim
    hidden = int(d * mlp_ratio)
    qkv = _matmul(n, d, 3 * d)  # (n, D)·(D, 3D)
    scores = _matmul(n, d, n)  # Q·Kᵀ over all heads: (n, D/h)·(D/h, n) × h
    mix = _matmul(n, n, d)  # A·V over all heads: (n, n)·(n, D/h) × h
    proj = _matmul(n, d, d)
    mlp = _matmul(n, d, hidden) + _matmul(n, hidden, d)
    return qkv + scores + mix + proj + mlp


def _check_tokens(num_tokens, name: str = "num_tokens") -> int:
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
        raise ValueError(f"{name} must be a positive int, got {num_tokens!r}")
    return num_tokens


def vit_flops(config, num_tokens: int | None = None, *, batch: int = 1, patch_embed: bool = True) -> int:
    """Forward FLOPs of a ViT encoder (:class:`~maskvid_edu.models.vit.ViTConfig`, or any config
    with ``dim, depth, mlp_ratio, in_chans, tubelet, patch``) on ``num_tokens`` tokens per clip.

    ``batch · (patch_embed + depth · block + head)`` where

    - patch embedding (tubelet ``k × p × p × C`` → ``D``): ``2·n·(C·k·p²)·D`` (if ``patch_embed``);
    - each block: :func:`vit_block_flops`;
    - classification head, when ``config.num_classes > 0``: ``2·D·num_classes`` per clip.

    num_tokens: tokens the blocks see (default: all of ``config``'s grid); in VideoMAE
    pre-training only the visible ones.
    """
    n = _check_tokens(num_tokens if num_tokens is not None else config.num_tokens)
    _check_tokens(batch, "batch")
    d = config.dim
    total = config.depth * vit_block_flops(d, n, config.mlp_ratio)
    if patch_embed:
        total += _matmul(n, config.in_chans * config.tubelet * config.patch**2, d)
    classes = getattr(config, "num_classes", 0) or 0
    if classes:
        total += _matmul(1, d, classes)
    return batch * total


class FlopCount(NamedTuple):
    """Forward FLOPs of one pre-training clip, by part (see :func:`pretrain_flops`)."""

    encoder_tokens: int
    decoder_tokens: int
    patch_embed: int
    encoder: int
    encoder_to_decoder: int
    decoder: int
    head: int

    @property
    def total(self) -> int:
        return self.patch_embed + self.encoder + self.encoder_to_decoder + self.decoder + self.head

    @property
    def encoder_side(self) -> int:
        """Tubelet embedding + encoder blocks."""
        return self.patch_embed + self.encoder

    @property
    def decoder_side(self) -> int:
        """Projection to the decoder + decoder blocks + pixel head."""
        return self.encoder_to_decoder + self.decoder + self.head


def token_counts(config, decoder_mask_ratio: float | None = None, *, mask_ratio: float | None = None) -> dict:
    """Token counts per clip for a VideoMAE config: ``{"tokens", "visible", "hidden", "decoded"}``.

    ``hidden`` is :func:`~maskvid_edu.masking.mask_count` of the config's mask type at
    ``mask_ratio`` (default: the config's; tube: ``t·⌊ρ·h·w⌋``, random: ``⌊ρ·N⌋``). ``decoded``
    is the number of tokens the decoder reconstructs: all hidden ones, or with VideoMAE V2's
    running-cell decoder mask at ``decoder_mask_ratio`` (default: the config's) the tokens that
    mask keeps — a fixed ``(1 − ρ_d)``-share of *all* tokens.
    """
    t, h, w = config.grid
    N = t * h * w
    ratio = config.mask_ratio if mask_ratio is None else mask_ratio
    hidden = mask_count(getattr(config, "mask_type", "tube"), (t, h, w), ratio)
    rho_d = getattr(config, "decoder_mask_ratio", 0.0) if decoder_mask_ratio is None else decoder_mask_ratio
    decoded = hidden if rho_d == 0 else N - mask_count("running_cell", (t, h, w), rho_d)
    return {"tokens": N, "visible": N - hidden, "hidden": hidden, "decoded": decoded}


def pretrain_flops(config, *, mask_ratio: float | None = None, encoder_all_tokens: bool = False,
                   decoder_mask_ratio: float | None = None) -> FlopCount:
    """Forward FLOPs of one pre-training clip for a :class:`~maskvid_edu.models.videomae.VideoMAEConfig`.

    Asymmetric (VideoMAE): tubelet embedding and encoder on the ``N_vis`` visible tokens; the
    decoder on ``N_vis + N_dec`` tokens (encoded visible + mask tokens); the pixel head on the
    ``N_dec`` reconstructed ones (:func:`token_counts`). With ``P = tubelet·p²·C`` values per
    tubelet and ``n_enc`` tokens in the encoder, per clip:

    - ``patch_embed``: ``2·n_enc·P·D``; ``encoder``: ``depth`` blocks (:func:`vit_block_flops`);
    - ``encoder_to_decoder``: ``2·n_enc·D·D_dec`` (no bias);
    - ``decoder``: ``decoder_depth`` blocks of width ``D_dec``;
    - ``head``: ``2·N_dec·D_dec·P``, only on the reconstructed tokens.

    ``encoder_all_tokens=True``: the encoder runs on all ``N`` tokens (hidden ones as a mask
    embedding, as in BEiT/SimMIM and MAE's "encoder with [M]" ablation) and the decoder on those
    ``N``. ``mask_ratio``, ``decoder_mask_ratio``: the encoder mask and VideoMAE V2's decoder
    mask (default: the config's). A training step costs about 3× the forward pass
    (:func:`train_step_flops`).
    """
    counts = token_counts(config, decoder_mask_ratio, mask_ratio=mask_ratio)
    P = config.patch_values
    n_enc = counts["tokens"] if encoder_all_tokens else counts["visible"]
    n_dec_in = counts["tokens"] if encoder_all_tokens else counts["visible"] + counts["decoded"]
    n_out = counts["decoded"]
    return FlopCount(
        encoder_tokens=n_enc,
        decoder_tokens=n_dec_in,
        patch_embed=_matmul(n_enc, P, config.dim),
        encoder=config.depth * vit_block_flops(config.dim, n_enc, config.mlp_ratio),
        encoder_to_decoder=_matmul(n_enc, config.dim, config.decoder_dim),
        decoder=config.decoder_depth * vit_block_flops(config.decoder_dim, n_dec_in, config.mlp_ratio),
        head=_matmul(n_out, config.decoder_dim, P),
    )


def videomae_pretrain_flops(model_or_config, mask_ratio: float | None = None, *, batch: int = 1) -> dict:
    """:func:`pretrain_flops` of a model or config for ``batch`` clips, as a dict of parts.

    model_or_config: a ``VideoMAE`` or a ``VideoMAEConfig`` (or a MAM2 one: its encoder and
        pixel-decoder share). mask_ratio: encoder mask ratio (default: the config's).

    Returns ``encoder`` (tubelet embedding + blocks on the visible tokens),
    ``encoder_to_decoder``, ``decoder`` (its blocks), ``head``, ``forward`` (their sum) and
    ``train_step`` (``3 × forward``), all for ``batch`` clips, plus the token counts
    ``num_tokens``, ``num_visible``, ``num_decoded`` of one clip.
    """
    config = getattr(model_or_config, "config", model_or_config)
    for field in ("decoder_dim", "decoder_depth", "grid", "patch_values"):
        if not hasattr(config, field):
            raise ValueError(f"model_or_config must be a VideoMAE model or VideoMAEConfig, got {type(model_or_config).__name__}")
    ratio = config.mask_ratio if mask_ratio is None else mask_ratio
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {ratio!r}")
    _check_tokens(batch, "batch")
    f = pretrain_flops(config, mask_ratio=ratio)
    parts = {"encoder": f.encoder_side, "encoder_to_decoder": f.encoder_to_decoder, "decoder": f.decoder,
             "head": f.head}
    out = {k: batch * v for k, v in parts.items()}
    out["forward"] = sum(out.values())
    out["train_step"] = train_step_flops(out["forward"])
    counts = token_counts(config, mask_ratio=ratio)
    out.update(num_tokens=counts["tokens"], num_visible=counts["visible"], num_decoded=counts["decoded"])
    return out


def vjepa_pretrain_flops(model_or_config, *, batch: int = 1) -> dict:
    """FLOPs of one V-JEPA pre-training step (:class:`~maskvid_edu.models.vjepa.VJEPAConfig`).

    With ``N`` tokens, ``M`` hidden (:func:`~maskvid_edu.masking.mask_count` of the config's mask)
    and ``N_vis = N − M`` visible, per clip, forward:

    - ``context_encoder``: the ViT on the ``N_vis`` visible tokens (:func:`vit_flops`);
    - ``predictor``: ``2·N_vis·D·D_p`` in, ``predictor_depth`` blocks of width ``D_p`` on
      ``N_vis + M = N`` tokens, ``2·M·D_p·D`` out;
    - ``target_encoder``: the ViT on all ``N`` tokens, forward only (no gradient).

    ``train_step = 3·(context_encoder + predictor) + target_encoder`` (backward ≈ 2× forward,
    none for the target). Returns those parts for ``batch`` clips, ``forward`` (their sum) and
    the token counts of one clip.
    """
    config = getattr(model_or_config, "config", model_or_config)
    for field in ("predictor_dim", "predictor_depth", "encoder_config"):
        if not hasattr(config, field):
            raise ValueError(f"model_or_config must be a VJEPA model or VJEPAConfig, got {type(model_or_config).__name__}")
    _check_tokens(batch, "batch")
    enc = config.encoder_config()
    N = enc.num_tokens
    M = mask_count(config.mask_type, enc.grid, config.mask_ratio)
    visible = N - M
    predictor = (_matmul(visible, config.dim, config.predictor_dim)
                 + config.predictor_depth * vit_block_flops(config.predictor_dim, N, config.mlp_ratio)
                 + _matmul(M, config.predictor_dim, config.dim))
    out = {
        "context_encoder": vit_flops(enc, visible, batch=batch),
        "predictor": batch * predictor,
        "target_encoder": vit_flops(enc, N, batch=batch),
    }
    out["forward"] = sum(out.values())
    out["train_step"] = train_step_flops(out["context_encoder"] + out["predictor"]) + out["target_encoder"]
    out.update(num_tokens=N, num_visible=visible, num_hidden=M)
    return out


def train_step_flops(forward_flops: int) -> int:
    """Forward + backward FLOPs from forward FLOPs: ``3 × forward`` (see the module docstring)."""
    return 3 * forward_flops


def measured_matmul_peak(device: str | torch.device = "auto", dtype: torch.dtype = torch.float32,
                         size: int | None = None, repeats: int = 5) -> float:
    """The FLOP/s this device reaches on a large square matmul: a measured, attainable peak.

    Multiplies two ``(size × size)`` matrices (``2·size³`` FLOPs) ``repeats`` times after one
    warm-up, and returns ``2·size³ / t`` for the fastest repeat ``t``. size: default 4096 on
    CUDA, 1024 on CPU (a CPU product of 4096² takes seconds).
    """
    dev = resolve_device(device)
    size = size if size is not None else (4096 if dev.type == "cuda" else 1024)
    _check_tokens(size, "size")
    _check_tokens(repeats, "repeats")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device=dev, dtype=dtype)
    b = torch.randn(size, size, generator=g).to(device=dev, dtype=dtype)

    # one warm-up product (kernel selection, thread pool start), then ``repeats`` timed ones
    times = time_interleaved({"matmul": lambda: a @ b}, rounds=repeats, warmup=1, device=dev)["wall"]["matmul"]
    return _matmul(size, size, size) / min(times)


def mfu(flops_per_step: float, step_seconds: float, peak: float) -> float:
    """Model FLOP utilisation: ``flops_per_step / step_seconds / peak`` (a fraction, not %)."""
    if not step_seconds > 0 or not peak > 0:
        raise ValueError(f"step_seconds and peak must be > 0, got step_seconds={step_seconds!r}, peak={peak!r}")
    return flops_per_step / step_seconds / peak


def loader_throughput(dataset, batch_size: int = 8, num_workers: int = 0, batches: int = 10) -> dict:
    """Clips per second that a ``DataLoader`` over ``dataset`` delivers (decode + augment).

    Iterates ``batches`` batches of ``batch_size`` with ``num_workers`` worker processes, after
    one untimed batch (worker start-up is not throughput). Repeated views of a decode (items
    ``(R, C, T, H, W)``, batches ``(B, R, C, T, H, W)``) count as ``B·R`` clips: each is a
    training sample. Returns ``{"clips_per_s", "seconds", "clips", "batch_size", "num_workers"}``.
    """
    _check_tokens(batch_size, "batch_size")
    _check_tokens(batches, "batches")
    if num_workers < 0:
        raise ValueError(f"num_workers must be ≥ 0, got {num_workers!r}")
    if len(dataset) < (batches + 1) * batch_size:
        raise ValueError(f"dataset has {len(dataset)} clips; need (batches + 1) × batch_size = {(batches + 1) * batch_size}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    it = iter(loader)
    next(it)  # warm-up
    clips = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        video = batch["video"] if isinstance(batch, dict) else batch[0]  # (B, [R,] C, T, H, W)
        clips += video.shape[0] * (video.shape[1] if video.dim() == 6 else 1)
    seconds = time.perf_counter() - t0
    del it
    return {"clips_per_s": clips / seconds, "seconds": seconds, "clips": clips,
            "batch_size": batch_size, "num_workers": num_workers}


def run_flops(step_flops_per_clip: float, clips: float, epochs: float = 1) -> float:
    """Training FLOPs of a run: ``step_flops_per_clip × clips × epochs`` (forward + backward per
    clip, e.g. :func:`train_step_flops` of :func:`pretrain_flops`)."""
    if not (step_flops_per_clip > 0 and clips > 0 and epochs > 0):
        raise ValueError(f"step_flops_per_clip, clips and epochs must be > 0, got "
                         f"{step_flops_per_clip!r}, {clips!r}, {epochs!r}")
    return float(step_flops_per_clip) * clips * epochs


def gpu_hours(total_flops: float, *, peak: float = H100_BF16_PEAK, mfu: float = ASSUMED_MFU) -> float:
    """GPU-hours that ``total_flops`` take on a device of ``peak`` FLOP/s sustaining ``mfu`` of it.

    The course's cost model (see the module docstring): ``total_flops / (peak · mfu) / 3600``.
    A prediction of compute alone, assuming the data loader keeps up."""
    if not (total_flops > 0 and peak > 0 and 0 < mfu <= 1):
        raise ValueError(f"need total_flops > 0, peak > 0 and 0 < mfu ≤ 1, got {total_flops!r}, "
                         f"{peak!r}, {mfu!r}")
    return total_flops / (peak * mfu) / 3600.0


def sustained_flops(total_flops: float, reported_gpu_hours: float) -> float:
    """FLOP/s per GPU that a reported run sustained: ``total_flops / (hours · 3600)``.

    Set it beside the device's datasheet peak to read a paper's reported GPU-hours: VideoMAE's
    1 728 V100-hours for ViT-B's 3.9·10¹⁹ FLOPs are about 6 TFLOP/s, 5 % of a V100's peak."""
    if not (total_flops > 0 and reported_gpu_hours > 0):
        raise ValueError(f"total_flops and reported_gpu_hours must be > 0, got {total_flops!r}, "
                         f"{reported_gpu_hours!r}")
    return total_flops / (reported_gpu_hours * 3600.0)
