"""Exercise on V-JEPA's loss: L1 between predicted and layer-normalised target features.

Checked against :func:`maskvid_edu.models.vjepa.feature_loss` of
:func:`~maskvid_edu.models.vjepa.feature_targets` — what ``VJEPA.forward`` computes from the
target encoder's features at the hidden positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import vjepa as lib
from ._checker import Hint, call, close, exercise, expect_tensor

VJEPA_LOSS = exercise(
    "vjepa_loss",
    title="V-JEPA's feature loss",
    topic="feature prediction · models/vjepa.py",
    signature="vjepa_loss(pred, target_features) -> torch.Tensor (a scalar)",
    task="""pred: (B, M, D), the predictor's outputs at the M hidden positions of each clip;
    target_features: (B, M, D), the target encoder's features at the same positions. Normalise
    every target token over its D channels (a LayerNorm without learnable weights,
    torch.nn.functional.layer_norm(x, (D,))), then return the L1 loss: the mean over clips,
    tokens and channels of |pred − LN(target)|. No gradient may reach target_features.""",
)

_SHAPE = (2, 5, 6)  # B, M, D all different


def _inputs(seed: int = 0, shape=_SHAPE, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(*shape, generator=g, dtype=torch.float64)
    target = 3.0 + 2.0 * torch.randn(*shape, generator=g, dtype=torch.float64)  # far from normalised
    return pred.requires_grad_(requires_grad), target.requires_grad_(requires_grad)


def _reference(pred, target):
    return lib.feature_loss(pred.detach().double(), lib.feature_targets(target.detach()).double())


def _loss(fn, pred, target) -> torch.Tensor:
    out = expect_tensor(call(fn, pred, target), "vjepa_loss")
    if out.numel() != 1:
        raise Hint(f"vjepa_loss returned a tensor of shape {tuple(out.shape)}: reduce it to one number, the mean "
                   "over clips, tokens and channels")
    return out.reshape(())


@VJEPA_LOSS.property("returns the mean L1 distance to the layer-normalised targets")
def _vjepa_value(fn):
    pred, target = _inputs()
    out, want = _loss(fn, pred.clone(), target.clone()).detach().double(), _reference(pred, target)
    if close(out, want, rtol=1e-5, atol=1e-6):
        return
    ln = F.layer_norm(target, (target.shape[-1],))
    if close(out, (pred - target).abs().mean()):
        raise Hint("you compared with the raw target features: normalise each target token over its channels "
                   "first, F.layer_norm(target_features, (D,)) — V-JEPA's targets are layer-normalised")
    if close(out, (pred - ln).pow(2).mean()):
        raise Hint("that is the squared error (MSE); V-JEPA uses the L1 loss, mean |pred − LN(target)|")
    if close(out, (pred - ln).abs().sum()):
        raise Hint("you summed the absolute differences: take the mean over clips, tokens and channels")
    over_tokens = (target - target.mean(dim=1, keepdim=True)) / (target.var(dim=1, unbiased=False, keepdim=True)
                                                                 + 1e-5).sqrt()
    if close(out, (pred - over_tokens).abs().mean(), rtol=1e-4, atol=1e-5):
        raise Hint("you normalised over the tokens (dim 1); the LayerNorm acts on each token's D channels, the "
                   "last dim: F.layer_norm(target_features, (target_features.shape[-1],))")
    raise Hint(f"your loss is {float(out):.6g}, expected {float(want):.6g}: mean |pred − LN(target)| with LN over "
               "the last dim, no learnable weights")


@VJEPA_LOSS.property("lets no gradient reach the target features (stop-gradient)")
def _vjepa_stop_gradient(fn):
    pred, target = _inputs(1, requires_grad=True)
    out = _loss(fn, pred, target)
    if not out.requires_grad:
        raise Hint("the loss carries no gradient at all: compute it from pred with differentiable torch "
                   "operations (no .detach() or .item() on pred)")
    out.backward()
    if pred.grad is None:
        raise Hint("no gradient reached pred: the predictor must be trained by this loss")
    if target.grad is not None and bool(target.grad.abs().sum() > 0):
        raise Hint("gradient reached the target features: the target encoder is not trained by the loss. "
                   "Detach them first (target_features.detach(), or compute the targets under torch.no_grad())")


@VJEPA_LOSS.property("works for any B, M, D and dtype")
def _vjepa_any(fn):
    pred, target = (x.float() for x in _inputs(2, shape=(3, 4, 16)))
    out = _loss(fn, pred, target).detach().double()
    if not close(out, _reference(pred, target), rtol=1e-4, atol=1e-5):
        raise Hint("right on the first example but not on float32 inputs of shape (3, 4, 16): do not hard-code "
                   "sizes or the dtype")
