"""Sparse ResNets: VideoMAC's LayerNorm/GELU ResNet and a torchvision-layout BatchNorm ResNet.

Two ResNet flavours share one implementation (blocks built from :mod:`maskvid_edu.sparse` layers):

``norm="ln"`` — VideoMAC's sparse ResNet (``VideoMAC/models/resnetv2_sparse.py``), the encoder of its
RN-50 results. Not torchvision's network: the stem is a 4×4 stride-4 convolution (with bias)
followed by LayerNorm, every BatchNorm is a LayerNorm over each site's channels (eps 1e-6) and
every ReLU a GELU. Convolutions have no bias; the shortcut projection is a 1×1 (strided)
convolution followed by LayerNorm. ResNet-18 uses basic blocks (2, 2, 2, 2), ResNet-50
bottlenecks (3, 4, 6, 3) with width ×4 expansion; stride 2 sits on the first 3×3 convolution of
stages 2–4. Total stride 32, like the 32-pixel mask patches.

``norm="bn"`` — torchvision's ResNet-50 layout (7×7 stride-2 stem without bias, BatchNorm, ReLU,
3×3 stride-2 max-pool, the same bottleneck stages) with BatchNorm statistics over visible sites
(:class:`~maskvid_edu.sparse.SparseBatchNorm2d`) and a max-pool that ignores hidden sites, so that
ImageNet-style ResNet weights can be pre-trained with masks, and torchvision's weights load
(:func:`convert_torchvision_state_dict`).

Parameter names (both flavours): ``stem.0`` (conv), ``stem.1`` (norm), ``layer{1-4}.{j}.conv{k}``,
``.norm{k}``, ``.downsample.{0,1}``; torchvision's ``bn{k}`` become ``norm{k}``.

``forward(x (B, 3, H, W), mask (B, (H/32)·(W/32)) bool True = masked | None)`` → last stage
``(B, C, H/32, W/32)`` with zeros at hidden patches. Hidden pixels are zeroed before the stem and
the stem output is made sparse at the stem's stride (the patch mask upsampled to it), so even the
overlapping 7×7 stem never reads hidden pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from torch import Tensor

from ..sparse import (
    BACKENDS,
    SparseBatchNorm2d,
    SparseConv2d,
    SparseGELU,
    SparseLayerNorm,
    SparseMaxPool2d,
    SparseReLU,
    SparseStem,
    to_dense,
    upsample_mask,
)
from .convnextv2 import MASK_PATCH, check_mask_grid, mask_pixels
from .registry import register, replace_config

__all__ = ["ResNetConfig", "SparseResNet", "BasicBlock", "Bottleneck", "RESNET_SIZES", "build_resnet",
           "convert_torchvision_state_dict"]


@dataclass
class ResNetConfig:
    """Configuration of :class:`SparseResNet` (defaults: VideoMAC's ResNet-50)."""

    block: str = "bottleneck"  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50/101)
    layers: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64  # channels of the stem and of the first stage's blocks
    # "ln": VideoMAC (LayerNorm + GELU, 4×4 stem); "bn": torchvision (BatchNorm + ReLU, 7×7 stem + max-pool)
    norm: str = "ln"
    in_chans: int = 3
    ln_eps: float = 1e-6
    backend: str = "masked"

    def __post_init__(self):
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        if self.norm not in ("ln", "bn"):
            raise ValueError(f"norm must be 'ln' (VideoMAC) or 'bn' (torchvision), got {self.norm!r}")
        if len(self.layers) != 4:
            raise ValueError(f"layers needs 4 stages, got {self.layers}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")


def _norm(cfg: ResNetConfig, channels: int) -> nn.Module:
    return SparseLayerNorm(channels, eps=cfg.ln_eps) if cfg.norm == "ln" else SparseBatchNorm2d(channels)


def _act(cfg: ResNetConfig) -> nn.Module:
    return SparseGELU() if cfg.norm == "ln" else SparseReLU()


class BasicBlock(nn.Module):
    """``act(norm2(conv3×3(act(norm1(conv3×3_s(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, cfg: ResNetConfig, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = SparseConv2d(in_ch, width, 3, stride=stride, bias=False)
        self.norm1 = _norm(cfg, width)
        self.conv2 = SparseConv2d(width, width, 3, bias=False)
        self.norm2 = _norm(cfg, width)
        self.act = _act(cfg)
        self.downsample = downsample

    def forward(self, x):
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(out + shortcut)


class Bottleneck(nn.Module):
    """``act(norm3(conv1×1(act(norm2(conv3×3_s(act(norm1(conv1×1(x)))))))) + shortcut(x))``, 4× expansion."""

    expansion = 4

    def __init__(self, cfg: ResNetConfig, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = SparseConv2d(in_ch, width, 1, bias=False)
        self.norm1 = _norm(cfg, width)
        self.conv2 = SparseConv2d(width, width, 3, stride=stride, bias=False)
        self.norm2 = _norm(cfg, width)
        self.conv3 = SparseConv2d(width, width * self.expansion, 1, bias=False)
        self.norm3 = _norm(cfg, width * self.expansion)
        self.act = _act(cfg)
        self.downsample = downsample

    def forward(self, x):
        out = self.act(self.norm1(self.conv1(x)))
        out = self.act(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(out + shortcut)


class SparseResNet(nn.Module):
    """Sparse ResNet encoder: ``forward(x, mask=None) -> (B, C_out, H/32, W/32)``."""

    def __init__(self, config: ResNetConfig | None = None):
        super().__init__()
        self.config = c = config or ResNetConfig()
        if c.norm == "ln":  # VideoMAC: patchify stem, stride 4
            self.stem = SparseStem(nn.Conv2d(c.in_chans, c.width, kernel_size=4, stride=4),
                                   SparseLayerNorm(c.width, eps=c.ln_eps), backend=c.backend)
            self.stem_stride = 4
        else:  # torchvision: 7×7 stride 2 (sparse from stride 2 on) + max-pool stride 2
            self.stem = SparseStem(nn.Conv2d(c.in_chans, c.width, kernel_size=7, stride=2, padding=3, bias=False),
                                   SparseBatchNorm2d(c.width), SparseReLU(), SparseMaxPool2d(3, 2), backend=c.backend)
            self.stem_stride = 2
        block = BasicBlock if c.block == "basic" else Bottleneck
        self._in_ch = c.width
        self.layer1 = self._make_layer(block, c.width, c.layers[0], 1)
        self.layer2 = self._make_layer(block, c.width * 2, c.layers[1], 2)
        self.layer3 = self._make_layer(block, c.width * 4, c.layers[2], 2)
        self.layer4 = self._make_layer(block, c.width * 8, c.layers[3], 2)
        self.num_features = self._in_ch
        self._init_weights()

    def _make_layer(self, block, width: int, blocks: int, stride: int) -> nn.Sequential:
        c = self.config
        downsample = None
        if stride != 1 or self._in_ch != width * block.expansion:
            downsample = nn.Sequential(SparseConv2d(self._in_ch, width * block.expansion, 1, stride=stride, bias=False),
                                       _norm(c, width * block.expansion))
        layers = [block(c, self._in_ch, width, stride, downsample)]
        self._in_ch = width * block.expansion
        layers += [block(c, self._in_ch, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if self.config.norm == "ln":  # VideoMAC: truncated normal
                    nn.init.trunc_normal_(m.weight, std=0.02)
                else:  # torchvision: Kaiming normal (fan_out, ReLU)
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_stages(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Outputs of layer1…layer4, dense ``(B, C_i, H/2^(i+2), W/2^(i+2))`` with zeros at hidden sites."""
        return self._encode(x, mask, all_stages=True)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Last-stage features ``(B, C_out, H/32, W/32)``; zeros at hidden patches.

        Args:
            x: ``(B, 3, H, W)`` normalised images, H and W multiples of 32.
            mask: ``(B, (H/32)·(W/32))`` bool, True = hidden 32-pixel patch; None = dense inference.
        """
        return self._encode(x, mask, all_stages=False)[0]

    def _encode(self, x: Tensor, mask: Tensor | None, all_stages: bool) -> list[Tensor]:
        grid = check_mask_grid(x, mask)
        b = x.shape[0]
        stem_mask = None if mask is None else upsample_mask(mask, grid, MASK_PATCH // self.stem_stride)
        h = self.stem(mask_pixels(x, mask, grid), stem_mask)  # sparse map at stride 4
        outs = []
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            h = layer(h)  # stride 2^(i+2)
            if all_stages or i == 3:
                scale = MASK_PATCH // 2 ** (i + 2)
                outs.append(to_dense(h, (b, grid[0] * scale, grid[1] * scale)))
        return outs


# --------------------------------------------------------------------------------------------
# torchvision weights
# --------------------------------------------------------------------------------------------
def convert_torchvision_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ResNet state dict → :class:`SparseResNet` (``norm="bn"``) state dict.

    ``conv1`` → ``stem.0``, ``bn1`` → ``stem.1``, ``layerX.Y.bnK`` → ``layerX.Y.normK``; the
    classifier ``fc.*`` is dropped. Running statistics come along.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        if key.startswith("conv1."):
            key = "stem.0." + key[len("conv1."):]
        elif key.startswith("bn1."):
            key = "stem.1." + key[len("bn1."):]
        elif key.startswith("layer"):
            parts = key.split(".")
            if len(parts) > 2 and parts[2].startswith("bn"):
                parts[2] = "norm" + parts[2][2:]
            key = ".".join(parts)
        else:
            raise ValueError(f"unexpected key {key!r} in a torchvision ResNet state dict")
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------
#: name → config fields; ``mac_*`` are VideoMAC's LN/GELU networks, ``resnet50_bn`` torchvision's layout.
RESNET_SIZES: dict[str, dict] = {
    "mac_resnet18": dict(block="basic", layers=(2, 2, 2, 2), norm="ln"),
    "mac_resnet50": dict(block="bottleneck", layers=(3, 4, 6, 3), norm="ln"),
    "resnet50_bn": dict(block="bottleneck", layers=(3, 4, 6, 3), norm="bn"),
    "resnet_demo": dict(block="basic", layers=(1, 1, 1, 1), width=16, norm="ln"),
}


def build_resnet(name: str, **overrides) -> SparseResNet:
    """Build a sparse ResNet by name (see :data:`RESNET_SIZES`); overrides set config fields."""
    if name not in RESNET_SIZES:
        raise ValueError(f"unknown ResNet {name!r}; known: {', '.join(RESNET_SIZES)}")
    return SparseResNet(replace_config(ResNetConfig(**RESNET_SIZES[name]), overrides))


@register("encoder_mac_resnet18")
def encoder_mac_resnet18(**overrides) -> SparseResNet:
    """VideoMAC's sparse ResNet-18 (LayerNorm + GELU, 4×4 stem; basic blocks 2-2-2-2)."""
    return build_resnet("mac_resnet18", **overrides)


@register("encoder_mac_resnet50")
def encoder_mac_resnet50(**overrides) -> SparseResNet:
    """VideoMAC's sparse ResNet-50 (LayerNorm + GELU, 4×4 stem; bottlenecks 3-4-6-3)."""
    return build_resnet("mac_resnet50", **overrides)


@register("encoder_resnet50_bn")
def encoder_resnet50_bn(**overrides) -> SparseResNet:
    """Sparse ResNet-50 in torchvision's layout (BatchNorm over visible sites, 7×7 stem + max-pool)."""
    return build_resnet("resnet50_bn", **overrides)


@register("encoder_resnet_demo")
def encoder_resnet_demo(**overrides) -> SparseResNet:
    """CPU preset: VideoMAC-style sparse ResNet, basic blocks 1-1-1-1, width 16."""
    return build_resnet("resnet_demo", **overrides)
