"""The propagation viewer: colour overlay, per-frame J, the figure, and the widget with its static view."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from maskvid_edu.data.davis import DAVIS_PALETTE
from maskvid_edu.data.transforms import normalize
from maskvid_edu.widgets import frame_jaccard, overlay_ids, propagation_viewer, render_propagation


def _sequence(T: int = 5, H: int = 20, W: int = 24):
    """A grey clip with a square (id 1) moving right by 2 px per frame; the prediction stays put."""
    frames = torch.full((T, 3, H, W), 0.5)
    gt = torch.zeros(T, H, W, dtype=torch.long)
    for t in range(T):
        gt[t, 5:11, 2 + 2 * t : 8 + 2 * t] = 1
    copy = gt[:1].expand(T, -1, -1).clone()
    return frames, gt, copy


def test_overlay_colours_objects_and_outlines_them():
    image = np.full((6, 6, 3), 100, dtype=np.uint8)
    ids = np.zeros((6, 6), dtype=np.int64)
    ids[1:5, 1:5] = 2
    out = overlay_ids(image, ids, alpha=0.5)
    assert np.array_equal(out[0, 0], image[0, 0]), "background is left as it is"
    assert np.array_equal(out[1, 1], DAVIS_PALETTE[2]), "a boundary pixel gets the full colour"
    assert np.array_equal(out[2, 2], np.round(0.5 * 100 + 0.5 * DAVIS_PALETTE[2].astype(float)).astype(np.uint8))
    with pytest.raises(ValueError, match="same size"):
        overlay_ids(image, ids[:5])
    with pytest.raises(ValueError, match="alpha"):
        overlay_ids(image, ids, alpha=2.0)


def test_frame_jaccard_by_hand():
    _, gt, copy = _sequence()
    assert frame_jaccard(gt, copy, 0) == 1.0
    # frame 1: boxes of 6 columns overlap in 4 → 24 / 48
    assert frame_jaccard(gt, copy, 1) == pytest.approx(24 / 48)
    assert frame_jaccard(gt, gt, 4) == 1.0


def test_render_propagation_panels_titles_and_normalised_input():
    frames, gt, copy = _sequence()
    fig = render_propagation(frames, {"copy": copy, "truth again": gt}, 1, gt=gt, dpi=60)
    axes = fig.axes
    assert len(axes) == 3
    assert axes[0].get_title() == "ground truth" and axes[1].get_title() == "copy\nJ = 0.50"
    assert axes[2].get_title().endswith("J = 1.00")
    drawn = np.asarray(axes[0].images[0].get_array())
    assert np.array_equal(drawn, overlay_ids(np.full((20, 24, 3), 128, np.uint8), gt[1].numpy()))
    # normalised frames give the same picture once un-normalised
    again = render_propagation(normalize(frames, channel_dim=1), copy, 1, input_normalized=True, dpi=60)
    assert np.array_equal(np.asarray(again.axes[0].images[0].get_array()),
                          overlay_ids(np.full((20, 24, 3), 128, np.uint8), copy[1].numpy()))
    with pytest.raises(ValueError, match="frame"):
        render_propagation(frames, copy, 5)
    with pytest.raises(ValueError, match="prediction"):
        render_propagation(frames, copy[:3], 0)
    with pytest.raises(ValueError, match="dpi"):
        render_propagation(frames, copy, 0, dpi=300)


def test_propagation_viewer_rerenders_and_shows_a_static_picture():
    pytest.importorskip("ipywidgets")
    frames, gt, copy = _sequence()
    box = propagation_viewer(frames, {"copy": copy}, gt=gt, frame=0, dpi=60)
    assert set(box.controls) == {"frame", "alpha"} and box.children[1] is box.image
    assert box.controls["frame"].max == 4 and box.controls["frame"].continuous_update is False
    first = bytes(box.image.value)
    assert Image.open(io.BytesIO(first)).format == "PNG"
    box.controls["frame"].value = 3
    assert bytes(box.image.value) != first
    box.controls["frame"].value = 0
    assert bytes(box.image.value) == first
    box.controls["alpha"].value = 0.2
    assert bytes(box.image.value) != first
