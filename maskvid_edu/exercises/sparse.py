"""Exercise on sparse convolution for masked ConvNets (ConvNeXt V2's FCMAE, VideoMAC).

Checked against :func:`maskvid_edu.sparse.reference_sparse_conv2d`, the explicit
gather / multiply / scatter implementation: an output exists only at visible sites and sums only
over visible neighbours.
"""

from __future__ import annotations

import torch

from .. import sparse as lib
from ._checker import Hint, call, close, exercise, expect_tensor

SPARSE = exercise(
    "sparse_conv",
    title="a masked convolution that behaves as a sparse one",
    topic="sparse convolution · sparse/layers.py",
    signature="sparse_conv(x, mask, weight, bias) -> torch.Tensor (B, C_out, H, W)",
    task="""x: (B, C_in, H, W) features whose hidden sites may hold anything; mask: (B, H, W)
    bool, True = masked (hidden); weight: (C_out, C_in, k, k) with k odd; bias: (C_out,). Return
    the submanifold sparse convolution of the visible sites, stride 1, same H × W: at a visible
    site, bias plus the kernel applied to the visible neighbours only; at a hidden site, 0. With a
    dense conv this means: zero the hidden inputs, convolve (padding k // 2), zero the hidden
    outputs again.""",
)


def _case(k: int = 3, seed: int = 0, c_in: int = 3, c_out: int = 4, size: int = 8):
    """Features with large garbage at hidden sites, a 2×2-patch mask (~50 % hidden), weights."""
    g = torch.Generator().manual_seed(seed)
    patches = torch.rand(2, size // 2, size // 2, generator=g) < 0.5  # (B, h, w)
    mask = patches.repeat_interleave(2, 1).repeat_interleave(2, 2)  # (B, H, W) True = hidden
    x = torch.randn(2, c_in, size, size, generator=g, dtype=torch.float64)
    garbage = 10 * torch.randn(2, c_in, size, size, generator=g, dtype=torch.float64)
    x = torch.where(mask.unsqueeze(1), garbage, x)  # hidden sites hold large values
    weight = torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64) / k
    bias = torch.randn(c_out, generator=g, dtype=torch.float64)
    return x, mask, weight, bias


def _conv(fn, x, mask, weight, bias):
    out = expect_tensor(call(fn, x.clone(), mask.clone(), weight.clone(), bias.clone()), "sparse_conv")
    B, _, H, W = x.shape
    want = (B, weight.shape[0], H, W)
    if tuple(out.shape) != want:
        k = weight.shape[-1]
        if tuple(out.shape) == (B, weight.shape[0], H - k + 1, W - k + 1):
            raise Hint(f"your output shrank to {tuple(out.shape[-2:])}: pad by k // 2 so it keeps H × W "
                       "(F.conv2d(x, weight, bias, padding=k // 2))")
        raise Hint(f"your result has shape {tuple(out.shape)}, expected (B, C_out, H, W) = {want}")
    return out.detach().to(torch.float64).cpu()


def _reference(x, mask, weight, bias):
    return lib.reference_sparse_conv2d(x, ~mask, weight, bias)[0]  # (B, C_out, H, W)


@SPARSE.property("returns (B, C_out, H, W)")
def _sparse_shape(fn):
    _conv(fn, *_case())


@SPARSE.property("leaves hidden sites at 0 in the output")
def _sparse_remask(fn):
    x, mask, weight, bias = _case()
    out = _conv(fn, x, mask, weight, bias)
    hidden = mask.unsqueeze(1).expand_as(out)  # (B, C_out, H, W)
    if float(out[hidden].abs().max()) == 0.0:
        return
    if float(out[~hidden].abs().max()) == 0.0:
        raise Hint("your output is zero at the visible sites and non-zero at the hidden ones: mask is True = "
                   "masked (hidden); keep the sites where mask is False")
    raise Hint("masked sites are non-zero after your conv: re-apply the mask "
               "(out * ~mask[:, None]) — a sparse convolution has no output where the input was hidden")


@SPARSE.property("ignores whatever the hidden input sites hold")
def _sparse_inputs(fn):
    x, mask, weight, bias = _case()
    zeroed = x.masked_fill(mask.unsqueeze(1), 0.0)
    a, b = _conv(fn, x, mask, weight, bias), _conv(fn, zeroed, mask, weight, bias)
    if not close(a, b, rtol=1e-9, atol=1e-9):
        raise Hint("your visible outputs change when the hidden inputs change: hidden content leaks into visible "
                   "sites through the kernel. Zero the hidden input sites before the conv "
                   "(x * ~mask[:, None]) so they add nothing to any sum")


@SPARSE.property("equals sparse convolution at the visible sites")
def _sparse_values(fn):
    x, mask, weight, bias = _case()
    out, ref = _conv(fn, x, mask, weight, bias), _reference(x, mask, weight, bias)
    if close(out, ref, rtol=1e-7, atol=1e-9):
        return
    visible = (~mask).unsqueeze(1).double()
    if close(out, ref - bias.view(1, -1, 1, 1) * visible, rtol=1e-7, atol=1e-9):
        raise Hint("the bias is missing: add it at the visible sites")
    flipped = _reference(x, mask, weight.flip(-1, -2), bias)
    if close(out, flipped, rtol=1e-7, atol=1e-9):
        raise Hint("your kernel is flipped: PyTorch's conv2d (and sparse convolution) is a cross-correlation, "
                   "apply weight[o, i, dh, dw] to the neighbour at offset (dh − k//2, dw − k//2)")
    raise Hint(f"at the visible sites your values differ from the sparse convolution by up to "
               f"{float((out - ref).abs().max()):.3g}: convolve the zero-filled input with weight and bias, "
               "stride 1, padding k // 2")


@SPARSE.property("works for other kernel sizes (k = 1, 5) and channel counts")
def _sparse_sizes(fn):
    for k, c_in, c_out in ((5, 2, 3), (1, 4, 2)):
        x, mask, weight, bias = _case(k=k, seed=k, c_in=c_in, c_out=c_out)
        out, ref = _conv(fn, x, mask, weight, bias), _reference(x, mask, weight, bias)
        if not close(out, ref, rtol=1e-7, atol=1e-9):
            raise Hint(f"right for a 3×3 kernel but not for k = {k} ({c_in} → {c_out} channels): derive the "
                       "padding (k // 2) and the channel counts from weight")
