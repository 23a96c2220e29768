"""The video Vision Transformer of VideoMAE, in one file.

What it is: a plain ViT (Dosovitskiy et al., 2021) whose tokens are *tubelets* — blocks of
``tubelet × p × p`` pixels (2 × 16 × 16 by default) cut from a clip ``(B, C, T, H, W)`` — and
whose attention is joint over space and time. It is the encoder of VideoMAE (Tong et al., 2022)
and VideoMAE V2 (Wang et al., 2023), and the backbone they fine-tune.

Where it comes from: the official code (MCG-NJU/VideoMAE ``modeling_finetune.py`` /
``modeling_pretrain.py``, itself built on BEiT and timm). We keep its details because published
checkpoints depend on them, and keep its parameter names so those checkpoints load unchanged:

- tubelet embedding = a ``Conv3d`` whose kernel equals its stride (``patch_embed.proj``);
- a **fixed** 1-D sinusoidal position embedding over the flattened ``t·h·w`` token index (not a
  parameter and not saved in checkpoints), added to every token *before* the masked ones are
  dropped — so a visible token keeps the position it had in the full clip;
- pre-norm blocks, LayerNorm ``eps = 1e-6``, GELU MLP with ratio 4;
- attention with ``qkv`` a Linear *without* bias plus separate ``q_bias`` and ``v_bias``
  parameters: the key bias is fixed at zero (it would cancel in the softmax anyway);
- optional layer scale (``gamma_1``, ``gamma_2``) and stochastic depth (drop path).

What we change: attention runs through ``torch.nn.functional.scaled_dot_product_attention``
(fused kernels, no ``N × N`` matrix in memory where the backend allows), and the encoder embeds
only the visible tubelets when given a mask (the same numbers; a tenth of the embedding work at
90 % masking). Sizes S/B/L/H (VideoMAE) and g (VideoMAE V2) sit in :data:`VIT_SIZES`, the
course's CPU preset in :data:`VIT_DEMO`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from ..masking import check_mask, token_index, tokens_at  # token_index is re-exported here
from .base import check_divisible, check_mask_batch, check_positive_ints, check_video
from .registry import replace_config

__all__ = [
    "ViTConfig",
    "EncoderFields",
    "ENCODER_FIELDS",
    "VIT_SIZES",
    "VIT_DEMO",
    "encoder_fields",
    "vit_config",
    "sinusoid_table",
    "position_embedding",
    "resize_position_embedding",
    "token_index",
    "PatchEmbed",
    "Attention",
    "Block",
    "VisionTransformer",
]


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class ViTConfig:
    """Everything that defines a video ViT encoder.

    img_size, num_frames: the input the model is built for; the token grid is
        ``(num_frames / tubelet, img_size / patch, img_size / patch)``. Other input sizes work
        too (see ``pos_resize``).
    tubelet, patch: tubelet depth in frames and patch side in pixels (2 and 16 in VideoMAE).
    in_chans: input channels (3).
    dim, depth, heads, mlp_ratio: width, number of blocks, attention heads, MLP hidden / dim.
    qkv_bias: learn ``q_bias`` and ``v_bias`` (the key bias stays zero), as the official models.
    drop_path: stochastic-depth rate of the last block (linearly increasing from 0 over depth).
    attn_drop: dropout on attention weights (0 in every published recipe).
    layer_scale_init: initial value of the per-channel residual scales ``gamma``; None = off.
    ln_eps: LayerNorm epsilon (1e-6 in the official code; transformers defaults to 1e-12).
    use_checkpoint: activation checkpointing of every block while training (memory for compute).
    use_mean_pooling: fine-tuning head style. True: no final norm on tokens, the pooled vector
        goes through ``fc_norm`` (the official fine-tuning model). False: final ``norm`` on tokens
        (the pre-training encoder).
    num_classes: size of the classification ``head`` (0 = no head).
    head_drop: dropout before the head. head_init_scale: the head's initial weights are
        multiplied by this (VideoMAE fine-tuning uses 0.001).
    pos_resize: how to get a position embedding for an input grid other than the built one:
        ``"interpolate"`` (trilinear resize of the built grid's table, keeping each token's
        place in space and time) or ``"rebuild"`` (a fresh 1-D table over the new ``t·h·w``,
        what the official code does when a model is *built* at another size).
    learned_pos: a learned position embedding (a parameter saved in the state dict, started at
        the sinusoid) instead of the fixed sinusoid; for checkpoints that carry one (the official
        fine-tuning code's ``use_learnable_pos_emb``). Other grids resize it with
        :func:`resize_position_embedding`.
    """

    img_size: int = 224
    num_frames: int = 16
    tubelet: int = 2
    patch: int = 16
    in_chans: int = 3
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.0
    attn_drop: float = 0.0
    layer_scale_init: float | None = None
    ln_eps: float = 1e-6
    use_checkpoint: bool = False
    use_mean_pooling: bool = False
    num_classes: int = 0
    head_drop: float = 0.0
    head_init_scale: float = 1.0
    pos_resize: str = "interpolate"
    learned_pos: bool = False

    def __post_init__(self):
        check_positive_ints(self, ("img_size", "num_frames", "tubelet", "patch", "in_chans", "dim", "depth", "heads"))
        check_divisible(self, (("img_size", "patch"), ("num_frames", "tubelet"), ("dim", "heads")))
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        for name in ("drop_path", "attn_drop", "head_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be ≥ 0, got {self.num_classes!r}")
        if self.pos_resize not in ("interpolate", "rebuild"):
            raise ValueError(f"pos_resize must be 'interpolate' or 'rebuild', got {self.pos_resize!r}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid ``(t, h, w)`` of the built input size."""
        return (self.num_frames // self.tubelet, self.img_size // self.patch, self.img_size // self.patch)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w


#: Published encoder sizes: VideoMAE S/B/L/H and VideoMAE V2's g (patch 14, MLP ratio 48/11).
VIT_SIZES: dict[str, dict] = {
    "s": dict(dim=384, depth=12, heads=6),
    "b": dict(dim=768, depth=12, heads=12),
    "l": dict(dim=1024, depth=24, heads=16),
    "h": dict(dim=1280, depth=32, heads=16),
    "g": dict(dim=1408, depth=40, heads=16, mlp_ratio=48 / 11, patch=14),
}


#: The course's CPU encoder (of ``videomae_vit_demo`` and ``mam2_vit_demo``): 8 frames of 64×64,
#: tubelet 2, patch 8 → 4×8×8 = 256 tokens; 128 wide, 4 deep, 4 heads (0.8 M parameters).
VIT_DEMO: dict = dict(img_size=64, num_frames=8, tubelet=2, patch=8, dim=128, depth=4, heads=4)


def encoder_fields(size: str) -> dict:
    """The encoder fields of a size: :data:`VIT_SIZES` ``[size]``, or :data:`VIT_DEMO` for ``"demo"``.

    The one table every ViT model family builds its published sizes from.
    """
    if size == "demo":
        return dict(VIT_DEMO)
    if size not in VIT_SIZES:
        raise ValueError(f"size must be one of {sorted(VIT_SIZES) + ['demo']}, got {size!r}")
    return dict(VIT_SIZES[size])


def vit_config(size: str, **overrides) -> ViTConfig:
    """The :class:`ViTConfig` of a published size (``"s"``, ``"b"``, ``"l"``, ``"h"``, ``"g"``) or ``"demo"``."""
    return replace_config(ViTConfig(**encoder_fields(size)), overrides)


#: The :class:`ViTConfig` fields a pre-training config (VideoMAE, MAM2) carries for its encoder.
#: The others (attention dropout, the fine-tuning head, ``pos_resize``) keep their defaults there.
ENCODER_FIELDS: tuple[str, ...] = (
    "img_size", "num_frames", "tubelet", "patch", "in_chans", "dim", "depth", "heads", "mlp_ratio", "qkv_bias",
    "drop_path", "layer_scale_init", "ln_eps", "use_checkpoint",
)


def _dataclass_with_fields_of(source, names: tuple[str, ...]):
    """Class decorator: a dataclass whose fields are ``source``'s fields ``names`` — types,
    defaults and order as written there, so they are written once."""

    def decorate(cls):
        chosen = [f for f in fields(source) if f.name in names]
        if len(chosen) != len(names):
            raise ValueError(f"{source.__name__} has no field(s) {sorted(set(names) - {f.name for f in chosen})}")
        cls.__annotations__ = {f.name: f.type for f in chosen}
        for f in chosen:
            setattr(cls, f.name, f.default)
        return dataclass(cls)

    return decorate


@_dataclass_with_fields_of(ViTConfig, ENCODER_FIELDS)
class EncoderFields:
    """The encoder half of a pre-training config (VideoMAE, MAM2): the :class:`ViTConfig` fields
    named in :data:`ENCODER_FIELDS`, with ViTConfig's defaults (the published ViT-B values).

    Subclasses add their decoder/target fields; :meth:`encoder_config` picks out the
    :class:`ViTConfig` (which validates them), so the encoder is defined in one place.
    """

    def encoder_config(self) -> ViTConfig:
        return ViTConfig(**{name: getattr(self, name) for name in ENCODER_FIELDS})

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.encoder_config().grid

    @property
    def patch_values(self) -> int:
        """Values per tubelet, the pixel heads' output width: ``tubelet·p·p·C``."""
        return self.tubelet * self.patch * self.patch * self.in_chans


# --------------------------------------------------------------------------------------------
# Position embedding: fixed, 1-D over the flattened token index
# --------------------------------------------------------------------------------------------


def sinusoid_table(num_tokens: int, dim: int) -> torch.Tensor:
    """The Transformer's sinusoid table, ``(num_tokens, dim)`` float32.

    For token ``n`` and channel pair ``(2i, 2i+1)``, with frequency ``ω_i = 10000^(−2i/dim)``::

        table[n, 2i]   = sin(n · ω_i)
        table[n, 2i+1] = cos(n · ω_i)

    VideoMAE applies it to the flattened index ``n = (t·h + y)·w + x`` of the token grid: time and
    space share one axis, and the model learns what a jump of ``w`` or ``h·w`` positions means.
    Computed in float64 then rounded, as the reference (numpy) code does.
    """
    pos = torch.arange(num_tokens, dtype=torch.float64).unsqueeze(1)  # (N, 1)
    j = torch.arange(dim, dtype=torch.float64)  # (dim,)
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # (N, dim)
    table = torch.where(j.remainder(2) == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32)


def position_embedding(grid, dim: int, reference_grid=None, mode: str = "interpolate") -> torch.Tensor:
    """Position embedding ``(t·h·w, dim)`` for the token grid ``grid = (t, h, w)``.

    reference_grid: the grid a model was built (and trained) for. When it differs from ``grid``:
      - ``mode="interpolate"``: resize the reference table, seen as a ``(dim, t₀, h₀, w₀)``
        volume, to ``(t, h, w)`` by trilinear interpolation — each token keeps the embedding of
        its relative place in the clip (use this to run a trained model at another size);
      - ``mode="rebuild"``: a fresh 1-D table over ``t·h·w`` tokens (what the official code
        does when a model is constructed for another size; the grid meaning changes).
    """
    t, h, w = (int(v) for v in grid)
    if reference_grid is None or tuple(reference_grid) == (t, h, w) or mode == "rebuild":
        return sinusoid_table(t * h * w, dim)
    if mode != "interpolate":
        raise ValueError(f"mode must be 'interpolate' or 'rebuild', got {mode!r}")
    t0, h0, w0 = (int(v) for v in reference_grid)
    table = sinusoid_table(t0 * h0 * w0, dim)  # (N₀, dim)
    volume = table.T.reshape(1, dim, t0, h0, w0)  # (1, dim, t₀, h₀, w₀)
    volume = F.interpolate(volume, size=(t, h, w), mode="trilinear", align_corners=False)  # (1, dim, t, h, w)
    return volume.reshape(dim, t * h * w).T.contiguous()  # (N, dim)


def resize_position_embedding(table: torch.Tensor, grid, new_grid) -> torch.Tensor:
    """Resize a stored (learned) position embedding ``(t·h·w, dim)`` of token grid ``grid`` to
    ``new_grid``: bicubic in space (each time slice as an image, as timm does for image ViTs),
    then linear in time. Returns ``(t'·h'·w', dim)`` in the table's dtype.

    A learned table has no formula to recompute it from, so the only way to use it on another
    grid is to read it as a ``(dim, t, h, w)`` volume and resample it; fixed sinusoids are
    recomputed instead (:func:`position_embedding`).
    """
    t0, h0, w0 = (int(v) for v in grid)
    t, h, w = (int(v) for v in new_grid)
    if table.shape[0] != t0 * h0 * w0:
        raise ValueError(f"table has {table.shape[0]} rows, grid {tuple(grid)} has {t0 * h0 * w0} tokens")
    dim = table.shape[-1]
    x = table.float().reshape(t0, h0, w0, dim).permute(0, 3, 1, 2)  # (t₀, dim, h₀, w₀)
    if (h, w) != (h0, w0):
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)  # (t₀, dim, h, w)
    x = x.permute(1, 2, 3, 0).reshape(1, dim * h * w, t0)  # (1, dim·h·w, t₀)
    if t != t0:
        x = F.interpolate(x, size=t, mode="linear", align_corners=False)  # (1, dim·h·w, t)
    x = x.reshape(dim, h, w, t).permute(3, 1, 2, 0)  # (t, h, w, dim)
    return x.reshape(t * h * w, dim).to(table.dtype).contiguous()


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Tubelet embedding: every ``tubelet × p × p × C`` block of pixels → one ``dim`` vector.

    Held as a ``Conv3d`` with kernel = stride (``proj``), the official parameter. Given token
    indices, only those tubelets are embedded — the same linear map written as a matrix product,
    so a 90 %-masked clip costs a tenth of the full embedding.
    """

    def __init__(self, in_chans: int, dim: int, tubelet: int, patch: int):
        super().__init__()
        self.tubelet, self.patch = tubelet, patch
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, video: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """video: ``(B, C, T, H, W)``; index: ``(B, K)`` token indices or None → ``(B, K or N, dim)``."""
        if index is None:
            return self.proj(video).flatten(2).transpose(1, 2)  # (B, N, dim)
        B, C, T, H, W = video.shape
        k, p = self.tubelet, self.patch
        x = video.reshape(B, C, T // k, k, H // p, p, W // p, p)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, -1, C * k * p * p)  # (B, N, C·k·p·p), conv order
        x = tokens_at(x, index)  # (B, K, C·k·p·p)
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)  # (dim, C·k·p·p)
        return F.linear(x, weight, self.proj.bias)  # (B, K, dim)


class Attention(nn.Module):
    """Multi-head self-attention with VideoMAE's bias layout (``q_bias``, zero key bias, ``v_bias``)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0):
        super().__init__()
        self.heads = heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])  # (3D,): key bias ≡ 0
        qkv = F.linear(x, self.qkv.weight, bias)  # (B, N, 3D): one matrix product for q, k and v
        q, k, v = qkv.view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # 3 × (B, heads, N, D/heads)
        # softmax(q·kᵀ / sqrt(D/heads)) · v, fused
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, D)  # (B, N, D): heads side by side
        return self.proj(x)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with hidden width ``int(dim · mlp_ratio)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a residual branch for whole samples with probability ``p``.

    Kept branches are scaled by ``1 / (1 − p)`` so the expectation is unchanged.
    """
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)  # (B, 1, 1)
    return x * keep / (1.0 - p)


class Block(nn.Module):
    """Pre-norm Transformer block::

        x = x + drop_path(γ₁ · attn(norm1(x)))
        x = x + drop_path(γ₂ · mlp(norm2(x)))

    with ``γ`` the optional layer-scale vectors (``gamma_1``, ``gamma_2``).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        layer_scale_init: float | None = None,
        ln_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, heads, qkv_bias, attn_drop)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path
        if layer_scale_init is not None:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))  # (B, N, D)
        if self.gamma_1 is not None:
            a = self.gamma_1 * a
        x = x + drop_path(a, self.drop_path, self.training)
        m = self.mlp(self.norm2(x))  # (B, N, D)
        if self.gamma_2 is not None:
            m = self.gamma_2 * m
        return x + drop_path(m, self.drop_path, self.training)

    def extra_repr(self) -> str:
        return f"drop_path={self.drop_path}"


def make_blocks(dim, depth, heads, mlp_ratio, qkv_bias, drop_path, attn_drop, layer_scale_init, ln_eps) -> nn.ModuleList:
    """``depth`` blocks with the stochastic-depth rate rising linearly from 0 to ``drop_path``."""
    rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()
    return nn.ModuleList(
        Block(dim, heads, mlp_ratio, qkv_bias, rate, attn_drop, layer_scale_init, ln_eps) for rate in rates
    )


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, checkpoint: bool) -> torch.Tensor:
    """Apply the blocks in order; with ``checkpoint``, recompute each one's activations in backward."""
    for blk in blocks:
        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x


def init_weights(module: nn.Module) -> None:
    """The official pre-training initialisation: Xavier-uniform Linear weights, zero biases,
    unit LayerNorms (the Conv3d keeps PyTorch's default, as there)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------


class VisionTransformer(nn.Module):
    """Video ViT encoder.

    ``model(video)`` → features of every token ``(B, N, dim)``; ``model(video, mask)`` → features
    of the visible tokens only ``(B, N_vis, dim)`` in raster order (VideoMAE's encoder never sees
    the masked ones). ``model.forward_features(video)`` → pooled ``(B, dim)``;
    ``model.classify(video)`` → logits ``(B, num_classes)``.
    """

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        config = replace_config(config or ViTConfig(), overrides)
        self.config = config
        c = config
        self.patch_embed = PatchEmbed(c.in_chans, c.dim, c.tubelet, c.patch)
        if c.learned_pos:  # a weight, saved and trained, started at the sinusoid
            self.pos_embed = nn.Parameter(sinusoid_table(c.num_tokens, c.dim))
        else:  # fixed sinusoid, a buffer that moves with .to() but is not saved in the state dict
            self.register_buffer("pos_embed", sinusoid_table(c.num_tokens, c.dim), persistent=False)
        self.blocks = make_blocks(
            c.dim, c.depth, c.heads, c.mlp_ratio, c.qkv_bias, c.drop_path, c.attn_drop, c.layer_scale_init, c.ln_eps
        )
        self.norm = nn.Identity() if c.use_mean_pooling else nn.LayerNorm(c.dim, eps=c.ln_eps)
        self.fc_norm = nn.LayerNorm(c.dim, eps=c.ln_eps) if c.use_mean_pooling else None
        self.head_drop = nn.Dropout(c.head_drop)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.apply(init_weights)
        if c.num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            with torch.no_grad():
                self.head.weight.mul_(c.head_init_scale)
                self.head.bias.mul_(c.head_init_scale)

    # -- geometry --------------------------------------------------------------------------

    def token_grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """The token grid ``(t, h, w)`` of ``video`` ``(B, C, T, H, W)``; ValueError if it does not fit."""
        c = self.config
        check_video(video)
        B, C, T, H, W = video.shape
        if C != c.in_chans:
            raise ValueError(f"video must have {c.in_chans} channels at dim 1 (B, C, T, H, W), got shape {tuple(video.shape)}")
        if T % c.tubelet or H % c.patch or W % c.patch:
            raise ValueError(
                f"video of shape {tuple(video.shape)} does not split into {c.tubelet}×{c.patch}×{c.patch} tubelets"
            )
        return T // c.tubelet, H // c.patch, W // c.patch

    def position_embedding(self, grid, device=None, dtype=None) -> torch.Tensor:
        """``(t·h·w, dim)`` for ``grid``: the stored buffer for the built grid, else resized
        according to ``config.pos_resize`` (a learned one by :func:`resize_position_embedding`)."""
        if tuple(grid) == self.config.grid:
            pos = self.pos_embed
        elif self.config.learned_pos:
            pos = resize_position_embedding(self.pos_embed, self.config.grid, grid)
        else:
            pos = position_embedding(grid, self.config.dim, self.config.grid, self.config.pos_resize)
        return pos.to(device=device or self.pos_embed.device, dtype=dtype or pos.dtype)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None, masked_count: int | None = None) -> torch.Tensor:
        """video: ``(B, C, T, H, W)``; mask: bool ``(B, N)``, True = hidden, or None;
        masked_count: the number of hidden tokens per sample when the caller knows it (no host
        synchronisation, see :func:`maskvid_edu.masking.check_mask`).

        Returns the normalised features of the visible tokens ``(B, N_vis, dim)`` (all ``N``
        tokens when ``mask`` is None), raster order.
        """
        grid = self.token_grid(video)
        N = grid[0] * grid[1] * grid[2]
        pos = self.position_embedding(grid, video.device)  # (N, dim)
        if mask is None:
            x = self.patch_embed(video)  # (B, N, dim)
            x = x + pos.to(x.dtype)
        else:
            M = check_mask(mask, N, count=masked_count)
            check_mask_batch(mask, video)
            visible = token_index(~mask, N - M)  # (B, N_vis)
            x = self.patch_embed(video, visible)  # (B, N_vis, dim)
            x = x + pos[visible].to(x.dtype)  # each visible token keeps its position in the full clip
        x = run_blocks(self.blocks, x, self.config.use_checkpoint and self.training)
        return self.norm(x)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` → ``(B, dim)``: mean over tokens (then ``fc_norm`` with mean pooling)."""
        x = tokens.mean(dim=1)
        return self.fc_norm(x) if self.fc_norm is not None else x

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Clip-level features ``(B, dim)`` of all tokens."""
        return self.pool(self(video))

    def classify(self, video: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` (needs ``num_classes > 0``)."""
        if self.config.num_classes == 0:
            raise ValueError("classify needs a head: build the encoder with num_classes > 0")
        return self.head(self.head_drop(self.forward_features(video)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
