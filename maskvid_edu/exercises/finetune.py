"""Exercises of the fine-tuning part of the downstream chapter: mixup targets, layer decay.

Checked against :mod:`maskvid_edu.evaluate.finetune` (imported when a check runs):
``mix_targets`` (label smoothing ``1 − s + s/K`` on the class and ``s/K`` elsewhere, then
``λ · y_i + (1 − λ) · y_{B−1−i}``, the reversed batch as partner) and the learning-rate scale
of :func:`~maskvid_edu.evaluate.finetune.layer_decay_groups` (``decay^(L + 1 − layer)``).
"""

from __future__ import annotations

import torch
from torch import nn

from ._checker import Hint, call, close, exercise, expect_real, expect_shape, expect_tensor

# --------------------------------------------------------------------------------------------
# mix_targets
# --------------------------------------------------------------------------------------------

MIX = exercise(
    "mix_targets",
    title="the soft targets of mixup with label smoothing",
    topic="fine-tuning · evaluate/finetune.py",
    signature="mix_targets(labels, num_classes, lam, smoothing) -> torch.Tensor (B, K)",
    task="""labels: (B,) int64 class indices of a batch; num_classes: K. Smooth every one-hot
    label to 1 − s + s/K on its class and s/K on every class (s = smoothing), then mix each clip
    with its partner in the *reversed* batch, as mixup pairs clip i with clip B − 1 − i:
    y_i = lam · ỹ_i + (1 − lam) · ỹ_(B−1−i). Return the float tensor (B, K); every row sums to
    1.""",
)

_LABELS = (0, 2, 1, 3, 3)  # an odd batch: the middle clip is its own partner


def _library_mix(labels, num_classes, lam, smoothing):
    from ..evaluate.finetune import mix_targets

    return mix_targets(labels, num_classes, lam=lam, smoothing=smoothing)


def _targets(fn, labels, k, lam, smoothing) -> torch.Tensor:
    labels = torch.tensor(labels)
    out = expect_tensor(call(fn, labels.clone(), k, lam, smoothing), "mix_targets")
    expect_shape(out, (len(labels), k), "your targets",
                 " = (B, num_classes): one row of class probabilities per clip")
    if not out.dtype.is_floating_point:
        raise Hint(f"your targets have dtype {out.dtype}; soft targets are float probabilities")
    return out.detach().to(torch.float64).cpu()


@MIX.property("returns a float tensor (B, num_classes)")
def _mix_shape(fn):
    _targets(fn, _LABELS, 4, 0.6, 0.1)


@MIX.property("smooths each label: 1 − s + s/K on its class, s/K elsewhere")
def _mix_smoothing(fn):
    k, s = 4, 0.1
    got = _targets(fn, _LABELS, k, 1.0, s)  # lam = 1: no mixing, the smoothed labels alone
    want = _library_mix(torch.tensor(_LABELS), k, 1.0, s).double()
    if close(got, want):
        return
    if close(got, want.flip(0)):
        raise Hint("with lam = 1 every clip got its partner's label: lam weights the clip's own "
                   "label, lam · ỹ_i + (1 − lam) · ỹ_(B−1−i)")
    one_hot = torch.nn.functional.one_hot(torch.tensor(_LABELS), k).double()
    if close(got, one_hot):
        raise Hint("with smoothing 0.1 your targets are plain one-hot: give every class s/K and "
                   "the true class 1 − s + s/K")
    if close(got, one_hot * (1 - s) + (1 - one_hot) * s / (k - 1)):
        raise Hint("you spread s over the K − 1 other classes; the convention here (timm's) "
                   "spreads it over all K: s/K everywhere, 1 − s + s/K on the true class")
    if close(got, one_hot * (1 - s) + (1 - one_hot) * s / k):
        raise Hint("the true class gets 1 − s, so a row sums to less than 1: it also gets its "
                   "share s/K, 1 − s + s/K")
    raise Hint(f"with lam = 1 and smoothing {s} your rows differ from the smoothed labels by up "
               f"to {float((got - want).abs().max()):.3g}: s/K off the class, 1 − s + s/K on it")


@MIX.property("mixes clip i with clip B − 1 − i: lam · ỹ_i + (1 − lam) · ỹ_(B−1−i)")
def _mix_partner(fn):
    k, s, lam = 4, 0.1, 0.6
    got = _targets(fn, _LABELS, k, lam, s)
    want = _library_mix(torch.tensor(_LABELS), k, lam, s).double()
    if close(got, want):
        return
    y = _library_mix(torch.tensor(_LABELS), k, 1.0, s).double()  # (B, K) smoothed labels
    if close(got, y):
        raise Hint("your targets ignore lam: each row is the clip's own smoothed label, but "
                   "the mixed clip holds lam of it and 1 − lam of its partner")
    if close(got, lam * y + (1 - lam) * y.roll(1, 0)) or close(got, lam * y + (1 - lam) * y.roll(-1, 0)):
        raise Hint("you mixed each clip with its neighbour; mixup's partner is the reversed "
                   "batch, clip B − 1 − i: y.flip(0)")
    raise Hint(f"with lam {lam} your targets differ by up to "
               f"{float((got - want).abs().max()):.3g}: lam · ỹ + (1 − lam) · ỹ.flip(0)")


@MIX.property("gives rows that sum to 1 for any batch and number of classes")
def _mix_any(fn):
    labels = (4, 0, 6, 6, 1, 2)
    got = _targets(fn, labels, 7, 0.3, 0.2)
    want = _library_mix(torch.tensor(labels), 7, 0.3, 0.2).double()
    if not close(got, want):
        raise Hint("right for 5 clips and 4 classes but not for 6 clips and 7 classes: take B "
                   "from labels and K from num_classes, hard-code nothing")


# --------------------------------------------------------------------------------------------
# layer_lr_scale
# --------------------------------------------------------------------------------------------

DECAY = exercise(
    "layer_lr_scale",
    title="layer-wise learning-rate decay",
    topic="fine-tuning · evaluate/finetune.py",
    signature="layer_lr_scale(layer, num_layers, layer_decay) -> float",
    task="""A ViT of num_layers = L blocks is numbered from the input: layer 0 is the patch
    embedding (and position embedding, tokens), layer i + 1 is block i, layer L + 1 is the head.
    Fine-tuning scales the learning rate of layer `layer` by layer_decay^(L + 1 − layer): the head
    trains at the full rate, the last block at layer_decay, the patch embedding at
    layer_decay^(L + 1). Return that scale as a Python float.""",
)

_DECAY_CASES = ((12, 0.75), (4, 0.7), (24, 0.9))


def _library_scales(num_layers: int, layer_decay: float) -> dict[int, float]:
    """``{layer: lr_scale}`` from :func:`layer_decay_groups` on a stand-in of ``num_layers`` blocks."""
    from ..evaluate.finetune import layer_decay_groups

    model = nn.Module()
    model.encoder = nn.Module()
    model.encoder.patch_embed = nn.Linear(1, 1)
    model.encoder.blocks = nn.ModuleList(nn.Linear(1, 1) for _ in range(num_layers))
    model.head = nn.Linear(1, 1)
    groups = layer_decay_groups(model, 0.05, layer_decay)
    return {g["layer"]: g["lr_scale"] for g in groups}


def _scales(fn, num_layers, layer_decay) -> list[float]:
    return [expect_real(call(fn, layer, num_layers, layer_decay), "layer_lr_scale")
            for layer in range(num_layers + 2)]


def _near(got, want) -> bool:
    return all(abs(a - b) <= 1e-12 + 1e-9 * abs(b) for a, b in zip(got, want))


@DECAY.property("returns a Python number")
def _decay_type(fn):
    expect_real(call(fn, 0, 12, 0.75), "layer_lr_scale")


@DECAY.property("scales layer l by layer_decay^(L + 1 − l): head 1, patch embedding the least")
def _decay_rule(fn):
    for num_layers, decay in _DECAY_CASES:
        got = _scales(fn, num_layers, decay)
        library = _library_scales(num_layers, decay)
        want = [library[layer] for layer in range(num_layers + 2)]
        if _near(got, want):
            continue
        top = num_layers + 1
        if _near(got, [decay**layer for layer in range(top + 1)]):
            raise Hint("your scales run the wrong way: the head trains at the full rate (scale 1) "
                       "and the patch embedding, nearest the input, the slowest — "
                       "layer_decay^(L + 1 − layer)")
        if _near(got, [decay ** (num_layers - layer) for layer in range(top + 1)]):
            raise Hint(f"off by one: with L = {num_layers} blocks the head is layer L + 1 = {top} "
                       "and gets scale 1, so the exponent is L + 1 − layer")
        if _near(got, [decay ** (top + 1 - layer) for layer in range(top + 1)]):
            raise Hint(f"off by one: the head (layer L + 1 = {top}) trains at the full rate, "
                       "scale 1: the exponent is L + 1 − layer")
        if _near(got, [max(0.0, 1 - (1 - decay) * (top - layer)) for layer in range(top + 1)]):
            raise Hint("the decay is geometric, not linear: each layer down multiplies the rate "
                       "by layer_decay, layer_decay^(L + 1 − layer)")
        k = next(k for k, (a, b) in enumerate(zip(got, want)) if not _near([a], [b]))
        raise Hint(f"layer_lr_scale({k}, {num_layers}, {decay}) returned {got[k]:.4g}, expected "
                   f"{decay}^({top} − {k}) = {want[k]:.4g}")
