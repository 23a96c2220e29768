"""VideoMAE and VideoMAE V2 pre-training: hide 90 % of a clip, reconstruct its pixels.

What it is (Tong et al., NeurIPS 2022; Wang et al., CVPR 2023):

1. cut the clip ``(B, C, T, H, W)`` into tubelet tokens and hide most of them with a **tube
   mask** (the same spatial positions in every frame, ratio 0.9) — see :mod:`maskvid_edu.masking`;
2. the ViT **encoder** (:mod:`maskvid_edu.models.vit`) sees the visible ~10 % only;
3. a narrow **decoder** receives the encoded visible tokens plus one shared learnable
   ``mask_token`` per hidden position, each with the fixed sinusoid of its position, and predicts
   the pixels of the hidden tubelets;
4. the loss is the mean squared error against each hidden tubelet's pixels, normalised per patch
   and per channel (see :mod:`maskvid_edu.patches`).

Where it comes from: MCG-NJU/VideoMAE ``modeling_pretrain.py`` and OpenGVLab/VideoMAEv2
``models/modeling_pretrain.py``. Parameter names follow the official layout (``encoder.*``,
``encoder_to_decoder``, ``mask_token``, ``decoder.*``), so official checkpoints load as they are;
:mod:`maskvid_edu.checkpoints` converts transformers' layout.

**Dual masking (VideoMAE V2).** With ``decoder_mask_ratio = ρ_d > 0`` a second, *running cell*
mask decides which tokens the decoder reconstructs. The official code (``decode_vis =
~decode_mask`` in the model, ``labels = patches[~decode_masked_pos]`` in the engine) makes the
decoder's mask tokens and the loss cover **every token the decoder mask keeps** — a fixed
``(1 − ρ_d)·N`` tokens per clip, independent of the encoder mask. At ``ρ = 0.9`` about 10 % of
them were also visible to the encoder; they stay in the loss, as in the official code (keeping
only *hidden* ∧ decoded tokens would give a different count per clip). With ``ρ_d = 0`` (VideoMAE)
the decoder reconstructs exactly the encoder-masked tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import denormalize
from ..masking import check_mask, mask_count, running_cell_mask, token_index, tokens_at
from ..patches import NORMALIZATIONS, normalize_patches, patchify
from .base import PretrainModel, check_divisible, check_mask_fields, check_positive_ints
from .output import PretrainOutput
from .registry import register, replace_config
from .vit import (
    EncoderFields,
    VisionTransformer,
    encoder_fields,
    init_weights,
    make_blocks,
    position_embedding,
    run_blocks,
    sinusoid_table,
)

__all__ = ["VideoMAEConfig", "VideoMAE", "VideoMAEDecoder", "DECODER_SIZES", "videomae_config"]


@dataclass
class VideoMAEConfig(EncoderFields):
    """One VideoMAE pre-training model.

    Encoder fields: those of :class:`~maskvid_edu.models.vit.ViTConfig` named in
    :data:`~maskvid_edu.models.vit.ENCODER_FIELDS` (input size, tubelet and patch, width, depth,
    heads, …); the decoder uses the same MLP ratio, qkv bias, layer scale, LayerNorm epsilon and
    drop-path rate, as the official code.

    decoder_dim, decoder_depth, decoder_heads: the decoder (B: 384, 4, 6).
    mask_ratio: share of tokens hidden from the encoder (0.9; 0.75 on UCF101).
    mask_type: ``"tube"`` (VideoMAE), or ``"random"`` / ``"frame"`` (the paper's ablations; a
        frame mask hides ``floor(mask_ratio·t)`` whole temporal slots).
    decoder_mask_ratio: VideoMAE V2's running-cell decoder mask; 0 = off (VideoMAE), 0.5 in V2.
    normalization: the target, ``"videomae"`` (per patch and channel, the default),
        ``"mae"`` (per patch) or ``"none"`` (raw [0, 1] pixels).
    """

    decoder_dim: int = 384
    decoder_depth: int = 4
    decoder_heads: int = 6
    mask_ratio: float = 0.9
    mask_type: str = "tube"
    decoder_mask_ratio: float = 0.0
    normalization: str = "videomae"

    def __post_init__(self):
        self.encoder_config()  # validates the shared fields
        check_positive_ints(self, ("decoder_dim", "decoder_depth", "decoder_heads"))
        check_divisible(self, (("decoder_dim", "decoder_heads"),))
        check_mask_fields(self)
        if not 0.0 <= self.decoder_mask_ratio < 1.0:
            raise ValueError(f"decoder_mask_ratio must be in [0, 1), got {self.decoder_mask_ratio!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")


class VideoMAEDecoder(nn.Module):
    """Transformer blocks, then LayerNorm and a Linear to pixels for the last ``num_out`` tokens."""

    def __init__(self, c: VideoMAEConfig):
        super().__init__()
        self.blocks = make_blocks(
            c.decoder_dim, c.decoder_depth, c.decoder_heads, c.mlp_ratio, c.qkv_bias, c.drop_path, 0.0,
            c.layer_scale_init, c.ln_eps,
        )
        self.norm = nn.LayerNorm(c.decoder_dim, eps=c.ln_eps)
        self.head = nn.Linear(c.decoder_dim, c.patch_values)
        self.use_checkpoint = c.use_checkpoint

    def forward(self, x: torch.Tensor, num_out: int) -> torch.Tensor:
        """x: ``(B, N_vis + N_dec, decoder_dim)`` → pixels of the last ``num_out`` tokens ``(B, num_out, P)``."""
        x = run_blocks(self.blocks, x, self.use_checkpoint and self.training)
        return self.head(self.norm(x[:, -num_out:]))  # only the mask tokens are read out


class VideoMAE(PretrainModel):
    """VideoMAE pre-training model: ``model(video, mask) -> PretrainOutput``.

    The encoder mask is ``config.mask_type`` (tube, random or frame) at ``config.mask_ratio`` over
    the token grid (:class:`~maskvid_edu.models.base.PretrainModel`). ``model.encoder`` is a
    standalone :class:`~maskvid_edu.models.vit.VisionTransformer`: ``model.encoder(video)`` gives
    features of all tokens for downstream use.
    """

    def __init__(self, config: VideoMAEConfig | None = None, **overrides):
        super().__init__()
        config = replace_config(config or VideoMAEConfig(), overrides)
        self.config = c = config
        self.encoder = VisionTransformer(c.encoder_config())
        self.encoder_to_decoder = nn.Linear(c.dim, c.decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        self.register_buffer("decoder_pos_embed", sinusoid_table(self.encoder.config.num_tokens, c.decoder_dim), persistent=False)
        self.decoder = VideoMAEDecoder(c)
        self.encoder_to_decoder.apply(init_weights)
        self.decoder.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)  # the official truncation at ±1 std

    # -- masks -----------------------------------------------------------------------------

    def mask_grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """The encoder's token grid ``(t, h, w)`` of ``video``."""
        return self.encoder.token_grid(video)

    def make_decoder_mask(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """VideoMAE V2's running-cell decoder mask, bool ``(B, N)`` with True = *not* reconstructed;
        None when ``config.decoder_mask_ratio == 0``."""
        if self.config.decoder_mask_ratio == 0:
            return None
        grid = self.encoder.token_grid(video)
        return running_cell_mask(
            video.shape[0], grid, self.config.decoder_mask_ratio, generator=generator, device=video.device
        )

    # -- targets ---------------------------------------------------------------------------

    def targets(self, video: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Pixel targets ``(B, K, P)`` of the tokens in ``index`` ``(B, K)`` (all tokens if None).

        Equal to ``patches.pixel_targets(video, tubelet, patch, config.normalization)`` gathered at
        ``index``: ImageNet normalisation undone, then each patch normalised on its own.
        """
        c = self.config
        with torch.no_grad():
            patches = patchify(denormalize(video.float(), channel_dim=1), c.tubelet, c.patch)  # (B, N, P)
            if index is not None:
                patches = tokens_at(patches, index)  # (B, K, P): per-patch statistics, so gather first
            return normalize_patches(patches, c.normalization, channels=c.in_chans)

    # -- forward ---------------------------------------------------------------------------

    def decoder_position_embedding(self, grid, device) -> torch.Tensor:
        if tuple(grid) == self.encoder.config.grid:
            return self.decoder_pos_embed
        return position_embedding(grid, self.config.decoder_dim, self.encoder.config.grid, self.encoder.config.pos_resize).to(device)

    def forward(
        self, video: torch.Tensor, mask: torch.Tensor, decoder_mask: torch.Tensor | None = None
    ) -> PretrainOutput:
        """Reconstruct the hidden tubelets of ``video``.

        video: ``(B, C, T, H, W)``, ImageNet-normalised.
        mask: bool ``(B, N)``, True = hidden from the encoder (from :meth:`make_mask`).
        decoder_mask: bool ``(B, N)``, True = not reconstructed (V2 only). When None and
            ``config.decoder_mask_ratio > 0``, one is drawn with torch's default generator.

        Returns :class:`PretrainOutput` with ``pred`` and ``target`` ``(B, N_dec, P)`` for the
        reconstructed tokens in raster order (``N_dec = N_mask`` without decoder masking),
        ``loss = mean((pred − target)²)`` over all of them, ``terms = {"loss_pixel": loss}`` and
        ``extras = {"decoded": bool (B, N)}`` marking which tokens ``pred`` covers.
        """
        c = self.config
        grid = self.encoder.token_grid(video)
        N = grid[0] * grid[1] * grid[2]
        fixed = self.fixed_mask_count  # counts from the config: no host synchronisation
        M = check_mask(mask, N, count=self.expected_mask_count(grid))
        if decoder_mask is None and c.decoder_mask_ratio > 0:
            decoder_mask = self.make_decoder_mask(video)
        if decoder_mask is not None:
            dropped = check_mask(decoder_mask, N, name="decoder_mask",
                                 count=mask_count("running_cell", grid, c.decoder_mask_ratio) if fixed else None)
            decoded, n_dec = ~decoder_mask, N - dropped  # V2: the decoder reconstructs what its own mask keeps
        else:
            decoded, n_dec = mask, M  # VideoMAE: the decoder reconstructs exactly the hidden tokens
        visible_idx = token_index(~mask, N - M)  # (B, N_vis)
        decoded_idx = token_index(decoded, n_dec)  # (B, N_dec)

        x = self.encoder(video, mask, masked_count=M)  # (B, N_vis, dim)
        x = self.encoder_to_decoder(x)  # (B, N_vis, decoder_dim)
        pos = self.decoder_position_embedding(grid, video.device).to(x.dtype)  # (N, decoder_dim)
        x = torch.cat([x + pos[visible_idx], self.mask_token.to(x.dtype) + pos[decoded_idx]], dim=1)  # (B, N_vis + N_dec, decoder_dim)
        pred = self.decoder(x, decoded_idx.shape[1])  # (B, N_dec, P)

        target = self.targets(video, decoded_idx)  # (B, N_dec, P)
        loss = F.mse_loss(pred.float(), target)
        return PretrainOutput(loss=loss, pred=pred, target=target, mask=mask, terms={"loss_pixel": loss},
                              extras={"decoded": decoded})


# --------------------------------------------------------------------------------------------
# Published sizes and the CPU preset
# --------------------------------------------------------------------------------------------


#: VideoMAE's decoder for each encoder size of :data:`~maskvid_edu.models.vit.VIT_SIZES` (and the
#: CPU preset): 4 blocks for S and B, 12 as in the official scripts for L and H; V2's g decodes
#: with running-cell masking at 0.5.
DECODER_SIZES: dict[str, dict] = {
    "s": dict(decoder_dim=192, decoder_heads=3, decoder_depth=4),
    "b": dict(decoder_dim=384, decoder_heads=6, decoder_depth=4),
    "l": dict(decoder_dim=512, decoder_heads=8, decoder_depth=12),
    "h": dict(decoder_dim=640, decoder_heads=8, decoder_depth=12),
    "g": dict(decoder_dim=512, decoder_heads=8, decoder_depth=4, decoder_mask_ratio=0.5),
    "demo": dict(decoder_dim=64, decoder_heads=2, decoder_depth=2),
}


def videomae_config(size: str, **overrides) -> VideoMAEConfig:
    """The :class:`VideoMAEConfig` of a size: the encoder of
    :func:`~maskvid_edu.models.vit.encoder_fields` with its decoder from :data:`DECODER_SIZES`."""
    if size not in DECODER_SIZES:
        raise ValueError(f"size must be one of {list(DECODER_SIZES)}, got {size!r}")
    return replace_config(VideoMAEConfig(**encoder_fields(size), **DECODER_SIZES[size]), overrides)


@register("videomae_vit_s")
def videomae_vit_s(**overrides) -> VideoMAE:
    """ViT-S/16 encoder (22 M), decoder 192 wide, 3 heads, 4 deep."""
    return VideoMAE(videomae_config("s", **overrides))


@register("videomae_vit_b")
def videomae_vit_b(**overrides) -> VideoMAE:
    """ViT-B/16 encoder (86 M), decoder 384 wide, 6 heads, 4 deep — the paper's main model."""
    return VideoMAE(videomae_config("b", **overrides))


@register("videomae_vit_l")
def videomae_vit_l(**overrides) -> VideoMAE:
    """ViT-L/16 encoder (304 M), decoder 512 wide, 8 heads, **12 deep** as in the official
    Kinetics/SSv2 scripts and released checkpoints (``decoder_depth=4`` gives the model file's default)."""
    return VideoMAE(videomae_config("l", **overrides))


@register("videomae_vit_h")
def videomae_vit_h(**overrides) -> VideoMAE:
    """ViT-H/16 encoder (632 M), decoder 640 wide, 8 heads, **12 deep** as in the official
    scripts (which also turn on activation checkpointing: ``use_checkpoint=True``)."""
    return VideoMAE(videomae_config("h", **overrides))


@register("videomae_vit_g")
def videomae_vit_g(**overrides) -> VideoMAE:
    """VideoMAE V2's ViT-g/14 (1.01 B): 1408 wide, 40 deep, 16 heads, MLP ratio 48/11, patch 14;
    decoder 512 wide, 8 heads, 4 deep; running-cell decoder masking at 0.5."""
    return VideoMAE(videomae_config("g", **overrides))


@register("videomae_vit_demo")
def videomae_vit_demo(**overrides) -> VideoMAE:
    """CPU preset: 8 frames of 64×64, tubelet 2, patch 8 → 4×8×8 = 256 tokens; encoder 128 wide,
    4 deep, 4 heads (0.8 M); decoder 64 wide, 2 deep, 2 heads. A training step at batch 8 takes
    tens of milliseconds on two cores, so a notebook pre-trains it in about a minute."""
    return VideoMAE(videomae_config("demo", **overrides))
