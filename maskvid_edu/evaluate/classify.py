"""How a video encoder is judged on action recognition: frozen-feature probes and fine-tuning.

Three protocols, from cheapest to most faithful to the published numbers:

- **k-NN** (:func:`knn_accuracy`): every test clip votes with its ``k`` most cosine-similar
  training clips, each vote weighted by ``exp(similarity / τ)`` (the weighted k-NN of DINO,
  Caron et al., 2021). No training at all: it measures how well clips of one class already
  cluster in feature space.
- **linear probe** (:func:`linear_probe`): a softmax regression trained on frozen clip features.
  It asks whether the classes are *linearly* separable in the features.
- **fine-tuning** (:class:`VideoClassifier`): the whole encoder is trained with a classification
  head, the recipe of VideoMAE (Tong et al., 2022) — mean pooling + ``fc_norm``, a head
  initialised 1000× smaller, stochastic depth, label smoothing, mixup/cutmix, layer-wise
  learning-rate decay, and multi-view testing (:func:`evaluate_views`). This is what the
  papers' Kinetics / Something-Something tables report.

Features come from :func:`extract_features`, which takes any encoder with
``forward_features(video) -> (B, D)`` (the ViT of :mod:`maskvid_edu.models.vit`), an encoder
returning feature maps ``(B, C, h, w)`` or ``(B, C, t, h, w)`` (global-average-pooled), or a plain
callable ``video -> (B, D)``; :class:`FrameEncoder` turns an image encoder (VideoMAC's ConvNets)
into a clip encoder.

Fine-tuning runs the library's one trainer, :func:`maskvid_edu.train.train`:
:class:`VideoClassifier` declares ``takes_labels`` (the batch's labels reach it) and its own
optimizer groups with an ``lr_scale`` each (layer-wise decay), so schedules, accumulation, AMP,
DDP, checkpoints and exact resume are the pre-training ones. Mixup and CutMix are written here for
video batches (:func:`draw_mix`, :func:`apply_mix`, :func:`mix_targets`), following timm's
``Mixup`` in batch mode draw for draw; the tests check them against timm.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..models.output import PretrainOutput
from ..train import TrainConfig, param_groups, train
from ..utils import resolve_device

__all__ = [
    "extract_features",
    "ProbeResult",
    "linear_probe",
    "knn_predict",
    "knn_accuracy",
    "MixParams",
    "draw_mix",
    "apply_mix",
    "mix_targets",
    "soft_cross_entropy",
    "layer_id",
    "layer_decay_groups",
    "FrameEncoder",
    "ClassifierConfig",
    "VideoClassifier",
    "finetune",
    "ClipViews",
    "ViewResult",
    "evaluate_views",
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


def _encode(encoder, video: torch.Tensor) -> torch.Tensor:
    """``video (B, C, T, H, W)`` → ``(B, D)`` with whatever interface the encoder has."""
    if hasattr(encoder, "forward_features"):
        return _pool_features(encoder.forward_features(video))
    if callable(encoder):
        return _pool_features(encoder(video))
    raise ValueError(f"encoder must have forward_features(video) or be callable, got {type(encoder).__name__}")


@torch.no_grad()
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
        :class:`~maskvid_edu.data.datasets.VideoDataset`, :class:`ClipViews`), gets the mean of its
        views' features. Items that are not dicts (a ``SkippedItem`` for an unreadable file) are
        left out; the returned labels say which clips were used.
    batch_size: clips per forward pass. device: ``"auto"`` → CUDA if available.
    max_items: use only the first ``max_items`` items (None = all).

    Returns ``features (N, D)`` float32 on CPU and ``labels (N,)`` int64.
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
    was_training = None
    if isinstance(encoder, nn.Module):
        was_training = encoder.training
        encoder.eval()
        encoder.to(dev)
    feats, labels = [], []
    try:
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
            f = _encode(encoder, video.to(dev, torch.float32)).float().cpu()  # (ΣV, D)
            feats.extend(chunk.mean(dim=0) for chunk in f.split(views))  # per clip: mean over its views
            labels.extend(int(it["label"]) for it in items)
    finally:
        if was_training:
            encoder.train()
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


def _check_xy(x, y, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.dim() != 2:
        raise ValueError(f"{name}_x must be (N, D) features, got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}_y must be (N,) labels matching {name}_x's N={x.shape[0]}, got shape {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}_x is empty")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{name}_y must hold integer class ids, got dtype {y.dtype}")
    if (y < 0).any():
        raise ValueError(f"{name}_y must hold class ids ≥ 0, got min {int(y.min())}")
    return x.float().cpu(), y.long().cpu()


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
    train_x, train_y = _check_xy(train_x, train_y, "train")
    test_x, test_y = _check_xy(test_x, test_y, "test")
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"test_x has {test_x.shape[1]} dims but train_x has {train_x.shape[1]}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be ≥ 0, got {weight_decay!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
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
    losses = []
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(N, generator=generator) if bs < N else torch.arange(N)
            epoch_loss = 0.0
            for start in range(0, N, bs):
                idx = order[start : start + bs]
                logits = xs[idx] @ weight.T + bias  # (b, K)
                loss = F.cross_entropy(logits, train_y[idx]) + 0.5 * weight_decay * weight.pow(2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                epoch_loss += loss.item() * len(idx) / N
            losses.append(epoch_loss)
    result = ProbeResult(0.0, 0.0, weight.detach(), bias.detach(), mean, std, losses)
    with torch.no_grad():
        train_pred = result.logits(train_x).argmax(dim=1)  # (N,)
        test_pred = result.logits(test_x).argmax(dim=1)  # (M,)
    result.train_accuracy = (train_pred == train_y).float().mean().item()
    result.accuracy = (test_pred == test_y).float().mean().item()
    result.predictions = test_pred
    return result


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
    train_x, train_y = _check_xy(train_x, train_y, "train")
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
    test_x, test_y = _check_xy(test_x, test_y, "test")
    scores = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature,
                         num_classes=int(max(torch.as_tensor(train_y).max(), test_y.max())) + 1)
    return (scores.argmax(dim=1) == test_y).float().mean().item()


# --------------------------------------------------------------------------------------------
# Mixup and CutMix on video batches
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixParams:
    """One draw of the batch mixing (what :func:`draw_mix` returns).

    kind: ``"none"``, ``"mixup"`` or ``"cutmix"``.
    lam: ``λ``, the weight of each clip's own label (1 for ``"none"``); for CutMix the share of
        the frame area that stays the clip's own, after clipping the box at the borders.
    box: CutMix only, ``(y0, y1, x0, x1)``: rows ``y0:y1`` and columns ``x0:x1`` of *every
        frame* come from the partner clip.
    """

    kind: str
    lam: float
    box: tuple[int, int, int, int] | None = None


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    """One draw of ``Beta(α, α)`` by inverting its CDF at a uniform from ``generator``."""
    from scipy.special import betaincinv

    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return float(betaincinv(alpha, alpha, u))


def draw_mix(
    height: int,
    width: int,
    *,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> MixParams:
    """Draw how one batch is mixed: timm's ``Mixup`` in ``mode="batch"``, for frames ``height × width``.

    With probability ``prob`` the batch is mixed; then, when both alphas are positive, CutMix is
    chosen with probability ``switch_prob`` and Mixup otherwise (one alpha at 0 disables that
    kind). ``λ ~ Beta(α, α)`` with the chosen kind's ``α``. CutMix turns ``λ`` into a box of
    side ``√(1 − λ)`` times the frame's, centred at a uniformly drawn pixel and clipped at the
    borders; ``λ`` is then recomputed from the clipped area (timm's ``correct_lam``).

    All randomness comes from ``generator`` (torch's default generator when None).
    """
    for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    for name, value in (("prob", prob), ("switch_prob", switch_prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}×{width}")
    if (mixup_alpha == 0 and cutmix_alpha == 0) or prob == 0:
        return MixParams("none", 1.0)
    if torch.rand((), generator=generator).item() >= prob:
        return MixParams("none", 1.0)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cutmix = torch.rand((), generator=generator).item() < switch_prob
    else:
        cutmix = cutmix_alpha > 0
    lam = _beta(cutmix_alpha if cutmix else mixup_alpha, generator)
    if not cutmix:
        return MixParams("mixup", lam)
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(0, height, (), generator=generator))
    cx = int(torch.randint(0, width, (), generator=generator))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, width)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return MixParams("cutmix", lam, (y0, y1, x0, x1))


def apply_mix(video: torch.Tensor, params: MixParams) -> torch.Tensor:
    """Mix a batch with its own reversal: clip ``i`` is mixed with clip ``B − 1 − i``.

    video: ``(B, C, T, H, W)`` (any ``(B, …, H, W)`` works). Returns a new tensor:

    - Mixup: ``λ · x_i + (1 − λ) · x_{B−1−i}``, every pixel of every frame;
    - CutMix: ``x_i`` with the box ``params.box`` of **every frame** replaced by the partner's —
      the same spatial box through time, so the pasted region is a tube of the partner clip.

    (The official VideoMAE code calls image CutMix, ``x[:, :, y0:y1, x0:x1]``, on
    ``(B, C, T, H, W)`` batches, which indexes frames and rows instead of rows and columns:
    its pasted region is a slab of whole-width rows in some frames, with ``λ`` computed as if
    it were an ``H × W`` box. We cut the box the method describes.)
    """
    if params.kind == "none":
        return video
    partner = video.flip(0)
    if params.kind == "mixup":
        return video * params.lam + partner * (1.0 - params.lam)
    if params.kind != "cutmix" or params.box is None:
        raise ValueError(f"unknown mix {params!r}")
    y0, y1, x0, x1 = params.box
    out = video.clone()
    out[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
    return out


def mix_targets(labels: torch.Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0) -> torch.Tensor:
    """Soft targets ``(B, K)`` of a mixed batch, with label smoothing.

    Each one-hot label is smoothed to ``1 − s + s/K`` on its class and ``s/K`` elsewhere, then
    mixed with the reversed batch's: ``y_i = λ · ỹ(labels_i) + (1 − λ) · ỹ(labels_{B−1−i})``.
    Every row sums to 1. (timm's ``mixup_target``.)
    """
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be a (B,) integer tensor, got shape {tuple(labels.shape)}, dtype {labels.dtype}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    off = smoothing / num_classes
    y = torch.full((labels.shape[0], num_classes), off, device=labels.device)  # (B, K)
    y.scatter_(1, labels.long()[:, None], 1.0 - smoothing + off)
    return y * lam + y.flip(0) * (1.0 - lam)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_i Σ_c −y_ic · log softmax(z_i)_c`` for soft targets ``y (B, K)`` and logits ``z (B, K)``."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


# --------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay
# --------------------------------------------------------------------------------------------


_EMBEDDING_NAMES = ("patch_embed", "pos_embed", "cls_token", "mask_token")


def layer_id(name: str, num_layers: int, prefix: str = "encoder.") -> int:
    """Depth of parameter ``name`` for layer-wise lr decay (BEiT / VideoMAE numbering).

    ``0``: the embeddings (``patch_embed``, ``pos_embed``, tokens) of the encoder under
    ``prefix``; ``i + 1``: transformer block ``i``; ``num_layers + 1``: everything else (the
    head, ``fc_norm``, a final norm). An encoder without ``blocks`` (a ConvNet) is one layer:
    every parameter under ``prefix`` gets ``0`` and ``num_layers`` should be 0.
    """
    if not name.startswith(prefix):
        return num_layers + 1
    rest = name[len(prefix):]
    if rest.startswith("blocks."):
        return int(rest.split(".")[1]) + 1
    if num_layers == 0 or rest.split(".")[0] in _EMBEDDING_NAMES:
        return 0
    return num_layers + 1


def layer_decay_groups(model: nn.Module, weight_decay: float, layer_decay: float, *,
                       num_layers: int | None = None, prefix: str = "encoder.") -> list[dict]:
    """AdamW parameter groups with per-layer learning-rate scales.

    Layer ``l`` of ``L + 2`` (see :func:`layer_id`, ``L = num_layers`` blocks) trains at
    ``lr · layer_decay^(L + 1 − l)``: the head at the full rate, the last block at
    ``layer_decay``, the patch embedding at ``layer_decay^(L + 1)`` — the layers nearest the
    input, which pre-training made most general, move least. Weight decay follows the trainer's
    rule (:func:`maskvid_edu.train.param_groups`: none on biases, norms, tokens).

    Returns groups ``{"params", "names", "weight_decay", "lr_scale", "layer"}`` sorted by
    decreasing ``lr_scale`` (the first group runs at the peak rate).
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    if num_layers is None:
        encoder = getattr(model, prefix.rstrip("."), None)
        blocks = getattr(encoder, "blocks", None)
        num_layers = len(blocks) if isinstance(blocks, nn.ModuleList) else 0
    decayed = set(param_groups(model, weight_decay)[0]["names"])
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, num_layers, prefix)
        decay = name in decayed
        group = groups.setdefault((lid, decay), {
            "params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
            "lr_scale": layer_decay ** (num_layers + 1 - lid), "layer": lid,
        })
        group["params"].append(p)
        group["names"].append(name)
    return sorted(groups.values(), key=lambda g: (-g["lr_scale"], g["weight_decay"] == 0.0))


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


# --------------------------------------------------------------------------------------------
# The fine-tuning model
# --------------------------------------------------------------------------------------------


@dataclass
class ClassifierConfig:
    """The fine-tuning recipe's model side (defaults: VideoMAE's Kinetics recipe).

    num_classes: ``K``.
    drop_path: stochastic depth of the last block (rising linearly from 0 over the blocks).
    head_drop: dropout before the head. head_init_scale: the head's truncated-normal (std 0.02)
        weights are multiplied by this — 0.001: the first logits are near zero, so the first
        gradients do not wreck the pre-trained features.
    label_smoothing: ``s`` of :func:`mix_targets`.
    mixup_alpha, cutmix_alpha, mix_prob, switch_prob: see :func:`draw_mix` (0.8, 1.0, 1.0, 0.5).
    layer_decay: see :func:`layer_decay_groups` (0.75 for ViT-B; 1.0 = off).
    feature_dim: width of the encoder's clip features (default: ``encoder.config.dim``).
    encoder: a description of the encoder (its config), filled in by :class:`VideoClassifier`
        so that checkpoints record what was fine-tuned.
    """

    num_classes: int = 2
    drop_path: float = 0.1
    head_drop: float = 0.0
    head_init_scale: float = 0.001
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    layer_decay: float = 0.75
    feature_dim: int | None = None
    encoder: dict | None = None

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        for name in ("drop_path", "head_drop", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.head_init_scale > 0:
            raise ValueError(f"head_init_scale must be > 0, got {self.head_init_scale!r}")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("mix_prob", "switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay!r}")


def _describe(encoder: nn.Module) -> dict:
    cfg = getattr(encoder, "config", None)
    info = {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}"}
    if cfg is not None and dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        info["config"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                          for k, v in dataclasses.asdict(cfg).items()}
    return info


class VideoClassifier(nn.Module):
    """A pre-trained encoder + VideoMAE's fine-tuning head, trainable by the library's trainer.

    ``VideoClassifier(encoder, num_classes, **recipe)`` copies ``encoder`` (the original is
    left as it was) and, for a :class:`~maskvid_edu.models.vit.VisionTransformer`:

    - drops its final token ``norm`` and instead normalises the *mean-pooled* tokens with a new
      ``fc_norm`` (the official fine-tuning model's ``use_mean_pooling``);
    - sets stochastic depth rising linearly from 0 to ``drop_path`` over the blocks;
    - adds ``head``: ``Linear(D, K)``, truncated-normal weights × ``head_init_scale``, zero bias.

    Other encoders (``forward_features`` or feature maps, see :func:`extract_features`) are
    pooled the same way and get the same ``fc_norm`` + head.

    Clips of another length or size than the encoder was built for work unchanged: the ViT
    *interpolates* its position embedding to the new token grid (``ViTConfig.pos_resize``).

    Trainer interface (see :mod:`maskvid_edu.train`): ``takes_labels = True``,
    ``param_groups(weight_decay)`` (layer-wise lr decay through each group's ``lr_scale``),
    ``make_mask(video, generator) -> None`` (fine-tuning hides nothing) and
    ``forward(video, mask=None, label=...)`` → :class:`~maskvid_edu.models.output.PretrainOutput`
    with ``loss``, ``terms = {"loss_ce": loss}`` and ``extras = {"logits", "targets", "mix"}``.
    In training mode the batch is mixed (:func:`draw_mix`, torch's default generator — the
    trainer checkpoints its state) and the loss is the soft cross-entropy against the smoothed,
    mixed targets::

        L = −1/B Σ_i Σ_c y_ic log softmax(z_i)_c,   y = λ ỹ(label) + (1 − λ) ỹ(label reversed)

    In eval mode nothing is mixed or smoothed: plain cross-entropy on the hard labels.
    Inference: :meth:`logits`, or :func:`evaluate_views` for multi-view testing.
    """

    takes_labels = True  # the trainer passes each batch's labels: forward(video, mask, label=...)

    def __init__(self, encoder: nn.Module, num_classes: int, **recipe):
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise ValueError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        from ..models.vit import VisionTransformer

        options = sorted(f.name for f in dataclasses.fields(ClassifierConfig) if f.name not in ("num_classes", "encoder"))
        unknown = sorted(set(recipe) - set(options))
        if unknown:
            raise ValueError(f"unknown VideoClassifier option(s) {unknown}; valid: {options}")
        encoder = copy.deepcopy(encoder)
        self.is_vit = isinstance(encoder, VisionTransformer)
        dim = recipe.get("feature_dim")
        if dim is None:
            dim = getattr(getattr(encoder, "config", None), "dim", None) or getattr(encoder, "num_features", None)
        if not isinstance(dim, int):
            raise ValueError(f"cannot tell the feature width of {type(encoder).__name__}: pass feature_dim=")
        self.config = ClassifierConfig(num_classes=num_classes, **{**recipe, "feature_dim": dim}, encoder=_describe(encoder))
        c = self.config
        if self.is_vit:
            encoder.norm = nn.Identity()  # mean pooling + fc_norm replace the token norm
            encoder.fc_norm = None
            encoder.head = nn.Identity()
            rates = torch.linspace(0, c.drop_path, len(encoder.blocks)).tolist()
            for blk, rate in zip(encoder.blocks, rates):
                blk.drop_path = rate
            encoder.config = dataclasses.replace(encoder.config, drop_path=c.drop_path, use_mean_pooling=True, num_classes=0)
        self.encoder = encoder
        eps = getattr(getattr(encoder, "config", None), "ln_eps", 1e-6)
        self.fc_norm = nn.LayerNorm(dim, eps=eps)
        self.head_drop = nn.Dropout(c.head_drop)
        self.head = nn.Linear(dim, c.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(c.head_init_scale)

    # -- the trainer's interface -------------------------------------------------------------

    def make_mask(self, video: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Fine-tuning sees every token: no mask."""
        return None

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups with layer-wise lr scales (:func:`layer_decay_groups`)."""
        return layer_decay_groups(self, weight_decay, self.config.layer_decay)

    # -- computation ---------------------------------------------------------------------------

    def features(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``video (B, C, T, H, W)`` → ``fc_norm(mean over tokens)`` ``(B, D)``."""
        if self.is_vit:
            tokens = self.encoder(video, mask)  # (B, N or N_vis, D)
            pooled = tokens.mean(dim=1)  # (B, D)
        else:
            if mask is not None:
                raise ValueError("a mask is only supported with a ViT encoder")
            pooled = _encode(self.encoder, video)  # (B, D)
        return self.fc_norm(pooled)

    def logits(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class scores ``(B, K)``."""
        return self.head(self.head_drop(self.features(video, mask)))

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None, label: torch.Tensor | None = None) -> PretrainOutput:
        """video ``(B, C, T, H, W)``; label ``(B,)`` int64 class ids (required: use
        :meth:`logits` for inference). See the class docstring for the loss."""
        if label is None:
            raise ValueError("VideoClassifier.forward needs label= (B,) class ids; for predictions call .logits(video)")
        c = self.config
        label = torch.as_tensor(label, device=video.device)
        if self.training:
            mix = draw_mix(video.shape[-2], video.shape[-1], mixup_alpha=c.mixup_alpha, cutmix_alpha=c.cutmix_alpha,
                           prob=c.mix_prob, switch_prob=c.switch_prob)
            video = apply_mix(video, mix)  # (B, C, T, H, W)
            targets = mix_targets(label, c.num_classes, mix.lam, c.label_smoothing)  # (B, K)
        else:
            mix = MixParams("none", 1.0)
            targets = mix_targets(label, c.num_classes)  # (B, K) one-hot
        logits = self.logits(video, mask)  # (B, K)
        loss = soft_cross_entropy(logits.float(), targets)
        return PretrainOutput(loss=loss, mask=mask, terms={"loss_ce": loss.detach()},
                              extras={"logits": logits, "targets": targets, "mix": mix})


# --------------------------------------------------------------------------------------------
# Fine-tuning with the library's trainer
# --------------------------------------------------------------------------------------------


def finetune(model: nn.Module, dataset, config: TrainConfig, *, resume=None, stop_at: int | None = None,
             collate_fn=None, meta: dict | None = None) -> list[dict]:
    """Fine-tune ``model`` (a :class:`VideoClassifier`) in place on a labelled dataset; returns
    the metric history. ``config`` is the trainer's :class:`~maskvid_edu.train.TrainConfig`
    (VideoMAE: AdamW betas (0.9, 0.999), weight decay 0.05, base lr 1e-3 × batch / 256 with
    5 warm-up epochs, cosine to 1e-6)."""
    return train(model, dataset, config, resume=resume, stop_at=stop_at, collate_fn=collate_fn, meta=meta)


# --------------------------------------------------------------------------------------------
# Multi-view testing
# --------------------------------------------------------------------------------------------


def _starts(length: int, window: int, count: int) -> list[int]:
    """``count`` evenly spaced window starts in ``[0, length − window]`` (the centre for one)."""
    if count == 1:
        return [(length - window) // 2]
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


class ClipViews(Dataset):
    """The test views of every clip of ``dataset``: ``num_clips`` windows × ``num_crops`` crops.

    Item ``i`` is ``{"video": (V, C, clip_len, crop_size, crop_size), "label"}`` with
    ``V = num_clips · num_crops``, clip-major (the layout of a test-mode
    :class:`~maskvid_edu.data.datasets.VideoDataset`). Temporal windows of ``clip_len`` frames
    start evenly from the first to the last possible frame; spatial crops are squares of
    ``crop_size`` taken at the start, centre and end of the longer side (one crop: the centre).
    VideoMAE tests Kinetics with 5 clips × 3 crops, Something-Something V2 with 2 × 3.

    dataset: items ``{"video": (C, T, H, W), "label"}`` with ``T ≥ clip_len`` and
    ``min(H, W) ≥ crop_size`` (e.g. a :class:`~maskvid_edu.data.synthetic.SyntheticVideoDataset`
    rendered longer and larger than the training clips).
    """

    def __init__(self, dataset, *, num_clips: int = 2, num_crops: int = 3, clip_len: int, crop_size: int):
        for name, value in (("num_clips", num_clips), ("num_crops", num_crops), ("clip_len", clip_len), ("crop_size", crop_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.dataset, self.num_clips, self.num_crops = dataset, num_clips, num_crops
        self.clip_len, self.crop_size = clip_len, crop_size

    def __len__(self) -> int:
        return len(self.dataset)

    def views(self, video: torch.Tensor) -> torch.Tensor:
        """``(C, T, H, W)`` → ``(V, C, clip_len, crop_size, crop_size)``."""
        C, T, H, W = video.shape
        if T < self.clip_len or min(H, W) < self.crop_size:
            raise ValueError(f"clip {tuple(video.shape)} is shorter than clip_len={self.clip_len} "
                             f"or smaller than crop_size={self.crop_size}")
        s = self.crop_size
        if W >= H:  # crops along the longer side, centred on the other
            corners = [((H - s) // 2, x) for x in _starts(W, s, self.num_crops)]
        else:
            corners = [(y, (W - s) // 2) for y in _starts(H, s, self.num_crops)]
        out = []
        for t0 in _starts(T, self.clip_len, self.num_clips):
            for y0, x0 in corners:
                out.append(video[:, t0 : t0 + self.clip_len, y0 : y0 + s, x0 : x0 + s])
        return torch.stack(out)  # (V, C, clip_len, s, s)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {"video": self.views(torch.as_tensor(item["video"])), "label": item["label"]}


@dataclass
class ViewResult:
    """What :func:`evaluate_views` returns.

    accuracy: top-1 of the view-averaged probabilities; top5: top-5 of the same (None for
    fewer than 6 classes). view_accuracy: mean top-1 of the single views (what testing with one
    view would give on average). probs ``(N, K)``: averaged softmax per clip; labels ``(N,)``;
    predictions ``(N,)``; num_views: ``V``.
    """

    accuracy: float
    top5: float | None
    view_accuracy: float
    probs: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor
    num_views: int


def _logits_fn(model):
    if hasattr(model, "logits") and callable(model.logits):
        return model.logits
    if hasattr(model, "classify") and callable(model.classify):
        return model.classify
    if callable(model):
        return model
    raise ValueError(f"model must have .logits(video) or be callable, got {type(model).__name__}")


@torch.no_grad()
def evaluate_views(model, dataset_of_views, *, batch_size: int = 8, device="auto",
                   max_items: int | None = None) -> ViewResult:
    """Multi-view testing: the softmax of every view, averaged per clip, then the arg-max.

    model: a :class:`VideoClassifier` (or anything with ``logits(video) -> (B, K)``, a ViT
        with a head, or a callable). Evaluated in eval mode (restored afterwards).
    dataset_of_views: items ``{"video": (V, C, T, H, W), "label": int}`` (:class:`ClipViews`,
        a test-mode ``VideoDataset``); a single view ``(C, T, H, W)`` counts as ``V = 1``.
        Every item must have the same ``V``. Skipped items (not dicts) are left out.
    batch_size: clips per forward pass (each brings its ``V`` views).

    ``p_i = 1/V Σ_v softmax(z_iv)``, prediction ``argmax p_i`` — the official merge of
    VideoMAE's test script.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    dev = resolve_device(device)
    fn = _logits_fn(model)
    was_training = None
    if isinstance(model, nn.Module):
        was_training = model.training
        model.eval()
        model.to(dev)
    n = len(dataset_of_views) if max_items is None else min(len(dataset_of_views), int(max_items))
    if n == 0:
        raise ValueError("dataset_of_views is empty")
    probs, view_hits, labels, num_views = [], [], [], None
    try:
        for start in range(0, n, batch_size):
            items = [it for it in (dataset_of_views[i] for i in range(start, min(n, start + batch_size)))
                     if isinstance(it, dict)]
            if not items:
                continue
            videos = [torch.as_tensor(it["video"]) for it in items]
            videos = [v if v.dim() == 5 else v[None] for v in videos]  # (V, C, T, H, W) each
            V = videos[0].shape[0]
            if num_views is None:
                num_views = V
            if any(v.shape[0] != num_views for v in videos):
                raise ValueError(f"every item must have the same number of views, got {[v.shape[0] for v in videos]} "
                                 f"(first item: {num_views})")
            x = torch.cat(videos).to(dev, torch.float32)  # (b·V, C, T, H, W)
            p = torch.softmax(fn(x).float(), dim=-1).cpu()  # (b·V, K)
            p = p.view(len(items), V, -1)  # (b, V, K)
            y = torch.tensor([int(it["label"]) for it in items])  # (b,)
            probs.append(p.mean(dim=1))  # (b, K)
            view_hits.append((p.argmax(dim=-1) == y[:, None]).float())  # (b, V)
            labels.append(y)
    finally:
        if was_training:
            model.train()
    if not probs:
        raise ValueError("no usable item in dataset_of_views (every one was skipped)")
    probs_t, labels_t = torch.cat(probs), torch.cat(labels)
    pred = probs_t.argmax(dim=1)
    K = probs_t.shape[1]
    top5 = None
    if K > 5:
        top5 = (probs_t.topk(5, dim=1).indices == labels_t[:, None]).any(dim=1).float().mean().item()
    return ViewResult(
        accuracy=(pred == labels_t).float().mean().item(),
        top5=top5,
        view_accuracy=torch.cat(view_hits).mean().item(),
        probs=probs_t,
        labels=labels_t,
        predictions=pred,
        num_views=num_views,
    )
