"""Motion pictures show the difference they claim to show; the probe plot shows the numbers it
is given; the motion explorer re-renders when a control moves."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from maskvid_edu.analysis.compare import ComparisonResult, still_pixel_share
from maskvid_edu.data.transforms import normalize
from maskvid_edu.patches import unpatchify
from maskvid_edu.targets import make_targets
from maskvid_edu.tokenizers import VQVAE, vqvae_config
from maskvid_edu.widgets import (
    figure_to_png,
    difference_image,
    motion_explorer,
    render_motion_targets,
    render_motion_view,
    render_probe_curves,
    render_target_views,
    show,
    still_map,
)


def _moving_square(F=5, size=32, side=8, step=2):
    """[0, 1] pixels: a bright square moving right by ``step`` pixels per frame on a grey field."""
    pixels = torch.full((3, F, size, size), 0.3)
    for f in range(F):
        pixels[:, f, 8:8 + side, 2 + f * step:2 + f * step + side] = 0.9
    return pixels


def _image(ax) -> np.ndarray:
    return np.asarray(ax.images[0].get_array())


def test_difference_image_is_grey_where_nothing_changes():
    zero = difference_image(torch.zeros(3, 4, 5))
    assert zero.dtype == np.uint8 and zero.shape == (4, 5, 3) and (zero == 128).all()
    d = torch.zeros(3, 2, 2)
    d[0, 0, 0], d[1, 1, 1] = 0.1, -0.1
    img = difference_image(d, gain=2.0)
    assert img[0, 0, 0] == round(255 * 0.7) and img[1, 1, 1] == round(255 * 0.3)
    assert difference_image(torch.ones(3, 1, 1), gain=4.0)[0, 0, 0] == 255  # clamped
    with pytest.raises(ValueError, match="diff"):
        difference_image(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="gain"):
        difference_image(torch.zeros(3, 2, 2), gain=0)
    mask = still_map(d, threshold=0.05)
    assert mask.dtype == bool and mask.sum() == 2 and not mask[0, 0] and not mask[1, 1]


def test_motion_targets_figure_shows_frames_differences_and_still_shares():
    pixels = _moving_square()
    video = normalize(pixels, channel_dim=0)
    fig = render_motion_targets(video, frames=[0, 3], threshold=0.02)
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(3, 2)
    d3 = pixels[:, 4] - pixels[:, 3]
    assert np.array_equal(_image(axes[1, 1]), difference_image(d3))
    assert np.array_equal(_image(axes[2, 1]), ~still_map(d3, 0.02))  # white = moving
    shares = still_pixel_share(video, 0.02, per_frame=True)
    for j, i in enumerate([0, 3]):
        assert axes[2, j].get_title() == f"{100 * shares[i].item():.0f} % still"
    # default: up to 4 evenly spaced frames among the F − 1 differences
    assert len(render_motion_targets(video).axes) == 3 * 4
    assert len(render_motion_targets(video[:, :3]).axes) == 3 * 2
    with pytest.raises(ValueError, match="frames"):
        render_motion_targets(video, frames=[4])  # no frame 5 to take a difference with
    with pytest.raises(ValueError, match="2 frames"):
        render_motion_targets(video[:, :1])
    with pytest.raises(ValueError, match="dpi"):
        render_motion_targets(video, dpi=300)


def test_target_views_show_the_library_targets():
    torch.manual_seed(0)
    pixels = _moving_square(F=5, size=32)
    video = normalize(pixels, channel_dim=0)
    vq = VQVAE(vqvae_config("vqvae_demo", hidden=8, embed_dim=8, codebook_size=16)).eval()
    fig = render_target_views({"square": video, "flipped": video.flip(3)}, vq, frame=1, patch=8)
    axes = np.array(fig.axes).reshape(2, 5)
    assert [a.get_title() for a in axes[0]][0] == "input frame"
    # the motion column is the RGB difference of frames 2 and 1
    assert np.array_equal(_image(axes[0, 4]), difference_image(pixels[:, 2] - pixels[:, 1]))
    # the pixel column is make_targets(kind="pixels_norm") put back in place, shown as 0.5 + 0.2·value
    pix = make_targets(video[None], "pixels_norm", 2, 8, num_frames=4)
    pix = unpatchify(pix, (2, 4, 4), 2, 8)[0, :, 1]
    assert np.allclose(_image(axes[0, 1]), (0.5 + 0.2 * pix).clamp(0, 1).permute(1, 2, 0).numpy(), atol=1e-5)
    # the code column has one colour per code of a 4 × 4 code map
    codes = vq.encode(video[:, 1][None])[0]
    assert _image(axes[0, 2]).shape[:2] == (4, 4)
    assert len(np.unique(_image(axes[0, 2]).reshape(-1, 3), axis=0)) == codes.unique().numel()
    assert axes[0, 0].get_ylabel().endswith(f"{codes.unique().numel()} codes")
    # without a tokenizer: frame, pixels, motion
    assert len(render_target_views(video, None, frame=0, patch=8).axes) == 3
    with pytest.raises(ValueError, match="T \\+ 1 frames"):
        render_target_views(video[:, :4], None, patch=8)  # T = 3 is not a multiple of the tubelet
    with pytest.raises(ValueError, match="tokenizer"):
        render_target_views(video, object(), patch=8)


def _result():
    r = ComparisonResult(methods=["a", "b"], seeds=[0, 1], checkpoints=[0, 5, 10], steps=10, num_classes=4)
    for m, acc in (("a", [0.25, 0.4, 0.6]), ("b", [0.25, 0.3, 0.35])):
        for step, v in zip(r.checkpoints, acc):
            for seed, dv in ((0, -0.05), (1, 0.05)):
                r.records.append({"method": m, "seed": seed, "step": step, "accuracy": v + dv,
                                  "train_accuracy": 1.0, "knn_accuracy": v, "loss": None, "train_seconds": 0.0})
    return r


def test_probe_curves_plot_the_means_with_chance():
    r = _result()
    fig = render_probe_curves(r)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    bars = ax.containers  # one errorbar per method: data line + caps + bars
    assert [b.get_label() for b in bars] == ["a", "b"]
    assert np.allclose(bars[0].lines[0].get_ydata(), [25, 40, 60])  # means over the two seeds, in %
    assert np.allclose(bars[1].lines[0].get_ydata(), [25, 30, 35])
    chance = [line for line in ax.get_lines() if line.get_label() == "chance"]
    assert len(chance) == 1 and np.allclose(chance[0].get_ydata(), 25)
    assert list(ax.get_xticks()) == [0, 5, 10]
    assert len(render_probe_curves(r, ["knn_accuracy"]).axes) == 1
    with pytest.raises(ValueError, match="metrics"):
        render_probe_curves(r, ["loss"])
    with pytest.raises(ValueError, match="ComparisonResult"):
        render_probe_curves(object())


def test_motion_explorer_rerenders_and_shows_a_static_png():
    ipywidgets = pytest.importorskip("ipywidgets")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    video = normalize(_moving_square(F=6), channel_dim=0)
    box = motion_explorer(video, frame=1, threshold=0.02)
    assert isinstance(box, ipywidgets.VBox) and box.children[1] is box.image
    assert set(box.controls) == {"frame", "threshold", "gain"}
    assert box.controls["frame"].max == 4
    first = bytes(box.image.value)
    assert first == figure_to_png(render_motion_view(video, 1, 0.02))
    Image.open(io.BytesIO(first)).verify()
    seen = [first]
    for name, value in (("frame", 3), ("threshold", 0.5), ("gain", 6.0)):
        box.controls[name].value = value
        seen.append(bytes(box.image.value))
        assert seen[-1] != seen[-2], name
    InteractiveShell.instance()
    with capture_output() as captured:
        show(box)
        box.controls["frame"].value = 0
    _, png, update = captured.outputs
    assert update.transient["display_id"] == png.transient["display_id"]
    assert base64.b64decode(update.data["image/png"]) == bytes(box.image.value)
    with pytest.raises(ValueError, match="threshold"):
        motion_explorer(video, threshold=2.0)
