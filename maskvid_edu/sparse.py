"""Sparse convolution for masked ConvNet pre-training: one layer API, two backends.

The problem
-----------
A masked autoencoder hides most of an image and asks an encoder to describe what is left. A
Vision Transformer simply drops the hidden tokens. A ConvNet cannot drop pixels: if the hidden
regions are filled with zeros (or a mask token) and fed through ordinary convolutions, every 3×3
or 7×7 kernel *pulls visible content into the hidden regions*, layer after layer, until the mask
pattern has dissolved ("mask pattern dissipation"). The network then spends its capacity on the
artificial boundary between zeros and content, and what it learns transfers badly to unmasked
images.

The fix (ConvNeXt V2's FCMAE, VideoMAC) is to treat the visible part as a **sparse set of active
sites** and use *submanifold sparse convolution*: an output exists only at active sites and sums
only over active neighbours,

    y[u] = b + Σ_{k ∈ kernel offsets, u+k active}  W[k] · x[u+k]      for every active site u,

so hidden sites stay empty from the first layer to the last.

Two backends, same numbers
--------------------------
``masked`` (default, pure PyTorch, CPU and GPU): keep a dense ``(B, H, W, C)`` grid, zero its
inactive sites, run the ordinary dense operation, and zero the inactive sites again before the
next operation that mixes sites. Because inactive inputs are zero they add nothing to any sum,
and re-masking removes the outputs that a sparse convolution would not produce, so for these
architectures a dense op on a zero-filled map, re-masked around every spatial op, *equals*
sparse convolution — ConvNeXt V2's paper says "numerically identical". Per-site operations in
between (LayerNorm, linear layers, GELU) cannot move anything across sites, so the re-masking
waits until it matters (:attr:`SparseMap.clean`). What needs care is every operation that
*pools statistics* over sites: BatchNorm must use visible sites only (:class:`SparseBatchNorm2d`),
GRN's L2 norm must only see visible sites (:class:`SparseGRN`; zeros at hidden sites make that
automatic), and max-pooling must not see the zeros (:class:`SparseMaxPool2d` fills hidden sites
with ``-inf``).

``minkowski``: the same layers run on ``MinkowskiEngine.SparseTensor`` s — a list of active
coordinates with a feature row each — through MinkowskiEngine's sparse kernels. The *parameters
are the same tensors* (``weight`` in PyTorch layout, converted to MinkowskiEngine's kernel layout
on the fly), so a model can switch backends without touching its state dict. MinkowskiEngine is
optional: ``make minkowski`` builds it (:mod:`maskvid_edu.minkowski_build`).

Strided layers follow MinkowskiEngine's rule for which outputs exist: output site ``v`` of a
stride-``s`` layer is active when *any* input site of its ``s × s`` block is active. With masks made
of 32-pixel patches and strides dividing 32 that is the same as upsampling the patch mask to each
stage (:func:`upsample_mask`).

Kernel alignment (why no ``padding`` argument): MinkowskiEngine centres odd kernels on the output
site and places even kernels at offsets ``0 … k-1``. The dense equivalents are ``padding = k // 2``
for odd ``k`` and ``padding = 0`` for even ``k`` (non-overlapping patchify / downsample convs).

Dense inference with the same weights: pass ``mask=None`` to :func:`to_sparse`. Every layer then
skips masking and performs exactly the dense network's operation, so a sparse-pretrained encoder
becomes the ordinary ConvNet for downstream tasks.

Also here: :func:`reference_sparse_conv2d`, an explicit gather/scatter implementation built from a
per-offset *kernel map* (the algorithm inside real sparse-convolution libraries), used by the
tests as an independent reference; and :func:`bench_sparse`, a side-by-side timing.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .utils import synchronize

__all__ = [
    "BACKENDS",
    "SparseMap",
    "to_sparse",
    "to_dense",
    "active_mask",
    "upsample_mask",
    "downsample_active",
    "SparseConv2d",
    "SparseLinear",
    "SparseLayerNorm",
    "SparseBatchNorm2d",
    "SparseGRN",
    "SparseGELU",
    "SparseReLU",
    "SparseMaxPool2d",
    "SparseDropPath",
    "SparseStem",
    "torch_to_minkowski_kernel",
    "minkowski_to_torch_kernel",
    "require_minkowski",
    "minkowski_available",
    "kernel_map",
    "reference_sparse_conv2d",
    "bench_sparse",
]

BACKENDS = ("masked", "minkowski")


# --------------------------------------------------------------------------------------------
# the masked backend's sparse tensor
# --------------------------------------------------------------------------------------------
@dataclass
class SparseMap:
    """A dense grid of sites, some of them active: the ``masked`` backend's sparse tensor.

    Attributes:
        features: ``(B, H, W, C)`` — one feature vector per site (channels last, like the
            ``(N, C)`` feature matrix of a MinkowskiEngine tensor).
        active: ``(B, H, W)`` bool, True = active (visible) site; ``None`` = every site is active
            (dense inference: no masking work at all).
        clean: whether inactive sites hold exact zeros. Operations that act on each site alone
            (LayerNorm, linear layers, activations) may leave finite garbage there and set
            ``clean=False``; operations that *mix* sites (convolution, pooling, BatchNorm and GRN
            statistics) read :meth:`zeroed` features. Re-masking only where sites mix is what
            makes the masked backend cheap, and equal to sparse convolution all the same.
    """

    features: Tensor
    active: Tensor | None = None
    clean: bool = True

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, C, H, W)`` of the equivalent dense map."""
        b, h, w, c = self.features.shape
        return (b, c, h, w)

    def zeroed(self) -> Tensor:
        """Features ``(B, H, W, C)`` with exact zeros at inactive sites (re-masks once, in place of
        the stored features, if they were not clean)."""
        if not self.clean:
            self.features = _remask(self.features, self.active)
            self.clean = True
        return self.features

    def with_features(self, features: Tensor) -> "SparseMap":
        """Same active sites, new per-site ``(B, H, W, C')`` features (inactive sites not zeroed)."""
        return SparseMap(features, self.active, clean=self.active is None)

    def __add__(self, other: "SparseMap") -> "SparseMap":
        if not isinstance(other, SparseMap):
            return NotImplemented
        if self.active is not other.active:
            a, b = self.active, other.active
            if (a is None) != (b is None) or (a is not None and a.shape != b.shape):
                raise ValueError("cannot add SparseMaps with different active sites")
            if a is not None:  # equal contents, asserted on the device: no host synchronisation
                # (on the CPU the assertion fails at once, as a RuntimeError naming the problem)
                torch._assert_async((a == b).all(), "cannot add SparseMaps with different active sites")
        return SparseMap(self.features + other.features, self.active, clean=self.clean and other.clean)


def _remask(features: Tensor, active: Tensor | None) -> Tensor:
    """Zero the inactive sites of ``features (B, H, W, C)``; ``active=None`` returns it unchanged."""
    if active is None:
        return features
    return torch.where(active.unsqueeze(-1), features, features.new_zeros(()))  # (B, H, W, C)


# --------------------------------------------------------------------------------------------
# MinkowskiEngine (optional)
# --------------------------------------------------------------------------------------------
_ME = None


def require_minkowski():
    """Import MinkowskiEngine or raise an ImportError that says how to get it."""
    global _ME
    if _ME is None:
        try:
            with warnings.catch_warnings():  # a CPU-only build says so on every import
                warnings.filterwarnings("ignore", message=".*compiled with CPU_ONLY.*")
                import MinkowskiEngine as ME  # noqa: N817
        except ImportError as err:
            raise ImportError(
                "the 'minkowski' sparse backend needs MinkowskiEngine, which is not installed: "
                "run `make minkowski` (python -m maskvid_edu.minkowski_build)"
            ) from err
        _ME = ME
    return _ME


def minkowski_available() -> bool:
    try:
        require_minkowski()
    except ImportError:
        return False
    return True


def _is_minkowski(x) -> bool:
    global _ME
    if _ME is None:
        _ME = sys.modules.get("MinkowskiEngine")  # imported by the caller, not through us
    return _ME is not None and isinstance(x, _ME.SparseTensor)


def _check_sparse(x, layer: str) -> str:
    """Return ``'masked'`` or ``'minkowski'`` for a sparse input, else raise TypeError."""
    if isinstance(x, SparseMap):
        return "masked"
    if _is_minkowski(x):
        return "minkowski"
    raise TypeError(
        f"{layer} expects a SparseMap or a MinkowskiEngine SparseTensor, got {type(x).__name__}; "
        "wrap a dense (B, C, H, W) tensor with to_sparse(x, mask) (mask=None for dense inference)"
    )


def _me_like(x, features: Tensor):
    """A MinkowskiEngine tensor with ``x``'s coordinates and new ``(N, C')`` features."""
    return _ME.SparseTensor(features, coordinate_map_key=x.coordinate_map_key,
                            coordinate_manager=x.coordinate_manager)


def torch_to_minkowski_kernel(weight: Tensor) -> Tensor:
    """PyTorch conv weight → MinkowskiEngine kernel.

    Args:
        weight: ``(C_out, C_in, kh, kw)`` (``C_in`` per group).
    Returns:
        ``(kh·kw, C_in, C_out)`` with offset index ``k = dw·kh + dh`` (MinkowskiEngine enumerates
        offsets with the first coordinate — our ``h`` — fastest), i.e.
        ``kernel[dw·kh + dh, i, o] = weight[o, i, dh, dw]``.
    """
    o, i, kh, kw = weight.shape
    return weight.permute(3, 2, 1, 0).reshape(kw * kh, i, o)  # (K, C_in, C_out)


def minkowski_to_torch_kernel(kernel: Tensor, kernel_size: int) -> Tensor:
    """Inverse of :func:`torch_to_minkowski_kernel`; also accepts channelwise kernels ``(K, C)``
    (→ ``(C, 1, k, k)``) and MinkowskiEngine's 1×1 matrices ``(C_in, C_out)`` (→ ``(C_out, C_in, 1, 1)``)."""
    k = kernel_size
    if kernel.dim() == 2 and kernel.shape[0] == k * k and k > 1:  # channelwise (K, C)
        c = kernel.shape[1]
        return kernel.reshape(k, k, c).permute(2, 1, 0).unsqueeze(1).contiguous()  # (C, 1, k, k)
    if kernel.dim() == 2:  # 1×1 matrix (C_in, C_out)
        return kernel.t().reshape(kernel.shape[1], kernel.shape[0], 1, 1).contiguous()
    kk, i, o = kernel.shape
    if kk != k * k:
        raise ValueError(f"kernel has {kk} offsets, expected kernel_size² = {k * k}")
    return kernel.reshape(k, k, i, o).permute(3, 2, 1, 0).contiguous()  # (C_out, C_in, k, k)


# --------------------------------------------------------------------------------------------
# converters and masks
# --------------------------------------------------------------------------------------------
def to_sparse(x: Tensor, mask: Tensor | None = None, *, backend: str = "masked"):
    """Dense map → sparse map of its visible sites.

    Args:
        x: ``(B, C, H, W)`` dense features.
        mask: ``(B, H, W)`` bool, **True = masked** (the library's convention), or ``None`` for
            "everything visible" (dense inference).
        backend: ``"masked"`` → :class:`SparseMap`; ``"minkowski"`` → ``MinkowskiEngine.SparseTensor``
            with integer coordinates ``(b, h, w)`` at tensor stride 1.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    b, c, h, w = x.shape
    active = None
    if mask is not None:
        if mask.dtype != torch.bool or tuple(mask.shape) != (b, h, w):
            raise ValueError(f"mask must be bool (B, H, W) = {(b, h, w)} with True = masked, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        active = ~mask.to(x.device)  # (B, H, W)
    feats = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
    if backend == "masked":
        return SparseMap(feats, active, clean=active is None)  # zero-filled lazily, before sites mix
    ME = require_minkowski()
    if active is None:
        active = torch.ones(b, h, w, dtype=torch.bool, device=x.device)
    coords = active.nonzero().int().contiguous()  # (N, 3): (b, h, w), row-major order
    return ME.SparseTensor(features=feats[active], coordinates=coords, device=x.device)


def to_dense(x, shape: tuple[int, int, int] | None = None) -> Tensor:
    """Sparse map → dense ``(B, C, H, W)`` with zeros at inactive sites.

    Args:
        x: a :class:`SparseMap` or MinkowskiEngine tensor.
        shape: ``(B, H, W)`` of the grid at ``x``'s stride; required for MinkowskiEngine tensors
            (they do not know how far the grid extends beyond their last active site).
    """
    kind = _check_sparse(x, "to_dense")
    if kind == "masked":
        return x.zeroed().permute(0, 3, 1, 2)  # (B, C, H, W)
    if shape is None or len(shape) != 3:
        raise ValueError(f"shape must be (B, H, W) for a MinkowskiEngine tensor, got {shape}")
    b, h, w = shape
    out, _, _ = x.dense(shape=torch.Size([b, x.F.shape[1], h, w]), min_coordinate=torch.IntTensor([0, 0]))
    return out  # (B, C, H, W)


def active_mask(x, shape: tuple[int, int, int] | None = None) -> Tensor:
    """``(B, H, W)`` bool of active (visible) sites of a sparse map (shape as in :func:`to_dense`)."""
    kind = _check_sparse(x, "active_mask")
    if kind == "masked":
        if x.active is None:
            b, h, w, _ = x.features.shape
            return torch.ones(b, h, w, dtype=torch.bool, device=x.features.device)
        return x.active
    if shape is None or len(shape) != 3:
        raise ValueError(f"shape must be (B, H, W) for a MinkowskiEngine tensor, got {shape}")
    b, h, w = shape
    out = torch.zeros(b, h, w, dtype=torch.bool, device=x.F.device)
    stride = torch.tensor(x.tensor_stride, device=x.C.device)
    c = x.C.long()
    hw = c[:, 1:] // stride
    out[c[:, 0], hw[:, 0], hw[:, 1]] = True
    return out


def upsample_mask(mask: Tensor, grid: tuple[int, int], scale: int) -> Tensor:
    """Patch mask → mask at a finer stride.

    Args:
        mask: ``(B, h·w)`` bool, True = masked, raster order over ``grid``.
        grid: ``(h, w)`` patch grid (e.g. ``(H // 32, W // 32)`` for 32-pixel mask patches).
        scale: how many sites per patch side at the target stride (32 px patches at stride 4 → 8).
    Returns:
        ``(B, h·scale, w·scale)`` bool.
    """
    h, w = grid
    if mask.dim() != 2 or mask.shape[1] != h * w:
        raise ValueError(f"mask must be (B, h·w) = (B, {h * w}) for grid {grid}, got {tuple(mask.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    m = mask.reshape(-1, h, w)  # (B, h, w)
    return m.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)  # (B, h·s, w·s)


def downsample_active(active: Tensor | None, stride: int, size: tuple[int, int] | None = None) -> Tensor | None:
    """Active sites after a stride-``stride`` layer: a site is active if any site of its
    ``stride × stride`` input block is (MinkowskiEngine's rule), cropped to ``size`` when given."""
    if active is None or stride == 1:
        return active
    pooled = F.max_pool2d(active.unsqueeze(1).float(), stride, stride, ceil_mode=True)[:, 0] > 0  # (B, H', W')
    if size is not None:
        pooled = pooled[:, : size[0], : size[1]]
    return pooled


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------
class SparseConv2d(nn.Conv2d):
    """Sparse 2-D convolution (submanifold for stride 1; strided = downsampling).

    ``y[u] = b + Σ_k W[k] x[u + k]`` over active neighbours, at active output sites only. Covers
    full convolutions (``groups=1``), depthwise ones (``groups = in = out``, ConvNeXt's 7×7) and
    grouped ones. Parameters are ``nn.Conv2d``'s (``weight (C_out, C_in/groups, k, k)``, ``bias``).

    Args:
        in_channels, out_channels: channels.
        kernel_size: ``k``; odd kernels are centred (padding ``k // 2``); even kernels must be
            non-overlapping (``stride == k``, e.g. the 2×2 stride-2 downsampling conv).
        stride: ``s``; the output grid is ``s`` times coarser, active where any site of the
            ``s × s`` input block was active.
        groups, bias: as in ``nn.Conv2d``.

    Input/output: :class:`SparseMap` ``(B, H, W, C)`` or MinkowskiEngine tensor ``(N, C)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True):
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
        if kernel_size % 2 == 0 and stride != kernel_size:
            raise ValueError(f"an even kernel_size ({kernel_size}) needs stride == kernel_size "
                             f"(non-overlapping downsampling), got stride={stride}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2 if kernel_size % 2 else 0, groups=groups, bias=bias)
        self._me_kernel_generator = None

    def forward(self, x):
        if _check_sparse(x, "SparseConv2d") == "masked":
            out = self._conv_forward(x.zeroed().permute(0, 3, 1, 2), self.weight, self.bias)  # (B, C', H', W')
            out = out.permute(0, 2, 3, 1)  # (B, H', W', C'); inactive outputs are left for the next mixing op
            active = downsample_active(x.active, self.stride[0], out.shape[1:3])
            return SparseMap(out, active, clean=active is None)
        return self._forward_minkowski(x)

    # -- MinkowskiEngine path ------------------------------------------------------------
    def _kernel_generator(self):
        if self._me_kernel_generator is None:
            self._me_kernel_generator = _ME.KernelGenerator(
                kernel_size=self.kernel_size[0], stride=self.stride[0], dilation=1, dimension=2)
        return self._me_kernel_generator

    def _forward_minkowski(self, x):
        cin_g = self.in_channels // self.groups
        if self.groups == 1:
            out, key = self._me_full(x, x.F, self.weight)
        elif cin_g == 1 and self.out_channels == self.in_channels:  # depthwise / channelwise
            out, key = self._me_channelwise(x)
        else:  # grouped: one full convolution per group
            cout_g = self.out_channels // self.groups
            parts = []
            for g in range(self.groups):
                part, key = self._me_full(x, x.F[:, g * cin_g:(g + 1) * cin_g],
                                          self.weight[g * cout_g:(g + 1) * cout_g])
                parts.append(part)
            out = torch.cat(parts, dim=1)
        if self.bias is not None:
            out = out + self.bias  # (N', C')
        return _ME.SparseTensor(out, coordinate_map_key=key, coordinate_manager=x.coordinate_manager)

    def _me_full(self, x, feats: Tensor, weight: Tensor):
        if self.kernel_size[0] == 1 and self.stride[0] == 1:  # 1×1 submanifold: a matrix product
            return feats @ weight[:, :, 0, 0].t(), x.coordinate_map_key
        from MinkowskiEngine.MinkowskiSparseTensor import _get_coordinate_map_key
        from MinkowskiEngineBackend._C import ConvolutionMode

        out_key = _get_coordinate_map_key(x, None)  # new key: output coordinates made by the engine
        out = _ME.MinkowskiConvolutionFunction.apply(
            feats.contiguous(), torch_to_minkowski_kernel(weight).contiguous(), self._kernel_generator(),
            ConvolutionMode.DEFAULT, x.coordinate_map_key, out_key, x._manager)  # (N', C_out)
        return out, out_key

    def _me_channelwise(self, x):
        kg = self._kernel_generator()
        region_type, region_offset, _ = kg.get_kernel(x.tensor_stride, False)
        cm = x.coordinate_manager
        out_key = cm.stride(x.coordinate_map_key, kg.kernel_stride)
        kmap = cm.kernel_map(x.coordinate_map_key, out_key, kg.kernel_stride, kg.kernel_size,
                             kg.kernel_dilation, region_type=region_type, region_offset=region_offset)
        kernel = self.weight[:, 0].permute(2, 1, 0).reshape(-1, self.in_channels)  # (K, C), k = dw·kh + dh
        out = x.F.new_zeros(cm.size(out_key), self.in_channels)  # (N', C)
        for k, in_out in kmap.items():
            in_out = in_out.long().to(x.F.device)
            out = out.index_add(0, in_out[1], x.F[in_out[0]] * kernel[k])
        return out, out_key


def _apply_per_site(fn: Callable[[Tensor], Tensor], x, name: str):
    """Apply a per-site function to the feature vectors of a sparse map."""
    if _check_sparse(x, name) == "masked":
        return x.with_features(fn(x.features))
    return _me_like(x, fn(x.F))


class SparseLinear(nn.Linear):
    """A linear map applied to every active site (a 1×1 convolution); ``nn.Linear``'s parameters."""

    def forward(self, x):
        return _apply_per_site(super().forward, x, "SparseLinear")


class SparseLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each site (ConvNeXt's ``channels_first`` and
    ``channels_last`` LayerNorm are the same operation here: features are stored per site)."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x):
        return _apply_per_site(super().forward, x, "SparseLayerNorm")


class SparseGELU(nn.GELU):
    def forward(self, x):
        return _apply_per_site(super().forward, x, "SparseGELU")


class SparseReLU(nn.ReLU):
    def forward(self, x):
        return _apply_per_site(super().forward, x, "SparseReLU")


class SparseBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose statistics are taken over **visible sites only**.

    In training, for each channel ``c``: ``μ_c = mean_{active (b,h,w)} x``,
    ``σ²_c = mean (x − μ_c)²`` (biased, used to normalise), and the running statistics move by
    ``momentum`` towards ``μ_c`` and the *unbiased* variance ``σ²_c · n / (n − 1)`` with ``n`` the
    number of visible sites — the statistics of ``nn.BatchNorm1d`` on the visible sites' feature
    rows (which is MinkowskiEngine's ``MinkowskiBatchNorm``). Hidden sites would otherwise drag the mean to
    zero and shrink the variance by the mask ratio. In eval mode the running statistics are used.
    Buffers and parameters are ``nn.BatchNorm2d``'s, so torchvision checkpoints load as they are.
    """

    def forward(self, x):
        kind = _check_sparse(x, "SparseBatchNorm2d")
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        else:
            factor = 0.0 if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        running_mean = self.running_mean if track else None
        running_var = self.running_var if track else None

        def bn(rows: Tensor) -> Tensor:  # rows: (N, C) or (B, C, H, W)
            return F.batch_norm(rows, running_mean, running_var, self.weight, self.bias,
                                use_batch_stats, factor, self.eps)

        if kind == "minkowski":
            return _me_like(x, bn(x.F))
        if x.active is None:  # dense: exactly nn.BatchNorm2d
            return SparseMap(bn(x.features.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), None)
        # masked sums instead of gathering the visible rows (hidden sites hold zeros)
        f, vis = x.zeroed(), x.active.unsqueeze(-1)  # (B, H, W, C) zero at hidden sites, (B, H, W, 1)
        if f.dtype in (torch.float16, torch.bfloat16):  # statistics in float32, as autocast does for BN
            f = f.float()
        if use_batch_stats:
            n = x.active.sum().to(f.dtype)  # a device tensor: no host synchronisation
            torch._assert_async(n >= 2, "SparseBatchNorm2d needs at least 2 visible sites in training")
            mean = f.sum(dim=(0, 1, 2)) / n  # (C,)
            var = (f - mean).masked_fill(~vis, 0.0).square().sum(dim=(0, 1, 2)) / n  # (C,) biased
            if self.training and running_mean is not None:
                with torch.no_grad():
                    running_mean.mul_(1 - factor).add_(factor * mean)
                    running_var.mul_(1 - factor).add_(factor * var * n / (n - 1))  # unbiased
        else:
            mean, var = running_mean, running_var
        y = (f - mean) * torch.rsqrt(var + self.eps)  # (B, H, W, C)
        if self.weight is not None:
            y = y * self.weight + self.bias
        return x.with_features(y.to(x.features.dtype))


class SparseGRN(nn.Module):
    """ConvNeXt V2's Global Response Normalisation over visible sites.

    For each sample and channel ``c``: ``G_c = ‖x_{·,c}‖₂`` over the sample's **visible** sites,
    ``N_c = G_c / (mean_c' G_c' + eps)``, and ``y = x + γ ⊙ (x ⊙ N) + β`` at every visible site.
    With the ``masked`` backend hidden sites hold zeros, so the plain spatial norm already is the
    visible-site norm. Parameters ``gamma``, ``beta``: ``(dim,)``, initialised to zero (the layer
    starts as the identity).

    Note: the official sparse FCMAE layer (``MinkowskiGRN``) takes the norm over the feature
    rows of the *whole batch* at once; here it is per sample, which is what the dense GRN does,
    so that ``mask=None`` reproduces the dense network.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        if _check_sparse(x, "SparseGRN") == "masked":
            f = x.zeroed()  # (B, H, W, C), zero at hidden sites
            g = torch.linalg.vector_norm(f, ord=2, dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
            n = g / (g.mean(dim=-1, keepdim=True) + self.eps)  # (B, 1, 1, C)
            return x.with_features(f + self.gamma * (f * n) + self.beta)
        f = x.F  # (N, C)
        b = x.C[:, 0].long()  # (N,) sample of each row
        sumsq = f.new_zeros(int(b.max()) + 1, f.shape[1]).index_add(0, b, f * f)  # (B, C)
        nonzero = sumsq > 0
        g = torch.where(nonzero, sumsq, torch.ones_like(sumsq)).sqrt() * nonzero  # (B, C), safe gradient at 0
        n = g / (g.mean(dim=-1, keepdim=True) + self.eps)  # (B, C)
        return _me_like(x, f + self.gamma * (f * n[b]) + self.beta)

    def extra_repr(self) -> str:
        return f"{self.gamma.shape[0]}, eps={self.eps}"


class SparseMaxPool2d(nn.Module):
    """Max pooling over active neighbours (odd kernel, centred; e.g. ResNet's 3×3 stride 2).

    Hidden sites are filled with ``-inf`` before pooling so they never win; output sites follow
    the strided rule of :func:`downsample_active`.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size, self.stride = kernel_size, stride
        self._me_kernel_generator = None

    def forward(self, x):
        if _check_sparse(x, "SparseMaxPool2d") == "masked":
            f = x.features
            if x.active is not None:
                f = f.masked_fill(~x.active.unsqueeze(-1), float("-inf"))  # (B, H, W, C)
            out = F.max_pool2d(f.permute(0, 3, 1, 2), self.kernel_size, self.stride, self.kernel_size // 2)
            out = out.permute(0, 2, 3, 1)  # (B, H', W', C)
            active = downsample_active(x.active, self.stride, out.shape[1:3])
            return SparseMap(_remask(out, active), active)  # clean now: fully hidden windows hold -inf
        from MinkowskiEngine.MinkowskiPooling import MinkowskiLocalPoolingFunction
        from MinkowskiEngine.MinkowskiSparseTensor import _get_coordinate_map_key
        from MinkowskiEngineBackend._C import PoolingMode

        if self._me_kernel_generator is None:
            self._me_kernel_generator = _ME.KernelGenerator(kernel_size=self.kernel_size, stride=self.stride,
                                                            dilation=1, dimension=2)
        out_key = _get_coordinate_map_key(x, None)
        out = MinkowskiLocalPoolingFunction.apply(x.F, PoolingMode.LOCAL_MAX_POOLING, self._me_kernel_generator,
                                                  x.coordinate_map_key, out_key, x._manager)  # (N', C)
        return _ME.SparseTensor(out, coordinate_map_key=out_key, coordinate_manager=x.coordinate_manager)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class SparseDropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a whole sample with probability
    ``p`` and scale the kept ones by ``1 / (1 − p)``; the identity in eval mode or with ``p = 0``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        kind = _check_sparse(x, "SparseDropPath")
        if self.p == 0.0 or not self.training:
            return x
        if kind == "masked":
            b = x.features.shape[0]
            keep = x.features.new_empty(b, 1, 1, 1).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1, 1, 1)
            return SparseMap(x.features * keep, x.active, clean=x.clean)
        idx = x.C[:, 0].long()
        keep = x.F.new_empty(int(idx.max()) + 1, 1).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1)
        return _me_like(x, x.F * keep[idx])

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SparseStem(nn.Sequential):
    """A dense stem convolution followed by sparse layers.

    ``forward(x, mask)``: the stem convolution (element 0, a plain ``nn.Conv2d``) runs densely on
    the image whose hidden pixels were zeroed by the caller, its output is made sparse with the
    mask at the stem's stride (:func:`to_sparse`), and the remaining elements (norm, activation,
    pooling) run sparsely. Zero-filled input makes the dense stem equal to a sparse one.

    Args:
        conv: the stem ``nn.Conv2d``.
        layers: sparse layers applied after it.
        backend: ``"masked"`` or ``"minkowski"``.
    """

    def __init__(self, conv: nn.Conv2d, *layers: nn.Module, backend: str = "masked"):
        super().__init__(conv, *layers)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend

    def forward(self, x: Tensor, mask: Tensor | None = None):
        """x: ``(B, C, H, W)``; mask: ``(B, H/s, W/s)`` bool True = masked at the stem's stride ``s``."""
        modules = list(self)
        h = to_sparse(modules[0](x), mask, backend=self.backend)
        for layer in modules[1:]:
            h = layer(h)
        return h


# --------------------------------------------------------------------------------------------
# an explicit reference: kernel maps and gather / GEMM / scatter
# --------------------------------------------------------------------------------------------
def kernel_map(active: Tensor, kernel_size: int, stride: int = 1):
    """Which input site feeds which output site through which kernel offset.

    Walks over every active site and every kernel offset with plain Python (slow, explicit):

    Args:
        active: ``(B, H, W)`` bool, True = active input site.
        kernel_size, stride: as in :class:`SparseConv2d` (odd kernels centred, even kernels
            covering offsets ``0 … k-1`` of each stride block).
    Returns:
        ``(out_active (B, H', W') bool, pairs)`` where ``pairs[(dh, dw)]`` is a list of
        ``((b, h_in, w_in), (b, h_out, w_out))`` site pairs.
    """
    b, h, w = active.shape
    k, s = kernel_size, stride
    pad = k // 2 if k % 2 else 0
    h_out, w_out = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    sites = [tuple(t) for t in active.nonzero().tolist()]
    out_sites = {(bb, hh // s, ww // s) for bb, hh, ww in sites if hh // s < h_out and ww // s < w_out}
    out_active = torch.zeros(b, h_out, w_out, dtype=torch.bool)
    for site in out_sites:
        out_active[site] = True
    is_active = set(sites)
    pairs: dict[tuple[int, int], list] = {}
    for bb, ho, wo in sorted(out_sites):
        for dh in range(k):
            for dw in range(k):
                src = (bb, ho * s - pad + dh, wo * s - pad + dw)
                if src in is_active:
                    pairs.setdefault((dh, dw), []).append((src, (bb, ho, wo)))
    return out_active, pairs


def reference_sparse_conv2d(x: Tensor, active: Tensor, weight: Tensor, bias: Tensor | None = None,
                            stride: int = 1, groups: int = 1) -> tuple[Tensor, Tensor]:
    """Sparse convolution from first principles: for each kernel offset, *gather* the input rows,
    multiply by that offset's weight matrix, *scatter-add* into the output rows.

    Args:
        x: ``(B, C_in, H, W)`` features (values at inactive sites are ignored).
        active: ``(B, H, W)`` bool, True = active.
        weight: ``(C_out, C_in/groups, k, k)``; bias ``(C_out,)`` or None.
    Returns:
        ``(y (B, C_out, H', W') with zeros at inactive outputs, out_active (B, H', W'))``.
    """
    c_out, cin_g, k, _ = weight.shape
    out_active, pairs = kernel_map(active.cpu(), k, stride)
    b, h_out, w_out = out_active.shape
    cout_g = c_out // groups
    y = x.new_zeros(b, c_out, h_out, w_out)
    for (dh, dw), site_pairs in pairs.items():
        src = torch.tensor([p[0] for p in site_pairs])  # (P, 3)
        dst = torch.tensor([p[1] for p in site_pairs])  # (P, 3)
        rows = x[src[:, 0], :, src[:, 1], src[:, 2]]  # (P, C_in): gather
        contrib = torch.cat([rows[:, g * cin_g:(g + 1) * cin_g] @ weight[g * cout_g:(g + 1) * cout_g, :, dh, dw].t()
                             for g in range(groups)], dim=1)  # (P, C_out)
        flat = (dst[:, 0] * h_out + dst[:, 1]) * w_out + dst[:, 2]
        y_rows = y.permute(0, 2, 3, 1).reshape(-1, c_out).index_add(0, flat.to(x.device), contrib)  # scatter
        y = y_rows.reshape(b, h_out, w_out, c_out).permute(0, 3, 1, 2)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y * out_active.to(x.device).unsqueeze(1), out_active


# --------------------------------------------------------------------------------------------
# a side-by-side timing
# --------------------------------------------------------------------------------------------
def bench_sparse(model: nn.Module | None = None, *, batch: int = 2, size: int = 224, mask_ratio: float = 0.6,
                 steps: int = 3, warmup: int = 1, device: str = "cpu", print_result: bool = True) -> dict:
    """Time a training step (forward + backward) of an encoder with the ``masked`` sparse path
    versus the plain dense path (``mask=None``), measured in the same run.

    Args:
        model: an encoder ``model(x, mask) -> (B, C, h, w)`` with a 32-pixel mask grid; by default
            ``convnextv2_atto``.
        batch, size: input ``(batch, 3, size, size)``.
        mask_ratio: fraction of 32-pixel patches hidden in the sparse step.
    Returns:
        ``{"dense_s": …, "sparse_s": …, "ratio": sparse_s / dense_s}`` (median seconds per step).
    """
    if model is None:
        from .models.convnextv2 import build_convnextv2

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

    def step(m):
        model.zero_grad(set_to_none=True)
        model(x, m).float().square().mean().backward()
        synchronize(torch.device(device))

    times: dict[str, list[float]] = {"dense": [], "sparse": []}
    for i in range(warmup + steps):
        for name, m in (("dense", None), ("sparse", mask)):
            t0 = time.perf_counter()
            step(m)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    dense_s = sorted(times["dense"])[len(times["dense"]) // 2]
    sparse_s = sorted(times["sparse"])[len(times["sparse"]) // 2]
    result = {"dense_s": dense_s, "sparse_s": sparse_s, "ratio": sparse_s / dense_s}
    if print_result:
        print(f"dense step {dense_s * 1e3:.1f} ms | masked-sparse step {sparse_s * 1e3:.1f} ms | "
              f"ratio {result['ratio']:.2f} (batch {batch}, {size}², mask {mask_ratio:.0%}, {device})")
    return result


# --------------------------------------------------------------------------------------------
# measurements for the book: dissipation of the mask pattern, agreement of the backends
# --------------------------------------------------------------------------------------------
def dissipation_layers(encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers after which :func:`dissipation_profile` looks, in forward order.

    ConvNeXt V2 (:class:`~maskvid_edu.models.convnextv2.ConvNeXtV2Encoder`): ``stem``, then for
    each stage ``i`` its downsampling layer ``down{i}`` (``i > 0``) and every block
    ``stage{i}.{j}``. ResNet (:class:`~maskvid_edu.models.resnet.SparseResNet`): ``stem`` and every
    block ``layer{i}.{j}``. Other encoders: pass ``layers`` to :func:`dissipation_profile`.
    """
    if hasattr(encoder, "downsample_layers") and hasattr(encoder, "stages"):
        layers = []
        for i, (down, stage) in enumerate(zip(encoder.downsample_layers, encoder.stages)):
            layers.append(("stem" if i == 0 else f"down{i}", down))
            layers += [(f"stage{i}.{j}", block) for j, block in enumerate(stage)]
        return layers
    if all(hasattr(encoder, n) for n in ("stem", "layer1", "layer2", "layer3", "layer4")):
        layers = [("stem", encoder.stem)]
        for i in range(1, 5):
            layers += [(f"layer{i}.{j}", block) for j, block in enumerate(getattr(encoder, f"layer{i}"))]
        return layers
    raise ValueError(f"no default layer list for {type(encoder).__name__}: pass layers=[(name, module), ...]")


def _as_dense(out) -> Tensor:
    """A hooked layer output as the dense ``(B, C, H, W)`` map the next layer sees."""
    if isinstance(out, SparseMap):
        return _remask(out.features, out.active).permute(0, 3, 1, 2)  # no side effect on ``out``
    if isinstance(out, Tensor) and out.dim() == 4:
        return out
    raise TypeError(f"dissipation_profile can read SparseMap or (B, C, H, W) outputs, got {type(out).__name__} "
                    "(MinkowskiEngine tensors: measure with the 'masked' backend, whose numbers are the same)")


@torch.no_grad()
def dissipation_profile(encoder: nn.Module, x: Tensor, mask: Tensor, *, sparse: bool = True,
                        layers: list[tuple[str, nn.Module]] | None = None, atol: float = 1e-6,
                        return_maps: bool = False) -> list[dict]:
    """Mask-pattern dissipation, measured layer by layer.

    Which hidden sites carry information from the visible pixels after each layer? The encoder
    runs twice with the same mask: on ``x``, and on a *blank* input (all zeros). Hidden pixels are
    zero in both runs, so a hidden site whose activation differs between them can only have got
    it from visible pixels: it is **reached**. The share of reached hidden sites is the
    dissipation of the mask pattern; a sparse encoder keeps it at 0 in every layer.

    Args:
        encoder: ``encoder(x, mask) -> (B, C, H/32, W/32)`` built from :mod:`maskvid_edu.sparse`
            layers (ConvNeXt V2 or ResNet); run in eval mode, then restored.
        x: ``(B, 3, H, W)`` images, H and W multiples of 32.
        mask: ``(B, (H/32)·(W/32))`` bool, True = hidden 32-pixel patch.
        sparse: True → ``encoder(x, mask)`` (sparse convolution). False → the same weights as an
            ordinary dense ConvNet on the zero-filled image: ``encoder(x_masked, None)``.
        layers: ``[(name, module)]`` whose outputs are read; default :func:`dissipation_layers`.
        atol: a site counts as different / non-zero when its largest channel differs from the
            blank run / from zero by more than ``atol × max |activation|`` of that layer.
        return_maps: also return the ``(B, H', W')`` bool map of reached sites of each layer.

    Returns:
        One dict per layer: ``name``, ``stride`` (pixels per site), ``channels``, ``hidden_sites``
        (count over the batch), ``reached`` (share of hidden sites reached by visible content),
        ``nonzero`` (share of hidden sites with a non-zero activation — in a dense network this is
        1 right after the first convolution with a bias, reached or not), and ``map`` if asked.
    """
    if x.dim() != 4 or x.shape[-2] % 32 or x.shape[-1] % 32:
        raise ValueError(f"x must be (B, C, H, W) with H and W multiples of 32, got {tuple(x.shape)}")
    b, _, H, W = x.shape
    grid = (H // 32, W // 32)
    if mask.dtype != torch.bool or tuple(mask.shape) != (b, grid[0] * grid[1]):
        raise ValueError(f"mask must be bool (B, h·w) = ({b}, {grid[0] * grid[1]}) with True = hidden, "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    layers = dissipation_layers(encoder) if layers is None else list(layers)
    if not layers:
        raise ValueError("layers is empty: nothing to measure")
    hidden_pixels = upsample_mask(mask, grid, 32).unsqueeze(1).to(x.device)  # (B, 1, H, W)
    x = x.masked_fill(hidden_pixels, 0.0)  # both paths see zeros at hidden pixels

    def run(inp: Tensor) -> list[Tensor]:
        outputs: list[Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, out: outputs.append(_as_dense(out).float()))
                   for _, m in layers]
        try:
            encoder(inp, mask if sparse else None)
        finally:
            for handle in handles:
                handle.remove()
        if len(outputs) != len(layers):
            raise ValueError(f"expected one output per layer ({len(layers)}), got {len(outputs)}: "
                             "is every listed layer called exactly once?")
        return outputs

    was_training = encoder.training
    encoder.eval()
    try:
        with_content, blank = run(x), run(torch.zeros_like(x))
    finally:
        encoder.train(was_training)
    profile = []
    for (name, _), a, a0 in zip(layers, with_content, blank):
        h_out = a.shape[-2]
        if h_out % grid[0] or a.shape[-1] * grid[0] != h_out * grid[1]:
            raise ValueError(f"layer {name!r} has a {h_out}×{a.shape[-1]} map that does not tile the {grid} patch grid")
        scale = h_out // grid[0]
        hidden = upsample_mask(mask, grid, scale).to(a.device)  # (B, H', W')
        tol = atol * float(a.abs().max().clamp_min(1e-30))
        reached = (a - a0).abs().amax(dim=1) > tol  # (B, H', W')
        nonzero = a.abs().amax(dim=1) > tol
        n_hidden = int(hidden.sum())
        row = {
            "name": name,
            "stride": 32 // scale,
            "channels": a.shape[1],
            "hidden_sites": n_hidden,
            "reached": float((reached & hidden).sum()) / max(n_hidden, 1),
            "nonzero": float((nonzero & hidden).sum()) / max(n_hidden, 1),
        }
        if return_maps:
            row["map"] = reached.cpu()
        profile.append(row)
    return profile


def conv_agreement(conv: SparseConv2d, x: Tensor, mask: Tensor) -> dict:
    """One sparse convolution three ways on the same input: the ``masked`` backend (dense conv on
    a zero-filled map, re-masked), the explicit gather/scatter :func:`reference_sparse_conv2d`, and
    MinkowskiEngine when it is installed.

    Args:
        conv: a :class:`SparseConv2d`.
        x: ``(B, C_in, H, W)``; values at hidden sites are ignored by every path.
        mask: ``(B, H, W)`` bool, True = hidden site.
    Returns:
        ``{"masked_vs_reference": max |Δ|, "minkowski_vs_reference": max |Δ| or None (not
        installed), "same_active_sites": bool, "active_sites": int}`` over the output's active sites.
    """
    if not isinstance(conv, SparseConv2d):
        raise ValueError(f"conv must be a SparseConv2d, got {type(conv).__name__}")
    if x.dim() != 4 or mask.dtype != torch.bool or tuple(mask.shape) != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"x must be (B, C, H, W) and mask bool (B, H, W); got {tuple(x.shape)} and "
                         f"{mask.dtype} {tuple(mask.shape)}")
    with torch.no_grad():
        ref, ref_active = reference_sparse_conv2d(x, ~mask, conv.weight, conv.bias, conv.stride[0], conv.groups)
        out = conv(to_sparse(x, mask))
        masked, masked_active = to_dense(out), active_mask(out)
        result = {
            "masked_vs_reference": float((masked - ref).abs().max()),
            "minkowski_vs_reference": None,
            "same_active_sites": bool(torch.equal(masked_active.cpu(), ref_active)),
            "active_sites": int(ref_active.sum()),
        }
        if minkowski_available():
            shape = tuple(ref_active.shape)
            me = conv(to_sparse(x, mask, backend="minkowski"))
            mink, mink_active = to_dense(me, shape), active_mask(me, shape)
            result["minkowski_vs_reference"] = float((mink - ref).abs().max())
            result["same_active_sites"] &= bool(torch.equal(mink_active.cpu(), ref_active))
    return result


def encoder_agreement(encoder: nn.Module, x: Tensor, mask: Tensor) -> dict:
    """A whole sparse encoder with the ``masked`` backend versus the same weights on
    MinkowskiEngine: forward outputs and parameter gradients (of ``sum(y²)``) compared.

    The MinkowskiEngine twin is a deep copy whose stem hands its output to MinkowskiEngine
    (every later layer dispatches on the tensor type). Raises ImportError without MinkowskiEngine.

    Returns ``{"forward": max |Δy|, "gradient": max over parameters of max |Δgrad| / max(1, max |grad|)}``.
    """
    import copy

    require_minkowski()
    twin = copy.deepcopy(encoder)
    stems = [m for m in twin.modules() if isinstance(m, SparseStem)]
    if not stems:
        raise ValueError(f"{type(encoder).__name__} has no SparseStem: cannot switch it to MinkowskiEngine")
    for stem in stems:
        stem.backend = "minkowski"
    outputs = []
    for model in (encoder, twin):
        model.zero_grad(set_to_none=True)
        y = model(x, mask)
        y.square().sum().backward()
        outputs.append(y.detach())
    grad = 0.0
    for p1, p2 in zip(encoder.parameters(), twin.parameters()):
        if p1.grad is not None and p2.grad is not None:
            grad = max(grad, float((p1.grad - p2.grad).abs().max()) / max(1.0, float(p1.grad.abs().max())))
    encoder.zero_grad(set_to_none=True)
    return {"forward": float((outputs[0] - outputs[1]).abs().max()), "gradient": grad}


__all__ += ["dissipation_layers", "dissipation_profile", "conv_agreement", "encoder_agreement"]
