"""Sparse convolution from first principles: an explicit kernel map and gather / GEMM / scatter.

:func:`kernel_map` lists, for every kernel offset, which active input site feeds which active
output site (the algorithm inside real sparse-convolution libraries, in plain Python);
:func:`reference_sparse_conv2d` gathers the input rows of each offset, multiplies them by that
offset's weight matrix and scatter-adds them into the output. Slow and independent of both
backends: the tests and chapter 3 check the layers against it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kernel_map", "reference_sparse_conv2d"]

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
