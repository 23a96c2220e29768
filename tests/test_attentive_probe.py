"""The attentive probe reads *where* a pattern is, which no function of the mean token can."""

from __future__ import annotations

import pytest
import torch

from maskvid_edu.evaluate.attentive_probe import AttentivePooler, attentive_probe, extract_tokens, token_features
from maskvid_edu.evaluate.probe import linear_probe


def position_problem(n: int, seed: int, L: int = 8, D: int = 16, K: int = 4):
    """Tokens ``pos[l] + noise``; class ``c`` adds one fixed pattern to token ``c``. Every clip's
    tokens average to the same vector up to noise: the class is in the position only."""
    g = torch.Generator().manual_seed(1234)  # the positions and the pattern are shared by both splits
    pos = torch.randn(L, D, generator=g)
    pattern = 3 * torch.randn(D, generator=g)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    x = pos.expand(n, L, D) + 0.1 * torch.randn(n, L, D, generator=g)
    x[torch.arange(n), y] += pattern
    return x, y


def test_attentive_probe_solves_what_mean_pooling_cannot():
    train_x, train_y = position_problem(128, seed=0)
    test_x, test_y = position_problem(64, seed=1)
    attentive = attentive_probe(train_x, train_y, test_x, test_y, epochs=30, lr=1e-2, seed=0)
    linear = linear_probe(train_x.mean(dim=1), train_y, test_x.mean(dim=1), test_y, epochs=100)
    assert attentive.accuracy >= 0.95 and attentive.train_accuracy >= 0.95
    assert linear.accuracy <= 0.5  # chance is 0.25
    assert attentive.losses[-1] < attentive.losses[0]
    assert attentive.predictions.shape == (64,)
    assert torch.equal(attentive.logits(test_x).argmax(dim=1), attentive.predictions)
    weights = attentive.pooler.attention((test_x - attentive.mean) / attentive.std)  # (M, heads, Q, L)
    assert weights.shape == (64, 1, 1, 8)


def test_attentive_probe_is_deterministic_under_a_seed():
    x, y = position_problem(32, seed=0)
    a = attentive_probe(x, y, x, y, epochs=3, seed=5, batch_size=8)
    b = attentive_probe(x, y, x, y, epochs=3, seed=5, batch_size=8)
    c = attentive_probe(x, y, x, y, epochs=3, seed=6, batch_size=8)
    assert a.losses == b.losses and torch.equal(a.weight, b.weight)
    assert a.losses != c.losses


def test_tokens_of_a_vit_and_of_feature_maps():
    from maskvid_edu.models import create

    torch.manual_seed(0)
    vit = create("vjepa_vit_demo").encoder
    data = [{"video": torch.randn(3, 8, 64, 64), "label": i % 2} for i in range(3)]
    tokens, labels = extract_tokens(vit, data, batch_size=2)
    assert tokens.shape == (3, 256, 128) and labels.tolist() == [0, 1, 0]
    maps = token_features(lambda v: torch.zeros(v.shape[0], 5, 2, 3), torch.zeros(4, 3, 2, 8, 8))
    assert maps.shape == (4, 6, 5)


def test_bad_inputs_are_named():
    x, y = position_problem(8, seed=0)
    with pytest.raises(ValueError, match=r"\(N, L, D\)"):
        attentive_probe(x.mean(dim=1), y, x, y)
    with pytest.raises(ValueError, match="divide"):
        AttentivePooler(16, 4, num_heads=3)
