"""The one output object every pre-training model returns.

The trainer logs any method without knowing it: it reads ``loss`` to optimise and every entry
of ``terms`` (``loss_online``, ``loss_consistency``, ``loss_appearance``, ``loss_motion``, …) to
log. Named terms are also readable as attributes: ``out.loss_motion``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PretrainOutput:
    """What ``model(video, mask)`` returns.

    loss:   scalar tensor, the quantity optimised.
    pred:   ``(B, N_mask, D)`` predictions for the masked tokens, raster order (or None).
    target: ``(B, N_mask, D)`` the matching targets (or None).
    mask:   bool ``(B, N)`` the mask that was used, True = masked.
    terms:  named scalar loss terms that add up (with their weights) to ``loss``.
    extras: anything else a method wants to expose (other predictions, codes, …).
    """

    loss: torch.Tensor
    pred: torch.Tensor | None = None
    target: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        # only called when normal lookup fails: expose terms as attributes
        terms = self.__dict__.get("terms", {})
        if name in terms:
            return terms[name]
        raise AttributeError(f"{type(self).__name__} has no field or loss term {name!r} (terms: {sorted(terms)})")
