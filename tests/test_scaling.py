"""Scaling: model sizes on the meta device, interleaved variant timing, memory sweeps."""

from __future__ import annotations

import pytest
import torch

from maskvid_edu import widgets
from maskvid_edu.measure import scaling
from maskvid_edu.measure.flops import videomae_pretrain_flops
from maskvid_edu.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


def test_model_sizes_count_what_a_real_build_holds():
    rows = scaling.model_sizes(["videomae_vit_demo", "videomae_vit_s"])
    for r in rows:
        model = create(r["name"])  # a real build: the meta-device counts must agree
        assert r["params"] == sum(p.numel() for p in model.parameters())
        assert r["encoder_params"] == sum(p.numel() for p in model.encoder.parameters())
        flops = videomae_pretrain_flops(model.config)
        assert r["step_flops"] == flops["train_step"] == 3 * r["forward_flops"]
        assert r["decoder_share"] == pytest.approx((flops["decoder"] + flops["head"]) / flops["forward"])
    assert rows[1]["encoder_params"] == 21_879_936  # ViT-S/16, the official count
    assert (rows[1]["tokens"], rows[1]["visible"]) == (1568, 160)


def test_model_sizes_builds_vit_h_without_memory():
    (h,) = scaling.model_sizes(["videomae_vit_h"])
    assert h["encoder_params"] == 631_607_040  # the official ViT-H count, nothing allocated


def test_time_variants_interleaves_and_rotates():
    calls = []

    def factory(name):
        def build():
            def step():
                calls.append(name)
            return step
        return build

    rows = scaling.time_variants({"a": factory("a"), "b": factory("b"), "c": factory("c")}, steps=3, warmup=1)
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["vs_baseline"] == 1.0
    assert all(len(r["times"]) == 3 for r in rows)
    # build + first step of each, one warm-up round, then rounds starting at a, b, c in turn
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] + ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_time_variants_measures_a_real_difference():
    def sleeper(seconds):
        import time

        return lambda: (lambda: time.sleep(seconds))

    rows = scaling.time_variants({"short": sleeper(0.002), "long": sleeper(0.02)}, steps=3, warmup=0)
    assert rows[1]["vs_baseline"] > 3  # 10× in theory; sleep overshoot only shrinks it a little


def test_time_variants_errors():
    with pytest.raises(ValueError, match="variants is empty"):
        scaling.time_variants({})
    with pytest.raises(ValueError, match="steps must be"):
        scaling.time_variants({"a": lambda: (lambda: None)}, steps=0)


def test_variants_build_and_step():
    vit = scaling.vit_variants("videomae_vit_demo", batch=2, device="cpu")
    assert list(vit)[0].startswith("baseline") and "AdamW fused" in vit and "torch.compile" not in vit
    assert "torch.compile" in scaling.vit_variants("videomae_vit_demo", batch=2, device="cpu", compile=True)
    for factory in vit.values():
        factory()()  # one training step each
    conv = scaling.convnet_variants("encoder_convnextv2_demo", batch=2, size=64, device="cpu")
    assert list(conv) == ["dense step (no mask)", "sparse, masked-dense", "sparse + channels-last", "sparse + bf16 autocast"]
    for factory in conv.values():
        factory()()


def test_a_step_trains_the_variant_it_names():
    step = scaling.training_step("videomae_vit_demo", batch=2, device="cpu", optimizer="fused",
                                  overrides={"use_checkpoint": True})
    assert step.optimizer.defaults["fused"] is True and step.model.config.use_checkpoint
    before = {k: v.clone() for k, v in step.model.state_dict().items()}
    step()
    changed = [k for k, v in step.model.state_dict().items() if not torch.equal(v, before[k])]
    assert "encoder.blocks.0.attn.qkv.weight" in changed
    last = scaling.training_step("encoder_convnextv2_demo", batch=2, device="cpu", channels_last=True, dense=True,
                                 size=64)
    assert last.inputs.shape == (2, 3, 64, 64)
    conv_variants = scaling.convnet_variants("encoder_convnextv2_demo", batch=3, size=96, device="cpu")
    assert all(factory().inputs.shape == (3, 3, 96, 96) for factory in conv_variants.values())
    conv = next(m for m in last.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="optimizer impl must be one of"):
        scaling.training_step("videomae_vit_demo", batch=1, device="cpu", optimizer="lion")
    with pytest.raises(ValueError, match="attention must be"):
        scaling.training_step("videomae_vit_demo", batch=1, device="cpu", attention="flash3")
    with pytest.raises(ValueError, match="amp must be"):
        scaling.training_step("videomae_vit_demo", batch=1, device="cpu", amp="fp8")
    with pytest.raises(ValueError, match="need step_flops > 0"):
        scaling.predicted_step_seconds(1e9, 1e12, 0.0)


def test_predicted_step_seconds():
    assert scaling.predicted_step_seconds(2e12, 1e15, 0.5) == pytest.approx(4e-3)


def test_measure_step_reports_medians():
    r = scaling.measure_step("videomae_vit_demo", batch=2, steps=3, warmup=1, device="cpu")
    assert len(r["times"]) == 3 and r["seconds"] == sorted(r["times"])[1]


def test_memory_sweep_is_linear_in_the_batch_and_falls_with_the_ratio():
    rows = scaling.memory_sweep("videomae_vit_demo", batches=(1, 2), ratios=(0.5, 0.9))
    act = {(r["batch"], r["ratio"]): r["activations"] for r in rows}
    for ratio in (0.5, 0.9):
        assert act[2, ratio] == pytest.approx(2 * act[1, ratio], rel=0.03)
    assert act[1, 0.5] > act[1, 0.9]
    fig = widgets.render_memory_sweep(rows)
    assert len(fig.axes[0].lines) == 2


def test_plot_step_times_draws_points_and_lines():
    sizes = scaling.model_sizes(["videomae_vit_demo", "videomae_vit_s"])
    fig = widgets.render_step_times(sizes, {"videomae_vit_demo": 0.01}, peak_flops=1e11)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 1  # one measured point
    assert sum(1 for line in ax.lines if line.get_linestyle() == "--") == 2  # 100 % and 45 % of the peak
