"""V-JEPA pre-training: predict the *features* of hidden blocks, not their pixels.

What it is (Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations
from Video", 2024; Assran et al., V-JEPA 2, 2025):

1. hide a few large spatio-temporal blocks of the clip — V-JEPA's **multi-block** mask
   (:func:`~maskvid_edu.masking.multiblock_mask`: 8 short-range blocks of 15 % of the frame, or
   2 long-range blocks of 70 %, each a tube over all frames);
2. the **context encoder** (our ViT, :mod:`maskvid_edu.models.vit`) sees the visible tokens only;
3. a narrow **predictor** (a ViT of its own) receives the encoded visible tokens, projected to
   its width, plus one shared learnable ``mask_token`` per hidden position — each with the fixed
   sinusoid of its position in the full clip — and outputs, for every hidden position, a vector
   of the encoder's width;
4. the **target encoder**, an exponential moving average of the context encoder
   (:class:`~maskvid_edu.ema.EMATarget`), sees the *whole* clip; its features, layer-normalised
   without learnable parameters, are the targets at the hidden positions;
5. the loss is the L1 distance::

       L = mean over hidden tokens n and channels d of | p_nd − LN(h̄)_nd |

   where ``p`` is the predictor's output and ``h̄`` the target encoder's. No gradient reaches the
   target encoder: it only moves by :meth:`VJEPA.on_optimizer_step`, the hook the trainer calls
   after every optimizer step (as for VideoMAC, :mod:`maskvid_edu.ema`).

Why this does not collapse (every feature equal, the loss zero): the target is a slow average
of the encoder and the predictor must bridge the context to it, so a constant solution is not a
fixed point of the updates in practice — the paper's argument, which the book measures.

Where it comes from: facebookresearch/jepa (``app/vjepa/train.py``, ``src/models/predictor.py``,
``src/masks/multiblock3d.py``, ``configs/pretrain/vitl16.yaml``). Differences, all deliberate:
positions are the course's fixed 1-D sinusoid over the flattened token index (the release uses
a 3-D sinusoid), the ViT is VideoMAE's (q/v biases, LayerNorm eps 1e-6), the two masks of a clip
are two training steps' worth of masks here (one mask per ``model(video, mask)`` call), and the
momentum runs linearly from ``momentum_base`` to ``momentum_final`` over the run (the release
stretches its schedule by ``ipe_scale = 1.25`` and so ends at 0.9996).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ema import EMATarget, cosine_momentum
from ..masking import check_mask, token_index, tokens_at
from .base import PretrainModel, check_divisible, check_mask_fields, check_positive_ints
from .output import PretrainOutput
from .registry import register, replace_config
from .vit import EncoderFields, VisionTransformer, encoder_fields, init_weights, make_blocks, position_embedding, run_blocks, sinusoid_table

__all__ = ["VJEPAConfig", "VJEPA", "VJEPAPredictor", "PREDICTOR_SIZES", "VJEPA_MASK_TYPES",
           "MOMENTUM_SCHEDULES", "vjepa_config", "feature_targets", "feature_loss", "token_spread"]

#: Masks a V-JEPA model can draw: its multi-block masks, and the tube and random ablations.
VJEPA_MASK_TYPES: tuple[str, ...] = ("multiblock", "multiblock_long", "tube", "random")
#: ``"linear"`` (V-JEPA's), ``"cosine"`` (VideoMAC's) or ``"fixed"`` at ``momentum_base``.
MOMENTUM_SCHEDULES: tuple[str, ...] = ("linear", "cosine", "fixed")


@dataclass
class VJEPAConfig(EncoderFields):
    """One V-JEPA pre-training model.

    Encoder fields: those of :class:`~maskvid_edu.models.vit.ViTConfig` named in
    :data:`~maskvid_edu.models.vit.ENCODER_FIELDS`; the predictor uses the same MLP ratio, qkv
    bias, layer scale and LayerNorm epsilon.

    predictor_dim, predictor_depth, predictor_heads: the predictor (the release: 384 wide,
        12 deep, as many heads as the encoder).
    mask_type: ``"multiblock"`` (short-range blocks), ``"multiblock_long"`` (long-range), or the
        ``"tube"`` / ``"random"`` ablations (see :mod:`maskvid_edu.masking`).
    mask_ratio: hidden share of each frame the multi-block union is equalised to (0.6 sits near
        the short-range union's mean of 0.63; use about 0.8 for long-range blocks).
    momentum_base, momentum_final, momentum_schedule: the EMA target's momentum (0.998 → 1,
        linear over the global optimizer step, as the release).
        ``momentum_schedule="fixed"`` with ``momentum_base=0.0`` is the ablation without an
        average: after every step the target *is* a copy of the context encoder, still under
        stop-gradient (the targets are computed without gradient either way).
    loss_exp: the loss is ``mean(|p − t|^loss_exp) / loss_exp`` (1: L1, the release's setting).
    """

    predictor_dim: int = 384
    predictor_depth: int = 12
    predictor_heads: int = 12
    mask_type: str = "multiblock"
    mask_ratio: float = 0.6
    momentum_base: float = 0.998
    momentum_final: float = 1.0
    momentum_schedule: str = "linear"
    loss_exp: float = 1.0

    def __post_init__(self):
        self.encoder_config()  # validates the shared fields
        check_positive_ints(self, ("predictor_dim", "predictor_depth", "predictor_heads"))
        check_divisible(self, (("predictor_dim", "predictor_heads"),))
        check_mask_fields(self, VJEPA_MASK_TYPES)
        for name in ("momentum_base", "momentum_final"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.momentum_schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"momentum_schedule must be one of {MOMENTUM_SCHEDULES}, got {self.momentum_schedule!r}")
        if not self.loss_exp > 0:
            raise ValueError(f"loss_exp must be > 0, got {self.loss_exp!r}")


def feature_targets(h: torch.Tensor) -> torch.Tensor:
    """Target-encoder features ``(…, D)`` → V-JEPA's targets: float32, layer-normalised over the
    channels ``D`` of each token, without learnable weights (``LN(h)`` in the module docstring)."""
    return F.layer_norm(h.float(), (h.shape[-1],))


def feature_loss(pred: torch.Tensor, target: torch.Tensor, loss_exp: float = 1.0) -> torch.Tensor:
    """``mean(|pred − target|^e) / e`` over hidden tokens and channels (``e = 1``: the L1 loss).

    pred: ``(B, M, D)`` the predictor's outputs; target: ``(B, M, D)`` from
    :func:`feature_targets`, computed without gradient (the target encoder is not trained).
    """
    return (pred.float() - target).abs().pow(loss_exp).mean() / loss_exp


def token_spread(tokens: torch.Tensor) -> float:
    """How different the tokens of a batch are: the standard deviation of each channel over all
    tokens of all clips, averaged over channels. ``tokens (B, N, D)`` → a float.

    A collapsed encoder (the same vector for every token of every clip) gives 0. Layer-normalised
    targets have unit spread *within* a token, so this measure looks *across* tokens instead.
    """
    flat = tokens.detach().float().reshape(-1, tokens.shape[-1])  # (B·N, D)
    return float(flat.std(dim=0, unbiased=False).mean())


class VJEPAPredictor(nn.Module):
    """The narrow ViT that predicts target features at the hidden positions.

    ``predictor_embed`` (encoder width → predictor width), one shared ``mask_token`` (zero at
    start, as the release), the fixed sinusoid of each token's position, transformer blocks, a
    LayerNorm and ``predictor_proj`` back to the encoder's width.
    """

    def __init__(self, c: VJEPAConfig):
        super().__init__()
        self.predictor_embed = nn.Linear(c.dim, c.predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.predictor_dim))
        self.register_buffer("pos_embed", sinusoid_table(c.encoder_config().num_tokens, c.predictor_dim), persistent=False)
        self.blocks = make_blocks(
            c.predictor_dim, c.predictor_depth, c.predictor_heads, c.mlp_ratio, c.qkv_bias, 0.0, 0.0,
            c.layer_scale_init, c.ln_eps,
        )
        self.norm = nn.LayerNorm(c.predictor_dim, eps=c.ln_eps)
        self.predictor_proj = nn.Linear(c.predictor_dim, c.dim)
        self.reference_grid = c.encoder_config().grid
        self.use_checkpoint = c.use_checkpoint
        self.apply(init_weights)

    def position_embedding(self, grid, device) -> torch.Tensor:
        if tuple(grid) == self.reference_grid:
            return self.pos_embed
        return position_embedding(grid, self.pos_embed.shape[1], self.reference_grid).to(device)

    def forward(self, context: torch.Tensor, visible_idx: torch.Tensor, hidden_idx: torch.Tensor, grid) -> torch.Tensor:
        """context: ``(B, N_vis, dim)`` encoded visible tokens; visible_idx ``(B, N_vis)`` and
        hidden_idx ``(B, M)`` their positions and the positions to predict → ``(B, M, dim)``."""
        pos = self.position_embedding(grid, context.device).to(context.dtype)  # (N, predictor_dim)
        x = self.predictor_embed(context) + pos[visible_idx]  # (B, N_vis, predictor_dim)
        queries = self.mask_token.to(x.dtype) + pos[hidden_idx]  # (B, M, predictor_dim)
        x = torch.cat([x, queries], dim=1)  # (B, N_vis + M, predictor_dim)
        x = run_blocks(self.blocks, x, self.use_checkpoint and self.training)
        return self.predictor_proj(self.norm(x[:, -hidden_idx.shape[1]:]))  # (B, M, dim): the queries only


class VJEPA(PretrainModel):
    """V-JEPA pre-training model: ``model(video, mask) -> PretrainOutput``.

    Submodules: ``encoder`` (the context encoder, a
    :class:`~maskvid_edu.models.vit.VisionTransformer`),
    ``predictor`` (:class:`VJEPAPredictor`) and ``target`` (:class:`~maskvid_edu.ema.EMATarget`
    of ``encoder``: no gradients, eval mode, in the ``state_dict`` so checkpoints restore it).
    Buffer ``ema_updates`` counts target updates.
    """

    def __init__(self, config: VJEPAConfig | None = None, **overrides):
        super().__init__()
        self.config = c = replace_config(config or VJEPAConfig(), overrides)
        self.encoder = VisionTransformer(c.encoder_config())
        self.predictor = VJEPAPredictor(c)
        self.target = EMATarget(self.encoder)  # starts as an exact copy, as in the release
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.last_momentum: float | None = None

    def downstream_encoder(self) -> nn.Module:
        """The **target** encoder (the EMA copy, ``target.module``): V-JEPA evaluates it, not the
        context encoder (the release's evaluation configs read ``checkpoint_key: target_encoder``).
        It is a ViT of the same size, so it loads wherever ``encoder`` would."""
        return self.target.module

    def mask_grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """The encoder's token grid ``(t, h, w)`` of ``video``."""
        return self.encoder.token_grid(video)

    @torch.no_grad()
    def targets(self, video: torch.Tensor) -> torch.Tensor:
        """Target features of every token ``(B, N, dim)``, float32, no gradient: the target
        encoder over the whole clip, then a LayerNorm over channels without learnable weights."""
        return feature_targets(self.target(video))  # (B, N, dim)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> PretrainOutput:
        """Predict the target features of the hidden tokens of ``video``.

        video: ``(B, C, T, H, W)``, ImageNet-normalised.
        mask: bool ``(B, N)``, True = hidden from the context encoder (from :meth:`make_mask`).

        Returns :class:`PretrainOutput` with ``pred`` and ``target`` ``(B, M, dim)`` for the hidden
        tokens in raster order, ``loss = mean(|pred − target|^e) / e`` (``e = loss_exp``, 1 = L1),
        ``terms = {"loss_feature": loss}`` and ``extras = {"context": (B, N_vis, dim)}``, the
        context encoder's output.
        """
        c = self.config
        grid = self.encoder.token_grid(video)
        N = grid[0] * grid[1] * grid[2]
        M = check_mask(mask, N, count=self.expected_mask_count(grid))  # no host sync while training
        visible_idx = token_index(~mask, N - M)  # (B, N_vis)
        hidden_idx = token_index(mask, M)  # (B, M)

        context = self.encoder(video, mask, masked_count=M)  # (B, N_vis, dim)
        pred = self.predictor(context, visible_idx, hidden_idx, grid)  # (B, M, dim)
        target = tokens_at(self.targets(video), hidden_idx)  # (B, M, dim)
        loss = feature_loss(pred, target, c.loss_exp)
        return PretrainOutput(loss=loss, pred=pred, target=target, mask=mask, terms={"loss_feature": loss},
                              extras={"context": context})

    @torch.no_grad()
    def feature_spread(self, video: torch.Tensor) -> dict:
        """:func:`token_spread` of the context encoder's tokens (all of them, no mask) and of the
        targets on ``video (B, C, T, H, W)``: ``{"context": float, "target": float}``. Both
        near 0 would mean the features collapsed to one vector."""
        was_training = self.training
        self.eval()
        spread = {"context": token_spread(self.encoder(video)), "target": token_spread(self.targets(video))}
        self.train(was_training)
        return spread

    # -- the EMA target --------------------------------------------------------------------

    def momentum_at(self, step: int, total_steps: int) -> float:
        """EMA momentum after optimizer step ``step`` (0-based, global) of ``total_steps``:
        ``base + (final − base)·step/total_steps`` for the linear schedule."""
        c = self.config
        if c.momentum_schedule == "fixed":
            return float(c.momentum_base)
        if c.momentum_schedule == "cosine":
            return cosine_momentum(step, total_steps, c.momentum_base, c.momentum_final)
        cosine_momentum(step, total_steps)  # the same argument checks
        return c.momentum_base + (c.momentum_final - c.momentum_base) * step / total_steps

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """Move the target encoder towards the context encoder: ``θ_t ← m·θ_t + (1 − m)·θ_o``
        with ``m = momentum_at(step, total_steps)``. The trainer calls this once per optimizer step."""
        m = self.momentum_at(step, total_steps)
        self.target.update(self.encoder, m)
        self.ema_updates += 1
        self.last_momentum = m


# --------------------------------------------------------------------------------------------
# Published sizes and the CPU preset
# --------------------------------------------------------------------------------------------


#: The predictor for each encoder size: the release's 384 wide and 12 deep, with as many heads as
#: the encoder (``vit_predictor(num_heads=encoder.num_heads)``); the CPU preset's is 64 wide.
PREDICTOR_SIZES: dict[str, dict] = {
    "s": dict(predictor_dim=384, predictor_depth=12, predictor_heads=6),
    "b": dict(predictor_dim=384, predictor_depth=12, predictor_heads=12),
    "l": dict(predictor_dim=384, predictor_depth=12, predictor_heads=16),
    "h": dict(predictor_dim=384, predictor_depth=12, predictor_heads=16),
    "demo": dict(predictor_dim=64, predictor_depth=2, predictor_heads=2),
}


def vjepa_config(size: str, **overrides) -> VJEPAConfig:
    """The :class:`VJEPAConfig` of a size: the encoder of
    :func:`~maskvid_edu.models.vit.encoder_fields` with its predictor from :data:`PREDICTOR_SIZES`."""
    if size not in PREDICTOR_SIZES:
        raise ValueError(f"size must be one of {list(PREDICTOR_SIZES)}, got {size!r}")
    return replace_config(VJEPAConfig(**encoder_fields(size), **PREDICTOR_SIZES[size]), overrides)


@register("vjepa_vit_s")
def vjepa_vit_s(**overrides) -> VJEPA:
    """ViT-S/16 context encoder (22 M); predictor 384 wide, 12 deep, 6 heads."""
    return VJEPA(vjepa_config("s", **overrides))


@register("vjepa_vit_b")
def vjepa_vit_b(**overrides) -> VJEPA:
    """ViT-B/16 context encoder (86 M); predictor 384 wide, 12 deep, 12 heads."""
    return VJEPA(vjepa_config("b", **overrides))


@register("vjepa_vit_l")
def vjepa_vit_l(**overrides) -> VJEPA:
    """ViT-L/16 context encoder (304 M); predictor 384 wide, 12 deep, 16 heads — the paper's
    main model (configs/pretrain/vitl16.yaml)."""
    return VJEPA(vjepa_config("l", **overrides))


@register("vjepa_vit_h")
def vjepa_vit_h(**overrides) -> VJEPA:
    """ViT-H/16 context encoder (632 M); predictor 384 wide, 12 deep, 16 heads."""
    return VJEPA(vjepa_config("h", **overrides))


@register("vjepa_vit_demo")
def vjepa_vit_demo(**overrides) -> VJEPA:
    """CPU preset: 8 frames of 64×64, tubelet 2, patch 8 → 4×8×8 = 256 tokens; encoder 128 wide,
    4 deep, 4 heads (the encoder of ``videomae_vit_demo``); predictor 64 wide, 2 deep, 2 heads;
    short-range multi-block mask equalised to 0.6 of each frame."""
    return VJEPA(vjepa_config("demo", **overrides))
