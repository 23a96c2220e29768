"""The ``masked`` backend's sparse tensor, the converters between dense and sparse maps, and masks.

A :class:`SparseMap` is a dense ``(B, H, W, C)`` grid with a bool map of its active (visible)
sites. :func:`to_sparse` wraps a dense ``(B, C, H, W)`` map and a mask (True = masked) as a
:class:`SparseMap` or a MinkowskiEngine tensor, :func:`to_dense` and :func:`active_mask` read
them back, and :func:`upsample_mask` / :func:`downsample_active` carry a patch mask to every
stride of a ConvNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .minkowski import is_minkowski, require_minkowski

__all__ = [
    "BACKENDS",
    "SparseMap",
    "remask",
    "sparse_kind",
    "to_sparse",
    "to_dense",
    "active_mask",
    "upsample_mask",
    "downsample_active",
]

BACKENDS = ("masked", "minkowski")


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
            self.features = remask(self.features, self.active)
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


def remask(features: Tensor, active: Tensor | None) -> Tensor:
    """Zero the inactive sites of ``features (B, H, W, C)``; ``active=None`` returns it unchanged."""
    if active is None:
        return features
    return torch.where(active.unsqueeze(-1), features, features.new_zeros(()))  # (B, H, W, C)


def sparse_kind(x, layer: str) -> str:
    """Return ``'masked'`` or ``'minkowski'`` for a sparse input, else raise TypeError."""
    if isinstance(x, SparseMap):
        return "masked"
    if is_minkowski(x):
        return "minkowski"
    raise TypeError(
        f"{layer} expects a SparseMap or a MinkowskiEngine SparseTensor, got {type(x).__name__}; "
        "wrap a dense (B, C, H, W) tensor with to_sparse(x, mask) (mask=None for dense inference)"
    )


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
    kind = sparse_kind(x, "to_dense")
    if kind == "masked":
        return x.zeroed().permute(0, 3, 1, 2)  # (B, C, H, W)
    if shape is None or len(shape) != 3:
        raise ValueError(f"shape must be (B, H, W) for a MinkowskiEngine tensor, got {shape}")
    b, h, w = shape
    out, _, _ = x.dense(shape=torch.Size([b, x.F.shape[1], h, w]), min_coordinate=torch.IntTensor([0, 0]))
    return out  # (B, C, H, W)


def active_mask(x, shape: tuple[int, int, int] | None = None) -> Tensor:
    """``(B, H, W)`` bool of active (visible) sites of a sparse map (shape as in :func:`to_dense`)."""
    kind = sparse_kind(x, "active_mask")
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
