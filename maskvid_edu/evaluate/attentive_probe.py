"""The attentive probe: judge a frozen encoder by its *tokens*, pooled by learned attention.

A linear probe (:func:`~maskvid_edu.evaluate.probe.linear_probe`) sees one vector per clip, the
mean of the encoder's tokens. Averaging throws away *where* things are: two clips whose tokens are
the same multiset give the same mean. V-JEPA (Bardes et al., 2024) evaluates its frozen encoders
with an **attentive probe** instead — a small cross-attention pooling head trained on top of the
frozen token features (``AttentivePooler`` and ``AttentiveClassifier`` in facebookresearch/jepa,
``src/models/attentive_pooler.py``):

1. ``Q`` learned query tokens ``q`` (one in the release) attend over the clip's ``L`` tokens
   ``x`` (layer-normalised first)::

       a = softmax((q W_q)(x W_k)ᵀ / √d_h)   per head,       z = q + (a (x W_v)) W_o

2. a LayerNorm and an MLP with a residual, as in a transformer block: ``z ← z + MLP(LN(z))``;
3. the queries are averaged and a linear layer gives the class logits.

Only the head is trained (AdamW, cosine learning rate); the encoder never is. Because the query
chooses which tokens to read, the head can pick out one position's content, which no function of
the mean can do — the toy problem of ``tests/test_attentive_probe.py``. The release's head is one
such block with 16 heads, trained for 20 epochs with a warm-up; here the width of the block is the
encoder's, the depth one, and the defaults are sized for the course's CPU demos.

Features come from :func:`extract_tokens`: the encoder's tokens ``(N, L, D)`` instead of one
pooled vector per clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .probe import ProbeResult, check_probe_data, check_probe_settings, extract_with, fit_minibatches

__all__ = ["token_features", "extract_tokens", "AttentivePooler", "AttentiveProbeResult", "attentive_probe"]


# --------------------------------------------------------------------------------------------
# Frozen tokens
# --------------------------------------------------------------------------------------------


def token_features(encoder, video: torch.Tensor) -> torch.Tensor:
    """``video (B, C, T, H, W)`` → tokens ``(B, L, D)``.

    A ViT (:class:`~maskvid_edu.models.vit.VisionTransformer`) called on the video returns its
    normalised tokens ``(B, N, dim)``; feature maps ``(B, C, h, w)`` or ``(B, C, t, h, w)`` become
    ``(B, h·w, C)`` or ``(B, t·h·w, C)`` (one token per cell, raster order).
    """
    out = encoder(video)
    if isinstance(out, (tuple, list)):
        out = out[-1]
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"encoder must return a tensor, got {type(out).__name__}")
    if out.dim() == 3:
        return out  # (B, L, D)
    if out.dim() in (4, 5):
        return out.flatten(2).transpose(1, 2)  # (B, C, …) → (B, L, C)
    raise ValueError(f"encoder tokens must be (B, L, D), (B, C, h, w) or (B, C, t, h, w), got shape {tuple(out.shape)}")


def extract_tokens(encoder, dataset, *, batch_size: int = 16, device="auto",
                   max_items: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token features and labels of a whole dataset, the encoder frozen.

    The same contract as :func:`~maskvid_edu.evaluate.probe.extract_features` (items are dicts
    ``{"video", "label"}``, unreadable items are left out), but each clip keeps its tokens:
    returns ``tokens (N, L, D)`` float32 on CPU and ``labels (N,)`` int64. An item with several
    views ``(V, C, T, H, W)`` gets the mean of its views' tokens, position by position.
    """
    return extract_with(token_features, encoder, dataset, batch_size=batch_size, device=device,
                        max_items=max_items)


# --------------------------------------------------------------------------------------------
# The head
# --------------------------------------------------------------------------------------------


class AttentivePooler(nn.Module):
    """Learned queries cross-attending to frozen tokens, then a linear classifier.

    dim: ``D``, the width of the tokens (and of the block). num_classes: ``K``.
    num_queries: ``Q`` learned query tokens (V-JEPA: 1). num_heads: must divide ``dim``.
    mlp_ratio: width of the MLP after the attention, in multiples of ``dim``.

    ``forward(tokens (B, L, D)) -> logits (B, K)``; :meth:`attention` returns the weights
    ``(B, heads, Q, L)`` each query gives each token (what the head *reads*).
    """

    def __init__(self, dim: int, num_classes: int, *, num_queries: int = 1, num_heads: int = 1,
                 mlp_ratio: float = 4.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim})")
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.norm_tokens = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.head = nn.Linear(dim, num_classes)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Weights from ``N(0, 0.02²)`` drawn from ``generator`` (queries included), biases 0,
        LayerNorms the identity: the same generator state gives the same head."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("norm"):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        return x.view(B, L, self.num_heads, D // self.num_heads).transpose(1, 2)  # (B, heads, L, d_h)

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, heads, Q, L)`` of the queries over ``tokens (B, L, D)``."""
        x = self.norm_tokens(tokens)  # (B, L, D)
        k, _ = self.kv(x).chunk(2, dim=-1)  # (B, L, D)
        q = self.q(self.query.expand(tokens.shape[0], -1, -1))  # (B, Q, D)
        q, k = self._heads(q), self._heads(k)  # (B, heads, Q, d_h), (B, heads, L, d_h)
        return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # (B, heads, Q, L)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, L, D)`` → pooled features ``(B, D)``: the queries after the block, averaged."""
        B = tokens.shape[0]
        x = self.norm_tokens(tokens)  # (B, L, D)
        k, v = self.kv(x).chunk(2, dim=-1)  # (B, L, D) each
        query = self.query.expand(B, -1, -1)  # (B, Q, D)
        q = self._heads(self.q(query))  # (B, heads, Q, d_h)
        z = F.scaled_dot_product_attention(q, self._heads(k), self._heads(v))  # (B, heads, Q, d_h)
        z = query + self.proj(z.transpose(1, 2).reshape(query.shape))  # (B, Q, D)
        z = z + self.mlp(self.norm_mlp(z))  # (B, Q, D)
        return z.mean(dim=1)  # (B, D)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(tokens))  # (B, K)


# --------------------------------------------------------------------------------------------
# Training it
# --------------------------------------------------------------------------------------------


@dataclass
class AttentiveProbeResult(ProbeResult):
    """What :func:`attentive_probe` returns: the fields of
    :class:`~maskvid_edu.evaluate.probe.ProbeResult` (``weight``/``bias`` are the final linear
    layer's, acting on the pooled features) plus ``pooler``, the trained
    :class:`AttentivePooler` (eval mode). ``logits(tokens (N, L, D))`` → ``(N, K)``."""

    pooler: AttentivePooler | None = None

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.pooler(x)


def attentive_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    epochs: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    standardize: bool = True,
    batch_size: int | None = 64,
    num_queries: int = 1,
    num_heads: int = 1,
    mlp_ratio: float = 4.0,
) -> AttentiveProbeResult:
    """Train an :class:`AttentivePooler` on frozen tokens; returns train and test top-1.

    train_x ``(N, L, D)``, train_y ``(N,)`` int; test_x ``(M, L, D)``, test_y ``(M,)`` int — the
    tokens of :func:`extract_tokens`. The loss is the mean cross-entropy of the head's logits,
    minimised with AdamW (``weight_decay`` on every weight, betas (0.9, 0.999)) and a cosine
    learning rate from ``lr`` to 0, in mini-batches of ``batch_size`` in a seeded order (full
    batch when None). ``standardize``: every channel is centred and scaled by the training
    tokens' mean / std first, as :func:`~maskvid_edu.evaluate.probe.linear_probe` does.

    ``seed`` draws the head's initial weights and the batch order from one
    :class:`torch.Generator`: the same inputs and seed give the same numbers.
    """
    train_x, train_y = check_probe_data(train_x, train_y, "train", tokens=True)
    test_x, test_y = check_probe_data(test_x, test_y, "test", tokens=True)
    if test_x.shape[2] != train_x.shape[2]:
        raise ValueError(f"test_x has {test_x.shape[2]} channels but train_x has {train_x.shape[2]}")
    check_probe_settings(epochs, lr, weight_decay, batch_size)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    N, _, D = train_x.shape
    mean = std = None
    if standardize:
        mean = train_x.mean(dim=(0, 1))  # (D,)
        std = train_x.std(dim=(0, 1), unbiased=False).clamp_min(1e-6)  # (D,)
    xs = (train_x - mean) / std if standardize else train_x  # (N, L, D)

    generator = torch.Generator().manual_seed(int(seed))
    pooler = AttentivePooler(D, num_classes, num_queries=num_queries, num_heads=num_heads, mlp_ratio=mlp_ratio)
    pooler.reset_parameters(generator)
    opt = torch.optim.AdamW(pooler.parameters(), lr=lr, weight_decay=weight_decay)
    bs = N if batch_size is None else min(batch_size, N)
    total = epochs * -(-N // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    pooler.train()
    losses = fit_minibatches(lambda idx: F.cross_entropy(pooler(xs[idx]), train_y[idx]),
                             opt, sched, N, bs, epochs, generator)
    pooler.eval()
    result = AttentiveProbeResult(0.0, 0.0, pooler.head.weight.detach(), pooler.head.bias.detach(), mean, std,
                                  losses, pooler=pooler)
    return result.score(train_x, train_y, test_x, test_y)
