"""What chapter 3 measures about sparse ConvNets: mask-pattern dissipation and backend agreement.

:func:`dissipation_profile` asks, layer by layer, which hidden sites of an encoder's feature
maps carry information from the visible pixels — all of them soon in a dense ConvNet fed a
zero-filled image, none in a sparse one. :func:`conv_agreement` runs one sparse convolution
three ways (the ``masked`` backend, the explicit gather/scatter reference, MinkowskiEngine when
installed) and :func:`encoder_agreement` a whole encoder on both backends, so the claim "the
same numbers" is a measured one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ..sparse import (
    SparseConv2d,
    SparseMap,
    SparseStem,
    active_mask,
    minkowski_available,
    reference_sparse_conv2d,
    remask,
    require_minkowski,
    to_dense,
    to_sparse,
    upsample_mask,
)

__all__ = ["dissipation_layers", "dissipation_profile", "conv_agreement", "encoder_agreement"]

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
        return remask(out.features, out.active).permute(0, 3, 1, 2)  # no side effect on ``out``
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
