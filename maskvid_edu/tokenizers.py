"""VQ tokenizers: turn a frame into a grid of discrete codes (MAM2's appearance target).

MAM2 predicts, for every masked token, the VQGAN code of its frame content. A tokenizer here is
anything that follows :class:`VQTokenizer`::

    codes = tokenizer.encode(frames)   # frames (B, 3, H, W) ImageNet-normalised → (B, H/f, W/f) int64
    tokenizer.codebook_size            # K: codes are in [0, K)
    tokenizer.downsample               # f: pixels per code along each side
    tokenizer.decode(codes)            # back to normalised frames, where the tokenizer can

Two tokenizers are provided.

**A small VQ-VAE** (:class:`VQVAE`, van den Oord et al. 2017) that the course trains in under
a minute on its own clips: a strided-conv encoder ``E``, a codebook ``{e_k}``, a decoder ``D``.
With ``z = E(x)`` and ``k* = argmin_k ‖z − e_k‖²`` at every position::

    x̂ = D(z + sg(e_k* − z))                      straight-through: the decoder sees e_k*,
                                                   the encoder receives the decoder's gradient
    L = ‖x̂ − x‖²  +  β · ‖z − sg(e_k*)‖²         reconstruction + commitment (β = 0.25)

(means over elements; ``sg`` = stop-gradient). The codebook is not learnt by gradient but as an
exponential moving average (decay γ = 0.99) of the encoder outputs assigned to each code::

    N_k ← γ N_k + (1 − γ) n_k,   S_k ← γ S_k + (1 − γ) Σ_{z→k} z,   e_k = S_k / N̄_k

with ``N̄`` the Laplace-smoothed counts. A code chosen by no encoder output for
``restart_after`` training steps is *dead*: it is moved onto a random encoder output of the
current batch (dead-code restart). A fresh codebook counts as all dead, so the first training
batch initialises every code from encoder outputs.

**A taming-transformers VQGAN encoder** (:class:`TamingVQGANEncoder`, Esser et al. 2021): the
encoder half of ``taming.models.vqgan.VQModel`` with the same module names, so the
``encoder.*``, ``quant_conv.*`` and ``quantize.embedding.weight`` tensors of a VQGAN checkpoint
load as they are (:meth:`TamingVQGANEncoder.load_taming`). Architecture (``ddconfig``)::

    conv_in 3×3 → for each level i: num_res_blocks × [ResnetBlock (+ AttnBlock where the
    feature map's side is in attn_resolutions)], then Downsample (pad right/bottom by 1,
    3×3 conv stride 2) except after the last level → mid: ResnetBlock, AttnBlock, ResnetBlock
    → GroupNorm → swish → conv_out 3×3 to z_channels → quant_conv 1×1 to embed_dim
    → nearest codebook entry.

    ResnetBlock: GroupNorm(32, eps 1e-6) → swish → conv3×3 → GroupNorm → swish → conv3×3,
    plus a 1×1 ``nin_shortcut`` when the channel count changes.
    AttnBlock: single-head self-attention over positions with 1×1 q, k, v, proj_out convs.

The VQGAN sees pixels in [−1, 1]; :meth:`encode` takes ImageNet-normalised frames like every
model of the library and converts them. The f16 ImageNet model with 1024 codes is the preset
``"vqgan_imagenet_f16_1024"``. No weights are downloaded by the library: pass a checkpoint
you have.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.transforms import denormalize
from .utils import resolve_device


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------


class VQTokenizer(nn.Module, abc.ABC):
    """A frame → discrete code grid map. Subclasses set ``codebook_size``, ``downsample``,
    ``in_channels`` and implement :meth:`_encode` (and :meth:`_decode` if they can)."""

    codebook_size: int
    downsample: int
    in_channels: int = 3
    can_decode: bool = False

    def check_frames(self, frames: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``frames`` is ``(B, in_channels, H, W)`` with H, W divisible by f."""
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ValueError(f"frames must be a (B, {self.in_channels}, H, W) tensor, got {shape}")
        B, C, H, W = frames.shape
        if C != self.in_channels:
            raise ValueError(f"frames must have {self.in_channels} channels, got shape {tuple(frames.shape)}")
        if H % self.downsample or W % self.downsample:
            raise ValueError(f"frames' height and width must be multiples of downsample={self.downsample}, got {H}×{W}")
        if not frames.is_floating_point():
            raise ValueError(f"frames must be float (ImageNet-normalised), got dtype {frames.dtype}")

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Codes of ImageNet-normalised ``frames (B, 3, H, W)`` → ``(B, H/f, W/f)`` int64.

        Deterministic: never updates the codebook, no dropout, works in train or eval mode.
        """
        self.check_frames(frames)
        return self._encode(frames)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, h, w)`` → ImageNet-normalised frames ``(B, 3, h·f, w·f)``."""
        if not self.can_decode:
            raise NotImplementedError(f"{type(self).__name__} has no decoder; it can only encode")
        if codes.dim() != 3 or codes.dtype != torch.long:
            raise ValueError(f"codes must be a (B, h, w) int64 tensor, got {tuple(codes.shape)} {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
        return self._decode(codes)

    @abc.abstractmethod
    def _encode(self, frames: torch.Tensor) -> torch.Tensor: ...

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for every vector: ``z (M, D)``, ``codebook (K, D)`` → ``(M,)``.

    Uses ``‖z‖² + ‖e‖² − 2 z·e`` (the expansion taming-transformers uses, so ties break alike).
    """
    d = z.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * z @ codebook.t()  # (M, K)
    return d.argmin(dim=1)


# ---------------------------------------------------------------------------------------------
# (a) A small VQ-VAE with an EMA codebook
# ---------------------------------------------------------------------------------------------


@dataclass
class VQVAEConfig:
    """Sizes of :class:`VQVAE`. ``downsample = 2 ** len(ch_mult)`` (one stride-2 conv per entry)."""

    in_channels: int = 3
    hidden: int = 128  # channels of the first level; level i has hidden · ch_mult[i]
    ch_mult: tuple[int, ...] = (1, 1, 2, 2)  # 4 levels → downsample 16
    res_blocks: int = 2
    codebook_size: int = 1024
    embed_dim: int = 256
    beta: float = 0.25  # commitment weight
    decay: float = 0.99  # EMA decay of the codebook
    eps: float = 1e-5  # Laplace smoothing of the EMA counts
    restart_after: int = 20  # steps unused before a code is restarted (0 = never)

    @property
    def downsample(self) -> int:
        return 2 ** len(self.ch_mult)


VQVAE_CONFIGS = {
    # CPU preset for 32–64 px frames. Measured: 300 steps of 16 synthetic 64 px frames took 42 s
    # on one thread of a heavily shared CPU; pixel MSE 0.038 → 0.016 (frame variance 0.026).
    "vqvae_demo": VQVAEConfig(hidden=32, ch_mult=(1, 2, 2), res_blocks=1, codebook_size=128, embed_dim=32),
    # f8 and f16 at full size (ImageNet-style 128–256 px frames, GPU).
    "vqvae_f8": VQVAEConfig(hidden=128, ch_mult=(1, 2, 2), res_blocks=2, codebook_size=1024, embed_dim=256, restart_after=100),
    "vqvae_f16": VQVAEConfig(hidden=128, ch_mult=(1, 1, 2, 2), res_blocks=2, codebook_size=1024, embed_dim=256, restart_after=100),
}


def vqvae_config(name: str = "vqvae_demo", **overrides) -> VQVAEConfig:
    """A copy of a named preset (``vqvae_demo``, ``vqvae_f8``, ``vqvae_f16``) with overrides."""
    if name not in VQVAE_CONFIGS:
        raise ValueError(f"unknown VQ-VAE preset {name!r}; choose one of {sorted(VQVAE_CONFIGS)}")
    fields = asdict(VQVAE_CONFIGS[name])
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ValueError(f"unknown VQVAEConfig fields {sorted(unknown)}")
    return VQVAEConfig(**{**fields, **overrides})


class EMAVectorQuantizer(nn.Module):
    """Nearest-code quantiser with EMA codebook updates and dead-code restart.

    Buffers (saved in the state dict): ``codebook (K, D)``, EMA counts ``cluster_size (K,)``,
    EMA sums ``embed_sum (K, D)``, and ``steps_unused (K,)`` — training steps since each code
    was last chosen (starts at ``restart_after``: a fresh codebook is all dead).
    """

    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, decay: float = 0.99,
                 eps: float = 1e-5, restart_after: int = 20):
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"codebook_size and dim must be positive, got {codebook_size}, {dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.codebook_size, self.dim = codebook_size, dim
        self.beta, self.decay, self.eps, self.restart_after = beta, decay, eps, restart_after
        codebook = torch.randn(codebook_size, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("steps_unused", torch.full((codebook_size,), max(restart_after, 0), dtype=torch.long))

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code of each position of ``z (B, D, h, w)`` → ``(B, h, w)``; no updates."""
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # (B·h·w, D)
        return nearest_code(flat, self.codebook).view(B, h, w)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of ``codes (B, h, w)`` → ``(B, D, h, w)``."""
        return self.codebook[codes].permute(0, 3, 1, 2)  # (B, D, h, w)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None):
        """Quantise ``z (B, D, h, w)``.

        In training mode, first restarts dead codes from random rows of this batch's ``z``, then
        assigns codes and updates the EMA codebook. In eval mode the codebook is left alone.

        Returns:
            ``(z_q, codes, commitment, perplexity)``: straight-through ``z_q (B, D, h, w)``
            (forward value ``e_k*``, gradient passed to ``z`` unchanged), ``codes (B, h, w)``,
            ``commitment = β · mean((z − sg(e_k*))²)`` and the codebook perplexity
            ``exp(−Σ p_k log p_k)`` of this batch.
        """
        B, D, h, w = z.shape
        if D != self.dim:
            raise ValueError(f"z must have {self.dim} channels, got shape {tuple(z.shape)}")
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # (M, D), M = B·h·w
        detached = flat.detach().to(self.codebook.dtype)  # codebook maths in the codebook's dtype (AMP-safe)
        if self.training:
            self._restart_dead(detached, generator)
        codes = nearest_code(detached, self.codebook)  # (M,)
        counts = torch.bincount(codes, minlength=self.codebook_size).to(self.codebook.dtype)  # (K,)
        chosen = self.codebook[codes].to(flat.dtype)  # (M, D): e_k*, a copy taken before this step's EMA update
        if self.training:
            self._ema_update(detached, codes, counts)
        commitment = self.beta * F.mse_loss(flat, chosen.detach())
        z_q = flat + (chosen - flat).detach()  # straight-through estimator
        z_q = z_q.view(B, h, w, D).permute(0, 3, 1, 2)  # (B, D, h, w)
        p = counts / counts.sum()
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
        return z_q, codes.view(B, h, w), commitment, perplexity

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        g = self.decay
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat)  # (K, D): Σ z over each code
        self.cluster_size.mul_(g).add_(counts, alpha=1 - g)
        self.embed_sum.mul_(g).add_(sums, alpha=1 - g)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # Laplace
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        if self.restart_after <= 0:
            return
        dead = (self.steps_unused >= self.restart_after).nonzero().squeeze(1)  # (n_dead,)
        if dead.numel() == 0:
            return
        M = flat.shape[0]
        if M >= dead.numel():  # distinct encoder outputs where the batch has enough
            pick = torch.randperm(M, generator=generator)[: dead.numel()]
        else:
            pick = torch.randint(M, (dead.numel(),), generator=generator)
        fresh = flat[pick.to(flat.device)]  # (n_dead, D)
        self.codebook[dead] = fresh
        self.cluster_size[dead] = 1.0
        self.embed_sum[dead] = fresh
        self.steps_unused[dead] = 0


class _Residual(nn.Module):
    """``x + conv1×1(relu(conv3×3(relu(x))))`` — the VQ-VAE residual block."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


@dataclass
class VQVAEOutput:
    """What :meth:`VQVAE.forward` returns; ``loss = recon_loss + commitment_loss``."""

    loss: torch.Tensor
    recon_loss: torch.Tensor
    commitment_loss: torch.Tensor
    recon: torch.Tensor  # (B, 3, H, W) normalised
    codes: torch.Tensor  # (B, h, w)
    perplexity: torch.Tensor
    extras: dict = field(default_factory=dict)


class VQVAE(VQTokenizer):
    """A small convolutional VQ-VAE with an EMA codebook (see the module docstring).

    Encoder: ``len(ch_mult)`` × [4×4 conv stride 2 + ReLU] → residual blocks → ReLU → 1×1 conv
    to ``embed_dim``. Decoder: the mirror image with 4×4 transposed convs. Works on
    ImageNet-normalised frames and reconstructs them in the same space.
    """

    can_decode = True

    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        cfg = config or VQVAEConfig()
        if not cfg.ch_mult:
            raise ValueError("ch_mult must have at least one level (downsample >= 2)")
        self.config = cfg
        self.codebook_size, self.downsample, self.in_channels = cfg.codebook_size, cfg.downsample, cfg.in_channels
        widths = [cfg.hidden * m for m in cfg.ch_mult]
        enc, c = [], cfg.in_channels
        for w in widths:
            enc += [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.ReLU()]
            c = w
        enc += [_Residual(c) for _ in range(cfg.res_blocks)] + [nn.ReLU(), nn.Conv2d(c, cfg.embed_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = EMAVectorQuantizer(cfg.codebook_size, cfg.embed_dim, cfg.beta, cfg.decay, cfg.eps, cfg.restart_after)
        dec = [nn.Conv2d(cfg.embed_dim, c, 3, padding=1)] + [_Residual(c) for _ in range(cfg.res_blocks)] + [nn.ReLU()]
        for w in reversed([cfg.in_channels] + widths[:-1]):
            dec += [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1), nn.ReLU()]
            c = w
        self.decoder = nn.Sequential(*dec[:-1])  # no ReLU on the output

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> VQVAEOutput:
        """Encode, quantise, decode ``frames (B, 3, H, W)``; in training mode also updates the codebook."""
        self.check_frames(frames)
        z = self.encoder(frames)  # (B, D, H/f, W/f)
        z_q, codes, commitment, perplexity = self.quantizer(z, generator)
        recon = self.decoder(z_q)  # (B, 3, H, W)
        recon_loss = F.mse_loss(recon, frames)
        return VQVAEOutput(recon_loss + commitment, recon_loss, commitment, recon, codes, perplexity)

    def _encode(self, frames):
        return self.quantizer.codes(self.encoder(frames))  # (B, H/f, W/f)

    def _decode(self, codes):
        return self.decoder(self.quantizer.lookup(codes))  # (B, 3, H, W)


def _frames_of(batch) -> torch.Tensor:
    """A training batch as frames ``(B', 3, H, W)``: accepts frames, videos ``(B, C, T, H, W)``
    (every frame is used) or the library's dataset dicts (``batch["video"]``)."""
    if isinstance(batch, Mapping):
        if "video" not in batch:
            raise ValueError(f"a dict batch must hold 'video', got keys {sorted(batch)}")
        batch = batch["video"]
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() not in (4, 5):
        raise ValueError("each batch must be frames (B, 3, H, W), a video (B, C, T, H, W) or a dict with 'video'")
    if batch.dim() == 5:
        B, C, T, H, W = batch.shape
        batch = batch.transpose(1, 2).reshape(B * T, C, H, W)  # (B·T, C, H, W)
    return batch


def train_vqvae(
    model: VQVAE,
    frames_iterable: Iterable,
    steps: int,
    lr: float = 2e-3,
    device: str | torch.device = "auto",
    *,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` with Adam on ``L = ‖x̂ − x‖² + β‖z − sg(e)‖²`` for ``steps`` batches.

    Args:
        model: a :class:`VQVAE`; moved to ``device``, left in eval mode at the end.
        frames_iterable: an iterable of batches (frames ``(B, 3, H, W)``, videos
            ``(B, C, T, H, W)`` or dataset dicts) — e.g. a ``DataLoader``. It is iterated again
            when exhausted; a one-shot iterator that runs dry raises ``ValueError``.
        steps: optimizer steps.
        lr: Adam learning rate (the codebook itself follows the EMA, not the optimizer).
        seed: seeds the dead-code restart draws.

    Returns:
        History, one entry per step: ``loss``, ``recon``, ``commitment``, ``perplexity`` and
        ``codes_used`` (distinct codes chosen in the batch).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dev = resolve_device(device)
    model.to(dev).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {k: [] for k in ("loss", "recon", "commitment", "perplexity", "codes_used")}
    it = iter(frames_iterable)
    for step in tqdm(range(steps), desc="VQ-VAE", disable=not progress):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(frames_iterable)
            try:
                batch = next(it)
            except StopIteration:
                raise ValueError(f"frames_iterable ran out of batches after {step} steps") from None
        frames = _frames_of(batch).to(dev, non_blocking=True)
        out = model(frames, generator=gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        for key, value in (("loss", out.loss), ("recon", out.recon_loss), ("commitment", out.commitment_loss),
                           ("perplexity", out.perplexity)):
            history[key].append(float(value.detach()))
        history["codes_used"].append(float(out.codes.unique().numel()))
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# (b) The taming-transformers VQGAN encoder + quantiser
# ---------------------------------------------------------------------------------------------

TAMING_PRESETS = {
    # taming-transformers configs/imagenet_vqgan.yaml: VQGAN f16, 1024 codes, ImageNet.
    "vqgan_imagenet_f16_1024": dict(
        embed_dim=256,
        n_embed=1024,
        ddconfig=dict(double_z=False, z_channels=256, resolution=256, in_channels=3, out_ch=3, ch=128,
                      ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,), dropout=0.0),
    ),
}
_DDCONFIG_KEYS = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "resolution", "in_channels")
_DDCONFIG_IGNORED = ("out_ch", "dropout", "double_z", "resamp_with_conv", "give_pre_end")


def _group_norm(ch: int) -> nn.GroupNorm:
    if ch % 32:
        raise ValueError(f"taming blocks use GroupNorm with 32 groups; channel count {ch} is not a multiple of 32")
    return nn.GroupNorm(32, ch, eps=1e-6, affine=True)


class _TamingResBlock(nn.Module):
    """GroupNorm → swish → conv3×3 → GroupNorm → swish → conv3×3, plus shortcut (1×1 if widths differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class _TamingAttn(nn.Module):
    """Single-head self-attention over the h·w positions, 1×1 convs for q, k, v and output."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = _group_norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        q = self.q(h).flatten(2).transpose(1, 2)  # (B, HW, C)
        k = self.k(h).flatten(2)  # (B, C, HW)
        v = self.v(h).flatten(2)  # (B, C, HW)
        attn = torch.softmax(q @ k * C ** -0.5, dim=-1)  # (B, HW_q, HW_k)
        out = (v @ attn.transpose(1, 2)).view(B, C, H, W)  # (B, C, H, W)
        return x + self.proj_out(out)


class _TamingDownsample(nn.Module):
    """Zero-pad one pixel right and bottom, then a 3×3 conv with stride 2 (halves H and W)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _TamingLevel(nn.Module):
    def __init__(self, blocks: list, attns: list, downsample: nn.Module | None):
        super().__init__()
        self.block, self.attn = nn.ModuleList(blocks), nn.ModuleList(attns)
        if downsample is not None:
            self.downsample = downsample


class _TamingMid(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = _TamingResBlock(ch, ch), _TamingAttn(ch), _TamingResBlock(ch, ch)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class _TamingEncoderNet(nn.Module):
    """The taming ``Encoder`` (``double_z=False``), parameter names included."""

    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, resolution, in_channels):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        res, widths = resolution, [ch] + [ch * m for m in ch_mult]
        levels = []
        for i in range(len(ch_mult)):
            blocks, attns, cin = [], [], widths[i]
            for _ in range(num_res_blocks):
                blocks.append(_TamingResBlock(cin, widths[i + 1]))
                cin = widths[i + 1]
                if res in attn_resolutions:
                    attns.append(_TamingAttn(cin))
            last = i == len(ch_mult) - 1
            levels.append(_TamingLevel(blocks, attns, None if last else _TamingDownsample(cin)))
            res = res if last else res // 2
        self.down = nn.ModuleList(levels)
        self.mid = _TamingMid(widths[-1])
        self.norm_out = _group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)  # (B, ch, H, W)
        for level in self.down:
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)  # (B, C, H/2, W/2)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z_channels, H/f, W/f)


class _TamingCodebook(nn.Module):
    """Holds ``embedding`` (an ``nn.Embedding(n_embed, embed_dim)``) under taming's name."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)


class TamingVQGANEncoder(VQTokenizer):
    """Encoder + ``quant_conv`` + codebook of a taming-transformers VQGAN (encoding only).

    Args:
        ddconfig: taming's ``ddconfig`` (keys ``ch, ch_mult, num_res_blocks, attn_resolutions,
            z_channels, resolution, in_channels``; ``out_ch``, ``dropout`` and decoder-only
            keys are accepted and ignored; ``double_z`` must be false, as in every VQGAN).
        embed_dim: codebook vector size (``quant_conv`` maps ``z_channels → embed_dim``).
        n_embed: number of codes.
    """

    def __init__(self, ddconfig: Mapping, embed_dim: int, n_embed: int):
        super().__init__()
        ddconfig = dict(ddconfig)
        missing = [k for k in _DDCONFIG_KEYS if k not in ddconfig]
        unknown = sorted(set(ddconfig) - set(_DDCONFIG_KEYS) - set(_DDCONFIG_IGNORED))
        if missing or unknown:
            raise ValueError(f"ddconfig: missing keys {missing}, unknown keys {unknown}")
        if ddconfig.get("double_z", False):
            raise ValueError("ddconfig double_z=True is the KL autoencoder's layout, not a VQGAN's; set it to False")
        if not ddconfig.get("resamp_with_conv", True):
            raise ValueError("ddconfig resamp_with_conv=False (average-pool downsampling) is not supported")
        self.ddconfig = {k: ddconfig[k] for k in _DDCONFIG_KEYS}
        self.embed_dim, self.codebook_size = embed_dim, n_embed
        self.in_channels = ddconfig["in_channels"]
        self.downsample = 2 ** (len(ddconfig["ch_mult"]) - 1)
        self.encoder = _TamingEncoderNet(**self.ddconfig)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.quantize = _TamingCodebook(n_embed, embed_dim)

    @classmethod
    def from_preset(cls, name: str = "vqgan_imagenet_f16_1024") -> "TamingVQGANEncoder":
        """Randomly initialised encoder of a named taming model (load weights with :meth:`load_taming`)."""
        if name not in TAMING_PRESETS:
            raise ValueError(f"unknown taming preset {name!r}; choose one of {sorted(TAMING_PRESETS)}")
        p = TAMING_PRESETS[name]
        return cls(p["ddconfig"], p["embed_dim"], p["n_embed"])

    def encode_prequant(self, frames: torch.Tensor) -> torch.Tensor:
        """Continuous features before the codebook lookup: ``(B, 3, H, W)`` normalised → ``(B, embed_dim, H/f, W/f)``.

        taming's ``VQModel.encode_to_prequant`` on ``2 · pixels − 1``.
        """
        self.check_frames(frames)
        x = denormalize(frames, channel_dim=1) * 2 - 1  # ImageNet-normalised → taming's [−1, 1]
        return self.quant_conv(self.encoder(x))

    def _encode(self, frames):
        z = self.encode_prequant(frames)  # (B, D, h, w)
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # (B·h·w, D)
        return nearest_code(flat, self.quantize.embedding.weight).view(B, h, w)

    def load_taming(self, source, *, weights_only: bool = True) -> list[str]:
        """Load a taming VQGAN checkpoint's encoder-side tensors.

        Args:
            source: a path to a ``.ckpt`` / ``.pt`` file, a Lightning checkpoint dict (with
                ``"state_dict"``) or a state dict.
            weights_only: passed to ``torch.load``; Lightning checkpoints of trusted origin
                that hold pickled objects may need ``False``.

        Returns:
            The keys that were ignored (decoder, ``post_quant_conv``, loss/discriminator, …),
            sorted.

        Raises:
            FileNotFoundError: no file at ``source``. ValueError: encoder-side keys missing or
            unexpected, or a shape that differs (the ddconfig does not match the checkpoint).
        """
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"taming checkpoint not found: {path}")
            source = torch.load(path, map_location="cpu", weights_only=weights_only)
        if not isinstance(source, Mapping):
            raise ValueError(f"source must be a path, a checkpoint dict or a state dict, got {type(source).__name__}")
        state = source["state_dict"] if "state_dict" in source and isinstance(source["state_dict"], Mapping) else source
        own = self.state_dict()
        wanted = {k: v for k, v in state.items() if k in own or k.startswith(("encoder.", "quant_conv.", "quantize."))}
        ignored = sorted(k for k in state if k not in wanted)
        missing = sorted(set(own) - set(wanted))
        unexpected = sorted(set(wanted) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"taming checkpoint does not match this ddconfig: missing keys {missing[:8]}"
                f"{' …' if len(missing) > 8 else ''} ({len(missing)}), unexpected keys {unexpected[:8]}"
                f"{' …' if len(unexpected) > 8 else ''} ({len(unexpected)})"
            )
        for k, v in wanted.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(f"taming checkpoint key {k!r} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        self.load_state_dict(wanted, strict=True)
        return ignored


__all__ = [
    "VQTokenizer", "nearest_code", "VQVAEConfig", "VQVAE_CONFIGS", "vqvae_config", "EMAVectorQuantizer",
    "VQVAE", "VQVAEOutput", "train_vqvae", "TAMING_PRESETS", "TamingVQGANEncoder",
]
