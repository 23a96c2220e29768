"""Checkpoints: ours ⇄ official VideoMAE ⇄ Hugging Face transformers, and atomic saving.

Three layouts of the same weights exist in the wild; :func:`load_videomae` recognises each one
from its keys and converts it to ours:

====================  ===========================================================================
layout                recognised by
====================  ===========================================================================
official pre-training ``encoder.patch_embed.*``, ``encoder.blocks.*``, ``decoder.blocks.*``,
                      ``encoder_to_decoder.weight``, ``mask_token`` — **our layout**, unchanged
official fine-tuned   ``patch_embed.*``, ``blocks.*``, ``fc_norm.*``, ``head.*`` (a bare encoder)
transformers          ``videomae.embeddings.patch_embeddings.projection.*``,
                      ``videomae.encoder.layer.N.attention.attention.{query,key,value}.weight``
                      (+ the query and value biases, in either layout below),
                      ``decoder.decoder_layers.N.*``; also a bare ``VideoMAEModel`` (no
                      ``videomae.`` prefix) and ``…ForVideoClassification``
====================  ===========================================================================

transformers keeps ``query``, ``key`` and ``value`` as three Linears; ours (and the official
code) one ``qkv`` Linear whose weight is the three stacked in that order. VideoMAE learns a
query and a value bias but no key bias, and transformers has stored these two biases in two
ways (``BIAS_LAYOUTS``):

``"q_bias"``  separate parameters ``attention.attention.q_bias`` and ``….v_bias`` beside three
              bias-free Linears: the model of transformers 4 up to 5.5, the published
              checkpoints (``MCG-NJU/videomae-*``), and what ``save_pretrained`` writes to disk
              from 5.18 on (it renames the biases back).
``"linear"``  the biases of the ``query`` and ``value`` Linears, ``….query.bias`` and
              ``….value.bias`` (the ``key`` Linear has none): the model of transformers 5.18
              and later, in memory (``state_dict()``).

(transformers 5.6 to 5.17 gave all three Linears a bias, a key bias included, and renamed
nothing; their files are not read here: a key bias is reported as unexpected.)

Both are read; :func:`to_transformers` writes the layout of the installed transformers (see
:func:`transformers_bias_layout`) unless told which. Training checkpoints
wrap the weights (``{"model": …}``, ``{"module": …}``, ``{"state_dict": …}``, keys prefixed
``module.``); the wrapping is removed first.

The sinusoidal position embeddings are fixed buffers, not weights: a checkpoint that carries one
has it checked against ours and reported as ignored — also when it was made for another token
grid (other frames or frame size), since ours is recomputed for the model's grid. A *learned*
position embedding loads into an encoder built with ``learned_pos=True``; stored for another
grid, it is interpolated to the model's (space bicubic, time linear), with one logged line.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .models.videomae import VideoMAE
from .models.vit import VisionTransformer, resize_position_embedding, sinusoid_table

__all__ = [
    "LoadReport",
    "load_videomae",
    "detect_format",
    "to_official",
    "to_transformers",
    "transformers_bias_layout",
    "BIAS_LAYOUTS",
    "read_state_dict",
    "check_finite",
    "is_sinusoid",
    "infer_grid",
    "save_checkpoint",
    "atomic_write",
    "remove_stale_temporaries",
]

FORMATS = ("official_pretrain", "official_finetune", "transformers")

# one Transformer block: our (official) name ← transformers' name, relative to the block
_HF_BLOCK = {
    "norm1.weight": "layernorm_before.weight",
    "norm1.bias": "layernorm_before.bias",
    "attn.proj.weight": "attention.output.dense.weight",
    "attn.proj.bias": "attention.output.dense.bias",
    "norm2.weight": "layernorm_after.weight",
    "norm2.bias": "layernorm_after.bias",
    "mlp.fc1.weight": "intermediate.dense.weight",
    "mlp.fc1.bias": "intermediate.dense.bias",
    "mlp.fc2.weight": "output.dense.weight",
    "mlp.fc2.bias": "output.dense.bias",
}
_HF_QKV = ("attention.attention.query.weight", "attention.attention.key.weight", "attention.attention.value.weight")
# the query and value biases of one block (ours: attn.q_bias, attn.v_bias) in transformers' two layouts
_HF_QV_BIAS = {
    "q_bias": ("attention.attention.q_bias", "attention.attention.v_bias"),
    "linear": ("attention.attention.query.bias", "attention.attention.value.bias"),
}
BIAS_LAYOUTS = tuple(_HF_QV_BIAS)
_OUR_QV_BIAS = ("attn.q_bias", "attn.v_bias")
# outside the blocks: ours (canonical) ← transformers (without the "videomae." prefix for the encoder)
_HF_OTHER = {
    "encoder.pos_embed": "embeddings.position_embeddings",
    "encoder.patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "encoder.patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "encoder.norm.weight": "layernorm.weight",
    "encoder.norm.bias": "layernorm.bias",
}
_HF_TOP = {  # keys at the top level of the transformers pre-training / classification models
    "pos_embed": "position_embeddings",
    "encoder_to_decoder.weight": "encoder_to_decoder.weight",
    "mask_token": "mask_token",
    "decoder.norm.weight": "decoder.norm.weight",
    "decoder.norm.bias": "decoder.norm.bias",
    "decoder.head.weight": "decoder.head.weight",
    "decoder.head.bias": "decoder.head.bias",
    "encoder.fc_norm.weight": "fc_norm.weight",
    "encoder.fc_norm.bias": "fc_norm.bias",
    "encoder.head.weight": "classifier.weight",
    "encoder.head.bias": "classifier.bias",
}
_PRETRAIN_ONLY = ("decoder.", "encoder_to_decoder.", "mask_token")
_POS_KEYS = ("encoder.pos_embed", "pos_embed", "decoder.pos_embed", "decoder_pos_embed")

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What :func:`load_videomae` did.

    format: the detected layout (one of ``FORMATS``).
    loaded: our parameter names that received a value.
    missing: our parameters the checkpoint did not provide (left as they were).
    unexpected: checkpoint entries (converted names) that have no place in the model.
    ignored: checkpoint entries deliberately skipped, with the reason.
    """

    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from a {self.format} checkpoint"]
        if self.missing:
            lines.append(f"missing ({len(self.missing)}): {_short(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected ({len(self.unexpected)}): {_short(self.unexpected)}")
        for key, why in self.ignored.items():
            lines.append(f"ignored {key}: {why}")
        return "\n".join(lines)


def _short(keys: list[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f", … (+{len(keys) - n})" if len(keys) > n else "")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint file safely (``weights_only=True``) and unwrap its state dict.

    Raises ``FileNotFoundError`` naming ``path`` if it does not exist and ``ValueError`` if the
    file cannot be read as a torch checkpoint or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {str(path)!r}")
    try:
        # training checkpoints of the official code also store their argparse.Namespace
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ValueError(f"{str(path)!r} is not a readable torch checkpoint (weights_only=True): {err}") from err
    try:
        sd = _unwrap(obj)
    except ValueError as err:
        raise ValueError(f"{str(path)!r}: {err}") from None
    check_finite(sd, f"checkpoint {str(path)!r}")
    return sd


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str = "the state dict") -> None:
    """Refuse weights that hold NaN or ±inf.

    A run that diverged can leave NaN weights behind; loaded silently, they make every feature
    NaN, and an evaluation then reports chance accuracy (or a J&F of 0) without saying why.
    Every floating-point (or complex) tensor is checked; integer tensors (step counters,
    index buffers) cannot hold NaN and are passed over.

    Args:
        state_dict: ``name -> tensor``.
        source: what the weights are, for the message (e.g. ``"checkpoint 'run/checkpoint.pt'"``).

    Raises:
        ValueError: naming ``source``, the first bad key (in the state dict's order), how many
            of its values are NaN / inf, and how many tensors are bad in all.
    """
    bad, checked = [], 0
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            checked += 1
            if not bool(torch.isfinite(value).all()):
                bad.append(key)
    if not bad:
        return
    first = state_dict[bad[0]]
    nan, inf = int(torch.isnan(first).sum()), int(torch.isinf(first).sum())
    raise ValueError(
        f"{source} holds non-finite weights: {len(bad)} of its {checked} floating-point tensors contain NaN or inf; "
        f"the first is {bad[0]!r} ({nan} NaN and {inf} inf of {first.numel()} values). A run that diverged "
        "writes such weights: use an earlier checkpoint or retrain"
    )


def _unwrap(obj) -> dict[str, torch.Tensor]:
    """Strip training wrappers: ``{"model"|"module"|"state_dict": sd}`` and ``module.`` prefixes."""
    for _ in range(4):
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            for wrapper in ("model", "module", "state_dict", "model_state"):
                if isinstance(obj.get(wrapper), Mapping):
                    obj = obj[wrapper]
                    break
            else:
                break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        what = f"a dict with keys {_short(sorted(map(str, obj)), 8)}" if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"expected a state dict (str → tensor), got {what}")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which layout a (unwrapped) state dict uses: one of ``FORMATS``; ``ValueError`` if none."""
    keys = list(state_dict)
    if any(k.startswith(("videomae.", "embeddings.patch_embeddings.", "encoder.layer.", "decoder.decoder_layers.")) for k in keys):
        return "transformers"
    if any(k.startswith(("encoder.blocks.", "encoder.patch_embed.", "decoder.blocks.")) for k in keys):
        return "official_pretrain"
    if any(k.startswith(("blocks.", "patch_embed.")) for k in keys):
        return "official_finetune"
    raise ValueError(f"not a VideoMAE state dict (official or transformers); its keys start with: {_short(keys, 8)}")


# --------------------------------------------------------------------------------------------
# Conversion to the canonical layout (= our VideoMAE's state dict names)
# --------------------------------------------------------------------------------------------


def _from_transformers(sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    out, unknown = {}, {}
    qkv: dict[str, dict[int, torch.Tensor]] = {}
    reverse_top = {hf: ours for ours, hf in _HF_TOP.items()}
    reverse_other = {hf: ours for ours, hf in _HF_OTHER.items()}
    reverse_block = {hf: ours for ours, hf in _HF_BLOCK.items()}
    reverse_bias = {hf: ours for names in _HF_QV_BIAS.values() for ours, hf in zip(_OUR_QV_BIAS, names)}
    bias_source: dict[str, str] = {}  # our bias name -> the checkpoint key it came from
    for key, value in sd.items():
        bare = key[len("videomae."):] if key.startswith("videomae.") else key
        m = re.match(r"^(encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)$", bare)
        if m:
            part = "encoder" if m.group(1) == "encoder.layer" else "decoder"
            prefix = f"{part}.blocks.{m.group(2)}."
            if m.group(3) in _HF_QKV:
                qkv.setdefault(prefix + "attn.qkv.weight", {})[_HF_QKV.index(m.group(3))] = value
            elif m.group(3) in reverse_block:
                out[prefix + reverse_block[m.group(3)]] = value
            elif m.group(3) in reverse_bias:  # q_bias / v_bias, or query.bias / value.bias
                name = prefix + reverse_bias[m.group(3)]
                if name in bias_source:
                    raise ValueError(
                        f"transformers checkpoint holds the same bias twice, as {bias_source[name]!r} and {key!r}: "
                        f"expected one layout of the query/value biases ({' or '.join(BIAS_LAYOUTS)}), not both"
                    )
                bias_source[name] = key
                out[name] = value
            else:
                unknown[key] = value
        elif bare in reverse_other:
            out[reverse_other[bare]] = value
        elif key in reverse_top:
            out[reverse_top[key]] = value
        else:
            unknown[key] = value
    for name, parts in qkv.items():
        if sorted(parts) != [0, 1, 2]:
            raise ValueError(f"transformers checkpoint lacks one of query/key/value for {name}")
        out[name] = torch.cat([parts[0], parts[1], parts[2]], dim=0)  # (3D, D): q, k, v stacked
    return out, unknown


def _canonical(sd: Mapping[str, torch.Tensor], fmt: str) -> tuple[dict, dict]:
    """Convert to our VideoMAE names; returns (converted, entries that were not converted)."""
    if fmt == "transformers":
        return _from_transformers(sd)
    if fmt == "official_finetune":
        return {"encoder." + k: v for k, v in sd.items()}, {}
    return dict(sd), {}


def is_sinusoid(table: torch.Tensor, tol: float = 1e-4) -> bool:
    """Whether a stored position embedding (any leading shape, last dim = channels) is the fixed
    sinusoid of its own length (:func:`~maskvid_edu.models.vit.sinusoid_table`)."""
    flat = table.reshape(-1, table.shape[-1]).float().cpu()
    return (flat - sinusoid_table(*flat.shape)).abs().max().item() <= tol


def _check_position(key: str, value: torch.Tensor, model_pos: dict[str, torch.Tensor]) -> str:
    """Compare a stored position embedding with our fixed one; return why it is ignored.

    ``encoder.pos_embed`` is the encoder's; the official pre-training model keeps the decoder's at
    the top level (``pos_embed``). The sinusoid of another grid is ignored too (ours is recomputed
    for the model's grid); anything else is a learned embedding, refused by a fixed model.
    """
    ours = model_pos.get("encoder" if key == "encoder.pos_embed" else "decoder")
    if ours is None:
        return "fixed sinusoidal position embedding of a part this model does not have"
    stored = value.reshape(-1, value.shape[-1]).float()
    if stored.shape[-1] != ours.shape[-1]:
        raise ValueError(
            f"checkpoint entry {key!r} is a position embedding of shape {tuple(stored.shape)}, the model's is "
            f"{tuple(ours.shape)}: its width differs, so it belongs to another model size"
        )
    if stored.shape != ours.shape:
        if not is_sinusoid(stored):
            raise ValueError(
                f"checkpoint entry {key!r} is a learned position embedding of {stored.shape[0]} tokens, the model "
                f"has {ours.shape[0]}: build the encoder with learned_pos=True to load (and interpolate) it"
            )
        return (f"fixed sinusoidal position embedding of a {stored.shape[0]}-token grid (not a weight); "
                f"recomputed for the model's {ours.shape[0]} tokens")
    diff = (stored - ours.float().cpu()).abs().max().item()
    if diff > 1e-4:
        raise ValueError(
            f"checkpoint entry {key!r} differs from the fixed sinusoid by up to {diff:.3g}: a learned position "
            "embedding, which these models do not support"
        )
    return "fixed sinusoidal position embedding (not a weight), equal to ours"


def infer_grid(num_tokens: int, like) -> tuple[int, int, int]:
    """The token grid ``(t, h, w)`` of a stored position embedding of ``num_tokens`` rows, guessed
    from the grid ``like`` it is loaded into: the same frame size (other clip length) first,
    then the same clip length with square frames. ``ValueError`` when neither fits."""
    t, h, w = (int(v) for v in like)
    if num_tokens % (h * w) == 0:
        return num_tokens // (h * w), h, w
    side = math.isqrt(num_tokens // t) if num_tokens % t == 0 else 0
    if side and t * side * side == num_tokens:
        return t, side, side
    raise ValueError(f"cannot tell the token grid of a {num_tokens}-token position embedding loaded into grid "
                     f"{(t, h, w)}: pass checkpoint_grid=(t, h, w)")


def _fit_learned(key: str, value: torch.Tensor, encoder: VisionTransformer, checkpoint_grid) -> torch.Tensor:
    """A stored learned position embedding as ``(N, dim)`` for ``encoder``'s grid (interpolated if needed)."""
    table = value.reshape(-1, value.shape[-1])
    grid = encoder.config.grid
    if table.shape[0] == math.prod(grid):
        return table
    source = tuple(checkpoint_grid) if checkpoint_grid is not None else infer_grid(table.shape[0], grid)
    log.info("%s: learned position embedding of grid %s interpolated to the model's grid %s "
             "(space bicubic, time linear)", key, source, grid)
    return resize_position_embedding(table, source, grid)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_videomae(model: nn.Module, state_dict_or_path, strict: bool = True, checkpoint_grid=None) -> LoadReport:
    """Load official or transformers VideoMAE weights into ``model`` (a :class:`VideoMAE` or a
    :class:`VisionTransformer`), converting the layout.

    state_dict_or_path: a state dict (possibly wrapped, see the module docstring) or a file path.
    strict: when True (the default), every model parameter must be provided and every checkpoint
        entry used, else ``ValueError`` listing the missing and unexpected keys (nothing is
        loaded then). When False, what matches is loaded and the rest reported.

    For an encoder target, the pre-training parts of a checkpoint (decoder, ``encoder_to_decoder``,
    ``mask_token``) are ignored, not unexpected: taking the encoder out of a pre-trained model is
    what loading it into an encoder means. Shape mismatches always raise ``ValueError``.
    checkpoint_grid: the token grid ``(t, h, w)`` the checkpoint was trained on, used to
        interpolate a learned position embedding into an encoder built for another grid;
        default: guessed by :func:`infer_grid`.
    Returns a :class:`LoadReport`.
    """
    if not isinstance(model, (VideoMAE, VisionTransformer)):
        raise ValueError(f"model must be a VideoMAE or a VisionTransformer, got {type(model).__name__}")
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        sd = read_state_dict(state_dict_or_path)
    elif isinstance(state_dict_or_path, Mapping):
        sd = _unwrap(state_dict_or_path)
        check_finite(sd)
    else:
        raise ValueError(
            f"state_dict_or_path must be a state dict or a file path, got {type(state_dict_or_path).__name__}"
        )
    fmt = detect_format(sd)
    report = LoadReport(format=fmt)

    if isinstance(model, VideoMAE):
        model_pos = {"encoder": model.encoder.pos_embed, "decoder": model.decoder_pos_embed}
    else:
        model_pos = {"encoder": model.pos_embed}
    converted, unknown = _canonical(sd, fmt)
    report.unexpected.extend(sorted(unknown))
    learned = isinstance(model, VisionTransformer) and model.config.learned_pos
    for key in [k for k in converted if k in _POS_KEYS]:
        if learned and key == "encoder.pos_embed":  # a weight of this encoder: keep it, on its grid
            converted[key] = _fit_learned(key, converted[key], model, checkpoint_grid)
        else:
            report.ignored[key] = _check_position(key, converted.pop(key), model_pos)

    if isinstance(model, VisionTransformer):  # an encoder: strip the prefix, set the rest aside
        encoder_sd = {}
        for key, value in converted.items():
            if key.startswith("encoder."):
                encoder_sd[key[len("encoder."):]] = value
            elif key.startswith(_PRETRAIN_ONLY):
                report.ignored[key] = "pre-training only (not part of the encoder)"
            else:
                report.unexpected.append(key)
        converted = encoder_sd

    own = model.state_dict()
    report.missing = [k for k in own if k not in converted]
    report.unexpected.extend(k for k in converted if k not in own)
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in converted.items()
        if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(f"shape mismatch loading a {fmt} checkpoint: " + "; ".join(mismatched[:8]))
    if strict and (report.missing or report.unexpected):
        hint = ""
        if any(".fc_norm." in k or k.startswith("fc_norm.") for k in report.unexpected) and any(
            k.startswith(("norm.", "encoder.norm.")) for k in report.missing
        ):
            hint = " (a fine-tuned checkpoint with mean pooling: build the encoder with use_mean_pooling=True)"
        raise ValueError(
            f"{fmt} checkpoint does not match {type(model).__name__}{hint}: "
            f"missing {len(report.missing)} [{_short(report.missing)}], "
            f"unexpected {len(report.unexpected)} [{_short(report.unexpected)}]; pass strict=False to load what matches"
        )
    usable = {k: v for k, v in converted.items() if k in own}
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    return report


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def to_official(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our weights in the official layout: pre-training (``encoder.*``, ``decoder.*`` …) for a
    :class:`VideoMAE`, fine-tuned (``patch_embed.*``, ``blocks.*`` …) for a :class:`VisionTransformer`.
    Tensors are detached copies; fixed position embeddings are not included (the official code builds
    them), a learned one (``learned_pos=True``) is, as ``pos_embed``."""
    if not isinstance(model, (VideoMAE, VisionTransformer)):
        raise ValueError(f"model must be a VideoMAE or a VisionTransformer, got {type(model).__name__}")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def transformers_bias_layout() -> str:
    """How the installed transformers keeps VideoMAE's query and value biases: ``"q_bias"``
    (separate ``q_bias`` / ``v_bias`` parameters) or ``"linear"`` (``query.bias`` /
    ``value.bias``), one of ``BIAS_LAYOUTS``.

    The answer is read from the model itself, not from the version number: one attention layer
    of width 8 is built and its parameter names looked at. The change came within 5.x (5.5
    still had ``q_bias``, 5.18 has ``"linear"``), so a major-version test would get it wrong.

    Raises ``ModuleNotFoundError`` if transformers is not installed, ``RuntimeError`` if its
    attention layer has neither layout.
    """
    try:
        from transformers import VideoMAEConfig
        from transformers.models.videomae.modeling_videomae import VideoMAESelfAttention
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "transformers is not installed, so its VideoMAE bias layout cannot be read: install it "
            f"or pass bias_layout= (one of {BIAS_LAYOUTS})"
        ) from err
    names = set(VideoMAESelfAttention(VideoMAEConfig(hidden_size=8, num_attention_heads=1)).state_dict())
    biases = {n for n in names if n.endswith("bias")}
    for layout, pair in _HF_QV_BIAS.items():
        if biases == {hf.removeprefix("attention.attention.") for hf in pair}:
            return layout
    raise RuntimeError(f"transformers' VideoMAESelfAttention has the biases {sorted(biases)}: neither of the "
                       f"known query/value bias layouts {dict(_HF_QV_BIAS)}")


def to_transformers(model: nn.Module, bias_layout: str | None = None) -> dict[str, torch.Tensor]:
    """Our weights in transformers' layout: ``VideoMAEForPreTraining`` for a :class:`VideoMAE`;
    ``VideoMAEModel`` for an encoder without head, ``VideoMAEForVideoClassification`` with one.

    bias_layout: how the query and value biases are named, ``"q_bias"`` or ``"linear"`` (see
        the module docstring); default: the installed transformers' own
        (:func:`transformers_bias_layout`), so that its ``load_state_dict(…, strict=True)``
        takes the result.

    transformers' VideoMAE has no layer scale, so a model with ``layer_scale_init`` is refused.
    The transformers config must match (``use_mean_pooling=False`` for pre-training,
    ``layer_norm_eps`` equal to ours).
    """
    if bias_layout is None:
        bias_layout = transformers_bias_layout()
    if bias_layout not in _HF_QV_BIAS:
        raise ValueError(f"bias_layout must be one of {BIAS_LAYOUTS}, got {bias_layout!r}")
    block = {**_HF_BLOCK, **dict(zip(_OUR_QV_BIAS, _HF_QV_BIAS[bias_layout]))}
    if isinstance(model, VideoMAE):
        sd, enc_prefix = {k: v for k, v in model.state_dict().items()}, "videomae."
    elif isinstance(model, VisionTransformer):
        sd = {"encoder." + k: v for k, v in model.state_dict().items()}
        has_head = model.fc_norm is not None or model.config.num_classes > 0
        enc_prefix = "videomae." if has_head else ""
    else:
        raise ValueError(f"model must be a VideoMAE or a VisionTransformer, got {type(model).__name__}")
    out = {}
    for key, value in sd.items():
        value = value.detach().clone()
        m = re.match(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)$", key)
        if m:
            hf_prefix = (f"{enc_prefix}encoder.layer.{m.group(2)}." if m.group(1) == "encoder"
                         else f"decoder.decoder_layers.{m.group(2)}.")
            if m.group(3) == "attn.qkv.weight":
                for name, part in zip(_HF_QKV, value.chunk(3, dim=0)):
                    out[hf_prefix + name] = part.clone()
            elif m.group(3) in block:
                out[hf_prefix + block[m.group(3)]] = value
            else:
                raise ValueError(f"{key} has no transformers equivalent (transformers' VideoMAE has no layer scale)")
        elif key in _HF_OTHER:
            out[enc_prefix + _HF_OTHER[key]] = value
        elif key in _HF_TOP:
            out[_HF_TOP[key]] = value
        else:
            raise ValueError(f"{key} has no transformers equivalent")
    return out


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary binary file in the same folder,
    which is flushed to disk and then ``os.replace``d over ``path``. A crash mid-write leaves the
    previous file intact, never a truncated one. Creates missing parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def save_checkpoint(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (:func:`atomic_write`): a crash mid-write leaves the
    previous checkpoint intact, never a truncated one. Creates missing parent folders; returns the path."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temporaries(directory: str | os.PathLike, name: str) -> list[Path]:
    """Delete the temporary files that :func:`save_checkpoint` leaves when a process is killed
    mid-write (``.<name>.*.tmp`` in ``directory``); return the paths removed.

    Call it when a run starts or resumes in ``directory``, before it writes: a temporary file
    of *this* checkpoint name can then only be debris of an earlier, interrupted write.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for tmp in sorted(directory.glob(f".{name}.*.tmp")):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
