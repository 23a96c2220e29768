"""``from_pretrained``: a ready model from published weights or a checkpoint on disk.

    from maskvid_edu.pretrained import from_pretrained
    model = from_pretrained("videomae-base")                   # from the cache (weights fetch first)
    model = from_pretrained("path/to/checkpoint.pth")          # official pre-training / fine-tuning
    model = from_pretrained("path/to/hf_folder")               # config.json + safetensors / bin
    model = from_pretrained("videomae-base", num_frames=32)    # another grid: overrides go to the config

It never downloads (:func:`maskvid_edu.weights.fetch` does). The layout is recognised from the
files — a folder with ``config.json`` is transformers', a ``.pth`` is read by
:func:`maskvid_edu.checkpoints.read_state_dict` and named by
:func:`~maskvid_edu.checkpoints.detect_format`, a trainer checkpoint of this library goes
through :func:`maskvid_edu.evaluate.davis.load_pretrained` — and the model is built to the
checkpoint's shapes: a pre-training checkpoint gives the registered ``videomae_vit_*`` model, a
fine-tuned one its encoder with the classification head (a
:class:`~maskvid_edu.models.vit.VisionTransformer`). Loading is strict and refuses NaN weights.

It lives beside :mod:`maskvid_edu.weights` rather than in :mod:`maskvid_edu.models` because it
reads checkpoints, and :mod:`maskvid_edu.checkpoints` builds on the models: placed in the models
package it would close an import cycle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from . import weights
from .checkpoints import detect_format, is_sinusoid, load_videomae, read_state_dict
from .evaluate.davis import load_pretrained
from .models import create
from .models.videomae import DECODER_SIZES
from .models.vit import VIT_SIZES, VisionTransformer, vit_config

__all__ = ["from_pretrained", "describe_checkpoint"]


def from_pretrained(name_or_path: str | os.PathLike, *, verbose: bool = False, **overrides) -> torch.nn.Module:
    """Build the model of a published checkpoint (a :mod:`~maskvid_edu.weights` name, from the
    cache) or of a file / folder, and load its weights strictly.

    overrides: config fields (e.g. ``num_frames=32``, ``img_size=160``) on top of the
        checkpoint's; a fine-tuned checkpoint passes them to its encoder's
        :class:`~maskvid_edu.models.vit.ViTConfig`. Another input grid recomputes fixed
        position embeddings and interpolates learned ones.
    verbose: print what was loaded and what was ignored (the :class:`LoadReport`).
    """
    entry = weights.REGISTRY.get(str(name_or_path)) if isinstance(name_or_path, str) else None
    location = weights.path(entry) if entry is not None else Path(name_or_path)
    if entry is None and not location.exists():
        raise FileNotFoundError(f"{str(name_or_path)!r} is neither published weights "
                                f"({', '.join(weights.REGISTRY)}) nor an existing file or folder")
    if location.is_dir():
        state, spec = _read_transformers_folder(location)
    else:
        state = read_state_dict(location)  # refuses NaN weights
        try:
            detect_format(state)
        except ValueError:  # not a VideoMAE layout: a trainer checkpoint of this library, with its meta
            args = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
            return load_pretrained(location, model_args=args)[0]
        spec = describe_checkpoint(state)
    if entry is not None:
        spec["grid"] = (entry.num_frames // spec["fields"]["tubelet"],) + (entry.img_size // spec["fields"]["patch"],) * 2
    fields = {**spec["fields"], **overrides}
    if spec["kind"] == "pretrain":
        model = create(spec["model"], **fields)
    else:
        model = VisionTransformer(vit_config(spec["model"].rsplit("_", 1)[1], **fields))
    report = load_videomae(model, state, strict=True, checkpoint_grid=spec.get("grid"))
    if verbose:
        print(f"{name_or_path}: {report}")
    return model


def _size(dim: int, depth: int) -> str:
    """The published size ``dim`` wide and ``depth`` deep, else ``"demo"`` (built from explicit fields)."""
    for size, table in VIT_SIZES.items():
        if table["dim"] == dim and table["depth"] == depth:
            return size
    return "demo"


def _count(state, prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in state if k.startswith(prefix)})


def describe_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """What an official-layout state dict holds: ``{"kind", "model", "fields"}``, read from its
    shapes (width, depth, tubelet and patch; decoder; head and pooling; learned position)."""
    kind = "pretrain" if detect_format(state) == "official_pretrain" else "finetune"
    p = "encoder." if kind == "pretrain" else ""
    proj = state[f"{p}patch_embed.proj.weight"]  # (dim, C, tubelet, patch, patch)
    dim, depth = proj.shape[0], _count(state, f"{p}blocks.")
    size = _size(dim, depth)
    # heads leave no trace in the weights: the published size's, else the usual 64 channels per head
    fields = dict(img_size=224, num_frames=16, in_chans=proj.shape[1], tubelet=proj.shape[2], patch=proj.shape[3],
                  dim=dim, depth=depth, heads=VIT_SIZES[size]["heads"] if size in VIT_SIZES else max(1, dim // 64),
                  mlp_ratio=state[f"{p}blocks.0.mlp.fc1.weight"].shape[0] / dim)
    if kind == "pretrain":
        decoder_dim = state["encoder_to_decoder.weight"].shape[0]
        heads = (DECODER_SIZES[size]["decoder_heads"] if DECODER_SIZES[size]["decoder_dim"] == decoder_dim
                 else max(1, decoder_dim // 64))
        fields.update(decoder_dim=decoder_dim, decoder_depth=_count(state, "decoder.blocks."), decoder_heads=heads)
    else:
        fields.update(use_mean_pooling="fc_norm.weight" in state,
                      num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0)
        if "pos_embed" in state and not is_sinusoid(state["pos_embed"]):
            fields["learned_pos"] = True
    return {"kind": kind, "model": f"videomae_vit_{size}", "fields": fields}


def _qv_bias(config: dict) -> bool:
    """Whether a transformers VideoMAE ``config.json`` learns query and value biases: the field
    is ``qkv_bias`` up to transformers 5.17 and ``qv_bias`` from 5.18 on (default: True)."""
    return bool(config.get("qv_bias", config.get("qkv_bias", True)))


def _read_transformers_folder(folder: Path) -> tuple[dict, dict]:
    """A folder written by transformers' ``save_pretrained``: its state dict and what to build."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no config.json: not a transformers checkpoint folder")
    config = json.loads(config_file.read_text())
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file  # optional dependency, installed with transformers

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        state = read_state_dict(folder / "pytorch_model.bin")
    else:
        raise FileNotFoundError(f"{str(folder)!r} has config.json but neither model.safetensors nor pytorch_model.bin")
    dim = config["hidden_size"]
    size = _size(dim, config["num_hidden_layers"])
    fields = dict(img_size=config["image_size"], num_frames=config["num_frames"], tubelet=config["tubelet_size"],
                  patch=config["patch_size"], in_chans=config.get("num_channels", 3), dim=dim,
                  depth=config["num_hidden_layers"], heads=config["num_attention_heads"],
                  mlp_ratio=config["intermediate_size"] / dim, qkv_bias=_qv_bias(config),
                  ln_eps=config.get("layer_norm_eps", 1e-12))
    pretrain = any("PreTraining" in a for a in config.get("architectures") or ()) or any(k.startswith("decoder.") for k in state)
    if pretrain:
        fields.update(decoder_dim=config["decoder_hidden_size"], decoder_depth=config["decoder_num_hidden_layers"],
                      decoder_heads=config["decoder_num_attention_heads"],
                      normalization="videomae" if config.get("norm_pix_loss", True) else "none")
    else:
        fields.update(use_mean_pooling=config.get("use_mean_pooling", True),
                      num_classes=len(config.get("id2label") or {}) if "classifier.weight" in state else 0)
    grid = (config["num_frames"] // config["tubelet_size"],) + (config["image_size"] // config["patch_size"],) * 2
    return state, {"kind": "pretrain" if pretrain else "finetune", "model": f"videomae_vit_{size}",
                   "fields": fields, "grid": grid}
