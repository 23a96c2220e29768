"""The convergence race: fair by construction (shared start, shared budget), exact under
stop-and-resume, and its bookkeeping (shares, views, summaries) right to the number."""

from __future__ import annotations

import math

import pytest
import torch

from maskvid_edu.analysis.compare import (
    ComparisonResult,
    MethodSpec,
    compare_pretraining,
    convergence_methods,
    still_pixel_share,
)
from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from maskvid_edu.data.wrappers import FirstFrames, InMemoryDataset
from maskvid_edu.data.transforms import normalize
from maskvid_edu.tokenizers import VQVAE, vqvae_config
from maskvid_edu.train import TrainConfig

# --------------------------------------------------------------------------------------------
# still_pixel_share
# --------------------------------------------------------------------------------------------


def _square_clip(F=3, size=16, side=4, step=2, level=0.8):
    """A bright ``side × side`` square moving right by ``step`` pixels per frame on black."""
    pixels = torch.zeros(3, F, size, size)
    for f in range(F):
        pixels[:, f, 2:2 + side, 1 + f * step:1 + f * step + side] = level
    return pixels


def test_still_share_counts_the_pixels_that_do_not_change():
    pixels = _square_clip()  # each step: 2 columns appear, 2 disappear, 4 rows tall
    moved = 2 * 2 * 4  # pixels changed per difference
    expected = 1 - moved / (16 * 16)
    share = still_pixel_share(pixels, input_normalized=False)
    assert share.dim() == 0 and share.item() == pytest.approx(expected)
    per = still_pixel_share(pixels, input_normalized=False, per_frame=True)
    assert per.shape == (2,) and torch.allclose(per, torch.full((2,), expected))
    # the same clip ImageNet-normalised, in a batch of two, gives the same share
    video = normalize(pixels, channel_dim=0)
    batch = torch.stack([video, video])
    assert still_pixel_share(batch).item() == pytest.approx(expected, abs=1e-6)


def test_still_share_threshold_separates_noise_from_motion():
    gen = torch.Generator().manual_seed(0)
    static = torch.rand(3, 1, 8, 8, generator=gen).expand(3, 4, 8, 8).clone()
    noisy = static + 0.004 * (2 * torch.rand(static.shape, generator=gen) - 1)  # |noise| < 0.004
    assert still_pixel_share(static, input_normalized=False).item() == 1.0
    assert still_pixel_share(noisy, 0.01, input_normalized=False).item() == 1.0  # noise stays below
    assert still_pixel_share(noisy, 0.001, input_normalized=False).item() < 0.5  # a tiny threshold sees it
    # one channel changing is enough to make a pixel move
    one = static.clone()
    one[0, 2:, 0, 0] += 0.5
    assert still_pixel_share(one, input_normalized=False, per_frame=True).tolist() == [1.0, 1 - 1 / 64, 1.0]


def test_still_share_rejects_bad_input():
    with pytest.raises(ValueError, match="video"):
        still_pixel_share(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="2 frames"):
        still_pixel_share(torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="threshold"):
        still_pixel_share(torch.zeros(3, 2, 8, 8), threshold=0)


# --------------------------------------------------------------------------------------------
# Dataset views
# --------------------------------------------------------------------------------------------


def _synthetic(num_frames=5, size=32, num_samples=8, seed=0, num_classes=2):
    return SyntheticVideoDataset(SyntheticConfig(num_frames=num_frames, size=size, num_classes=num_classes,
                                                 num_samples=num_samples, seed=seed))


def test_first_frames_cuts_video_and_masks_and_keeps_the_rest():
    ds = _synthetic()
    view = FirstFrames(ds, 4)
    assert len(view) == len(ds)
    item, full = view[3], ds[3]
    assert item["video"].shape == (3, 4, 32, 32) and torch.equal(item["video"], full["video"][:, :4])
    assert item["masks"].shape == (4, 32, 32) and torch.equal(item["masks"], full["masks"][:4])
    assert item["label"] == full["label"]
    assert torch.equal(FirstFrames(ds, 5)[0]["video"], ds[0]["video"])
    with pytest.raises(ValueError, match="only 5 frames"):
        FirstFrames(ds, 6)
    with pytest.raises(ValueError, match="num_frames"):
        FirstFrames(ds, 0)


def test_in_memory_dataset_copies_the_chosen_fields_once():
    ds = _synthetic(num_samples=6)
    mem = InMemoryDataset.from_dataset(ds, max_items=4)
    assert len(mem) == 4 and set(mem[0]) == {"video", "label"}
    assert torch.equal(mem[2]["video"], ds[2]["video"]) and mem[2]["label"] == ds[2]["label"]
    mem[0]["label"] = 99  # items are handed out as copies
    assert mem[0]["label"] == ds[0]["label"]
    with pytest.raises(ValueError, match="lacks"):
        InMemoryDataset.from_dataset(ds, keys=("video", "boxes"))
    with pytest.raises(ValueError, match="empty"):
        InMemoryDataset([])


# --------------------------------------------------------------------------------------------
# Methods and results
# --------------------------------------------------------------------------------------------


def test_convergence_methods_differ_only_in_their_targets():
    vq = VQVAE(vqvae_config("vqvae_demo"))
    videomae, both, motion = convergence_methods(vq)
    assert [m.label for m in (videomae, both, motion)] == [
        "VideoMAE (pixels)", "MAM2 (appearance + motion)", "MAM2 (motion only)"]
    assert videomae.model == "videomae_vit_demo" and videomae.overrides == {"normalization": "none"}
    assert both.model == motion.model == "mam2_vit_demo"
    assert both.overrides["tokenizer"] is vq and "tokenizer" not in motion.overrides
    assert motion.overrides["w_appearance"] == 0.0
    model = motion.build()
    assert model.config.w_appearance == 0.0 and model.config.w_motion == 1.0
    assert convergence_methods(size="b", pixel_normalization="videomae")[0].model == "videomae_vit_b"
    with pytest.raises(ValueError, match="label"):
        MethodSpec("", "videomae_vit_demo")
    with pytest.raises(ValueError, match="overrides"):
        MethodSpec("x", "videomae_vit_demo", overrides=[1])


def _hand_result():
    r = ComparisonResult(methods=["a", "b"], seeds=[0, 1, 2], checkpoints=[0, 10], steps=10, num_classes=4)
    acc = {("a", 0): [0.25, 0.25, 0.25], ("a", 10): [0.5, 0.6, 0.7], ("b", 0): [0.25, 0.25, 0.25],
           ("b", 10): [0.3, 0.4, 0.2]}
    for (m, step), values in acc.items():
        for seed, v in zip([2, 0, 1], [values[2], values[0], values[1]]):  # stored out of seed order
            r.records.append({"method": m, "seed": seed, "step": step, "accuracy": v, "train_accuracy": 1.0,
                              "knn_accuracy": v / 2, "loss": None, "train_seconds": 0.0})
    return r


def test_summary_is_mean_and_sample_std_over_seeds_in_seed_order():
    r = _hand_result()
    assert r.values("a", 10) == [0.5, 0.6, 0.7]
    rows = {(row["method"], row["step"]): row for row in r.summary()}
    a = rows[("a", 10)]
    assert a["n"] == 3 and a["mean"] == pytest.approx(0.6) and a["std"] == pytest.approx(0.1)
    assert rows[("a", 0)]["std"] == 0.0
    assert rows[("b", 10)]["mean"] == pytest.approx(0.3)
    knn = {(row["method"], row["step"]): row for row in r.summary("knn_accuracy")}
    assert knn[("a", 10)]["mean"] == pytest.approx(0.3)
    table = r.format_table()
    assert "60.0 ± 10.0" in table and "30.0 ± 10.0" in table and "chance 25.0 %" in table
    with pytest.raises(ValueError, match="metric"):
        r.summary("loss")
    with pytest.raises(ValueError, match="checkpoint"):
        r.values("a", 5)
    with pytest.raises(ValueError, match="method"):
        r.values("c", 0)


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------

_TINY_VIDEOMAE = dict(img_size=32, num_frames=4, patch=8, dim=32, depth=1, heads=2, decoder_dim=16,
                      decoder_depth=1, decoder_heads=1, normalization="none")
_TINY_MAM2 = dict(img_size=32, num_frames=4, patch=8, dim=32, depth=1, heads=2, regressor_depth=1, regressor_heads=2,
                  appearance_dim=16, appearance_depth=1, appearance_heads=1, motion_dim=16, motion_depth=1,
                  motion_heads=1)


@pytest.fixture(scope="module")
def race_data():
    train = InMemoryDataset.from_dataset(_synthetic(num_samples=8, seed=0))  # 5 = T + 1 frames
    probe_train = InMemoryDataset.from_dataset(_synthetic(num_samples=8, seed=1))
    probe_test = InMemoryDataset.from_dataset(_synthetic(num_samples=8, seed=2))
    return train, probe_train, probe_test


def _tiny_methods():
    torch.manual_seed(0)
    vq = VQVAE(vqvae_config("vqvae_demo", hidden=8, embed_dim=8, codebook_size=16))  # f = 8: 2 codes per token
    return [
        MethodSpec("pixels", "videomae_vit_demo", _TINY_VIDEOMAE),
        MethodSpec("appearance + motion", "mam2_vit_demo", {**_TINY_MAM2, "tokenizer": vq}),
        MethodSpec("motion", "mam2_vit_demo", {**_TINY_MAM2, "w_appearance": 0.0}),
    ]


_TRAIN = TrainConfig(steps=2, batch_size=4, lr=1e-3, min_lr=0.0, warmup_steps=0, log_every=1, num_threads=1,
                     device="cpu")


def _strip_time(records):
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in records]


def test_race_probes_every_method_at_every_checkpoint_from_a_shared_start(race_data, tmp_path):
    train, probe_train, probe_test = race_data
    methods = _tiny_methods()
    result = compare_pretraining(methods, train, probe_train, probe_test, train=_TRAIN, checkpoints=(0, 1, 2),
                                 seeds=(0, 1), work_dir=tmp_path, probe={"epochs": 20}, knn_k=3, progress=False)
    assert result.methods == ["pixels", "appearance + motion", "motion"]
    assert result.checkpoints == [0, 1, 2] and result.seeds == [0, 1] and result.num_classes == 2
    assert len(result.records) == 3 * 2 * 3
    for r in result.records:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["knn_accuracy"] <= 1.0
        assert (r["loss"] is None) == (r["step"] == 0)
        if r["step"] > 0:
            assert math.isfinite(r["loss"]) and r["train_seconds"] > 0
    for seed in (0, 1):  # step 0 is one shared encoder: identical scores for every method
        start = [r for r in result.records if r["seed"] == seed and r["step"] == 0]
        assert len({(r["accuracy"], r["train_accuracy"], r["knn_accuracy"]) for r in start}) == 1
    # each run trained to the budget, in its own folder, with the trainer's per-step log
    for m in ("pixels", "appearance_motion", "motion"):
        for seed in (0, 1):
            assert (tmp_path / f"{m}-seed{seed}" / "checkpoint.pt").is_file()
    history = result.histories[("motion", 1)]
    assert [h["step"] for h in history] == [1, 2] and set(history[0]) >= {"loss_motion", "loss_appearance"}
    mam2 = result.histories[("appearance + motion", 0)]
    assert mam2[-1]["loss"] == pytest.approx(mam2[-1]["loss_appearance"] + mam2[-1]["loss_motion"], rel=1e-5)


def test_race_is_reproducible_and_stopping_at_checkpoints_changes_nothing(race_data):
    train, probe_train, probe_test = race_data
    kwargs = dict(train=_TRAIN, seeds=(3,), probe={"epochs": 20}, knn_k=3, progress=False)
    a = compare_pretraining(_tiny_methods(), train, probe_train, probe_test, checkpoints=(0, 1, 2), **kwargs)
    b = compare_pretraining(_tiny_methods(), train, probe_train, probe_test, checkpoints=(0, 1, 2), **kwargs)
    assert _strip_time(a.records) == _strip_time(b.records)
    c = compare_pretraining(_tiny_methods(), train, probe_train, probe_test, checkpoints=(2,), **kwargs)
    for method in a.methods:  # one uninterrupted run ends where the stopped-and-resumed one does
        ends = [r for r in a.records if r["method"] == method and r["step"] == 2]
        assert _strip_time(ends) == _strip_time([r for r in c.records if r["method"] == method])
        assert a.histories[(method, 3)] [-1]["loss"] == c.histories[(method, 3)][-1]["loss"]


def test_race_rejects_unfair_or_impossible_setups(race_data):
    train, probe_train, probe_test = race_data
    methods = _tiny_methods()
    run = dict(progress=False, probe={"epochs": 5})
    with pytest.raises(ValueError, match="steps"):
        compare_pretraining(methods, train, probe_train, probe_test, train=_TRAIN.replace(epochs=1.0), **run)
    with pytest.raises(ValueError, match="checkpoints"):
        compare_pretraining(methods, train, probe_train, probe_test, train=_TRAIN, checkpoints=(0, 3), **run)
    with pytest.raises(ValueError, match="checkpoints"):
        compare_pretraining(methods, train, probe_train, probe_test, train=_TRAIN, checkpoints=(0, 1.5), **run)
    with pytest.raises(ValueError, match="unique"):
        compare_pretraining(methods[:1] * 2, train, probe_train, probe_test, train=_TRAIN, **run)
    with pytest.raises(ValueError, match="seeds"):
        compare_pretraining(methods, train, probe_train, probe_test, train=_TRAIN, seeds=(0, 0), **run)
    with pytest.raises(ValueError, match="num_frames=5"):  # MAM2 needs T + 1 = 5 frames
        compare_pretraining(methods, FirstFrames(train, 4), probe_train, probe_test, train=_TRAIN, **run)
    other = MethodSpec("8 frames", "videomae_vit_demo", {**_TINY_VIDEOMAE, "num_frames": 8})
    with pytest.raises(ValueError, match="same number of frames"):
        compare_pretraining([methods[0], other], _synthetic(num_frames=9), probe_train, probe_test, train=_TRAIN, **run)
