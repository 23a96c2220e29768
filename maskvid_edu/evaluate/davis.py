"""DAVIS video object segmentation by label propagation, with any encoder of the library.

:func:`load_pretrained` builds the model a trainer checkpoint records and loads its weights;
:func:`downstream_encoder` takes the part downstream tasks use (``model.encoder``);
:func:`propagation_extractor` wraps it as a frame → feature-map
:class:`~maskvid_edu.evaluate.propagation.FeatureExtractor`; :func:`evaluate_davis` propagates
the first-frame masks of every sequence of a DAVIS-layout folder and scores them with J&F
(:func:`~maskvid_edu.evaluate.metrics.davis_jf`). ``maskvid-edu propagate`` is these four calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.davis import list_davis_sequences, read_davis_sequence
from ..data.transforms import normalize
from ..models import create, list_models
from ..models.vit import VisionTransformer
from ..train import load_checkpoint
from ..utils import parse_key_value, require_path, resolve_device, state_dict_mismatch
from .finetune import VideoClassifier
from .metrics import davis_jf
from .propagation import FeatureExtractor, PropagationConfig, propagate_masks, write_davis_masks

__all__ = ["downstream_encoder", "load_pretrained", "encoder_stride", "propagation_extractor", "evaluate_davis",
           "sequence_jf"]


def downstream_encoder(model):
    """The part of a model that downstream tasks use: ``model.downstream_encoder()`` for a
    pre-training model (``model.encoder``, or V-JEPA's EMA target), else ``model.encoder`` when
    it has one, else the model itself."""
    if callable(getattr(model, "downstream_encoder", None)):
        return model.downstream_encoder()
    encoder = getattr(model, "encoder", None)
    return encoder if isinstance(encoder, torch.nn.Module) else model


def load_pretrained(ckpt=None, model: str | None = None, model_args=()) -> tuple[torch.nn.Module, str]:
    """Build the model a checkpoint was trained with and load its weights; return ``(model, words)``.

    ckpt: a ``checkpoint.pt`` written by the trainer (``maskvid-edu pretrain`` / ``finetune``,
        ``train_or_load``), or None for a randomly initialised ``model``.
    model: registered model name; default: the one recorded in the checkpoint's ``meta``.
    model_args: ``KEY=VALUE`` config overrides (applied on top of the recorded ones).

    A fine-tuning checkpoint (``meta["kind"] == "finetune"``) gives back its
    :class:`~maskvid_edu.evaluate.finetune.VideoClassifier`. Weights that do not fit the model
    raise one ValueError naming the file, the model the checkpoint records, the model built,
    what differs (missing and unexpected keys, each wrong-shape key with both shapes) and the
    flags that fix it.
    """
    overrides = dict(parse_key_value(item) for item in model_args or ())
    state, meta = None, {}
    if ckpt is not None:
        path = require_path(ckpt, "--ckpt", "checkpoint")
        try:
            loaded = load_checkpoint(path)
        except ValueError as err:
            raise ValueError(f"--ckpt: {err}") from err
        state, meta = loaded["model"], loaded.get("meta") or {}
    name = model or meta.get("model")
    if name is None:
        raise ValueError("--model is needed: the checkpoint does not record which registered model it holds "
                         f"(registered: {', '.join(list_models())})")
    if name not in list_models():
        raise ValueError(f"--model {name!r} is not registered; registered models: {', '.join(list_models())}")
    if name == meta.get("model"):
        overrides = {**(meta.get("model_overrides") or {}), **overrides}
    net = create(name, **overrides)
    words = f"{name} (random initialisation)"
    if meta.get("kind") == "finetune":
        net = VideoClassifier(downstream_encoder(net), int(meta["num_classes"]), **(meta.get("classifier") or {}))
    if state is not None:
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            recorded = meta.get("model")
            found = f"the weights of {recorded!r}" if recorded else "weights of a model it does not record"
            fix = ("leave out --model to build the recorded model, or pass the --model / --model-arg it was trained with"
                   if recorded and recorded != name else "pass the --model-arg values it was trained with")
            raise ValueError(f"--ckpt {str(ckpt)!r} holds {found}, which do not fit model {name!r} with overrides "
                             f"{overrides}: {state_dict_mismatch(net.state_dict(), state) or err}; {fix}") from err
        words = f"{name} from {ckpt}"
    return net, words


def encoder_stride(encoder) -> int:
    """Pixels per feature cell of an encoder, for resizing frames to a multiple of it."""
    if isinstance(encoder, VisionTransformer):
        return encoder.config.patch
    return 32  # the sparse ConvNets mask 32-pixel patches and need sizes that are multiples of 32


def propagation_extractor(encoder, *, stage: int = 2, batch_size: int = 8):
    """A :class:`~maskvid_edu.evaluate.propagation.FeatureExtractor` for a library encoder.

    A ViT reads each frame as a static clip of ``tubelet`` copies (one time step of tokens); a
    ConvNet (``forward_stages``) gives the map of stage ``stage`` (2: stride 16, the usual choice
    for ResNets in label propagation).
    """
    if isinstance(encoder, VisionTransformer):
        return FeatureExtractor(encoder, output="tokens", patch_size=encoder.config.patch,
                                frames_per_clip=encoder.config.tubelet, batch_size=batch_size)
    if callable(getattr(encoder, "forward_stages", None)):
        return FeatureExtractor(lambda x: encoder.forward_stages(x)[stage], output="map", batch_size=batch_size)
    return FeatureExtractor(encoder, output="map", batch_size=batch_size)


def evaluate_davis(encoder, root, out_dir=None, config=None, *, split: str = "val", year: str = "2017",
                   resolution: str = "480p", sequences=None, size: int | None = None, stage: int = 2,
                   device="auto", progress: bool = False) -> dict:
    """Semi-supervised video object segmentation by label propagation on a DAVIS-layout root.

    For every sequence of ``ImageSets/<year>/<split>.txt`` (or ``sequences``): frames are
    ImageNet-normalised, resized so that both sides are multiples of the encoder's stride
    (``size``: the shorter side first, else the frames' own size), encoded frame by frame, and
    the first annotation is propagated (:func:`~maskvid_edu.evaluate.propagation.propagate_masks`,
    ``config`` default DINO's) at the annotation's resolution. With ``out_dir`` the predictions
    are written as DAVIS PNGs (``<out_dir>/<sequence>/00000.png …``).

    Returns :func:`~maskvid_edu.evaluate.metrics.davis_jf`'s dict plus ``"sequences"``:
    ``{name: {"J&F", "J", "F"}}`` (means over the sequence's objects) and ``"predictions"``:
    ``{name: (T, H, W) int64}``.
    """
    root = require_path(root, "--data", "DAVIS root", kind="dir")
    for sub in (Path("JPEGImages") / resolution, Path("Annotations") / resolution):
        require_path(root / sub, "--data", f"the {sub} folder of the DAVIS layout", kind="dir")
    names = list(sequences) if sequences else list_davis_sequences(root, split, year)
    if not names:
        raise ValueError(f"--data {str(root)!r}: ImageSets/{year}/{split}.txt lists no sequence")
    cfg = config or PropagationConfig.dino()
    dev = resolve_device(device)
    was_training = encoder.training
    encoder.eval().to(dev)
    extractor = propagation_extractor(encoder, stage=stage)
    stride = encoder_stride(encoder)
    pairs, predictions = {}, {}
    try:
        for name in names:
            frames, gt = read_davis_sequence(root, name, resolution=resolution)  # (T, 3, H, W), (T, H, W)
            H, W = frames.shape[-2:]
            scale = 1.0 if size is None else size / min(H, W)
            h = max(stride, int(H * scale) // stride * stride)
            w = max(stride, int(W * scale) // stride * stride)
            x = normalize(frames, channel_dim=1)  # (T, 3, H, W)
            if (h, w) != (H, W):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            features = extractor(x.to(dev)).cpu()  # (T, D, h/s, w/s), L2-normalised
            pred = propagate_masks(features, gt[0], cfg, progress=progress)  # (T, H, W)
            if out_dir is not None:
                write_davis_masks(pred, out_dir, name)
            pairs[name] = (gt, pred)
            predictions[name] = pred
    finally:
        encoder.train(was_training)
    scores = sequence_jf(pairs)
    scores["predictions"] = predictions
    return scores


def sequence_jf(pairs: dict) -> dict:
    """:func:`~maskvid_edu.evaluate.metrics.davis_jf` of ``{sequence: (truth (T, H, W),
    prediction (T, H, W))}`` plus ``"sequences"``: ``{name: {"J&F", "J", "F"}}``, each the mean
    over the sequence's objects (a sequence whose first mask has no object is left out)."""
    scores = davis_jf(pairs)
    per_sequence = {}
    for name in pairs:
        objs = [v for k, v in scores["per_object"].items() if k.rsplit("_", 1)[0] == name]
        if objs:
            j = float(np.mean([o["J"] for o in objs]))
            f = float(np.mean([o["F"] for o in objs]))
            per_sequence[name] = {"J&F": (j + f) / 2, "J": j, "F": f}
    scores["sequences"] = per_sequence
    return scores
