"""Chapter 4's figures: momentum schedules, VideoMAC's loss terms, pair reconstructions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskvid_edu import widgets
from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from maskvid_edu.data.wrappers import FramePairs
from maskvid_edu.ema import cosine_momentum
from maskvid_edu.models import create
from maskvid_edu.models.videomac import pair_reconstruction


def test_momentum_schedules_draw_the_global_curve_and_the_restarting_one():
    fig = widgets.render_momentum_schedules(10, 50, every=5, zoom_epochs=2)
    left, right = fig.axes
    global_line, release_line = left.lines
    steps = np.arange(0, 500, 5)
    np.testing.assert_allclose(global_line.get_xdata(), steps / 50)
    np.testing.assert_allclose(global_line.get_ydata(), [cosine_momentum(int(s), 500) for s in steps])
    release = np.asarray(release_line.get_ydata())
    # the release restarts every epoch: each epoch repeats the first one and stays near the base
    np.testing.assert_allclose(release[:10], release[10:20])
    assert release.max() < global_line.get_ydata()[-1] and release.min() == pytest.approx(0.996)
    zoom = right.lines[0]
    assert len(zoom.get_xdata()) == 20  # two epochs of 10 drawn points
    np.testing.assert_allclose(zoom.get_ydata(), 1e6 * (release[:20] - 0.996))
    assert "first 2 epochs" in right.get_title()


def _history(n=5):
    return [{"step": 10 * (i + 1), "loss": 3.0 - 0.1 * i, "loss_online": 1.0 - 0.05 * i,
             "loss_target": 1.1 - 0.04 * i, "loss_consistency": 0.05 + 0.01 * i} for i in range(n)]


def test_pair_losses_put_consistency_on_its_own_panel():
    history = _history()
    fig = widgets.render_pair_losses(history, title="run")
    left, right = fig.axes
    assert [line.get_label() for line in left.lines] == ["L_online (frame 1, online net)",
                                                         "L_target (frame 2, EMA net; no gradient)"]
    np.testing.assert_allclose(left.lines[1].get_ydata(), [r["loss_target"] for r in history])
    np.testing.assert_allclose(right.lines[0].get_xdata(), [r["step"] for r in history])
    np.testing.assert_allclose(right.lines[0].get_ydata(), [r["loss_consistency"] for r in history])
    assert fig._suptitle.get_text() == "run"


def test_pair_reconstructions_grey_the_hidden_patches_and_show_each_network():
    clips = SyntheticVideoDataset(SyntheticConfig(num_frames=4, size=64, num_samples=2, seed=0))
    pairs = FramePairs(clips, gap=1, keys=("video",))
    model = create("videomac_convnextv2_demo")
    sample = torch.stack([pairs[i]["video"] for i in (0, 1)])  # (2, 3, 2, H, W)
    rec = pair_reconstruction(model, sample, generator=torch.Generator().manual_seed(0))
    fig = widgets.render_pair_reconstructions(rec)
    assert len(fig.axes) == 2 * 6
    hidden = rec["hidden"][1].numpy()
    assert 0 < hidden.mean() < 1
    shown = [np.asarray(ax.images[0].get_array()) for ax in fig.axes[6:]]  # the second pair's row
    frame2 = rec["frame2"][1].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(shown[3][hidden], 0.2 * frame2[hidden] + 0.8 * 0.45, atol=1e-6)
    np.testing.assert_allclose(shown[3][~hidden], frame2[~hidden], atol=1e-6)
    np.testing.assert_allclose(shown[4], rec["target"][1].permute(1, 2, 0).numpy(), atol=1e-6)
    np.testing.assert_allclose(shown[1], rec["online"][1].permute(1, 2, 0).numpy(), atol=1e-6)
    assert [ax.get_title() for ax in fig.axes[:6]] == ["masked", "online net, frame 1", "original",
                                                       "masked", "target net, frame 2", "original"]


@pytest.mark.parametrize("call, message", [
    (lambda: widgets.render_momentum_schedules(0, 200), "epochs must be a positive int"),
    (lambda: widgets.render_momentum_schedules(100, 200, every=0), "every must be a positive int"),
    (lambda: widgets.render_pair_losses([]), "non-empty list"),
    (lambda: widgets.render_pair_losses([{"step": 1, "loss": 1.0}]), "lacks"),
    (lambda: widgets.render_pair_reconstructions({"frame1": torch.zeros(1, 3, 8, 8)}), "keys"),
    (lambda: widgets.render_pair_reconstructions(
        {k: torch.zeros(1, 3, 8, 8) for k in ("frame1", "frame2", "online", "target", "hidden")}), r"\(B, H, W\)"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
