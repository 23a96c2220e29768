"""What every pre-training model shares: the ``model(video, mask)`` contract and its mask rule.

Every method of the course (VideoMAE, MAM2, VideoMAC, V-JEPA) is a :class:`PretrainModel` and is used
the same way, by the trainer, the benchmarks and the notebooks alike::

    model = create("videomae_vit_demo")
    mask = model.make_mask(video, generator=g)   # bool (B, N), True = hidden: the method's own rule
    out = model(video, mask)                     # PretrainOutput
    out.loss.backward()

- ``video``: ``(B, C, T, H, W)``, ImageNet-normalised. Which frames a method reads is its own
  business: MAM2 takes one frame more than its encoder sees (for the last motion target),
  VideoMAC reads a pair of frames.
- ``mask``: bool ``(B, N)`` over the method's token grid, True = hidden from the encoder, the
  same number of hidden tokens in every sample. The *caller* passes it, so a notebook can feed a
  hand-made mask, another ratio or another strategy; :meth:`PretrainModel.make_mask` draws the
  method's default one.
- the result: a :class:`~maskvid_edu.models.output.PretrainOutput` — ``loss`` to optimise,
  named ``terms`` to log, ``pred`` and ``target`` for the hidden tokens in raster order.

A model states its mask rule with two methods and inherits the rest:

- :meth:`~PretrainModel.mask_grid` — the token grid ``(t, h, w)`` the mask of ``video`` covers
  (checking that the model can take that clip);
- :meth:`~PretrainModel.mask_rule` — the strategy (a key of :data:`maskvid_edu.masking.MASKERS`)
  and the ratio; ``config.mask_type`` and ``config.mask_ratio`` unless the model says otherwise.

From that rule :meth:`~PretrainModel.make_mask` draws a mask and
:meth:`~PretrainModel.expected_mask_count` knows how many tokens it hides before any mask
exists. The argument checks the model configs share sit here too.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from ..masking import MASKERS, VIDEO_MASKERS, Grid, mask_count

__all__ = [
    "PretrainModel",
    "MASK_TYPES",
    "check_positive_ints",
    "check_divisible",
    "check_mask_fields",
    "check_video",
    "check_mask_batch",
]

#: Encoder masks the ViT methods draw: VideoMAE's tube mask and its two ablations, random tokens
#: and whole frames, and MGMAE's motion-guided mask (a tube that follows the clip's motion).
MASK_TYPES: tuple[str, ...] = ("tube", "random", "frame", "motion_guided")


class PretrainModel(nn.Module):
    """A pre-training model: ``model(video, mask) -> PretrainOutput`` (see the module docstring).

    Subclasses define ``forward(video, mask)`` and :meth:`mask_grid`, and hold their config
    dataclass in ``self.config``.
    """

    #: True while :class:`~maskvid_edu.train.Trainer` trains the model. Every mask then comes from
    #: :meth:`make_mask`, so its number of hidden tokens is known from the config
    #: (:meth:`expected_mask_count`) and is verified on the device instead of being read back
    #: from it: no host synchronisation in the training step (see
    #: :func:`~maskvid_edu.masking.check_mask`). False otherwise: a caller may pass any mask.
    fixed_mask_count: bool = False

    def mask_grid(self, video: torch.Tensor) -> Grid:
        """The token grid ``(t, h, w)`` covered by the mask of ``video``; ValueError for a clip
        the model cannot take."""
        raise NotImplementedError(f"{type(self).__name__} must define mask_grid(video)")

    def downstream_encoder(self) -> nn.Module:
        """The encoder that downstream evaluation uses (probes, fine-tuning, propagation, the
        zoo's kept weights): ``self.encoder`` unless the method says otherwise."""
        return self.encoder

    def mask_rule(self) -> tuple[str, float]:
        """``(strategy, ratio)`` of the default mask: ``config.mask_type``, ``config.mask_ratio``."""
        return self.config.mask_type, self.config.mask_ratio

    def _checked_rule(self) -> tuple[str, float]:
        strategy, ratio = self.mask_rule()
        if strategy not in MASKERS and strategy not in VIDEO_MASKERS:
            known = sorted(MASKERS) + sorted(VIDEO_MASKERS)
            raise ValueError(f"{type(self).__name__}: mask type must be one of {known}, got {strategy!r}")
        return strategy, ratio

    def make_mask(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The method's default mask for ``video``: bool ``(B, N)``, True = hidden, on ``video.device``.

        ``MASKERS[strategy](B, mask_grid(video), ratio)`` with :meth:`mask_rule`'s strategy and
        ratio; the randomness comes from ``generator`` (torch's default one if None). A strategy
        of :data:`~maskvid_edu.masking.VIDEO_MASKERS` (``"motion_guided"``) gets the clip too.
        """
        grid = self.mask_grid(video)
        strategy, ratio = self._checked_rule()
        if strategy in VIDEO_MASKERS:
            return VIDEO_MASKERS[strategy](video, grid, ratio, generator=generator)
        return MASKERS[strategy](video.shape[0], grid, ratio, generator=generator, device=video.device)

    def expected_mask_count(self, grid: Grid) -> int | None:
        """Hidden tokens per sample of a :meth:`make_mask` mask over ``grid`` while
        :attr:`fixed_mask_count` is on (:func:`~maskvid_edu.masking.mask_count`); None otherwise,
        and the count is read from the mask."""
        if not self.fixed_mask_count:
            return None
        strategy, ratio = self._checked_rule()
        return mask_count(strategy, grid, ratio)


# --------------------------------------------------------------------------------------------
# Argument checks shared by the model configs
# --------------------------------------------------------------------------------------------


def check_positive_ints(config, names: Iterable[str]) -> None:
    """ValueError naming the first field of ``names`` that is not a positive int (bools are not)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_divisible(config, pairs: Iterable[tuple[str, str]]) -> None:
    """ValueError for the first ``(a, b)`` of ``pairs`` whose field ``a`` is not a multiple of ``b``."""
    for a, b in pairs:
        if getattr(config, a) % getattr(config, b):
            raise ValueError(f"{a} {getattr(config, a)} must be divisible by {b} {getattr(config, b)}")


def check_mask_fields(config, mask_types: tuple[str, ...] = MASK_TYPES) -> None:
    """``config.mask_ratio`` in (0, 1) and ``config.mask_type`` one of ``mask_types``."""
    if not 0.0 < config.mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {config.mask_ratio!r}")
    if config.mask_type not in mask_types:
        names = [repr(t) for t in mask_types]
        choices = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"mask_type must be {choices}, got {config.mask_type!r}")


def check_video(video) -> None:
    """ValueError unless ``video`` is a 5-D ``(B, C, T, H, W)`` tensor."""
    if not isinstance(video, torch.Tensor) or video.dim() != 5:
        raise ValueError(f"video must be a (B, C, T, H, W) tensor, got {getattr(video, 'shape', type(video))}")


def check_mask_batch(mask: torch.Tensor, video: torch.Tensor) -> None:
    """ValueError unless ``mask`` and ``video`` have the same batch size."""
    if mask.shape[0] != video.shape[0]:
        raise ValueError(f"mask has batch {mask.shape[0]} but video has batch {video.shape[0]}")
