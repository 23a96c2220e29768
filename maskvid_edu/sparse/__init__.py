"""Sparse convolution for masked ConvNet pre-training: one layer API, three backends.

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

Three backends, same numbers
----------------------------
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

``packed`` (pure PyTorch, the fast one): keep only the feature rows ``(N_active, C)`` of the
visible sites (:class:`PackedMap`). Per-site layers — linear layers and 1×1 convolutions,
LayerNorm, activations, GRN, BatchNorm — run on those rows, so the hidden sites cost nothing
there, and that is most of a ConvNet's arithmetic (≈ 95 % of a ConvNeXt V2 block is its two
pointwise linears). Layers that mix sites scatter the rows into a zeroed dense grid, run the
dense op and gather the active outputs: exact for the same reason as ``masked``. Its numbers
equal ``masked``'s up to floating-point rounding (the tests hold them to 1e-5 in float32).

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

The package, file by file:

- :mod:`~maskvid_edu.sparse.map` — :class:`SparseMap`, :class:`PackedMap`, :func:`to_sparse` / :func:`to_dense`,
  and the masks at every stride (:func:`upsample_mask`, :func:`downsample_active`);
- :mod:`~maskvid_edu.sparse.layers` — the layer library (:class:`SparseConv2d`, norms, GRN,
  pooling, drop path, the stem), each on every backend, and :func:`set_backend`;
- :mod:`~maskvid_edu.sparse.minkowski` — the optional MinkowskiEngine backend and kernel layouts;
- :mod:`~maskvid_edu.sparse.reference` — :func:`reference_sparse_conv2d`, an explicit
  gather/scatter implementation built from a per-offset *kernel map* (the algorithm inside real
  sparse-convolution libraries), used by the tests as an independent reference.

What chapter 3 measures with these layers lives elsewhere: the dissipation of the mask pattern
and the agreement of the backends in :mod:`maskvid_edu.analysis.sparse_dissipation`, the
side-by-side timing in :func:`maskvid_edu.measure.bench.bench_sparse`.
"""

from .layers import (
    SparseBatchNorm2d,
    SparseConv2d,
    SparseDropPath,
    SparseGELU,
    SparseGRN,
    SparseLayerNorm,
    SparseLinear,
    SparseMaxPool2d,
    SparseReLU,
    SparseStem,
    set_backend,
)
from .map import BACKENDS, PackedMap, SparseMap, active_mask, downsample_active, remask, to_dense, to_sparse, upsample_mask
from .minkowski import (
    minkowski_available,
    minkowski_to_torch_kernel,
    require_minkowski,
    torch_to_minkowski_kernel,
)
from .reference import kernel_map, reference_sparse_conv2d

__all__ = [
    "BACKENDS",
    "SparseMap",
    "PackedMap",
    "to_sparse",
    "to_dense",
    "active_mask",
    "remask",
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
    "set_backend",
    "torch_to_minkowski_kernel",
    "minkowski_to_torch_kernel",
    "require_minkowski",
    "minkowski_available",
    "kernel_map",
    "reference_sparse_conv2d",
]
