"""How a video encoder is judged without training it: frozen clip features, k-NN and linear probes.

Two protocols, the cheapest first:

- **k-NN** (:func:`knn_accuracy`): every test clip votes with its ``k`` most cosine-similar
  training clips, each vote weighted by ``exp(similarity / τ)`` (the weighted k-NN of DINO,
  Caron et al., 2021). No training at all: it measures how well clips of one class already
  cluster in feature space.
- **linear probe** (:func:`linear_probe`): a softmax regression trained on frozen clip features.
  It asks whether the classes are *linearly* separable in the features.

Features come from :func:`extract_features`, which takes any encoder with
``forward_features(video) -> (B, D)`` (the ViT of :mod:`maskvid_edu.models.vit`), an encoder
returning feature maps ``(B, C, h, w)`` or ``(B, C, t, h, w)`` (global-average-pooled), or a plain
callable ``video -> (B, D)`` (:func:`clip_features` is the one call behind all three);
:class:`FrameEncoder` turns an image encoder (VideoMAC's ConvNets) into a clip encoder.
Fine-tuning the whole encoder is :mod:`maskvid_edu.evaluate.finetune`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import frozen, resolve_device

__all__ = [
    "fit_minibatches",
    "clip_features",
    "extract_features",
    "extract_with",
    "check_probe_data",
    "check_probe_settings",
    "ProbeResult",
    "linear_probe",
    "knn_predict",
    "knn_accuracy",
    "FrameEncoder",
]


# --------------------------------------------------------------------------------------------
# Frozen features
# --------------------------------------------------------------------------------------------


def _pool_features(out) -> torch.Tensor:
    """Encoder output → clip features ``(B, D)``: feature maps are averaged over space(-time)."""
    if isinstance(out, (tuple, list)):
        out = out[-1]
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"encoder must return a tensor, got {type(out).__name__}")
    if out.dim() == 2:
        return out  # (B, D)
    if out.dim() in (4, 5):
        return out.flatten(2).mean(dim=2)  # (B, C, h, w) or (B, C, t, h, w) → (B, C)
    raise ValueError(f"encoder features must be (B, D), (B, C, h, w) or (B, C, t, h, w), got shape {tuple(out.shape)}")


def clip_features(encoder, video: torch.Tensor) -> torch.Tensor:
    """``video (B, C, T, H, W)`` → ``(B, D)`` with whatever interface the encoder has."""
    if hasattr(encoder, "forward_features"):
        return _pool_features(encoder.forward_features(video))
    if callable(encoder):
        return _pool_features(encoder(video))
    raise ValueError(f"encoder must have forward_features(video) or be callable, got {type(encoder).__name__}")


def extract_features(
    encoder,
    dataset,
    *,
    batch_size: int = 16,
    device="auto",
    max_items: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip features and labels of a whole dataset, with the encoder frozen.

    encoder: a module with ``forward_features(video) -> (B, D)``, or a callable
        ``video (B, C, T, H, W) -> (B, D)``; outputs ``(B, C, h, w)`` / ``(B, C, t, h, w)`` are
        global-average-pooled to ``(B, C)``. Modules are put in eval mode for the call (and
        restored afterwards) and moved to ``device``.
    dataset: indexable, ``len()``-able, items are dicts ``{"video": (C, T, H, W), "label": int}``.
        An item with several views, ``"video": (V, C, T, H, W)`` (a test-mode
        :class:`~maskvid_edu.data.datasets.VideoDataset`,
        :class:`~maskvid_edu.data.wrappers.ClipViews`), gets the mean of its views' features.
        Items that are not dicts (a ``SkippedItem`` for an unreadable file) are left out; the
        returned labels say which clips were used.
    batch_size: clips per forward pass. device: ``"auto"`` → CUDA if available.
    max_items: use only the first ``max_items`` items (None = all).

    Returns ``features (N, D)`` float32 on CPU and ``labels (N,)`` int64.
    """
    return extract_with(clip_features, encoder, dataset, batch_size=batch_size, device=device,
                        max_items=max_items)


@torch.no_grad()
def extract_with(
    features,
    encoder,
    dataset,
    *,
    batch_size: int = 16,
    device="auto",
    max_items: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop behind :func:`extract_features`, with the feature function as an argument.

    features: ``(encoder, video (B, C, T, H, W)) -> (B, …)`` — :func:`clip_features` (one vector
        per clip) or :func:`~maskvid_edu.evaluate.attentive_probe.token_features` (its tokens).
    The other arguments and the handling of views and skipped items are those of
    :func:`extract_features`. Returns ``features (N, …)`` float32 on CPU, ``labels (N,)`` int64.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(dataset)
    if max_items is not None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be a positive int or None, got {max_items!r}")
        n = min(n, max_items)
    if n == 0:
        raise ValueError("dataset is empty: nothing to extract features from")
    dev = resolve_device(device)
    feats, labels = [], []
    with frozen(encoder, dev):
        for start in range(0, n, batch_size):
            items = []
            for i in range(start, min(n, start + batch_size)):
                item = dataset[i]
                if not isinstance(item, dict):
                    continue  # a skipped (unreadable) video
                if "video" not in item or "label" not in item:
                    raise ValueError(f"dataset item {i} must have 'video' and 'label', got keys {sorted(item)}")
                items.append(item)
            if not items:
                continue
            videos = [torch.as_tensor(it["video"]) for it in items]
            views = [v.shape[0] if v.dim() == 5 else 1 for v in videos]
            video = torch.cat([v if v.dim() == 5 else v[None] for v in videos])  # (ΣV, C, T, H, W)
            f = features(encoder, video.to(dev, torch.float32)).float().cpu()  # (ΣV, …)
            feats.extend(chunk.mean(dim=0) for chunk in f.split(views))  # per clip: mean over its views
            labels.extend(int(it["label"]) for it in items)
    if not feats:
        raise ValueError("no usable item in the dataset (every one was skipped)")
    return torch.stack(feats), torch.tensor(labels, dtype=torch.int64)


# --------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """What :func:`linear_probe` returns.

    accuracy / train_accuracy: top-1 on the test / training features (fractions in [0, 1]).
    weight ``(K, D)``, bias ``(K,)``: the classifier, acting on standardised features when
    ``mean``/``std`` are set (``logits = ((x − mean) / std) @ weight.T + bias``).
    losses: training loss per epoch. predictions: test predictions ``(N_test,)``.
    """

    accuracy: float
    train_accuracy: float
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    losses: list = field(default_factory=list)
    predictions: torch.Tensor | None = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of features ``x (N, D)``."""
        x = x.float()
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x @ self.weight.T + self.bias

    @torch.no_grad()
    def score(self, train_x, train_y, test_x, test_y) -> "ProbeResult":
        """Fill ``train_accuracy``, ``accuracy`` and ``predictions`` from the trained classifier."""
        train_pred = self.logits(train_x).argmax(dim=1)  # (N,)
        test_pred = self.logits(test_x).argmax(dim=1)  # (M,)
        self.train_accuracy = (train_pred == train_y).float().mean().item()
        self.accuracy = (test_pred == test_y).float().mean().item()
        self.predictions = test_pred
        return self


def fit_minibatches(loss_of, optimizer, scheduler, num_items: int, batch_size: int, epochs: int,
                    generator: torch.Generator) -> list[float]:
    """The probes' training loop: ``epochs`` passes over ``num_items`` rows in mini-batches of
    ``batch_size`` (shuffled by ``generator``; in order when one batch holds every row), one
    optimizer and one scheduler step per batch. ``loss_of(idx)`` gives the scalar loss of the rows
    ``idx``. Returns the mean training loss of each epoch."""
    losses = []
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(num_items, generator=generator) if batch_size < num_items else torch.arange(num_items)
            epoch_loss = 0.0
            for start in range(0, num_items, batch_size):
                idx = order[start : start + batch_size]
                loss = loss_of(idx)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                epoch_loss += loss.item() * len(idx) / num_items
            losses.append(epoch_loss)
    return losses


def check_probe_data(x, y, name: str, *, tokens: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate probe inputs: features ``x (N, D)`` (``(N, L, D)`` tokens when ``tokens``) and
    integer labels ``y (N,)`` ≥ 0; returns them as float32 / int64 on CPU. ``name`` ("train",
    "test") is used in the messages."""
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.dim() != (3 if tokens else 2):
        what = "(N, L, D) token features" if tokens else "(N, D) features"
        raise ValueError(f"{name}_x must be {what}, got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}_y must be (N,) labels matching {name}_x's N={x.shape[0]}, got shape {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}_x is empty")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{name}_y must hold integer class ids, got dtype {y.dtype}")
    if (y < 0).any():
        raise ValueError(f"{name}_y must hold class ids ≥ 0, got min {int(y.min())}")
    return x.float().cpu(), y.long().cpu()


def check_probe_settings(epochs, lr, weight_decay, batch_size) -> None:
    """Validate a probe's training settings: ``epochs`` a positive int, ``lr > 0``,
    ``weight_decay ≥ 0``, ``batch_size`` a positive int or None."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be ≥ 0, got {weight_decay!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    seed: int = 0,
    standardize: bool = True,
    batch_size: int | None = None,
) -> ProbeResult:
    """Softmax regression on frozen features; returns train and test top-1.

    train_x ``(N, D)``, train_y ``(N,)`` int; test_x ``(M, D)``, test_y ``(M,)`` int.
    The loss minimised is the mean cross-entropy plus an L2 penalty::

        L(W, b) = −1/N Σᵢ log softmax(W xᵢ + b)[yᵢ]  +  (weight_decay / 2) ‖W‖²

    with SGD (momentum 0.9, cosine-decayed ``lr``), full-batch when ``batch_size`` is None, else
    mini-batches in a seeded order. ``standardize``: features are centred and scaled by the
    training set's per-dimension mean / std first (as a BatchNorm without affine would do,
    MAE's linear-probe recipe). Weights start at zero, so the result depends only on ``seed``
    through the mini-batch order: the same inputs give the same numbers.
    """
    train_x, train_y = check_probe_data(train_x, train_y, "train")
    test_x, test_y = check_probe_data(test_x, test_y, "test")
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"test_x has {test_x.shape[1]} dims but train_x has {train_x.shape[1]}")
    check_probe_settings(epochs, lr, weight_decay, batch_size)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    N, D = train_x.shape
    mean = std = None
    if standardize:
        mean = train_x.mean(dim=0)  # (D,)
        std = train_x.std(dim=0, unbiased=False).clamp_min(1e-6)  # (D,)
    xs = (train_x - mean) / std if standardize else train_x  # (N, D)

    generator = torch.Generator().manual_seed(int(seed))
    weight = torch.zeros(num_classes, D, requires_grad=True)  # (K, D)
    bias = torch.zeros(num_classes, requires_grad=True)  # (K,)
    opt = torch.optim.SGD([weight, bias], lr=lr, momentum=0.9)
    bs = N if batch_size is None else min(batch_size, N)
    steps_per_epoch = -(-N // bs)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / total)).item()))

    def loss_of(idx):
        logits = xs[idx] @ weight.T + bias  # (b, K)
        return F.cross_entropy(logits, train_y[idx]) + 0.5 * weight_decay * weight.pow(2).sum()

    losses = fit_minibatches(loss_of, opt, sched, N, bs, epochs, generator)
    result = ProbeResult(0.0, 0.0, weight.detach(), bias.detach(), mean, std, losses)
    return result.score(train_x, train_y, test_x, test_y)


# --------------------------------------------------------------------------------------------
# Weighted k-NN
# --------------------------------------------------------------------------------------------


def knn_predict(
    train_x,
    train_y,
    test_x,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores ``(M, K)`` of the weighted k-NN classifier (DINO's protocol).

    Features are L2-normalised, so the similarity ``sᵢⱼ = x̂ᵢ · x̂ⱼ`` is the cosine. For each test
    clip ``i`` its ``k`` most similar training clips ``j`` vote for their class with weight
    ``exp(sᵢⱼ / τ)``::

        score_i(c) = Σ_{j ∈ topk(i)} exp(sᵢⱼ / τ) · [y_j = c]

    The prediction is ``argmax_c score_i(c)``. A small ``τ`` makes the nearest neighbour dominate.
    """
    train_x, train_y = check_probe_data(train_x, train_y, "train")
    test_x = torch.as_tensor(test_x).float().cpu()
    if test_x.dim() != 2 or test_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"test_x must be (M, {train_x.shape[1]}), got shape {tuple(test_x.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    k = min(k, train_x.shape[0])
    num_classes = int(train_y.max()) + 1 if num_classes is None else int(num_classes)
    train_n = F.normalize(train_x, dim=1)  # (N, D)
    test_n = F.normalize(test_x, dim=1)  # (M, D)
    scores = []
    for start in range(0, test_n.shape[0], chunk):
        sim = test_n[start : start + chunk] @ train_n.T  # (m, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (m, k)
        votes = F.one_hot(train_y[top_idx], num_classes).float()  # (m, k, K)
        weights = (top_sim / temperature).exp()  # (m, k)
        scores.append((votes * weights.unsqueeze(-1)).sum(dim=1))  # (m, K)
    return torch.cat(scores)


def knn_accuracy(train_x, train_y, test_x, test_y, *, k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy of the weighted k-NN classifier (see :func:`knn_predict`) on ``test_x``."""
    test_x, test_y = check_probe_data(test_x, test_y, "test")
    scores = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature,
                         num_classes=int(max(torch.as_tensor(train_y).max(), test_y.max())) + 1)
    return (scores.argmax(dim=1) == test_y).float().mean().item()




# --------------------------------------------------------------------------------------------
# Image encoders on clips
# --------------------------------------------------------------------------------------------


class FrameEncoder(nn.Module):
    """An image encoder used on clips: every frame on its own, pooled, averaged over time.

    encoder: ``images (B, 3, H, W) → (B, C, h, w)`` (or ``(B, C)``), e.g. the ResNet / ConvNeXt V2
        encoders of VideoMAC. stage: with an encoder that has ``forward_stages``, which stage's
        map to pool (None: ``encoder(images)``).

    ``forward(video (B, C, T, H, W)) → (B, C')``: the ``B·T`` frames go through the encoder as
    one batch, each map is averaged over space, then the frames are averaged. ``num_features``
    is ``C'``.
    """

    def __init__(self, encoder: nn.Module, stage: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.stage = stage
        self.num_features = getattr(encoder, "num_features", None) if stage in (None, -1) else None
        if self.num_features is None and stage is not None:  # another stage's width: run a small image
            was_training = encoder.training
            encoder.eval()
            with torch.no_grad():
                self.num_features = int(encoder.forward_stages(torch.zeros(1, 3, 64, 64))[stage].shape[1])
            encoder.train(was_training)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        if video.dim() != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
        B, C, T, H, W = video.shape
        frames = video.transpose(1, 2).reshape(B * T, C, H, W)  # (B·T, C, H, W)
        out = self.encoder.forward_stages(frames)[self.stage] if self.stage is not None else self.encoder(frames)
        pooled = _pool_features(out)  # (B·T, C')
        return pooled.view(B, T, -1).mean(dim=1)  # (B, C')

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_features(video)
