"""Render functions draw what the mask says; explorers re-render when a control moves."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from maskvid_edu import widgets
from maskvid_edu.data.transforms import normalize
from maskvid_edu.masking import make_mask, tube_mask
from maskvid_edu.widgets import (
    MASK_ALPHA,
    MASK_GREY,
    figure_to_png,
    mask_explorer,
    mask_pixels,
    masked_frames,
    render_copy_baseline,
    render_mask_grid,
    render_mask_view,
    render_strategies,
    show,
    to_rgb,
)


def _clip(T=8, H=32, W=48, seed=0):
    """A clip whose [0, 1] pixels are exact multiples of 1/255, and its normalised version."""
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (3, T, H, W), generator=gen).double() / 255
    return pixels, normalize(pixels, channel_dim=0).float()


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(png)).size


def test_to_rgb_undoes_the_imagenet_normalisation():
    pixels, video = _clip()
    rgb = to_rgb(video)
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 32, 48, 3)
    assert np.array_equal(rgb, (pixels * 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy())
    assert np.array_equal(to_rgb(pixels.float(), input_normalized=False), rgb)
    batch = torch.stack([video, video.flip(1)])
    assert np.array_equal(to_rgb(batch, sample=1), rgb[::-1])


def test_mask_pixels_covers_each_token_tubelet():
    grid = (2, 2, 3)
    mask = torch.zeros(12, dtype=torch.bool)
    mask[1 * 6 + 1 * 3 + 2] = True  # token (slot 1, y 1, x 2)
    pix = mask_pixels(mask, grid, tubelet=2, patch=4)
    assert pix.shape == (4, 8, 12)
    expected = torch.zeros(4, 8, 12, dtype=torch.bool)
    expected[2:4, 4:8, 8:12] = True
    assert torch.equal(pix, expected)


def test_masked_frames_greys_exactly_the_masked_patches():
    pixels, video = _clip()
    grid = (4, 2, 3)  # tubelet 2, patch 16
    mask = make_mask("random", 1, grid, 0.5, generator=torch.Generator().manual_seed(1))[0]
    frames = [0, 3, 6]
    out = masked_frames(video, mask, grid, frames)
    assert out.dtype == np.uint8 and out.shape == (3, 32, 48, 3)
    hidden = mask_pixels(mask, grid, 2, 16)[frames].numpy()  # (F, H, W)
    plain = to_rgb(video)[frames]
    blend = ((1 - MASK_ALPHA) * pixels + MASK_ALPHA * MASK_GREY)[:, frames].permute(1, 2, 3, 0)
    blend = (blend * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(out[~hidden], plain[~hidden])  # visible pixels untouched
    assert np.array_equal(out[hidden], blend[hidden])  # hidden pixels greyed by the stated formula
    # on a white clip the hidden pixels are all one grey, the visible ones stay white
    white = normalize(torch.ones(3, 8, 32, 48), channel_dim=0)
    w = masked_frames(white, mask, grid)
    grey = round(255 * (1 - MASK_ALPHA + MASK_ALPHA * MASK_GREY))
    assert np.array_equal(w, np.where(mask_pixels(mask, grid, 2, 16).numpy()[..., None], grey, 255).repeat(3, -1))


def test_masked_frames_picks_the_sample_of_a_batch():
    _, a = _clip(seed=0)
    _, b = _clip(seed=1)
    grid = (4, 2, 3)
    masks = make_mask("tube", 2, grid, 0.5, generator=torch.Generator().manual_seed(2))
    out = masked_frames(torch.stack([a, b]), masks, grid, np.array([1, 2]), sample=1)
    assert np.array_equal(out, masked_frames(b, masks[1], grid, [1, 2]))
    # a single (N,) mask applies to whichever clip is drawn
    assert np.array_equal(masked_frames(torch.stack([a, b]), masks[1], grid, [1, 2], sample=1), out)


def test_masked_frames_rejects_bad_input():
    _, video = _clip()
    mask = torch.zeros(24, dtype=torch.bool)
    with pytest.raises(ValueError, match="does not tile"):
        masked_frames(video, mask, (3, 2, 4))
    with pytest.raises(ValueError, match="frames"):
        masked_frames(video, mask, (4, 2, 3), frames=[8])
    with pytest.raises(ValueError, match="N = 24"):
        masked_frames(video, mask[:20], (4, 2, 3))
    with pytest.raises(ValueError, match="video must have shape"):
        masked_frames(video[:2], mask, (4, 2, 3))


def _image_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.images]


def test_render_mask_grid_draws_one_panel_per_frame_at_the_given_dpi():
    _, video = _clip(T=16, H=64, W=64)
    grid = (8, 4, 4)
    mask = tube_mask(1, grid, 0.75, generator=torch.Generator().manual_seed(0))
    fig = render_mask_grid(video, mask, grid, frames=[0, 5, 15], dpi=60)
    assert isinstance(fig, Figure) and len(_image_axes(fig)) == 3
    assert [ax.get_title() for ax in _image_axes(fig)] == ["frame 0 (slot 0)", "frame 5 (slot 2)", "frame 15 (slot 7)"]
    shown = _image_axes(fig)[1].images[0].get_array()
    assert np.array_equal(np.asarray(shown), masked_frames(video, mask, grid, [5])[0])
    assert "96 of 128 tokens hidden" in fig._suptitle.get_text()
    assert any("ImageNet normalisation" in t.get_text() for t in fig.texts)
    width, height = fig.get_size_inches() * 60
    assert _png_size(figure_to_png(fig, dpi=60)) == (round(width), round(height))
    assert len(_image_axes(render_mask_grid(video, mask, grid))) == 8  # default: one frame per slot
    with pytest.raises(ValueError, match="dpi"):
        render_mask_grid(video, mask, grid, dpi=300)


def test_render_strategies_rows_are_strategies_and_columns_frames():
    _, video = _clip(T=16, H=64, W=64)
    fig = render_strategies(video, ("random", "tube", "running_cell"), ratio={"running_cell": 0.5}, frames=[0, 8])
    axes = _image_axes(fig)
    assert len(axes) == 6
    labels = [ax.get_ylabel() for ax in axes if ax.get_ylabel()]
    assert labels == [
        "random\nρ = 0.9\n115/128 hidden",
        "tube\nρ = 0.9\n112/128 hidden",
        "running cell\nρ = 0.5\n64/128 hidden",
    ]
    # the tube row shows the same hidden patches in both frames (same slot pattern), drawn exactly
    tube = make_mask("tube", 1, (8, 4, 4), 0.9, generator=torch.Generator().manual_seed(0))[0]
    assert np.array_equal(np.asarray(axes[2].images[0].get_array()), masked_frames(video, tube, (8, 4, 4), [0])[0])
    assert np.array_equal(np.asarray(axes[3].images[0].get_array()), masked_frames(video, tube, (8, 4, 4), [8])[0])


def test_render_mask_view_and_copy_baseline_figures():
    _, video = _clip(T=16, H=64, W=64)
    grid = (8, 4, 4)
    mask = make_mask("frame", 1, grid, 0.5, generator=torch.Generator().manual_seed(0))
    fig = render_mask_view(video, mask, grid, frame=3)
    assert len(_image_axes(fig)) == 1 + 8  # the frame, then one map per slot
    maps = [np.asarray(ax.images[0].get_array()) for ax in _image_axes(fig)[1:]]
    for s, m in enumerate(maps):  # dark = hidden: a frame mask makes a slot's map all dark or all light
        assert (m < 0.5).all() == bool(mask[0, s * 16]) and (m < 0.5).any() == bool(mask[0, s * 16])
    fig = render_copy_baseline(video, ("random", "tube"), ratio=0.75, frame=2)
    axes = _image_axes(fig)
    assert len(axes) == 6 and all(" dB" in axes[i].get_ylabel() for i in (0, 3))
    # the original column is the un-normalised frame itself
    assert np.array_equal(np.asarray(axes[2].images[0].get_array()), to_rgb(video)[2])


def test_figure_to_png_returns_png_bytes_of_the_figure_size():
    fig = Figure(figsize=(2.0, 1.5))
    fig.add_subplot().plot([0, 1])
    assert _png_size(figure_to_png(fig, dpi=80)) == (160, 120)
    with pytest.raises(ValueError, match="dpi"):
        figure_to_png(fig, dpi=200)  # over the 150-dpi cap


def test_mask_explorer_rerenders_when_a_control_changes():
    ipywidgets = pytest.importorskip("ipywidgets")
    _, video = _clip(T=16, H=64, W=64)
    box = mask_explorer(video, strategy="tube", ratio=0.9)
    assert isinstance(box, ipywidgets.VBox) and box.children[1] is box.image
    assert set(box.controls) == {"strategy", "ratio", "seed", "frame"}
    assert box.controls["ratio"].continuous_update is False and box.controls["frame"].continuous_update is False
    seen = [bytes(box.image.value)]
    _png_size(seen[0])
    moves = [("ratio", 0.5), ("strategy", "random"), ("seed", 3), ("frame", 9), ("strategy", "running_cell")]
    for name, value in moves:
        box.controls[name].value = value
        seen.append(bytes(box.image.value))
        assert seen[-1] != seen[-2], name
    box.controls["ratio"].value = 0.9
    box.controls["ratio"].value = 0.5  # back to a state already shown: the same picture
    assert bytes(box.image.value) == seen[-1]
    with pytest.raises(ValueError, match="strategy"):
        mask_explorer(video, strategy="checkerboard")


def test_mask_explorer_reports_an_impossible_mask_instead_of_failing():
    pytest.importorskip("ipywidgets")
    _, video = _clip(T=4, H=48, W=48)  # grid (2, 3, 3): odd, no 2×2 running cells
    box = mask_explorer(video, strategy="tube")
    before = bytes(box.image.value)
    box.controls["strategy"].value = "running_cell"
    assert bytes(box.image.value) != before


def test_show_displays_controls_and_a_png_that_follows_the_controls():
    pytest.importorskip("ipywidgets")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    _, video = _clip(T=16, H=64, W=64)
    box = mask_explorer(video)
    with capture_output() as captured:
        show(box)
        box.controls["ratio"].value = 0.5
    controls, first, update = captured.outputs
    assert "application/vnd.jupyter.widget-view+json" in controls.data
    assert first.data["image/png"] != update.data["image/png"]
    assert update.update and update.transient["display_id"] == first.transient["display_id"]
    assert base64.b64decode(update.data["image/png"]) == bytes(box.image.value)
    with pytest.raises(ValueError, match="explorer"):
        show(object())


def test_every_figure_function_draws_at_the_book_dpi():
    """110 dpi for every figure of the book: each ``render_*`` function and each viewer that
    takes a ``dpi`` defaults to :data:`widgets.DPI`, and a figure comes out at that dpi."""
    import inspect

    assert widgets.DPI == 110 and widgets.MIN_FONT >= 9
    takes_dpi = []
    for name in widgets.__all__:
        obj = getattr(widgets, name)
        if callable(obj) and "dpi" in inspect.signature(obj).parameters:
            takes_dpi.append(name)
            assert inspect.signature(obj).parameters["dpi"].default == widgets.DPI, name
    assert len(takes_dpi) >= 15, takes_dpi
    fig = widgets.render_momentum_schedules(epochs=4, steps_per_epoch=5, every=1)
    assert fig.dpi == widgets.DPI
    with pytest.raises(ValueError, match=r"dpi must be in \[20, 150\]"):
        widgets.figure_to_png(fig, dpi=300)
