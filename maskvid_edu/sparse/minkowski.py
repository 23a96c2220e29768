"""The optional MinkowskiEngine backend: importing it, and converting kernels to its layout.

MinkowskiEngine stores a sparse map as a list of active coordinates with one feature row each
(``SparseTensor``) and runs its own sparse kernels. The layers of :mod:`maskvid_edu.sparse.layers`
keep their parameters in PyTorch's layout and convert them here, on the fly, so a model switches
backends without touching its state dict. MinkowskiEngine is not a dependency: ``make minkowski``
builds it (:mod:`maskvid_edu.minkowski_build`).
"""

from __future__ import annotations

import sys
import warnings

from torch import Tensor

__all__ = [
    "require_minkowski",
    "minkowski_available",
    "is_minkowski",
    "minkowski_like",
    "torch_to_minkowski_kernel",
    "minkowski_to_torch_kernel",
]

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
    """Whether MinkowskiEngine can be imported here."""
    try:
        require_minkowski()
    except ImportError:
        return False
    return True


def is_minkowski(x) -> bool:
    """Whether ``x`` is a ``MinkowskiEngine.SparseTensor`` (without importing MinkowskiEngine)."""
    global _ME
    if _ME is None:
        _ME = sys.modules.get("MinkowskiEngine")  # imported by the caller, not through us
    return _ME is not None and isinstance(x, _ME.SparseTensor)


def minkowski_like(x, features: Tensor):
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
