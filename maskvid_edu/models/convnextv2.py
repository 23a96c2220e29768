"""ConvNeXt V2 encoder built from sparse layers (the FCMAE / VideoMAC encoder).

ConvNeXt V2 (Woo et al., 2023) is a ConvNeXt whose MLP gains Global Response Normalisation, so
that it can be pre-trained as a *fully convolutional masked autoencoder* (FCMAE): 60 % of the
32×32-pixel patches of an image are hidden and the encoder sees only the rest, through sparse
convolutions (:mod:`maskvid_edu.sparse`). VideoMAC (Pei et al., 2024) uses the same encoder on
pairs of video frames (ConvNeXtV2-S in its tables).

Layout (official ``ConvNeXt-V2/models/convnextv2.py``, parameter names kept)::

    downsample_layers.0  stem: Conv 4×4 stride 4 → LayerNorm                       stride 4
    stages.0             depths[0] × Block(dims[0])
    downsample_layers.i  LayerNorm → Conv 2×2 stride 2           (i = 1, 2, 3)        stride 8, 16, 32
    stages.i             depths[i] × Block(dims[i])

    Block(x) = x + DropPath( pwconv2( GRN( GELU( pwconv1( LN( dwconv7×7(x) ) ) ) ) ) )
               pwconv1: dim → 4·dim, pwconv2: 4·dim → dim (linear layers per site)

Published sizes (depths; dims): atto (2,2,6,2; 40…320), femto (2,2,6,2; 48…384), pico
(2,2,6,2; 64…512), nano (2,2,8,2; 80…640), tiny (3,3,9,3; 96…768), small (3,3,27,3; 96…768 —
timm's ``convnextv2_small`` and VideoMAC's ConvNeXtV2-S; the ConvNeXt V2 paper lists no "small"),
base (3,3,27,3; 128…1024), large (192…1536), huge (352…2816). Widths double per stage.

The encoder takes ``(x (B, 3, H, W), mask (B, h·w) bool True = masked or None)`` with
``(h, w) = (H/32, W/32)`` and returns the last stage ``(B, dims[-1], H/32, W/32)`` with exact zeros at
masked patches. ``mask=None`` runs the ordinary dense ConvNeXt V2 with the same weights.

Weights from timm: :func:`convert_timm_state_dict` maps timm's ``convnextv2_*`` keys onto ours
(the classification head is not part of the encoder).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from ..sparse import (
    BACKENDS,
    SparseConv2d,
    SparseDropPath,
    SparseGELU,
    SparseGRN,
    SparseLayerNorm,
    SparseLinear,
    SparseStem,
    to_dense,
    upsample_mask,
)
from .registry import register, replace_config

__all__ = ["ConvNeXtV2Config", "ConvNeXtV2Encoder", "CONVNEXTV2_SIZES", "build_convnextv2",
           "convert_timm_state_dict", "check_mask_grid"]

#: (depths, dims) of every size; ``demo`` is the CPU preset of this course.
CONVNEXTV2_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "huge": ((3, 3, 27, 3), (352, 704, 1408, 2816)),
    "demo": ((1, 1, 2, 1), (16, 32, 64, 128)),
}

MASK_PATCH = 32  # the encoder's total stride = the side of one mask patch in pixels


@dataclass
class ConvNeXtV2Config:
    """Configuration of :class:`ConvNeXtV2Encoder` (defaults: ConvNeXt V2-Tiny)."""

    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    in_chans: int = 3
    drop_path_rate: float = 0.0
    ln_eps: float = 1e-6
    backend: str = "masked"  # "masked" (pure PyTorch, readable), "packed" (pure PyTorch, fast) or "minkowski"

    def __post_init__(self):
        if len(self.depths) != 4 or len(self.dims) != 4:
            raise ValueError(f"depths and dims need 4 stages, got depths={self.depths}, dims={self.dims}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")


class Block(nn.Module):
    """One ConvNeXt V2 block on a sparse map ``(B, H, W, dim)`` (see the module docstring)."""

    def __init__(self, dim: int, drop_path: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.dwconv = SparseConv2d(dim, dim, kernel_size=7, groups=dim)  # depthwise, submanifold
        self.norm = SparseLayerNorm(dim, eps=eps)
        self.pwconv1 = SparseLinear(dim, 4 * dim)
        self.act = SparseGELU()
        self.grn = SparseGRN(4 * dim)
        self.pwconv2 = SparseLinear(4 * dim, dim)
        self.drop_path = SparseDropPath(drop_path)

    def forward(self, x):
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(self.dwconv(x))))))
        return x + self.drop_path(y)


def check_mask_grid(x: Tensor, mask: Tensor | None, patch: int = MASK_PATCH) -> tuple[int, int]:
    """Validate ``x (B, C, H, W)`` and ``mask (B, h·w)``; return the patch grid ``(h, w)``."""
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image size must be a multiple of {patch}, got {h}×{w}")
    grid = (h // patch, w // patch)
    if mask is not None:
        if mask.dtype != torch.bool or tuple(mask.shape) != (b, grid[0] * grid[1]):
            raise ValueError(f"mask must be bool (B, h·w) = ({b}, {grid[0] * grid[1]}) with True = masked "
                             f"for {patch}-pixel patches, got {mask.dtype} {tuple(mask.shape)}")
    return grid


def mask_pixels(x: Tensor, mask: Tensor | None, grid: tuple[int, int], patch: int = MASK_PATCH) -> Tensor:
    """Zero the pixels of hidden patches: ``x (B, C, H, W)`` × visible ``(B, 1, H, W)``."""
    if mask is None:
        return x
    hidden = upsample_mask(mask, grid, patch).unsqueeze(1)  # (B, 1, H, W)
    return x.masked_fill(hidden, 0.0)


class ConvNeXtV2Encoder(nn.Module):
    """Sparse ConvNeXt V2 encoder: ``forward(x, mask=None) -> (B, dims[-1], H/32, W/32)``."""

    def __init__(self, config: ConvNeXtV2Config | None = None):
        super().__init__()
        self.config = c = config or ConvNeXtV2Config()
        self.num_features = c.dims[-1]
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(SparseStem(nn.Conv2d(c.in_chans, c.dims[0], kernel_size=4, stride=4),
                                                 SparseLayerNorm(c.dims[0], eps=c.ln_eps), backend=c.backend))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                SparseLayerNorm(c.dims[i], eps=c.ln_eps),
                SparseConv2d(c.dims[i], c.dims[i + 1], kernel_size=2, stride=2),
            ))
        n_blocks = sum(c.depths)
        rates = [c.drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]  # linear 0 → rate
        self.stages = nn.ModuleList()
        start = 0
        for i in range(4):
            blocks = [Block(c.dims[i], rates[start + j], c.ln_eps) for j in range(c.depths[i])]
            self.stages.append(nn.Sequential(*blocks))
            start += c.depths[i]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _encode(self, x: Tensor, mask: Tensor | None, all_stages: bool) -> list[Tensor]:
        grid = check_mask_grid(x, mask)
        b = x.shape[0]
        stem_mask = None if mask is None else upsample_mask(mask, grid, MASK_PATCH // 4)  # (B, H/4, W/4)
        h = self.downsample_layers[0](mask_pixels(x, mask, grid), stem_mask)  # sparse map at stride 4
        outs = []
        for i in range(4):
            if i > 0:
                h = self.downsample_layers[i](h)  # stride 2^(i+2)
            h = self.stages[i](h)
            if all_stages or i == 3:
                scale = MASK_PATCH // 2 ** (i + 2)  # sites per patch side at this stage
                outs.append(to_dense(h, (b, grid[0] * scale, grid[1] * scale)))  # (B, dims[i], h·s, w·s)
        return outs

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Last-stage features ``(B, dims[-1], H/32, W/32)``; zeros at hidden patches.

        Args:
            x: ``(B, 3, H, W)`` normalised images, H and W multiples of 32.
            mask: ``(B, (H/32)·(W/32))`` bool, True = hidden 32-pixel patch; None = dense inference.
        """
        return self._encode(x, mask, all_stages=False)[0]

    def forward_stages(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """All four stage outputs, dense ``(B, dims[i], H/2^(i+2), W/2^(i+2))``, zeros at hidden sites."""
        return self._encode(x, mask, all_stages=True)


# --------------------------------------------------------------------------------------------
# timm weights
# --------------------------------------------------------------------------------------------
def convert_timm_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm ``convnextv2_*`` state dict → :class:`ConvNeXtV2Encoder` state dict.

    ``stem.{0,1}`` → ``downsample_layers.0.{0,1}``; ``stages.i.downsample.{0,1}`` →
    ``downsample_layers.i.{0,1}``; ``stages.i.blocks.j.{conv_dw, norm, mlp.fc1, mlp.grn, mlp.fc2}``
    → ``stages.i.j.{dwconv, norm, pwconv1, grn, pwconv2}``; timm's GRN ``weight/bias`` are our
    ``gamma/beta``; 1×1-conv MLP weights (atto…nano) become linear weights. ``head.*`` and
    ``norm_pre.*`` (classifier) are dropped.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] in ("head", "norm_pre"):
            continue
        if parts[0] == "stem":
            out["downsample_layers.0." + ".".join(parts[1:])] = value
            continue
        if parts[0] != "stages":
            raise ValueError(f"unexpected key {key!r} in a timm ConvNeXt V2 state dict")
        i = parts[1]
        if parts[2] == "downsample":
            out[f"downsample_layers.{i}." + ".".join(parts[3:])] = value
            continue
        if parts[2] != "blocks":
            raise ValueError(f"unexpected key {key!r} in a timm ConvNeXt V2 state dict")
        j, rest = parts[3], ".".join(parts[4:])
        rename = {"conv_dw.weight": "dwconv.weight", "conv_dw.bias": "dwconv.bias",
                  "norm.weight": "norm.weight", "norm.bias": "norm.bias",
                  "mlp.fc1.weight": "pwconv1.weight", "mlp.fc1.bias": "pwconv1.bias",
                  "mlp.fc2.weight": "pwconv2.weight", "mlp.fc2.bias": "pwconv2.bias",
                  "mlp.grn.weight": "grn.gamma", "mlp.grn.bias": "grn.beta"}
        if rest not in rename:
            raise ValueError(f"unexpected key {key!r} in a timm ConvNeXt V2 state dict "
                             "(layer scale or other non-V2 layers are not part of ConvNeXt V2)")
        new = rename[rest]
        if new.startswith("pwconv") and new.endswith("weight") and value.dim() == 4:
            value = value[:, :, 0, 0]  # 1×1 conv (out, in, 1, 1) → linear (out, in)
        if new.startswith("grn"):
            value = value.reshape(-1)
        out[f"stages.{i}.{j}.{new}"] = value
    return out


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------
def build_convnextv2(size: str, **overrides) -> ConvNeXtV2Encoder:
    """Build a ConvNeXt V2 encoder of a published size (or ``"demo"``); overrides set config fields."""
    if size not in CONVNEXTV2_SIZES:
        raise ValueError(f"unknown ConvNeXt V2 size {size!r}; known: {', '.join(CONVNEXTV2_SIZES)}")
    depths, dims = CONVNEXTV2_SIZES[size]
    return ConvNeXtV2Encoder(replace_config(ConvNeXtV2Config(depths=depths, dims=dims), overrides))


@register("encoder_convnextv2_atto")
def encoder_convnextv2_atto(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-atto encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["atto"]``)."""
    return build_convnextv2("atto", **overrides)


@register("encoder_convnextv2_femto")
def encoder_convnextv2_femto(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-femto encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["femto"]``)."""
    return build_convnextv2("femto", **overrides)


@register("encoder_convnextv2_pico")
def encoder_convnextv2_pico(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-pico encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["pico"]``)."""
    return build_convnextv2("pico", **overrides)


@register("encoder_convnextv2_nano")
def encoder_convnextv2_nano(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-nano encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["nano"]``)."""
    return build_convnextv2("nano", **overrides)


@register("encoder_convnextv2_tiny")
def encoder_convnextv2_tiny(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-tiny encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["tiny"]``)."""
    return build_convnextv2("tiny", **overrides)


@register("encoder_convnextv2_small")
def encoder_convnextv2_small(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-small encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["small"]``)."""
    return build_convnextv2("small", **overrides)


@register("encoder_convnextv2_base")
def encoder_convnextv2_base(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-base encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["base"]``)."""
    return build_convnextv2("base", **overrides)


@register("encoder_convnextv2_large")
def encoder_convnextv2_large(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-large encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["large"]``)."""
    return build_convnextv2("large", **overrides)


@register("encoder_convnextv2_huge")
def encoder_convnextv2_huge(**overrides) -> ConvNeXtV2Encoder:
    """Sparse ConvNeXt V2-huge encoder (depths and dims: :data:`CONVNEXTV2_SIZES` ``["huge"]``)."""
    return build_convnextv2("huge", **overrides)


@register("encoder_convnextv2_demo")
def encoder_convnextv2_demo(**overrides) -> ConvNeXtV2Encoder:
    """The sparse ConvNeXt V2 encoder of the CPU preset (:data:`CONVNEXTV2_SIZES` ``["demo"]``)."""
    return build_convnextv2("demo", **overrides)
