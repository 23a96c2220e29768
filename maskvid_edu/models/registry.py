"""Model registry: every pre-training model by name, built from its config with overrides.

A model family registers one factory per published size (and one CPU preset named ``*_demo``),
each a plain ``def`` named like the model and built from the family's one size table::

    @register("videomae_vit_b")
    def videomae_vit_b(**overrides) -> VideoMAE:
        return VideoMAE(videomae_config("b", **overrides))

and every caller — trainer, CLI, notebooks — builds models the same way::

    model = create("videomae_vit_b", mask_ratio=0.75)   # any config field can be overridden
    list_models("videomae")                             # ['videomae_vit_b', ...]
    help(factory("videomae_vit_b"))                     # what the name builds

A factory receives the overrides as keyword arguments; :func:`replace_config` applies them to the
family's config dataclass and rejects a field that does not exist with a ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn as nn

__all__ = ["register", "create", "factory", "list_models", "replace_config", "config_differences",
           "format_config_differences"]

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Decorator: make ``factory(**overrides) -> nn.Module`` available as ``create(name)``.

    Names are unique; registering a name twice is a ``ValueError`` (two modules defining the same
    model would otherwise shadow each other silently, depending on import order).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _FACTORIES and _FACTORIES[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered (by {_FACTORIES[name].__module__})")
        _FACTORIES[name] = fn
        return fn

    return decorator


def create(name: str, **overrides) -> nn.Module:
    """Build the registered model ``name``; keyword arguments override fields of its config.

    Raises ``ValueError`` for an unknown name (listing the known ones) or an unknown override.
    """
    return factory(name)(**overrides)


def factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name`` (its docstring says what it builds); ValueError if unknown."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _FACTORIES[name]


def list_models(prefix: str | None = None) -> list[str]:
    """Registered model names, sorted; only those starting with ``prefix`` when given."""
    return sorted(n for n in _FACTORIES if prefix is None or n.startswith(prefix))


def replace_config(config, overrides: dict):
    """``dataclasses.replace(config, **overrides)`` with a clear error for unknown fields.

    Use in factories so every family reports a misspelt override the same way.
    """
    names = {f.name for f in dataclasses.fields(config) if f.init}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown override(s) {', '.join(map(repr, unknown))} for {type(config).__name__}; "
            f"valid fields: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(config, **overrides)


def config_differences(name_a: str, name_b: str, overrides_a: dict | None = None,
                       overrides_b: dict | None = None) -> list[tuple[str, object, object]]:
    """The config fields in which two registered models differ: ``[(field, a, b), ...]``.

    Both are built on the ``meta`` device (shapes only, nothing allocated), so comparing a CPU
    preset with a full-size model costs nothing. What a chapter's preset changes against the
    paper's model is exactly this list.
    """
    with torch.device("meta"):
        a = create(name_a, **(overrides_a or {})).config
        b = create(name_b, **(overrides_b or {})).config
    if type(a) is not type(b):
        raise ValueError(f"{name_a} ({type(a).__name__}) and {name_b} ({type(b).__name__}) are not "
                         "of one model family")
    return [(f.name, getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
            if getattr(a, f.name) != getattr(b, f.name)]


def format_config_differences(rows: list[tuple[str, object, object]], label_a: str, label_b: str) -> str:
    """:func:`config_differences` as an aligned text table with a header."""
    width = max([len("field")] + [len(r[0]) for r in rows])
    wa = max([len(label_a)] + [len(str(r[1])) for r in rows])
    lines = [f"{'field':<{width}}  {label_a:>{wa}}  {label_b}"]
    lines += [f"{name:<{width}}  {str(a):>{wa}}  {b}" for name, a, b in rows]
    return "\n".join(lines)
