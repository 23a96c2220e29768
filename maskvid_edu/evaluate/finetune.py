"""How a video encoder is judged on action recognition by fine-tuning it: VideoMAE's recipe.

The whole encoder is trained with a classification head (:class:`VideoClassifier`), the recipe
of VideoMAE (Tong et al., 2022) — mean pooling + ``fc_norm``, a head initialised 1000× smaller,
stochastic depth, label smoothing, mixup/cutmix, layer-wise learning-rate decay, and multi-view
testing (:func:`evaluate_views`). This is what the papers' Kinetics / Something-Something tables
report; the frozen-feature probes are :mod:`maskvid_edu.evaluate.probe`.

Fine-tuning runs the library's one trainer, :func:`maskvid_edu.train.train`:
:class:`VideoClassifier` declares ``takes_labels`` (the batch's labels reach it) and its own
optimizer groups with an ``lr_scale`` each (layer-wise decay), so schedules, accumulation, AMP,
DDP, checkpoints and exact resume are the pre-training ones. Mixup and CutMix are written here for
video batches (:func:`draw_mix`, :func:`apply_mix`, :func:`mix_targets`), following timm's
``Mixup`` in batch mode draw for draw; the tests check them against timm. The test views of a
clip come from :class:`~maskvid_edu.data.wrappers.ClipViews`. The recipe's per-clip augmentation
— RandAugment ``rand-m7-n4-mstd0.5-inc1`` and random erasing 0.25, torchvision's, one draw for
all frames of a clip — lives with the other clip transforms,
:class:`~maskvid_edu.data.augment.ClipAugment`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.output import PretrainOutput
from ..models.vit import VisionTransformer
from ..train import TrainConfig, param_groups, train
from ..utils import frozen, resolve_device
from .probe import clip_features

__all__ = [
    "MixParams",
    "draw_mix",
    "apply_mix",
    "mix_targets",
    "soft_cross_entropy",
    "layer_id",
    "layer_decay_groups",
    "ClassifierConfig",
    "VideoClassifier",
    "finetune",
    "ViewResult",
    "evaluate_views",
]


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

    Other encoders (``forward_features`` or feature maps, see :func:`~maskvid_edu.evaluate.probe.extract_features`) are
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
            pooled = clip_features(self.encoder, video)  # (B, D)
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
    dataset_of_views: items ``{"video": (V, C, T, H, W), "label": int}``
        (:class:`~maskvid_edu.data.wrappers.ClipViews`, a test-mode ``VideoDataset``); a single
        view ``(C, T, H, W)`` counts as ``V = 1``. Every item must have the same ``V``. Skipped items (not dicts) are left out.
    batch_size: clips per forward pass (each brings its ``V`` views).

    ``p_i = 1/V Σ_v softmax(z_iv)``, prediction ``argmax p_i`` — the official merge of
    VideoMAE's test script.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    dev = resolve_device(device)
    fn = _logits_fn(model)
    n = len(dataset_of_views) if max_items is None else min(len(dataset_of_views), int(max_items))
    if n == 0:
        raise ValueError("dataset_of_views is empty")
    probs, view_hits, labels, num_views = [], [], [], None
    with frozen(model, dev):
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
