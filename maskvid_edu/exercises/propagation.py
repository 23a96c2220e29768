"""Exercise of the downstream chapter: one step of label propagation with top-k affinities.

Checked against :func:`maskvid_edu.evaluate.propagation.propagate_labels` (imported when a
check runs) on a two-frame video, frame 0 the context and frame 1 the queries, without a
spatial window: each query takes ``Σ_i w_qi · y_i`` over its ``k`` most similar context cells,
``w = softmax(f_q · f_i / τ)`` over those ``k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checker import Hint, call, close, exercise, expect_shape, expect_tensor

PROPAGATE = exercise(
    "topk_propagation",
    title="one step of label propagation",
    topic="downstream evaluation · evaluate/propagation.py",
    signature="topk_propagation(query, keys, key_labels, topk, temperature) -> torch.Tensor (n, K)",
    task="""query: (n, D) features of the cells of the current frame, keys: (m, D) features of
    the context cells, both L2-normalised so that a dot product is a cosine similarity;
    key_labels: (m, K) the context's soft labels. For every query cell, keep the topk context
    cells of largest affinity f_q · f_i, weight them by a softmax of affinity / temperature over
    those topk only, and return the weighted sum of their labels: (n, K).""",
)


def _case(n_side=(4, 5), dim=8, classes=3, seed=0):
    """Normalised features of two frames of an ``h × w`` grid and soft labels of frame 0."""
    g = torch.Generator().manual_seed(seed)
    h, w = n_side
    features = F.normalize(torch.randn(2, dim, h, w, generator=g), dim=1)  # (2, D, h, w)
    labels = torch.softmax(3 * torch.randn(classes, h, w, generator=g), dim=0)  # (K, h, w)
    keys = features[0].flatten(1).T  # (h·w, D)
    query = features[1].flatten(1).T  # (h·w, D)
    return query, keys, labels.flatten(1).T, features, labels  # key_labels (h·w, K)


def _reference(features, labels, topk, temperature) -> torch.Tensor:
    from ..evaluate.propagation import PropagationConfig, propagate_labels

    config = PropagationConfig(topk=topk, temperature=temperature, radius=None)
    out = propagate_labels(features, labels, config)  # (2, K, h, w)
    return out[1].flatten(1).T.double()  # (h·w, K)


def _propagate(fn, query, keys, key_labels, topk, temperature) -> torch.Tensor:
    out = expect_tensor(call(fn, query.clone(), keys.clone(), key_labels.clone(), topk,
                             temperature), "topk_propagation")
    expect_shape(out, (query.shape[0], key_labels.shape[1]), "your labels",
                 " = (n, K): one soft label per query cell")
    return out.detach().to(torch.float64).cpu()


def _weighted(query, keys, key_labels, weights_of) -> torch.Tensor:
    """``weights_of(affinity (n, m)) → (n, m)`` applied to the labels, in float64."""
    return weights_of(query.double() @ keys.double().T) @ key_labels.double()


def _softmax_topk(aff, k, scale, largest=True):
    top, idx = aff.topk(k, dim=1, largest=largest)
    return torch.zeros_like(aff).scatter(1, idx, torch.softmax(top * scale, dim=1))


@PROPAGATE.property("returns (n, K)")
def _propagate_shape(fn):
    query, keys, key_labels, *_ = _case()
    _propagate(fn, query, keys, key_labels, 5, 0.1)


@PROPAGATE.property("weights the top-k context cells by softmax(affinity / τ)")
def _propagate_rule(fn):
    k, tau = 5, 0.1
    query, keys, key_labels, features, labels = _case()
    got, want = _propagate(fn, query, keys, key_labels, k, tau), _reference(features, labels, k, tau)
    if close(got, want, rtol=1e-4, atol=1e-5):
        return
    slips = (
        (lambda a: torch.softmax(a / tau, dim=1),
         "you took the softmax over every context cell: keep only the topk largest affinities "
         "(affinity.topk(topk, dim=1)) and normalise over those"),
        (lambda a: _softmax_topk(a, k, 1.0),
         "the temperature is missing: divide the affinities by τ before the softmax — with "
         "cosines in [−1, 1] and no τ the weights are almost uniform"),
        (lambda a: _softmax_topk(a, k, tau),
         "you multiplied by the temperature; divide by it: softmax(top / temperature)"),
        (lambda a: _softmax_topk(a, k, 1 / tau, largest=False),
         "you kept the k *least* similar cells: topk takes the largest affinities "
         "(largest=True, the default)"),
        (lambda a: _softmax_topk(a, k, 0.0),
         "every one of the topk cells got the same weight: weight them by "
         "softmax(affinity / τ), so the most similar cell counts most"),
        (lambda a: torch.zeros_like(a).scatter(1, a.topk(k, dim=1).indices,
                                               torch.softmax(a.topk(k, dim=1).values / tau, dim=0)),
         "your softmax runs over the query cells (dim=0); the weights of one query sum to 1 "
         "over its k neighbours: softmax(..., dim=1)"),
    )
    for weights_of, hint in slips:
        if close(got, _weighted(query, keys, key_labels, weights_of), rtol=1e-4, atol=1e-5):
            raise Hint(hint)
    raise Hint(f"your labels differ from label propagation by up to "
               f"{float((got - want).abs().max()):.3g}: top, idx = (query @ keys.T).topk(k, dim=1); "
               "weights = softmax(top / τ, dim=1); labels = Σ weights · key_labels[idx]")


@PROPAGATE.property("follows topk and temperature, for any number of cells and classes")
def _propagate_any(fn):
    for k, tau, side, classes in ((1, 0.05, (3, 4), 2), (12, 1.0, (3, 4), 5)):
        query, keys, key_labels, features, labels = _case(side, dim=6, classes=classes, seed=k)
        got = _propagate(fn, query, keys, key_labels, k, tau)
        want = _reference(features, labels, k, tau)
        if not close(got, want, rtol=1e-4, atol=1e-5):
            raise Hint(f"right for topk 5 and τ 0.1 but not for topk {k}, τ {tau} on {side[0] * side[1]} "
                       f"cells and {classes} classes: take k, τ and the sizes from the arguments")
