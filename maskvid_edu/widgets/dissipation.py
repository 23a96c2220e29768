"""Mask-pattern dissipation (chapter 3): how far visible content leaks into hidden sites,
layer by layer, as curves, as maps over the image, and in a viewer.

The numbers come from :func:`maskvid_edu.analysis.sparse_dissipation.dissipation_profile`; this module only draws them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..analysis.sparse_dissipation import dissipation_layers, dissipation_profile
from ..data.transforms import denormalize
from ..masking import make_mask
from ._core import (DPI, MASK_ALPHA, MASK_GREY, PIXELS_NOTE, assemble, figure_to_png, mask_pixels, mask_row,
                    new_figure, show_image)

__all__ = ["render_dissipation", "render_dissipation_maps", "dissipation_viewer"]


def render_dissipation(
    profiles: Mapping[str, Mapping[str, Sequence[dict]]],
    *,
    metric: str = "reached",
    title: str | None = None,
    dpi: int = DPI,
) -> Figure:
    """Share of hidden sites reached by visible content, layer by layer: one panel per encoder.

    Args:
        profiles: ``{encoder name: {variant: profile}}`` where a profile is the list returned by
            :func:`maskvid_edu.analysis.sparse_dissipation.dissipation_profile` (e.g. variants ``"dense"`` and
            ``"sparse"`` of the same weights).
        metric: ``"reached"`` or ``"nonzero"`` (keys of the profile rows).
    """
    if metric not in ("reached", "nonzero"):
        raise ValueError(f"metric must be 'reached' or 'nonzero', got {metric!r}")
    if not profiles or not all(isinstance(v, Mapping) and v for v in profiles.values()):
        raise ValueError("profiles must map each encoder name to a non-empty {variant: profile} mapping")
    fig = new_figure(4.2 * len(profiles), 3.2, dpi)
    axes = fig.subplots(1, len(profiles), squeeze=False)[0]
    styles = {"dense": dict(color="tab:red", marker="o"), "sparse": dict(color="tab:blue", marker="s")}
    for ax, (encoder, variants) in zip(axes, profiles.items()):
        names = None
        for variant, rows in variants.items():
            rows = list(rows)
            if names is None:
                names = [r["name"] for r in rows]
            elif [r["name"] for r in rows] != names:
                raise ValueError(f"profiles of {encoder!r} do not list the same layers")
            ax.plot(range(len(rows)), [100 * r[metric] for r in rows], label=variant, lw=1.4, ms=3.5,
                    **styles.get(variant, {}))
        strides = [r["stride"] for r in next(iter(variants.values()))]
        starts = [0] + [i for i in range(1, len(strides)) if strides[i] != strides[i - 1]] + [len(strides)]
        for a, b in zip(starts[:-1], starts[1:]):  # a thin line and a label per stride
            if a > 0:
                ax.axvline(a - 0.5, color="0.8", lw=0.8)
            ax.text((a + b - 1) / 2, 101, f"/{strides[a]}", ha="center", va="bottom", fontsize=9, color="0.4")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=9)
        ax.set_ylim(-4, 110)
        ax.set_ylabel(f"hidden sites {metric} (%)", fontsize=9)
        ax.set_title(encoder, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=9, loc="center right")
    fig.suptitle(title or "mask-pattern dissipation: hidden sites whose activation depends on visible pixels",
                 fontsize=9)
    fig.tight_layout()
    return fig


def _overlay(pixels: np.ndarray, hidden: np.ndarray, reached: np.ndarray) -> np.ndarray:
    """Visible pixels as they are; hidden ones grey, or red where content reached them."""
    out = pixels.copy()
    grey = (1 - MASK_ALPHA) * pixels + MASK_ALPHA * MASK_GREY
    red = 0.35 * pixels + 0.65 * np.array([0.85, 0.1, 0.1])
    out[hidden & ~reached] = grey[hidden & ~reached]
    out[hidden & reached] = red[hidden & reached]
    return out


def render_dissipation_maps(
    image: torch.Tensor,
    mask: torch.Tensor,
    rows: Mapping[str, dict],
    *,
    input_normalized: bool = True,
    title: str | None = None,
    dpi: int = DPI,
) -> Figure:
    """The input with its hidden patches, and where visible content has leaked after one layer.

    Args:
        image: ``(3, H, W)`` (ImageNet-normalised unless ``input_normalized=False``).
        mask: bool ``(h·w,)`` or ``(1, h·w)``, True = hidden 32-pixel patch.
        rows: ``{variant: profile row}``, rows of :func:`maskvid_edu.analysis.sparse_dissipation.dissipation_profile`
            computed with ``return_maps=True`` (their ``"map"`` is ``(B, H', W')``; sample 0 is drawn).
    Hidden sites are grey where still empty and red where visible content reached them.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a (3, H, W) tensor, got {getattr(image, 'shape', type(image))}")
    H, W = image.shape[1:]
    grid = (1, H // 32, W // 32)
    row = mask_row(mask, grid[1] * grid[2])
    pixels = denormalize(image.detach().float().cpu(), channel_dim=0) if input_normalized else image.detach().float().cpu()
    pixels = pixels.clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, 3)
    hidden = mask_pixels(row, grid, 1, 32)[0].numpy()  # (H, W)
    fig = new_figure(1.9 * (1 + len(rows)), 2.5, dpi)
    axes = fig.subplots(1, 1 + len(rows), squeeze=False)[0]
    show_image(axes[0], _overlay(pixels, hidden, np.zeros_like(hidden)), (32, 32))
    axes[0].set_title(f"input: {int(row.sum())} of {row.numel()} patches hidden", fontsize=9)
    for ax, (variant, r) in zip(axes[1:], rows.items()):
        if "map" not in r:
            raise ValueError(f"row {variant!r} has no 'map': compute the profile with return_maps=True")
        m = r["map"][0]  # (H', W')
        s = H // m.shape[0]
        reached = m.repeat_interleave(s, 0).repeat_interleave(s, 1).numpy()  # (H, W)
        show_image(ax, _overlay(pixels, hidden, reached), (32, 32))
        ax.set_title(f"{variant}: {100 * r['reached']:.0f} % reached", fontsize=9)
    name = next(iter(rows.values()))
    fig.suptitle(title or f"after {name['name']} (stride {name['stride']})", fontsize=9)
    fig.text(0.5, 0.01, "red: hidden sites already carrying visible content; grey: still empty\n" + PIXELS_NOTE,
             ha="center", va="bottom", fontsize=9, color="0.35")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.16, top=0.8, wspace=0.05)
    return fig


def dissipation_viewer(
    image: torch.Tensor,
    encoders: Mapping[str, "torch.nn.Module"],
    *,
    ratio: float = 0.75,
    seed: int = 0,
    layer: int = 0,
    encoder: str | None = None,
    input_normalized: bool = True,
    dpi: int = DPI,
):
    """An interactive view of mask-pattern dissipation; returned, not displayed.

    Controls: encoder (dropdown over ``encoders``), layer (slider over the encoder's
    :func:`~maskvid_edu.analysis.sparse_dissipation.dissipation_layers`), ratio (share of 32-pixel patches hidden,
    0.25–0.9), seed. The view is :func:`render_dissipation_maps` for the dense and the sparse run
    of the same weights. Display it with :func:`show`.

    Args:
        image: ``(3, H, W)``, H and W multiples of 32.
        encoders: ``{name: encoder}`` built from :mod:`maskvid_edu.sparse` layers.
    """
    import ipywidgets as widgets

    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or image.shape[1] % 32 \
            or image.shape[2] % 32:
        raise ValueError(f"image must be (3, H, W) with H and W multiples of 32, got {getattr(image, 'shape', None)}")
    if not encoders:
        raise ValueError("encoders must name at least one encoder")
    names = list(encoders)
    encoder = names[0] if encoder is None else encoder
    if encoder not in encoders:
        raise ValueError(f"encoder must be one of {names}, got {encoder!r}")
    depth = {n: len(dissipation_layers(e)) for n, e in encoders.items()}
    if not 0 <= layer < depth[encoder]:
        raise ValueError(f"layer must be in [0, {depth[encoder] - 1}] for {encoder!r}, got {layer}")
    h, w = image.shape[1] // 32, image.shape[2] // 32
    x = image.detach().float().cpu().unsqueeze(0)  # (1, 3, H, W)

    controls = {
        "encoder": widgets.Dropdown(options=names, value=encoder, description="encoder"),
        "layer": widgets.IntSlider(value=layer, min=0, max=depth[encoder] - 1, description="layer",
                                   continuous_update=False),
        "ratio": widgets.FloatSlider(value=ratio, min=0.25, max=0.9, step=0.05, description="ratio ρ",
                                     continuous_update=False, readout_format=".2f"),
        "seed": widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                       layout=widgets.Layout(width="160px")),
    }
    image_widget = widgets.Image(format="png")
    cache: dict = {}

    def profiles(name: str, rho: float, s: int):
        key = (name, round(rho, 4), s)
        if key not in cache:
            mask = make_mask("random", 1, (1, h, w), rho, generator=torch.Generator().manual_seed(int(s)))  # (1, h·w)
            cache[key] = (mask, {v: dissipation_profile(encoders[name], x, mask, sparse=v == "sparse", return_maps=True)
                                 for v in ("dense", "sparse")})
        return cache[key]

    def render(_change=None) -> None:
        name = controls["encoder"].value
        if controls["layer"].max != depth[name] - 1:
            controls["layer"].max = depth[name] - 1  # may clamp the value, which re-renders
        mask, prof = profiles(name, controls["ratio"].value, controls["seed"].value)
        i = min(controls["layer"].value, depth[name] - 1)
        fig = render_dissipation_maps(image, mask[0], {v: p[i] for v, p in prof.items()},
                                      input_normalized=input_normalized,
                                      title=f"{name}, layer {i}: {prof['dense'][i]['name']} "
                                            f"(stride {prof['dense'][i]['stride']})", dpi=dpi)
        image_widget.value = figure_to_png(fig, dpi)

    return assemble(controls, image_widget, render)
