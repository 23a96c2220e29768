"""Exercises of the book, with checkers that say *what* to change.

Each chapter asks the reader to write one piece of the library themselves — a tube mask, the
patch layout, VideoMAE's normalised target, an EMA step, the momentum schedule, the motion
target, a sparse convolution, a step of label propagation, mixup's targets, layer decay, the region similarity of DAVIS, the
FLOPs of a block, the linear learning-rate rule, the loader workers a GPU needs, V-JEPA's feature loss — and to check it::

    from maskvid_edu.exercises import check, describe

    print(describe("tube_mask"))        # the task and the signature to write

    def tube_mask(batch, grid, ratio, generator):
        ...

    check("tube_mask", tube_mask)       # prints a ✓/✗ report, returns True or False

The checker tests properties one at a time against the library's own implementation
(:mod:`maskvid_edu.masking`, :mod:`~maskvid_edu.patches`, :mod:`~maskvid_edu.ema`,
:mod:`~maskvid_edu.targets`, :mod:`~maskvid_edu.sparse`, :mod:`~maskvid_edu.evaluate.propagation`,
:mod:`~maskvid_edu.evaluate.finetune`, :mod:`~maskvid_edu.evaluate.metrics`, :mod:`~maskvid_edu.measure.flops`, :mod:`~maskvid_edu.launch`, :mod:`~maskvid_edu.models.vjepa`) and stops at the first that fails,
with a hint aimed at the slip it recognised. A wrong answer never raises; an exception inside
your function is caught and shown with its last traceback line and the line of your code
that raised it.

================================  ==================================================
name                              you write
================================  ==================================================
``num_masked``                    ``num_masked(units, ratio) -> int``
``tube_mask``                     ``tube_mask(batch, grid, ratio, generator)``
``patchify``                      ``patchify(video, tubelet, patch)``
``normalize_patches_videomae``    ``normalize_patches_videomae(patches)``
``ema_update``                    ``ema_update(target_params, online_params, momentum)``
``cosine_momentum``               ``cosine_momentum(epoch, step_in_epoch, steps_per_epoch, epochs, base, final)``
``rgb_difference``                ``rgb_difference(video)``
``sparse_conv``                   ``sparse_conv(x, mask, weight, bias)``
``topk_propagation``              ``topk_propagation(query, keys, key_labels, topk, temperature)``
``mix_targets``                   ``mix_targets(labels, num_classes, lam, smoothing)``
``layer_lr_scale``                ``layer_lr_scale(layer, num_layers, layer_decay) -> float``
``region_similarity``             ``region_similarity(truth, pred) -> float``
``vit_block_flops``               ``vit_block_flops(dim, num_tokens, mlp_ratio=4.0) -> int``
``linear_lr_scaling``             ``linear_lr_scaling(base_lr, batch_size, gpus, accum_steps)``
``loader_workers``                ``loader_workers(batch_size, step_seconds, decodes_per_second, views=1)``
``vjepa_loss``                    ``vjepa_loss(pred, target_features)``
================================  ==================================================
"""

from __future__ import annotations

from typing import Callable

# each module registers its exercises on import, in the order of the book
from . import masking, patches, sparse, ema, targets, propagation, finetune, metrics, flops, launch, loading, features  # noqa: F401, I001
from ._checker import REGISTRY, Report, run

__all__ = ["check", "evaluate", "describe", "list_exercises", "Report"]


def list_exercises() -> list[str]:
    """Names of every exercise, in the order of the book."""
    return list(REGISTRY)


def _get(name: str):
    if name not in REGISTRY:
        raise ValueError(f"name must be one of the exercises {list_exercises()}, got {name!r}")
    return REGISTRY[name]


def describe(name: str) -> str:
    """The task of exercise ``name``: what to write, its signature, what it must return."""
    return _get(name).describe()


def evaluate(name: str, your_function: Callable) -> Report:
    """Check ``your_function`` against exercise ``name`` without printing; returns a :class:`Report`
    (truthy when every property holds; ``.failed`` and ``.hint`` say what to change)."""
    return run(_get(name), your_function)


def check(name: str, your_function: Callable) -> bool:
    """Check ``your_function`` against exercise ``name``, print a ✓/✗ report and return whether
    every property holds. Raises ``ValueError`` only for an unknown exercise ``name``; a wrong or
    crashing function is reported, never raised."""
    report = evaluate(name, your_function)
    print(report.text)
    return report.passed
