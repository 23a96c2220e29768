"""Training-curve figure and viewer, and the source display used by the chapters."""

import numpy as np
import pytest

from maskvid_edu import widgets


def history(scale=1.0, n=20):
    return [{"step": i, "loss": scale / i, "loss_a": scale / i, "loss_b": 0.5 / i, "lr": 1e-3, "grad_norm": 1.0}
            for i in range(1, n + 1)]


def test_metrics_are_listed_loss_first():
    assert widgets.curve_metrics(history()) == ["loss", "loss_a", "loss_b", "grad_norm", "lr"]


def test_default_figure_skips_a_term_equal_to_the_loss():
    fig = widgets.render_training_curves(history())
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["loss", "loss_b"]
    assert fig.axes[0].get_yscale() == "log"


def test_several_runs_are_labelled_by_name_and_smoothing_is_causal():
    fig = widgets.render_training_curves({"a": history(), "b": history(2.0)}, ["loss"], smooth=3)
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == ["a: loss", "b: loss"]
    y = lines[0].get_ydata()
    raw = np.array([1 / i for i in range(1, 21)])
    assert y[0] == pytest.approx(raw[0]) and y[5] == pytest.approx(raw[3:6].mean())


def test_viewer_image_follows_its_controls():
    viewer = widgets.training_curve_viewer({"a": history(), "b": history(2.0)})
    before = bytes(viewer.image.value)
    viewer.controls["smooth"].value = 3  # 1/step smoothed is a different curve
    smoothed = bytes(viewer.image.value)
    viewer.controls["metric"].value = "lr"
    assert len({before, smoothed, bytes(viewer.image.value)}) == 3


@pytest.mark.parametrize("call, message", [
    (lambda: widgets.render_training_curves([]), "non-empty"),
    (lambda: widgets.render_training_curves([{"loss": 1.0}]), "'step'"),
    (lambda: widgets.render_training_curves(history(), ["accuracy"]), "not in these runs"),
    (lambda: widgets.render_training_curves(history(), smooth=0), "smooth must be"),
    (lambda: widgets.training_curve_viewer(history(), metric="acc"), "metric must be one of"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_show_source_displays_the_library_code(capsys):
    from IPython.core.interactiveshell import InteractiveShell
    shown = []
    InteractiveShell.instance().display_pub.publish = lambda data, **kw: shown.append(data)
    from maskvid_edu.masking import tube_mask

    widgets.show_source(tube_mask)
    text = shown[-1]["text/markdown"]
    assert text.startswith("`maskvid_edu/masking.py`, line ")
    assert "def tube_mask(" in text and "```python" in text
    with pytest.raises(ValueError, match="no Python source"):
        widgets.show_source(len)
