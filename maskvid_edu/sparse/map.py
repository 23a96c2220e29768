"""The sparse tensors of the pure-PyTorch backends, the converters between dense and sparse maps, and masks.

A :class:`SparseMap` (the ``masked`` backend) is a dense ``(B, H, W, C)`` grid with a bool map of
its active (visible) sites. A :class:`PackedMap` (the ``packed`` backend) keeps only the feature
rows ``(N_active, C)`` of the visible sites and where they sit in the grid. :func:`to_sparse`
wraps a dense ``(B, C, H, W)`` map and a mask (True = masked) as either of them or as a
MinkowskiEngine tensor, :func:`to_dense` and :func:`active_mask` read them back, and :func:`upsample_mask` / :func:`downsample_active` carry a patch mask to every
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
    "PackedMap",
    "remask",
    "sparse_kind",
    "to_sparse",
    "to_dense",
    "active_mask",
    "upsample_mask",
    "downsample_active",
]

BACKENDS = ("masked", "packed", "minkowski")


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


@dataclass
class PackedMap:
    """The visible sites' feature rows only: the ``packed`` backend's sparse tensor.

    A masked autoencoder hides most sites, and most of a ConvNet's arithmetic acts on each site
    alone (linear layers / 1×1 convolutions, LayerNorm, activations, GRN): a ConvNeXt V2 block
    spends ≈ 95 % of its FLOPs in its two ``dim × 4·dim`` linears. Computing those on the
    ``N_active`` visible rows instead of all ``B·H·W`` sites removes the hidden sites' share of
    the work, where the ``masked`` backend (:class:`SparseMap`) computes and then discards it.

    Layers that mix sites (convolutions with ``k > 1``, strides, pooling) *scatter* the rows into
    a zeroed dense grid, run the ordinary dense operation and *gather* the active outputs back.
    That is exact for the same reason the ``masked`` backend is: hidden inputs are zero, so
    they add nothing to any sum, and hidden outputs are never read. The spatial layers keep
    their dense cost (a depthwise 7×7 is a few % of a ConvNeXt block's FLOPs, though being
    memory-bound it takes a far larger share of the time), the per-site layers pay only for
    visible sites, and the conversions are two memory passes around each spatial op.

    Attributes:
        rows: ``(N, C)`` features of the active sites, in raster order of ``(b, h, w)``.
        active: ``(B, H, W)`` bool, True = active; ``None`` = every site is active (dense
            inference: ``rows`` are then all ``B·H·W`` sites and scatter/gather are reshapes).
        index: ``(N,)`` long, flat position ``b·H·W + h·W + w`` of each row (``None`` with
            ``active``); computed once per stride and shared by every layer of a stage.
        grid: ``(B, H, W)`` of the dense grid the rows live on.
    """

    rows: Tensor
    active: Tensor | None
    index: Tensor | None
    grid: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, C, H, W)`` of the equivalent dense map."""
        b, h, w = self.grid
        return (b, self.rows.shape[1], h, w)

    @classmethod
    def from_grid(cls, features: Tensor, active: Tensor | None) -> "PackedMap":
        """Gather the active sites of ``features (B, H, W, C)`` (``active (B, H, W)`` or None)."""
        b, h, w, c = features.shape
        flat = features.reshape(b * h * w, c)  # a view when channels are last in memory
        if active is None:
            return cls(flat, None, None, (b, h, w))
        index = active.reshape(-1).nonzero().squeeze(1)  # (N,), raster order
        return cls(flat.index_select(0, index), active, index, (b, h, w))

    def gather(self, features: Tensor) -> "PackedMap":
        """Rows of ``features (B, H, W, C')`` at this map's active sites (same grid, new channels)."""
        b, h, w, c = features.shape
        flat = features.reshape(b * h * w, c)
        rows = flat if self.index is None else flat.index_select(0, self.index)
        return PackedMap(rows, self.active, self.index, self.grid)

    def scatter(self, fill: float = 0.0) -> Tensor:
        """The dense ``(B, H, W, C)`` grid: rows at active sites, ``fill`` at hidden ones."""
        b, h, w = self.grid
        c = self.rows.shape[1]
        if self.index is None:
            return self.rows.reshape(b, h, w, c)
        dense = self.rows.new_full((b * h * w, c), fill)
        return dense.index_copy(0, self.index, self.rows).reshape(b, h, w, c)

    def sample(self) -> Tensor:
        """``(N,)`` long: the sample ``b`` each row belongs to (for per-sample statistics)."""
        b, h, w = self.grid
        if self.index is None:
            return torch.arange(b, device=self.rows.device).repeat_interleave(h * w)
        return torch.div(self.index, h * w, rounding_mode="floor")

    def with_rows(self, rows: Tensor) -> "PackedMap":
        """Same active sites, new per-site ``(N, C')`` features."""
        return PackedMap(rows, self.active, self.index, self.grid)

    def __add__(self, other: "PackedMap") -> "PackedMap":
        if not isinstance(other, PackedMap):
            return NotImplemented
        if self.index is not other.index:
            a, b = self.index, other.index
            if (a is None) != (b is None) or self.grid != other.grid or (a is not None and a.shape != b.shape):
                raise ValueError("cannot add PackedMaps with different active sites")
            if a is not None:
                torch._assert_async((a == b).all(), "cannot add PackedMaps with different active sites")
        return self.with_rows(self.rows + other.rows)


def remask(features: Tensor, active: Tensor | None) -> Tensor:
    """Zero the inactive sites of ``features (B, H, W, C)``; ``active=None`` returns it unchanged."""
    if active is None:
        return features
    return torch.where(active.unsqueeze(-1), features, features.new_zeros(()))  # (B, H, W, C)


def sparse_kind(x, layer: str) -> str:
    """Return ``'masked'``, ``'packed'`` or ``'minkowski'`` for a sparse input, else raise TypeError."""
    if isinstance(x, SparseMap):
        return "masked"
    if isinstance(x, PackedMap):
        return "packed"
    if is_minkowski(x):
        return "minkowski"
    raise TypeError(
        f"{layer} expects a SparseMap, a PackedMap or a MinkowskiEngine SparseTensor, got {type(x).__name__}; "
        "wrap a dense (B, C, H, W) tensor with to_sparse(x, mask) (mask=None for dense inference)"
    )


def to_sparse(x: Tensor, mask: Tensor | None = None, *, backend: str = "masked"):
    """Dense map → sparse map of its visible sites.

    Args:
        x: ``(B, C, H, W)`` dense features.
        mask: ``(B, H, W)`` bool, **True = masked** (the library's convention), or ``None`` for
            "everything visible" (dense inference).
        backend: ``"masked"`` → :class:`SparseMap`; ``"packed"`` → :class:`PackedMap`; ``"minkowski"`` → ``MinkowskiEngine.SparseTensor``
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
    if backend == "packed":
        return PackedMap.from_grid(feats, active)  # the visible rows, gathered once
    ME = require_minkowski()
    if active is None:
        active = torch.ones(b, h, w, dtype=torch.bool, device=x.device)
    coords = active.nonzero().int().contiguous()  # (N, 3): (b, h, w), row-major order
    return ME.SparseTensor(features=feats[active], coordinates=coords, device=x.device)


def to_dense(x, shape: tuple[int, int, int] | None = None) -> Tensor:
    """Sparse map → dense ``(B, C, H, W)`` with zeros at inactive sites.

    Args:
        x: a :class:`SparseMap`, :class:`PackedMap` or MinkowskiEngine tensor.
        shape: ``(B, H, W)`` of the grid at ``x``'s stride; required for MinkowskiEngine tensors
            (they do not know how far the grid extends beyond their last active site).
    """
    kind = sparse_kind(x, "to_dense")
    if kind == "masked":
        return x.zeroed().permute(0, 3, 1, 2)  # (B, C, H, W)
    if kind == "packed":
        return x.scatter().permute(0, 3, 1, 2)  # (B, C, H, W)
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
    if kind == "packed":
        return x.active if x.active is not None else torch.ones(x.grid, dtype=torch.bool, device=x.rows.device)
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
