"""MAM2 pre-training: predict what the hidden tokens look like *and* how they move.

What it is (Song et al., "It Takes Two: Masked Appearance-Motion Modeling for Self-supervised
Video Transformer Pre-training", 2022). The paper gives an **encoder–regressor–decoder**
pipeline:

1. hide 90 % of the clip with a tube mask, as VideoMAE does; the ViT **encoder**
   (:mod:`maskvid_edu.models.vit`, the same module and weight names as VideoMAE's) sees only the
   visible tokens;
2. a **regressor** predicts a latent representation for every hidden token from the visible
   ones. It separates the two jobs a VideoMAE decoder mixes: the encoder only *encodes*, the
   regressor *completes* the clip in latent space, and the decoders only *translate* latents
   into targets;
3. two separate **decoders** read the predicted latents:

   - **appearance**: the VQ code of every frame patch the token covers (a VQGAN in the paper,
     any :class:`~maskvid_edu.tokenizers.VQTokenizer` here), learnt with cross-entropy;
   - **motion**: the RGB difference of consecutive frames over the token
     (:func:`~maskvid_edu.targets.motion_targets`), learnt with mean squared error.

The losses, for the ``M`` hidden tokens of a clip, each covering ``c = tubelet·(p/f)²`` codes
(``f`` the tokenizer's downsampling) and ``P = tubelet·p²·C`` difference values::

    L_appearance = −1/(M·c) Σ_m Σ_j log softmax(logits_mj)[code_mj]
    L_motion     =  1/(M·P) Σ_m ‖d̂_m − d_m‖²
    L            =  w_appearance · L_appearance + w_motion · L_motion   (+ w_align · L_align)

The paper reports that this converges in half of VideoMAE's epochs (400 vs 800 on Kinetics-400)
to a comparable accuracy.

**A reconstruction, not a port.** MAM2's code is not public. Everything below that the paper
does not pin down is our choice, named here and exposed in :class:`MAM2Config` so it can be
switched off or varied:

- *Regressor* (CAE's latent contextual regressor, Chen et al. 2022, which the paper builds on):
  queries start as one shared learnable ``mask_token``; each block is pre-norm
  cross-attention ``q ← q + Attn(LN(q) + pos_q, LN(ctx) + pos_ctx, LN(ctx))`` followed by an
  MLP. The context ``ctx`` is the encoder's visible features, which the regressor never updates
  (so the encoder alone must make them informative). With ``regressor_self_attention=True``
  (the default, as in CAE) the context also holds the current queries, so hidden tokens consult
  each other; ``False`` makes each hidden token a function of the visible ones only. Positions
  (the encoder's fixed sinusoid) are added to queries and keys in every block, not to values.
  The regressor works at the encoder's width: it predicts in the encoder's representation
  space, which is what "latent representations of the masked tokens" means.
- *Alignment* (``w_align``, default 0 = off): CAE also pulls the predicted latents towards the
  encoder's own features of the hidden tokens (computed without gradient). The MAM2 abstract
  does not mention it; it is here as an ablation.
- *Decoders*: VideoMAE-style Transformer blocks at their own width, one per target. By default
  they see the predicted latents of the hidden tokens only (``decoder_context=False``, as CAE):
  everything they know about the visible pixels went through the regressor. With
  ``decoder_context=True`` they also see the visible features, as a VideoMAE decoder does.
- *Sizes*: regressor 4 blocks; each decoder as VideoMAE's single decoder of the same size
  (S 192/3, B 384/6, L 512/8 width/heads, 4 blocks).
- *Loss weights* ``w_appearance = w_motion = 1``.
- *Motion target*: next-minus-current differences in [0, 1] pixel space divided by the ImageNet
  std (``motion_normalization="scale"``, see :mod:`maskvid_edu.targets` for why).
- *No tokenizer*: ``appearance_target="pixels_norm"`` predicts VideoMAE's normalised pixels
  (MSE) instead of codes, so the model runs without a VQ model; ``"auto"`` (the default) picks
  codes when a tokenizer is given and pixels otherwise.

**Input clip.** Motion needs one frame more than the encoder sees. With
``clip_frames="plus_one"`` (default) ``model(video, mask)`` takes ``video (B, C, T+1, H, W)``
— what the data pipeline's ``sampling="motion"`` delivers, or a synthetic dataset built with
``num_frames=T+1`` — the encoder and the appearance target use frames ``0 … T−1`` and the motion
target uses all ``T+1``. With ``clip_frames="exact"`` the video has ``T`` frames and the last
difference comes from a border rule (``border="repeat"``). ``T = config.num_frames`` either way,
and :attr:`MAM2Config.input_frames` says how many frames a clip must have.

**The tokenizer** is passed at construction (``MAM2(config, tokenizer=vq)`` or
``create("mam2_vit_b", tokenizer=vq)``). It is *frozen in place* (eval mode,
``requires_grad=False``) and kept *outside* the module tree: it is not among
``model.parameters()`` (so no optimizer sees it), not in ``model.state_dict()`` (checkpoints hold
the MAM2 model only; save the tokenizer on its own), yet ``model.to(device)`` moves it along.
Codes are computed on the fly with autocast off, in the tokenizer's own precision (float32
unless it was cast): an argmin over low-precision distances would pick different codes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from ..masking import check_mask, token_index, tokens_at
from ..targets import BORDER_RULES, MOTION_NORMALIZATIONS, code_targets, make_targets, motion_targets
from .base import PretrainModel, check_divisible, check_mask_batch, check_mask_fields, check_positive_ints, check_video
from .output import PretrainOutput
from .registry import register, replace_config
from .videomae import DECODER_SIZES
from .vit import (
    EncoderFields,
    Mlp,
    VisionTransformer,
    encoder_fields,
    init_weights,
    make_blocks,
    position_embedding,
    run_blocks,
    sinusoid_table,
)

__all__ = ["MAM2Config", "MAM2", "CrossAttention", "RegressorBlock", "Regressor", "MAM2Decoder", "MAM2_SIZES",
           "mam2_config"]

APPEARANCE_TARGETS = ("auto", "codes", "pixels_norm")
CLIP_FRAMES = ("plus_one", "exact")


@dataclass
class MAM2Config(EncoderFields):
    """One MAM2 pre-training model.

    Encoder fields: those of :class:`~maskvid_edu.models.videomae.VideoMAEConfig`
    (:data:`~maskvid_edu.models.vit.ENCODER_FIELDS`); regressor and decoders share the MLP ratio,
    qkv bias, layer scale and LayerNorm epsilon. ``num_frames`` is ``T``, the frames the encoder sees.

    regressor_depth, regressor_heads: the cross-attention regressor (width = ``dim``).
    regressor_self_attention: queries also attend to each other (CAE), else only to the visible
        features.
    appearance_dim/_depth/_heads, motion_dim/_depth/_heads: the two decoders.
    decoder_context: decoders also see the visible features (VideoMAE-style), not only the
        predicted latents of the hidden tokens (CAE-style, default).
    appearance_target: ``"codes"`` (needs a tokenizer), ``"pixels_norm"`` (VideoMAE's
        normalised pixels, MSE) or ``"auto"`` (codes iff a tokenizer is given). The model
        stores the resolved value in ``model.config``.
    codebook_size, tokenizer_downsample: the tokenizer's ``K`` and ``f``; filled in from the
        tokenizer (a mismatch is an error), None for pixel targets.
    motion_normalization: ``"scale"`` (default), ``"videomae"``, ``"mae"`` or ``"none"``
        (:func:`~maskvid_edu.targets.motion_targets`).
    clip_frames: ``"plus_one"`` (the video has ``T+1`` frames) or ``"exact"`` (``T`` frames and
        the ``border`` rule, ``"repeat"`` or ``"zero"``, for the last difference).
    w_appearance, w_motion, w_align: loss weights (``w_align > 0`` adds CAE's alignment term).
    mask_ratio, mask_type: the encoder mask, ``"tube"`` at 0.9 (or ``"random"``, ``"frame"``).
    """

    regressor_depth: int = 4
    regressor_heads: int = 12
    regressor_self_attention: bool = True
    appearance_dim: int = 384
    appearance_depth: int = 4
    appearance_heads: int = 6
    motion_dim: int = 384
    motion_depth: int = 4
    motion_heads: int = 6
    decoder_context: bool = False
    appearance_target: str = "auto"
    codebook_size: int | None = None
    tokenizer_downsample: int | None = None
    motion_normalization: str = "scale"
    clip_frames: str = "plus_one"
    border: str = "repeat"
    w_appearance: float = 1.0
    w_motion: float = 1.0
    w_align: float = 0.0
    mask_ratio: float = 0.9
    mask_type: str = "tube"

    def __post_init__(self):
        self.encoder_config()  # validates the shared fields
        check_positive_ints(self, ("regressor_depth", "regressor_heads", "appearance_dim", "appearance_depth",
                                   "appearance_heads", "motion_dim", "motion_depth", "motion_heads"))
        check_divisible(self, (("dim", "regressor_heads"), ("appearance_dim", "appearance_heads"),
                               ("motion_dim", "motion_heads")))
        if self.appearance_target not in APPEARANCE_TARGETS:
            raise ValueError(f"appearance_target must be one of {APPEARANCE_TARGETS}, got {self.appearance_target!r}")
        for name in ("codebook_size", "tokenizer_downsample"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if self.tokenizer_downsample is not None and self.patch % self.tokenizer_downsample:
            raise ValueError(f"patch {self.patch} must be a multiple of tokenizer_downsample {self.tokenizer_downsample}")
        if self.motion_normalization not in MOTION_NORMALIZATIONS:
            raise ValueError(f"motion_normalization must be one of {MOTION_NORMALIZATIONS}, got {self.motion_normalization!r}")
        if self.clip_frames not in CLIP_FRAMES:
            raise ValueError(f"clip_frames must be one of {CLIP_FRAMES}, got {self.clip_frames!r}")
        if self.border not in BORDER_RULES:
            raise ValueError(f"border must be one of {BORDER_RULES}, got {self.border!r}")
        if self.clip_frames == "exact" and self.num_frames < 2:
            raise ValueError("clip_frames='exact' needs num_frames >= 2 (the border rule copies a true difference)")
        for name in ("w_appearance", "w_motion", "w_align"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.w_appearance == 0 and self.w_motion == 0:
            raise ValueError("w_appearance and w_motion are both 0: nothing would be learnt")
        check_mask_fields(self)

    @property
    def input_frames(self) -> int:
        """Frames a clip passed to ``model(video, mask)`` must have: ``T + 1`` or ``T``."""
        return self.num_frames + 1 if self.clip_frames == "plus_one" else self.num_frames


    @property
    def codes_per_token(self) -> int:
        """VQ codes per token, ``tubelet·(p/f)²`` (needs ``tokenizer_downsample``)."""
        if self.tokenizer_downsample is None:
            raise ValueError("codes_per_token needs tokenizer_downsample (set from the tokenizer)")
        return self.tubelet * (self.patch // self.tokenizer_downsample) ** 2


# --------------------------------------------------------------------------------------------
# The regressor: hidden-token queries cross-attend to the visible features
# --------------------------------------------------------------------------------------------


class CrossAttention(nn.Module):
    """Multi-head attention of ``M`` queries over ``L`` context tokens.

    ``softmax(q kᵀ / sqrt(D/heads)) v`` with ``q = W_q x_q``, ``k = W_k x_k``, ``v = W_v x_v``;
    the bias layout of the encoder's attention (learnt query and value biases, no key bias).
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x_q: torch.Tensor, x_k: torch.Tensor, x_v: torch.Tensor) -> torch.Tensor:
        """x_q: ``(B, M, D)``; x_k, x_v: ``(B, L, D)`` → ``(B, M, D)``."""
        B, M, D = x_q.shape
        L, h = x_k.shape[1], self.heads
        q = self.q(x_q).view(B, M, h, D // h).transpose(1, 2)  # (B, h, M, D/h)
        k = self.k(x_k).view(B, L, h, D // h).transpose(1, 2)  # (B, h, L, D/h)
        v = self.v(x_v).view(B, L, h, D // h).transpose(1, 2)  # (B, h, L, D/h)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, h, M, D/h)
        return self.proj(x.transpose(1, 2).reshape(B, M, D))  # (B, M, D)


class RegressorBlock(nn.Module):
    """One regressor block: the queries read the context, then think on their own::

        kv = LN_ctx(ctx)
        q  = q + Attn(LN_q(q) + pos_q,  kv + pos_ctx,  kv)
        q  = q + MLP(LN_2(q))

    ``ctx`` is left unchanged (the regressor never rewrites the encoder's features).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, layer_scale_init: float | None, ln_eps: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim, eps=ln_eps)
        self.norm_ctx = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = CrossAttention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if layer_scale_init is not None:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, q: torch.Tensor, pos_q: torch.Tensor, ctx: torch.Tensor, pos_ctx: torch.Tensor) -> torch.Tensor:
        """q, pos_q: ``(B, M, D)``; ctx, pos_ctx: ``(B, L, D)`` → ``(B, M, D)``."""
        kv = self.norm_ctx(ctx)  # (B, L, D)
        a = self.attn(self.norm_q(q) + pos_q, kv + pos_ctx, kv)  # (B, M, D)
        q = q + (a if self.gamma_1 is None else self.gamma_1 * a)
        m = self.mlp(self.norm2(q))  # (B, M, D)
        return q + (m if self.gamma_2 is None else self.gamma_2 * m)


class Regressor(nn.Module):
    """Predict latents of the hidden tokens from the visible features.

    Queries start as the shared ``mask_token``; every block cross-attends to the visible
    features (and, with ``self_attention``, to the current queries too); a final LayerNorm gives
    the predicted latents.
    """

    def __init__(self, c: MAM2Config):
        super().__init__()
        self.self_attention = c.regressor_self_attention
        self.use_checkpoint = c.use_checkpoint
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.blocks = nn.ModuleList(
            RegressorBlock(c.dim, c.regressor_heads, c.mlp_ratio, c.qkv_bias, c.layer_scale_init, c.ln_eps)
            for _ in range(c.regressor_depth)
        )
        self.norm = nn.LayerNorm(c.dim, eps=c.ln_eps)

    def forward(self, visible: torch.Tensor, pos_visible: torch.Tensor, pos_hidden: torch.Tensor) -> torch.Tensor:
        """visible, pos_visible: ``(B, V, D)``; pos_hidden: ``(B, M, D)`` → latents ``(B, M, D)``."""
        q = self.mask_token.to(visible.dtype).expand(pos_hidden.shape[0], pos_hidden.shape[1], -1)  # (B, M, D)
        for blk in self.blocks:
            if self.self_attention:
                ctx = torch.cat([visible, q], dim=1)  # (B, V + M, D)
                pos_ctx = torch.cat([pos_visible, pos_hidden], dim=1)  # (B, V + M, D)
            else:
                ctx, pos_ctx = visible, pos_visible  # (B, V, D)
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                q = torch.utils.checkpoint.checkpoint(blk, q, pos_hidden, ctx, pos_ctx, use_reentrant=False)
            else:
                q = blk(q, pos_hidden, ctx, pos_ctx)  # (B, M, D)
        return self.norm(q)


# --------------------------------------------------------------------------------------------
# The decoders: latents → targets
# --------------------------------------------------------------------------------------------


class MAM2Decoder(nn.Module):
    """``Linear(dim → width)`` + position, Transformer blocks, LayerNorm, ``Linear(width → out)``.

    Reads out only the last ``num_out`` tokens (the hidden ones).
    """

    def __init__(self, c: MAM2Config, width: int, depth: int, heads: int, out: int):
        super().__init__()
        self.embed = nn.Linear(c.dim, width)
        self.blocks = make_blocks(width, depth, heads, c.mlp_ratio, c.qkv_bias, c.drop_path, 0.0, c.layer_scale_init, c.ln_eps)
        self.norm = nn.LayerNorm(width, eps=c.ln_eps)
        self.head = nn.Linear(width, out)
        self.use_checkpoint = c.use_checkpoint
        self.register_buffer("pos_embed", sinusoid_table(c.encoder_config().num_tokens, width), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, num_out: int) -> torch.Tensor:
        """x: ``(B, L, dim)``; pos: ``(B, L, width)`` → ``(B, num_out, out)``."""
        x = self.embed(x) + pos.to(x.dtype)  # (B, L, width)
        x = run_blocks(self.blocks, x, self.use_checkpoint and self.training)
        return self.head(self.norm(x[:, -num_out:]))  # (B, num_out, out)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class MAM2(PretrainModel):
    """MAM2 pre-training model: ``model(video, mask) -> PretrainOutput``.

    Args:
        config: :class:`MAM2Config` (keyword ``overrides`` replace its fields).
        tokenizer: optional :class:`~maskvid_edu.tokenizers.VQTokenizer` for code targets;
            frozen in place and held outside the module tree (see the module docstring).

    ``model.encoder`` is a :class:`~maskvid_edu.models.vit.VisionTransformer` with VideoMAE's
    parameter names: its ``state_dict`` loads into a VideoMAE encoder and back, strictly. The
    encoder mask is ``config.mask_type`` at ``config.mask_ratio`` over the grid of the frames the
    encoder sees (:class:`~maskvid_edu.models.base.PretrainModel`).
    """

    def __init__(self, config: MAM2Config | None = None, tokenizer: nn.Module | None = None, **overrides):
        super().__init__()
        config = replace_config(config or MAM2Config(), overrides)
        config = self._resolve_targets(config, tokenizer)
        self.config = c = config
        object.__setattr__(self, "_tokenizer", tokenizer)  # not a submodule: no parameters, no state_dict entries
        if tokenizer is not None:
            tokenizer.eval()
            tokenizer.requires_grad_(False)
        self.encoder = VisionTransformer(c.encoder_config())
        self.regressor = Regressor(c)
        appearance_out = c.codes_per_token * c.codebook_size if c.appearance_target == "codes" else c.patch_values
        self.appearance_decoder = MAM2Decoder(c, c.appearance_dim, c.appearance_depth, c.appearance_heads, appearance_out)
        self.motion_decoder = MAM2Decoder(c, c.motion_dim, c.motion_depth, c.motion_heads, c.patch_values)
        for module in (self.regressor, self.appearance_decoder, self.motion_decoder):
            module.apply(init_weights)
        nn.init.trunc_normal_(self.regressor.mask_token, std=0.02, a=-0.02, b=0.02)

    @staticmethod
    def _resolve_targets(c: MAM2Config, tokenizer) -> MAM2Config:
        """Fix ``appearance_target`` ("auto" → codes or pixels) and the tokenizer's K and f."""
        target = c.appearance_target
        if target == "auto":
            target = "codes" if tokenizer is not None else "pixels_norm"
        if target == "pixels_norm":
            if tokenizer is not None:
                raise ValueError("a tokenizer was given but appearance_target='pixels_norm': pass one or the other")
            return replace(c, appearance_target=target, codebook_size=None, tokenizer_downsample=None)
        if tokenizer is None:
            raise ValueError("appearance_target='codes' needs a tokenizer (MAM2(config, tokenizer=...)), "
                             "or use appearance_target='pixels_norm'")
        if not isinstance(tokenizer, nn.Module) or not callable(getattr(tokenizer, "encode", None)):
            raise ValueError(f"tokenizer must be an nn.Module with encode(frames) (a VQTokenizer), got {type(tokenizer).__name__}")
        size, down = int(getattr(tokenizer, "codebook_size", 0)), int(getattr(tokenizer, "downsample", 0))
        if size < 1 or down < 1:
            raise ValueError(f"tokenizer must define codebook_size and downsample, got {size} and {down}")
        for name, ours, theirs in (("codebook_size", c.codebook_size, size), ("tokenizer_downsample", c.tokenizer_downsample, down)):
            if ours is not None and ours != theirs:
                raise ValueError(f"config {name}={ours} but the tokenizer has {theirs}")
        if c.patch % down:
            raise ValueError(f"patch {c.patch} must be a multiple of the tokenizer's downsample {down}")
        return replace(c, appearance_target="codes", codebook_size=size, tokenizer_downsample=down)

    @property
    def tokenizer(self) -> nn.Module | None:
        """The frozen VQ tokenizer (None with pixel targets)."""
        return self._tokenizer

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .float() … reach the tokenizer although it is not a submodule
        super()._apply(fn, *args, **kwargs)
        if self._tokenizer is not None:
            self._tokenizer._apply(fn, *args, **kwargs)
        return self

    # -- clips and masks -------------------------------------------------------------------

    def split_clip(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frames, motion_source)``: the encoder's ``T`` frames ``(B, C, T, H, W)`` and the clip
        the motion target is computed from (``T+1`` frames, or the same ``T`` with a border rule)."""
        c = self.config
        check_video(video)
        if video.shape[2] != c.input_frames:
            rule = (f"num_frames + 1 = {c.input_frames} frames (clip_frames='plus_one': the extra frame gives the "
                    f"last motion target)" if c.clip_frames == "plus_one"
                    else f"num_frames = {c.input_frames} frames (clip_frames='exact')")
            raise ValueError(f"video must have {rule}, got shape {tuple(video.shape)}")
        if c.clip_frames == "plus_one":
            return video[:, :, : c.num_frames], video
        return video, video

    def mask_grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """The token grid ``(t, h, w)`` of the frames the encoder sees of ``video`` (as ``forward`` takes it)."""
        frames, _ = self.split_clip(video)
        return self.encoder.token_grid(frames)

    # -- targets ---------------------------------------------------------------------------

    def targets(self, video: torch.Tensor, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(appearance, motion)`` targets of the tokens in ``index (B, K)`` (all if None).

        appearance: int64 codes ``(B, K, c)`` or normalised pixels ``(B, K, P)``;
        motion: ``(B, K, P)`` RGB differences. No gradients, autocast off; pixels and motion in
        float32, codes in the tokenizer's own precision (float32 unless it was cast).
        """
        c = self.config
        frames, source = self.split_clip(video)
        with torch.no_grad(), torch.autocast(video.device.type, enabled=False):
            if c.appearance_target == "codes":
                dtype = next((t.dtype for t in self._tokenizer.parameters() if t.is_floating_point()), torch.float32)
                appearance = code_targets(frames.to(dtype), self._tokenizer, c.tubelet, c.patch)  # (B, N, c)
            else:
                appearance = make_targets(frames.float(), "pixels_norm", c.tubelet, c.patch)  # (B, N, P)
            motion = motion_targets(
                source.float(), c.tubelet, c.patch, c.motion_normalization, num_frames=c.num_frames, border=c.border
            )  # (B, N, P)
        if index is not None:
            appearance, motion = tokens_at(appearance, index), tokens_at(motion, index)  # per-token targets: gather after
        return appearance, motion

    # -- forward ---------------------------------------------------------------------------

    def _decoder_pos(self, decoder: MAM2Decoder, grid) -> torch.Tensor:
        if tuple(grid) == self.encoder.config.grid:
            return decoder.pos_embed
        width = decoder.pos_embed.shape[1]
        return position_embedding(grid, width, self.encoder.config.grid, self.encoder.config.pos_resize).to(decoder.pos_embed.device)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> PretrainOutput:
        """Predict appearance and motion of the hidden tokens.

        video: ``(B, C, T+1, H, W)`` (``clip_frames="plus_one"``) or ``(B, C, T, H, W)``
            (``"exact"``), ImageNet-normalised.
        mask: bool ``(B, N)`` over the encoder's token grid, True = hidden (:meth:`make_mask`).

        Returns :class:`PretrainOutput` with, for the ``M`` hidden tokens in raster order:
        ``pred`` = appearance logits ``(B, M, c, K)`` and ``target`` = codes ``(B, M, c)``
        (or normalised pixels ``(B, M, P)`` both, with pixel targets); ``terms`` =
        ``loss_appearance``, ``loss_motion`` (+ ``loss_align`` when ``w_align > 0``), unweighted;
        ``extras`` = ``pred_motion`` and ``target_motion`` ``(B, M, P)``, ``latent_pred``
        ``(B, M, D)`` (+ ``latent_target`` with alignment).
        """
        c = self.config
        frames, _ = self.split_clip(video)
        grid = self.encoder.token_grid(frames)
        N = grid[0] * grid[1] * grid[2]
        M = check_mask(mask, N, count=self.expected_mask_count(grid))  # a known count: no host synchronisation
        check_mask_batch(mask, video)
        visible_idx = token_index(~mask, N - M)  # (B, V)
        hidden_idx = token_index(mask, M)  # (B, M)

        z = self.encoder(frames, mask, masked_count=M)  # (B, V, D)
        pos = self.encoder.position_embedding(grid, video.device).to(z.dtype)  # (N, D)
        latent = self.regressor(z, pos[visible_idx], pos[hidden_idx])  # (B, M, D)

        if c.decoder_context:
            x = torch.cat([z, latent], dim=1)  # (B, V + M, D)
            index = torch.cat([visible_idx, hidden_idx], dim=1)  # (B, V + M)
        else:
            x, index = latent, hidden_idx  # (B, M, D), (B, M)
        pred_app = self.appearance_decoder(x, self._decoder_pos(self.appearance_decoder, grid)[index], M)  # (B, M, c·K | P)
        pred_motion = self.motion_decoder(x, self._decoder_pos(self.motion_decoder, grid)[index], M)  # (B, M, P)

        target_app, target_motion = self.targets(video, hidden_idx)  # (B, M, c) | (B, M, P), (B, M, P)
        if c.appearance_target == "codes":
            pred_app = pred_app.view(pred_app.shape[0], M, c.codes_per_token, c.codebook_size)  # (B, M, c, K)
            loss_app = F.cross_entropy(pred_app.float().flatten(0, 2), target_app.flatten())
        else:
            loss_app = F.mse_loss(pred_app.float(), target_app)
        loss_motion = F.mse_loss(pred_motion.float(), target_motion)
        terms = {"loss_appearance": loss_app, "loss_motion": loss_motion}
        extras = {"pred_motion": pred_motion, "target_motion": target_motion, "latent_pred": latent}
        loss = c.w_appearance * loss_app + c.w_motion * loss_motion

        if c.w_align > 0:
            with torch.no_grad():
                latent_target = self.encoder(frames, ~mask, masked_count=N - M)  # (B, M, D): the encoder's own view of the hidden tokens
            loss_align = F.mse_loss(latent.float(), latent_target.float())
            terms["loss_align"] = loss_align
            extras["latent_target"] = latent_target
            loss = loss + c.w_align * loss_align
        return PretrainOutput(loss=loss, pred=pred_app, target=target_app, mask=mask, terms=terms, extras=extras)


# --------------------------------------------------------------------------------------------
# Published encoder sizes and the CPU preset
# --------------------------------------------------------------------------------------------


#: MAM2's sizes (our choice, see the module docstring), all from the two VideoMAE tables: the
#: encoder of :func:`~maskvid_edu.models.vit.encoder_fields`, the regressor at the encoder's width
#: and heads, each decoder as wide as VideoMAE's decoder of that size
#: (:data:`~maskvid_edu.models.videomae.DECODER_SIZES`) and 4 blocks deep (2 in the CPU preset).
MAM2_SIZES: tuple[str, ...] = ("s", "b", "l", "demo")


def mam2_config(size: str, **overrides) -> MAM2Config:
    """The :class:`MAM2Config` of a size of :data:`MAM2_SIZES`; overrides replace fields."""
    if size not in MAM2_SIZES:
        raise ValueError(f"size must be one of {list(MAM2_SIZES)}, got {size!r}")
    encoder, decoder = encoder_fields(size), DECODER_SIZES[size]
    width, heads = decoder["decoder_dim"], decoder["decoder_heads"]
    fields = dict(encoder, regressor_heads=encoder["heads"], appearance_dim=width, appearance_heads=heads,
                  motion_dim=width, motion_heads=heads)
    if size == "demo":
        fields.update(regressor_depth=2, appearance_depth=2, motion_depth=2)
    return replace_config(MAM2Config(**fields), overrides)


@register("mam2_vit_s")
def mam2_vit_s(*, tokenizer: nn.Module | None = None, **overrides) -> MAM2:
    """ViT-S/16 encoder; regressor 4 blocks at 384 (6 heads); each decoder 192 wide, 3 heads, 4 deep.
    Pass ``tokenizer=`` for code targets."""
    return MAM2(mam2_config("s", **overrides), tokenizer=tokenizer)


@register("mam2_vit_b")
def mam2_vit_b(*, tokenizer: nn.Module | None = None, **overrides) -> MAM2:
    """ViT-B/16 encoder (the paper's main model); regressor 4 blocks at 768 (12 heads); each
    decoder 384 wide, 6 heads, 4 deep. Pass ``tokenizer=`` for code targets."""
    return MAM2(mam2_config("b", **overrides), tokenizer=tokenizer)


@register("mam2_vit_l")
def mam2_vit_l(*, tokenizer: nn.Module | None = None, **overrides) -> MAM2:
    """ViT-L/16 encoder; regressor 4 blocks at 1024 (16 heads); each decoder 512 wide, 8 heads,
    4 deep. Pass ``tokenizer=`` for code targets."""
    return MAM2(mam2_config("l", **overrides), tokenizer=tokenizer)


@register("mam2_vit_demo")
def mam2_vit_demo(*, tokenizer: nn.Module | None = None, **overrides) -> MAM2:
    """CPU preset with ``videomae_vit_demo``'s encoder: 8 frames (+1 for motion) of 64×64,
    tubelet 2, patch 8 → 4×8×8 = 256 tokens; encoder 128 wide, 4 deep, 4 heads; regressor 2
    blocks; each decoder 64 wide, 2 heads, 2 deep. With ``vqvae_demo`` (f = 8) each token
    holds 2 codes."""
    return MAM2(mam2_config("demo", **overrides), tokenizer=tokenizer)
