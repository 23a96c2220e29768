"""The sparse layer library: every layer a sparse ConvNet needs, on every backend.

Each layer takes and returns a :class:`~maskvid_edu.sparse.map.SparseMap` (the ``masked``
backend: a dense op on a zero-filled map, re-masked before sites mix), a
:class:`~maskvid_edu.sparse.map.PackedMap` (the ``packed`` backend: per-site layers on the
visible rows only, spatial layers scatter → dense op → gather) or a MinkowskiEngine
``SparseTensor`` (its sparse kernels), with the same parameters either way. Layers that act on
each site alone (linear, LayerNorm, activations) share :func:`per_site`; those that pool
statistics over sites (BatchNorm, GRN, max-pooling) see visible sites only.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .map import BACKENDS, PackedMap, SparseMap, downsample_active, remask, sparse_kind, to_sparse
from .minkowski import minkowski_like, require_minkowski, torch_to_minkowski_kernel

__all__ = [
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
    "per_site",
    "set_backend",
]

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

    Input/output: :class:`SparseMap` ``(B, H, W, C)``, :class:`PackedMap` ``(N, C)`` or
    MinkowskiEngine tensor ``(N, C)``.
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
        kind = sparse_kind(x, "SparseConv2d")
        if kind == "masked":
            out = self._conv_forward(x.zeroed().permute(0, 3, 1, 2), self.weight, self.bias)  # (B, C', H', W')
            out = out.permute(0, 2, 3, 1)  # (B, H', W', C'); inactive outputs are left for the next mixing op
            active = downsample_active(x.active, self.stride[0], out.shape[1:3])
            return SparseMap(out, active, clean=active is None)
        if kind == "packed":
            return self._forward_packed(x)
        return self._forward_minkowski(x)

    # -- packed path ---------------------------------------------------------------------
    def _forward_packed(self, x: PackedMap) -> PackedMap:
        """A 1×1 stride-1 convolution is a matrix product on the visible rows (``N·C_in·C_out``
        multiply-adds instead of ``B·H·W·C_in·C_out``). Any other convolution scatters the rows
        into a zeroed dense grid, runs the dense convolution (hidden inputs are zero: they add
        nothing) and gathers the outputs at the active sites (the others are dropped)."""
        k, s = self.kernel_size[0], self.stride[0]
        if k == 1 and s == 1 and self.groups == 1:
            return x.with_rows(F.linear(x.rows, self.weight[:, :, 0, 0], self.bias))  # (N, C')
        out = self._conv_forward(x.scatter().permute(0, 3, 1, 2), self.weight, self.bias)  # (B, C', H', W')
        out = out.permute(0, 2, 3, 1)  # (B, H', W', C'), channels last in memory like the input
        if s == 1:
            return x.gather(out)  # same active sites, same index
        return PackedMap.from_grid(out, downsample_active(x.active, s, out.shape[1:3]))  # new stride, new index

    # -- MinkowskiEngine path ------------------------------------------------------------
    def _kernel_generator(self):
        if self._me_kernel_generator is None:
            self._me_kernel_generator = require_minkowski().KernelGenerator(
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
        return require_minkowski().SparseTensor(out, coordinate_map_key=key, coordinate_manager=x.coordinate_manager)

    def _me_full(self, x, feats: Tensor, weight: Tensor):
        if self.kernel_size[0] == 1 and self.stride[0] == 1:  # 1×1 submanifold: a matrix product
            return feats @ weight[:, :, 0, 0].t(), x.coordinate_map_key
        from MinkowskiEngine.MinkowskiSparseTensor import _get_coordinate_map_key
        from MinkowskiEngineBackend._C import ConvolutionMode

        out_key = _get_coordinate_map_key(x, None)  # new key: output coordinates made by the engine
        out = require_minkowski().MinkowskiConvolutionFunction.apply(
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


def per_site(fn: Callable[[Tensor], Tensor], x, name: str):
    """Apply a per-site function to the feature vectors of a sparse map (on the ``packed``
    backend: to the visible rows only, which is where it saves the hidden sites' work)."""
    kind = sparse_kind(x, name)
    if kind == "masked":
        return x.with_features(fn(x.features))
    if kind == "packed":
        return x.with_rows(fn(x.rows))
    return minkowski_like(x, fn(x.F))


class SparseLinear(nn.Linear):
    """A linear map applied to every active site (a 1×1 convolution); ``nn.Linear``'s parameters."""

    def forward(self, x):
        return per_site(super().forward, x, "SparseLinear")


class SparseLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each site (ConvNeXt's ``channels_first`` and
    ``channels_last`` LayerNorm are the same operation here: features are stored per site)."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x):
        return per_site(super().forward, x, "SparseLayerNorm")


class SparseGELU(nn.GELU):
    def forward(self, x):
        return per_site(super().forward, x, "SparseGELU")


class SparseReLU(nn.ReLU):
    def forward(self, x):
        return per_site(super().forward, x, "SparseReLU")


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
        kind = sparse_kind(x, "SparseBatchNorm2d")
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
            return minkowski_like(x, bn(x.F))
        if x.active is None:  # dense: exactly nn.BatchNorm2d (packed: the rows are every site)
            if kind == "packed":
                return x.with_rows(bn(x.rows))
            return SparseMap(bn(x.features.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), None)
        if kind == "packed":  # the visible rows (N, C): plain sums over rows
            f, vis, dims = x.rows, None, (0,)
        else:  # masked sums instead of gathering the visible rows (hidden sites hold zeros)
            f, vis, dims = x.zeroed(), x.active.unsqueeze(-1), (0, 1, 2)  # (B, H, W, C), (B, H, W, 1)
        dtype = f.dtype
        if f.dtype in (torch.float16, torch.bfloat16):  # statistics in float32, as autocast does for BN
            f = f.float()
        if use_batch_stats:
            n = x.active.sum().to(f.dtype)  # a device tensor: no host synchronisation
            torch._assert_async(n >= 2, "SparseBatchNorm2d needs at least 2 visible sites in training")
            mean = f.sum(dim=dims) / n  # (C,)
            centred = f - mean if vis is None else (f - mean).masked_fill(~vis, 0.0)
            var = centred.square().sum(dim=dims) / n  # (C,) biased
            if self.training and running_mean is not None:
                with torch.no_grad():
                    running_mean.mul_(1 - factor).add_(factor * mean)
                    running_var.mul_(1 - factor).add_(factor * var * n / (n - 1))  # unbiased
        else:
            mean, var = running_mean, running_var
        y = (f - mean) * torch.rsqrt(var + self.eps)  # (B, H, W, C) or (N, C)
        if self.weight is not None:
            y = y * self.weight + self.bias
        if kind == "packed":
            return x.with_rows(y.to(dtype))
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
        kind = sparse_kind(x, "SparseGRN")
        if kind == "masked":
            f = x.zeroed()  # (B, H, W, C), zero at hidden sites
            g = torch.linalg.vector_norm(f, ord=2, dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
            n = g / (g.mean(dim=-1, keepdim=True) + self.eps)  # (B, 1, 1, C)
            return x.with_features(f + self.gamma * (f * n) + self.beta)
        if kind == "packed":
            return x.with_rows(self._rows(x.rows, x.sample(), x.grid[0]))
        b = x.C[:, 0].long()  # (N,) sample of each row
        return minkowski_like(x, self._rows(x.F, b, int(b.max()) + 1))

    def _rows(self, f: Tensor, b: Tensor, samples: int) -> Tensor:
        """GRN on feature rows ``f (N, C)`` of samples ``b (N,)``: per-sample sums of squares."""
        sumsq = f.new_zeros(samples, f.shape[1]).index_add(0, b, f * f)  # (B, C)
        nonzero = sumsq > 0
        g = torch.where(nonzero, sumsq, torch.ones_like(sumsq)).sqrt() * nonzero  # (B, C), safe gradient at 0
        n = g / (g.mean(dim=-1, keepdim=True) + self.eps)  # (B, C)
        # index_select, not n[b]: its backward is an index_add, where advanced indexing's is a
        # much slower accumulating index_put
        return f + self.gamma * (f * n.index_select(0, b)) + self.beta  # (N, C)

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
        kind = sparse_kind(x, "SparseMaxPool2d")
        if kind == "packed":  # scatter with -inf at hidden sites, pool densely, gather the active outputs
            out = F.max_pool2d(x.scatter(float("-inf")).permute(0, 3, 1, 2), self.kernel_size, self.stride,
                               self.kernel_size // 2).permute(0, 2, 3, 1)  # (B, H', W', C)
            return PackedMap.from_grid(out, downsample_active(x.active, self.stride, out.shape[1:3]))
        if kind == "masked":
            f = x.features
            if x.active is not None:
                f = f.masked_fill(~x.active.unsqueeze(-1), float("-inf"))  # (B, H, W, C)
            out = F.max_pool2d(f.permute(0, 3, 1, 2), self.kernel_size, self.stride, self.kernel_size // 2)
            out = out.permute(0, 2, 3, 1)  # (B, H', W', C)
            active = downsample_active(x.active, self.stride, out.shape[1:3])
            return SparseMap(remask(out, active), active)  # clean now: fully hidden windows hold -inf
        from MinkowskiEngine.MinkowskiPooling import MinkowskiLocalPoolingFunction
        from MinkowskiEngine.MinkowskiSparseTensor import _get_coordinate_map_key
        from MinkowskiEngineBackend._C import PoolingMode

        if self._me_kernel_generator is None:
            self._me_kernel_generator = require_minkowski().KernelGenerator(kernel_size=self.kernel_size, stride=self.stride,
                                                            dilation=1, dimension=2)
        out_key = _get_coordinate_map_key(x, None)
        out = MinkowskiLocalPoolingFunction.apply(x.F, PoolingMode.LOCAL_MAX_POOLING, self._me_kernel_generator,
                                                  x.coordinate_map_key, out_key, x._manager)  # (N', C)
        return require_minkowski().SparseTensor(out, coordinate_map_key=out_key, coordinate_manager=x.coordinate_manager)

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
        kind = sparse_kind(x, "SparseDropPath")
        if self.p == 0.0 or not self.training:
            return x
        if kind == "masked":
            b = x.features.shape[0]
            keep = x.features.new_empty(b, 1, 1, 1).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1, 1, 1)
            return SparseMap(x.features * keep, x.active, clean=x.clean)
        if kind == "packed":
            keep = x.rows.new_empty(x.grid[0], 1).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1)
            return x.with_rows(x.rows * keep[x.sample()])
        idx = x.C[:, 0].long()
        keep = x.F.new_empty(int(idx.max()) + 1, 1).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1)
        return minkowski_like(x, x.F * keep[idx])

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
        backend: ``"masked"``, ``"packed"`` or ``"minkowski"``.
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


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Switch every sparse stem of ``model`` (and the ``backend`` field of its configs) to
    ``backend``, in place; the parameters are shared by all backends, so nothing else changes."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    for m in model.modules():
        if isinstance(m, SparseStem):
            m.backend = backend
        config = getattr(m, "config", None)
        if config is not None and hasattr(config, "backend"):
            config.backend = backend
    return model
