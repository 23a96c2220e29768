"""VideoMAC pre-training: masked ConvNets on frame pairs, kept consistent by an EMA target.

What it is (Pei et al., "VideoMAC: Video Masked Autoencoders Meet ConvNets", CVPR 2024):

1. take **two frames of one video** ``gap`` frames apart (adjacent by default) — not a clip;
2. hide 75 % of the 32×32-pixel patches with **one random mask shared by both frames**
   (*symmetric masking*, :func:`~maskvid_edu.masking.pair_mask`): what is hidden in frame 1 is
   hidden in frame 2 too, so neither frame can leak the other's hidden patches;
3. the **online network** — a *sparse* ConvNet encoder (ConvNeXt V2 or ResNet, see
   :mod:`maskvid_edu.sparse`: hidden patches stay empty through every layer) and a small
   decoder — reconstructs the hidden patches of **frame 1**;
4. the **target network**, an exponential moving average (EMA) of the *whole* online network
   (encoder and decoder, :class:`~maskvid_edu.ema.EMATarget`), reconstructs the hidden patches of
   **frame 2** under the same mask;
5. the loss, over the ``M`` hidden patches of each pair (``P = 32·32·3`` values per patch)::

       L_online      = 1/(M·P) Σ_m ‖ô¹_m − y¹_m‖²       online reconstruction of frame 1
       L_target      = 1/(M·P) Σ_m ‖t̂²_m − y²_m‖²       target reconstruction of frame 2
       L_consistency = 1/(M·P) Σ_m ‖ô¹_m − sg(t̂²_m)‖²   the two reconstructions should agree
       L             = L_online + L_target + γ · L_consistency          (γ = 1)

   with ``y`` each patch's pixels normalised per patch over all its values
   (``(x − mean) / sqrt(var + 1e-6)``, MAE's ``norm_pix_loss``) and ``sg`` stop-gradient;
6. after every optimizer step the target moves towards the online weights,
   ``θ_t ← m·θ_t + (1 − m)·θ_o``, with ``m`` rising from 0.996 to 1 along a cosine over the run.

**Where the gradient goes — read this before the formula above.** In VideoMAC's public code
(``engine_pretrain.py``) the target network runs under ``torch.no_grad()`` and its parameters
have ``requires_grad = False``. ``L_target`` therefore has **no gradient path at all**: it is
added to the loss value, so it shows up in the logged total, but it changes no weight. It is a
*monitoring* term — how well the slow EMA copy reconstructs the other frame. The online network
is trained by ``L_online`` and by ``γ·L_consistency``, whose target side is detached
(``target_pred.detach()`` in the release's ``cons_loss``); the target network is changed only by
the EMA. We reproduce exactly that: :meth:`VideoMAC.forward` computes the target branch without
gradients, and ``loss_target`` is reported (and added to ``loss``) for the same reason. With
``γ = 0`` the target has no influence on training whatsoever — a useful ablation.

``L_consistency`` pulls the online reconstruction of frame 1 towards the target's reconstruction
of frame 2 *at the same hidden positions*. Adjacent frames differ by a little motion, so this asks
the online network for reconstructions that are stable over time — the "inter-frame
reconstruction consistency" of the paper, and the reason VideoMAC's features propagate labels
well from frame to frame.

Layout (VideoMAC's ``models/video_mac.py``)::

    encoder    sparse ConvNeXt V2 or ResNet, total stride 32 → (B, C_enc, H/32, W/32), zeros at hidden patches
    decoder    proj        1×1 conv C_enc → D (D = 512)
               mask_token  (1, D, 1, 1), written into every hidden cell
               blocks      one dense ConvNeXt V2 block of width D (7×7 depthwise, LN, MLP with GRN)
               pred        1×1 conv D → 32·32·3: the pixels of the cell's patch, (row, col, channel) order

Parameter names of the decoder follow the release (``proj``, ``mask_token``, ``decoder``'s block
layers ``dwconv``/``norm``/``pwconv1``/``grn``/``pwconv2``, ``pred``); ours nest them as
``online.decoder.{proj, mask_token, blocks.0.*, pred}`` and the target's copy under
``target.module.*``. Downstream tasks use the **online** encoder (the release's
``tools/convert_pth.py`` keeps ``online_without_ddp`` minus the decoder): :attr:`VideoMAC.encoder`.

Deliberate differences from the release, each a documented choice:

- *Momentum per optimizer step, by global step.* The release updates the target after every
  data-loader iteration (per micro-batch under gradient accumulation) and indexes its momentum
  array with the step *within the epoch*, so the momentum restarts at 0.996 every epoch
  (:func:`~maskvid_edu.ema.cosine_momentum_per_epoch_buggy`). Here the trainer calls
  :meth:`VideoMAC.on_optimizer_step` once per optimizer step and the momentum follows the global
  step (``momentum_schedule="cosine"``); ``"per_epoch_buggy"`` reproduces the release's curve
  and ``"fixed"`` keeps ``m`` at ``momentum_base`` (ablations).
- *Target pixels.* The release patchifies the ImageNet-*normalised* input; the library's targets
  are built from [0, 1] pixels (normalisation undone first), as VideoMAE's. With per-patch
  normalisation the two differ only through the per-channel offsets and scales of the ImageNet
  statistics. ``target_space="input"`` gives the release's choice.
- *Initialisation.* The release re-initialises the whole model with timm's ``trunc_normal_`` at
  its default standard deviation of 1 for several layer types (inherited from FCMAE); we keep
  the encoders' own initialisation and give the decoder's convolutions and linear layers a
  truncated normal with std 0.02 (zero biases), the mask token a normal with std 0.02.
- *Symmetric masks only.* :meth:`VideoMAC.forward` refuses a mask whose two halves differ.

**Input.** ``model(video, mask)`` takes ``video (B, C, T, H, W)`` with ``T ≥ frame_gap + 1``
(ImageNet-normalised, ``H`` and ``W`` multiples of 32) and uses frames ``0`` and ``frame_gap``:
a data pipeline that samples pairs (``sampling="pair"`` in :mod:`maskvid_edu.data.datasets`, or
:class:`~maskvid_edu.data.wrappers.FramePairs` around any clip dataset) delivers ``T = 2``. The
mask is the pair mask ``(B, 2·h·w)`` from :meth:`VideoMAC.make_mask`, ``(h, w) = (H/32, W/32)``:
the first ``h·w`` entries for frame 1, the next ``h·w`` (identical) for frame 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import denormalize
from ..ema import EMATarget, cosine_momentum, cosine_momentum_per_epoch_buggy
from ..masking import check_mask, masked_tokens
from ..patches import NORMALIZATIONS, denormalize_patches, normalize_patches, patchify, unpatchify
from ..sparse import BACKENDS, to_dense, to_sparse, upsample_mask
from .base import PretrainModel, check_mask_batch, check_positive_ints, check_video
from .convnextv2 import CONVNEXTV2_SIZES, MASK_PATCH, Block, build_convnextv2
from .output import PretrainOutput
from .registry import register, replace_config
from .resnet import RESNET_SIZES, build_resnet

__all__ = [
    "VideoMACConfig",
    "VideoMAC",
    "VideoMACDecoder",
    "VideoMACBranch",
    "build_encoder",
    "ENCODERS",
    "ENCODER_INPUTS",
    "MOMENTUM_SCHEDULES",
    "pair_reconstruction",
]

#: Encoder names accepted by :class:`VideoMACConfig`: ``convnextv2_<size>`` and the ResNets of
#: :mod:`maskvid_edu.models.resnet` (``mac_*``: VideoMAC's LN/GELU ResNets; ``resnet50_bn``:
#: torchvision's BatchNorm layout).
#: How the encoder sees a masked frame: sparse (VideoMAC) or dense with zeros (the ablation).
ENCODER_INPUTS = ("sparse", "dense")

ENCODERS: tuple[str, ...] = tuple(f"convnextv2_{s}" for s in CONVNEXTV2_SIZES) + tuple(RESNET_SIZES)
MOMENTUM_SCHEDULES = ("cosine", "fixed", "per_epoch_buggy")
TARGET_SPACES = ("pixels", "input")


@dataclass
class VideoMACConfig:
    """One VideoMAC pre-training model (defaults: ConvNeXtV2-S, the paper's main ConvNeXt).

    encoder: name from :data:`ENCODERS` (``"convnextv2_small"``, ``"mac_resnet50"``, …).
    backend: sparse backend of the encoder, ``"masked"`` (pure PyTorch, readable), ``"packed"``
        (pure PyTorch, per-site layers on the visible rows only) or ``"minkowski"``.
    encoder_input: ``"sparse"`` (VideoMAC: the encoder computes visible sites only, hidden
        patches stay empty in every layer) or ``"dense"`` (the ablation of ConvNeXt V2's Table 1:
        hidden patches are set to zero in the normalised input — the dataset's mean colour — and
        the encoder runs as an ordinary dense ConvNet, so its convolutions spread visible
        content into the hidden cells, the "mask dissipation" of chapter 3).
    drop_path: stochastic depth of a ConvNeXt V2 encoder (0 in VideoMAC; ResNets have none).
    img_size: frame side the data pipeline should deliver (the CLI renders synthetic frames of this
        size); the model itself accepts any ``H, W`` that are multiples of 32.
    num_frames: frames per clip the data pipeline should deliver (2: a pair); the model uses
        frames ``0`` and ``frame_gap`` of whatever it gets.
    frame_gap: distance between the two frames within the clip passed to the model.
    in_chans: image channels.
    decoder_dim, decoder_depth: width ``D`` and number of dense ConvNeXt V2 blocks (512, 1).
    mask_ratio: share of the 32-pixel patches hidden in both frames (0.75).
    normalization: target patches normalised ``"mae"`` (per patch over all values; VideoMAC),
        ``"videomae"`` (per patch and channel) or ``"none"``.
    target_space: build targets from ``"pixels"`` (the [0, 1] frame, ImageNet normalisation
        undone; library convention) or from the ``"input"`` as the network sees it (the release).
    gamma: weight ``γ`` of ``L_consistency`` (1).
    momentum_base, momentum_final: EMA momentum at the first and the last step (0.996 → 1).
    momentum_schedule: ``"cosine"`` over the global step (default), ``"fixed"`` at
        ``momentum_base``, or ``"per_epoch_buggy"`` (the release's restart every epoch; needs
        ``steps_per_epoch``).
    steps_per_epoch: optimizer steps per epoch, only for ``"per_epoch_buggy"``.
    """

    encoder: str = "convnextv2_small"
    backend: str = "masked"
    encoder_input: str = "sparse"
    drop_path: float = 0.0
    img_size: int = 224
    num_frames: int = 2
    frame_gap: int = 1
    in_chans: int = 3
    decoder_dim: int = 512
    decoder_depth: int = 1
    mask_ratio: float = 0.75
    normalization: str = "mae"
    target_space: str = "pixels"
    gamma: float = 1.0
    momentum_base: float = 0.996
    momentum_final: float = 1.0
    momentum_schedule: str = "cosine"
    steps_per_epoch: int | None = None

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {list(ENCODERS)}, got {self.encoder!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.encoder_input not in ENCODER_INPUTS:
            raise ValueError(f"encoder_input must be one of {ENCODER_INPUTS}, got {self.encoder_input!r}")
        if isinstance(self.drop_path, bool) or not isinstance(self.drop_path, (int, float)) or not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path!r}")
        if self.drop_path > 0 and not self.encoder.startswith("convnextv2_"):
            raise ValueError(f"drop_path applies to ConvNeXt V2 encoders only, got encoder {self.encoder!r}")
        check_positive_ints(self, ("img_size", "num_frames", "frame_gap", "in_chans", "decoder_dim", "decoder_depth"))
        if self.img_size % MASK_PATCH:
            raise ValueError(f"img_size must be a multiple of {MASK_PATCH} (the encoder's stride), got {self.img_size}")
        if self.num_frames < self.frame_gap + 1:
            raise ValueError(f"num_frames ({self.num_frames}) must be at least frame_gap + 1 = {self.frame_gap + 1}")
        if isinstance(self.mask_ratio, bool) or not isinstance(self.mask_ratio, (int, float)) or not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.target_space not in TARGET_SPACES:
            raise ValueError(f"target_space must be one of {TARGET_SPACES}, got {self.target_space!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not self.gamma >= 0:
            raise ValueError(f"gamma must be a number >= 0, got {self.gamma!r}")
        for name in ("momentum_base", "momentum_final"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.momentum_schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"momentum_schedule must be one of {MOMENTUM_SCHEDULES}, got {self.momentum_schedule!r}")
        if self.steps_per_epoch is not None and (
            isinstance(self.steps_per_epoch, bool) or not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1
        ):
            raise ValueError(f"steps_per_epoch must be a positive int or None, got {self.steps_per_epoch!r}")
        if self.momentum_schedule == "per_epoch_buggy" and self.steps_per_epoch is None:
            raise ValueError("momentum_schedule='per_epoch_buggy' needs steps_per_epoch (the schedule restarts every epoch)")

    @property
    def patch(self) -> int:
        """Side of a mask / target patch in pixels: the encoder's total stride, 32."""
        return MASK_PATCH

    @property
    def patch_values(self) -> int:
        """Values per target patch, the decoder's output channels: ``32·32·C``."""
        return MASK_PATCH * MASK_PATCH * self.in_chans


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Losses and targets in float32 under autocast (float64 stays float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def build_encoder(c: VideoMACConfig) -> nn.Module:
    """The sparse encoder named by ``c.encoder`` (``forward(x, mask) -> (B, C, H/32, W/32)``)."""
    if c.encoder.startswith("convnextv2_"):
        return build_convnextv2(c.encoder[len("convnextv2_"):], in_chans=c.in_chans, backend=c.backend,
                                drop_path_rate=float(c.drop_path))
    return build_resnet(c.encoder, in_chans=c.in_chans, backend=c.backend)


# --------------------------------------------------------------------------------------------
# The decoder and one branch (encoder + decoder)
# --------------------------------------------------------------------------------------------


class VideoMACDecoder(nn.Module):
    """Encoder features → pixels of every 32-pixel patch.

    ``proj`` (1×1 conv ``in_dim → dim``), the ``mask_token`` written into every hidden cell,
    ``depth`` dense ConvNeXt V2 blocks of width ``dim`` (the encoder's block, run with every site
    active: a dense 7×7 depthwise conv lets hidden cells read their visible neighbours — now that
    is wanted), and ``pred`` (1×1 conv ``dim → out_dim``).
    """

    def __init__(self, in_dim: int, dim: int = 512, depth: int = 1, out_dim: int = MASK_PATCH * MASK_PATCH * 3):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.pred = nn.Conv2d(dim, out_dim, kernel_size=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, z: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """z: ``(B, C_enc, h, w)`` encoder features; hidden: bool ``(B, h, w)``, True = hidden
        patch → predicted patch pixels ``(B, h·w, out_dim)`` in raster order."""
        x = self.proj(z)  # (B, D, h, w)
        x = torch.where(hidden.unsqueeze(1), self.mask_token.to(x.dtype), x)  # (B, D, h, w)
        x = to_dense(self.blocks(to_sparse(x, None)))  # (B, D, h, w), dense ConvNeXt V2 block(s)
        return self.pred(x).flatten(2).transpose(1, 2)  # (B, h·w, out_dim)


class VideoMACBranch(nn.Module):
    """Encoder + decoder: one frame and its patch mask → ``(features, patch predictions)``.

    The online network is one branch; the EMA target is a deep copy of it. ``dense=True`` runs
    the encoder densely on the frame with its hidden patches zeroed (``encoder_input="dense"``).
    """

    def __init__(self, encoder: nn.Module, decoder: VideoMACDecoder, *, dense: bool = False):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.dense = dense

    def forward(self, frame: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frame: ``(B, C, H, W)``; mask: bool ``(B, h·w)`` True = hidden 32-pixel patch →
        ``z (B, C_enc, h, w)`` (zeros at hidden patches when sparse) and ``pred (B, h·w, 32·32·C)``."""
        b, _, H, W = frame.shape
        grid = (H // MASK_PATCH, W // MASK_PATCH)
        if self.dense:
            hidden = upsample_mask(mask, grid, MASK_PATCH)  # (B, H, W), True = hidden pixel
            z = self.encoder(frame.masked_fill(hidden.unsqueeze(1), 0.0), None)  # (B, C_enc, h, w)
        else:
            z = self.encoder(frame, mask)  # (B, C_enc, h, w)
        pred = self.decoder(z, mask.view(b, *grid))  # (B, h·w, P)
        return z, pred


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class VideoMAC(PretrainModel):
    """VideoMAC pre-training model: ``model(video, mask) -> PretrainOutput``.

    Submodules: ``online`` (:class:`VideoMACBranch`, trained) and ``target``
    (:class:`~maskvid_edu.ema.EMATarget` of ``online``: no gradients, eval mode, in the
    ``state_dict`` so checkpoints restore it). Buffer ``ema_updates`` counts target updates.
    The mask is the symmetric pair mask, a tube mask over the two frames
    (:meth:`mask_rule`, :class:`~maskvid_edu.models.base.PretrainModel`).
    """

    def __init__(self, config: VideoMACConfig | None = None, **overrides):
        super().__init__()
        self.config = c = replace_config(config or VideoMACConfig(), overrides)
        encoder = build_encoder(c)
        decoder = VideoMACDecoder(encoder.num_features, c.decoder_dim, c.decoder_depth, c.patch_values)
        self.online = VideoMACBranch(encoder, decoder, dense=c.encoder_input == "dense")
        self.target = EMATarget(self.online)  # starts as an exact copy, as in the release
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.last_momentum: float | None = None

    @property
    def encoder(self) -> nn.Module:
        """The online encoder — the one kept for downstream tasks."""
        return self.online.encoder

    @property
    def decoder(self) -> VideoMACDecoder:
        return self.online.decoder

    # -- input -----------------------------------------------------------------------------

    def split_pair(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``0`` and ``frame_gap`` of ``video (B, C, T, H, W)`` → two ``(B, C, H, W)``."""
        c = self.config
        check_video(video)
        B, C, T, H, W = video.shape
        if C != c.in_chans:
            raise ValueError(f"video has {C} channels, the model expects in_chans = {c.in_chans}")
        if T < c.frame_gap + 1:
            raise ValueError(f"video needs at least frame_gap + 1 = {c.frame_gap + 1} frames "
                             f"(the pair is frames 0 and {c.frame_gap}), got shape {tuple(video.shape)}")
        if H % MASK_PATCH or W % MASK_PATCH:
            raise ValueError(f"frame size must be a multiple of {MASK_PATCH} (the encoder's stride), got {H}×{W}")
        return video[:, :, 0], video[:, :, c.frame_gap]

    def grid(self, video: torch.Tensor) -> tuple[int, int]:
        """``(h, w) = (H/32, W/32)``: the patch grid of one frame."""
        return video.shape[-2] // MASK_PATCH, video.shape[-1] // MASK_PATCH

    def mask_grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """``(2, h, w)``: the two frames of the pair over the patch grid of one frame."""
        self.split_pair(video)  # validates the clip
        return (2, *self.grid(video))

    def mask_rule(self) -> tuple[str, float]:
        """Symmetric masking: a tube mask over the pair, so the same ``floor(ρ·h·w)`` patches are
        hidden in both frames (:func:`~maskvid_edu.masking.pair_mask`); ``make_mask`` gives bool
        ``(B, 2·h·w)``."""
        return "tube", self.config.mask_ratio

    # -- targets ---------------------------------------------------------------------------

    def targets(self, frame: torch.Tensor) -> torch.Tensor:
        """Target patches of one frame ``(B, C, H, W)`` → ``(B, h·w, 32·32·C)``, float32, no
        gradient: pixels (or the input, ``target_space="input"``) cut into 32-pixel patches in
        (row, col, channel) order and normalised per patch (``config.normalization``)."""
        c = self.config
        with torch.no_grad():
            x = _at_least_float32(frame)
            if c.target_space == "pixels":
                x = denormalize(x, channel_dim=1)  # [0, 1] pixels
            return normalize_patches(patchify(x, patch=MASK_PATCH), c.normalization, channels=c.in_chans)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> PretrainOutput:
        """Reconstruct the hidden patches of a frame pair, online (frame 1) and target (frame 2).

        video: ``(B, C, T, H, W)``, ImageNet-normalised; frames 0 and ``frame_gap`` are used.
        mask: bool ``(B, 2·h·w)`` from :meth:`make_mask`, True = hidden, both halves equal.

        Returns :class:`PretrainOutput` whose ``pred`` and ``target`` are ``(B, 2·M, P)`` in the
        mask's raster order — first the ``M`` hidden patches of frame 1 (online reconstruction,
        frame-1 targets), then those of frame 2 (target-network reconstruction, frame-2 targets);
        ``terms`` = ``loss_online``, ``loss_target`` (no gradient: a monitoring term, see the
        module docstring), ``loss_consistency`` (unweighted; ``loss`` adds them with weights 1, 1,
        γ); ``extras`` = ``online_pred``, ``target_pred`` ``(B, M, P)``, ``latent`` (the online
        encoder's ``(B, C_enc, h, w)`` features, zeros at hidden patches) and ``target_latent``.
        """
        c = self.config
        frame1, frame2 = self.split_pair(video)  # (B, C, H, W) each
        B = video.shape[0]
        h, w = self.grid(video)
        fixed = self.fixed_mask_count  # the count from the config, checks on the device: no host sync
        M = check_mask(mask, 2 * h * w, count=self.expected_mask_count((2, h, w))) // 2
        check_mask_batch(mask, video)
        m1, m2 = mask[:, : h * w], mask[:, h * w:]  # (B, h·w) each
        symmetric = "VideoMAC's mask must be symmetric: the same patches hidden in both frames "
        if fixed:
            torch._assert_async((m1 == m2).all(), symmetric + "(draw it with model.make_mask)")
        elif not torch.equal(m1, m2):
            raise ValueError(symmetric + "(its two halves differ; draw it with model.make_mask)")

        z1, pred1 = self.online(frame1, m1)  # (B, C_enc, h, w), (B, h·w, P)
        z2, pred2 = self.target(frame2, m2)  # no gradient (EMATarget runs under torch.no_grad)

        o = _at_least_float32(masked_tokens(pred1, m1, M))  # (B, M, P) online reconstruction of frame 1
        t = _at_least_float32(masked_tokens(pred2, m2, M))  # (B, M, P) target reconstruction of frame 2
        y1 = masked_tokens(self.targets(frame1), m1, M)  # (B, M, P)
        y2 = masked_tokens(self.targets(frame2), m2, M)  # (B, M, P)
        loss_online = F.mse_loss(o, y1)
        loss_target = F.mse_loss(t, y2)  # constant w.r.t. every trainable parameter
        loss_consistency = F.mse_loss(o, t.detach())
        loss = loss_online + loss_target + c.gamma * loss_consistency
        return PretrainOutput(
            loss=loss,
            pred=torch.cat([o, t], dim=1),  # (B, 2M, P)
            target=torch.cat([y1, y2], dim=1),  # (B, 2M, P)
            mask=mask,
            terms={"loss_online": loss_online, "loss_target": loss_target, "loss_consistency": loss_consistency},
            extras={"online_pred": o, "target_pred": t, "latent": z1, "target_latent": z2},
        )

    # -- the EMA target --------------------------------------------------------------------

    def momentum_at(self, step: int, total_steps: int) -> float:
        """EMA momentum after optimizer step ``step`` (0-based, global) of ``total_steps``."""
        c = self.config
        if c.momentum_schedule == "fixed":
            return float(c.momentum_base)
        if c.momentum_schedule == "cosine":
            return cosine_momentum(step, total_steps, c.momentum_base, c.momentum_final)
        spe = c.steps_per_epoch
        epochs = max(1, math.ceil(total_steps / spe))
        return cosine_momentum_per_epoch_buggy(step % spe, spe, epochs, c.momentum_base, c.momentum_final)

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """Move the target towards the online network: ``θ_t ← m·θ_t + (1 − m)·θ_o`` with
        ``m = momentum_at(step, total_steps)``. The trainer calls this once per optimizer step."""
        m = self.momentum_at(step, total_steps)
        self.target.update(self.online, m)
        self.ema_updates += 1
        self.last_momentum = m


# --------------------------------------------------------------------------------------------
# Pictures of a reconstruction
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def pair_reconstruction(model: VideoMAC, video: torch.Tensor, mask: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """What the online and the target network paint into the hidden patches of a pair.

    Args:
        model: a :class:`VideoMAC`; run in eval mode and put back in its previous mode.
        video: ``(B, C, T, H, W)`` ImageNet-normalised (or ``(C, T, H, W)``).
        mask: the pair mask ``(B, 2·h·w)``; None draws one with ``model.make_mask``.

    Returns ``[0, 1]`` images ``(B, C, H, W)`` (pixels after undoing the ImageNet normalisation):
    ``frame1``, ``frame2``; ``online`` (frame 1's visible patches + the online prediction in the
    hidden ones) and ``target`` (the same for frame 2 and the target network); and ``hidden``
    ``(B, H, W)`` bool. Predictions of a per-patch normalised target carry each patch's pattern
    but not its mean and contrast; those are taken from the true patch
    (:func:`~maskvid_edu.patches.denormalize_patches`) — say so under any figure.
    """
    video = video if video.dim() == 5 else video.unsqueeze(0)
    video = video.to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        if mask is None:
            mask = model.make_mask(video, generator=generator)
        out = model(video, mask)
    finally:
        model.train(was_training)
    c = model.config
    h, w = model.grid(video)
    m1 = mask[:, : h * w]  # (B, h·w)
    M = out.extras["online_pred"].shape[1]
    images = {}
    for key, frame, pred in (("online", 0, out.pred[:, :M]), ("target", 1, out.pred[:, M:])):
        f = model.split_pair(video)[frame].float()
        pixels = denormalize(f, channel_dim=1)  # (B, C, H, W) in [0, 1]
        reference = f if c.target_space == "input" else pixels
        patches = patchify(reference, patch=MASK_PATCH)  # (B, h·w, P)
        filled = patches.clone()
        filled[m1] = denormalize_patches(pred.float(), masked_tokens(patches, m1), c.normalization,
                                         channels=c.in_chans).reshape(-1, patches.shape[-1])
        image = unpatchify(filled, (1, h, w), tubelet=1, patch=MASK_PATCH)[:, :, 0]  # (B, C, H, W)
        if c.target_space == "input":
            image = denormalize(image, channel_dim=1)
        images[f"frame{frame + 1}"] = pixels.clamp(0, 1)
        images[key] = image.clamp(0, 1)
    images["hidden"] = m1.view(-1, h, w).repeat_interleave(MASK_PATCH, 1).repeat_interleave(MASK_PATCH, 2)
    return images


# --------------------------------------------------------------------------------------------
# Published sizes and the CPU presets
# --------------------------------------------------------------------------------------------


def _build(overrides: dict, **defaults) -> VideoMAC:
    """``VideoMAC(VideoMACConfig(**defaults))`` with ``overrides``; every size below is 224² frame
    pairs, mask 0.75 at 32 px, decoder 1 block at 512 unless it says otherwise."""
    return VideoMAC(replace_config(VideoMACConfig(**defaults), overrides))


@register("videomac_convnextv2_atto")
def videomac_convnextv2_atto(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-atto encoder (:data:`CONVNEXTV2_SIZES` ``["atto"]``)."""
    return _build(overrides, encoder="convnextv2_atto")


@register("videomac_convnextv2_femto")
def videomac_convnextv2_femto(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-femto encoder (:data:`CONVNEXTV2_SIZES` ``["femto"]``)."""
    return _build(overrides, encoder="convnextv2_femto")


@register("videomac_convnextv2_pico")
def videomac_convnextv2_pico(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-pico encoder (:data:`CONVNEXTV2_SIZES` ``["pico"]``)."""
    return _build(overrides, encoder="convnextv2_pico")


@register("videomac_convnextv2_nano")
def videomac_convnextv2_nano(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-nano encoder (:data:`CONVNEXTV2_SIZES` ``["nano"]``)."""
    return _build(overrides, encoder="convnextv2_nano")


@register("videomac_convnextv2_tiny")
def videomac_convnextv2_tiny(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-tiny encoder (:data:`CONVNEXTV2_SIZES` ``["tiny"]``)."""
    return _build(overrides, encoder="convnextv2_tiny")


@register("videomac_convnextv2_small")
def videomac_convnextv2_small(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-small encoder — VideoMAC's ConvNeXtV2-S (:data:`CONVNEXTV2_SIZES` ``["small"]``)."""
    return _build(overrides, encoder="convnextv2_small")


@register("videomac_convnextv2_base")
def videomac_convnextv2_base(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-base encoder (:data:`CONVNEXTV2_SIZES` ``["base"]``)."""
    return _build(overrides, encoder="convnextv2_base")


@register("videomac_convnextv2_large")
def videomac_convnextv2_large(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-large encoder (:data:`CONVNEXTV2_SIZES` ``["large"]``)."""
    return _build(overrides, encoder="convnextv2_large")


@register("videomac_convnextv2_huge")
def videomac_convnextv2_huge(**overrides) -> VideoMAC:
    """VideoMAC with a sparse ConvNeXt V2-huge encoder (:data:`CONVNEXTV2_SIZES` ``["huge"]``)."""
    return _build(overrides, encoder="convnextv2_huge")


@register("videomac_resnet18")
def videomac_resnet18(**overrides) -> VideoMAC:
    """VideoMAC's ResNet-18 (LayerNorm + GELU, 4×4 stem; basic blocks 2-2-2-2, 512 features)."""
    return _build(overrides, encoder="mac_resnet18")


@register("videomac_resnet50")
def videomac_resnet50(**overrides) -> VideoMAC:
    """VideoMAC's ResNet-50 (LayerNorm + GELU, 4×4 stem; bottlenecks 3-4-6-3, 2048 features) —
    the RN-50 of the paper's tables."""
    return _build(overrides, encoder="mac_resnet50")


@register("videomac_resnet50_tv")
def videomac_resnet50_tv(**overrides) -> VideoMAC:
    """VideoMAC pre-training of a torchvision-layout ResNet-50 (BatchNorm over visible sites,
    7×7 stem + max-pool), so torchvision weights load into ``model.encoder``."""
    return _build(overrides, encoder="resnet50_bn")


@register("videomac_convnextv2_demo")
def videomac_convnextv2_demo(**overrides) -> VideoMAC:
    """CPU preset: ConvNeXt V2 demo encoder (depths 1-1-2-1, dims 16…128), decoder 1 block at
    128, 96×96 frame pairs (3×3 patches of 32 px, 6 hidden in both frames)."""
    return _build(overrides, encoder="convnextv2_demo", img_size=96, decoder_dim=128)


@register("videomac_resnet_demo")
def videomac_resnet_demo(**overrides) -> VideoMAC:
    """CPU preset: VideoMAC-style ResNet demo encoder (basic blocks 1-1-1-1, width 16, 128
    features), decoder 1 block at 128, 96×96 frame pairs."""
    return _build(overrides, encoder="resnet_demo", img_size=96, decoder_dim=128)
