"""Chapter 2's library code: reconstructions, PSNR tables, FLOP counts, timing, and their pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from maskvid_edu.analysis import reconstruct as R
from maskvid_edu.analysis.baselines import copy_reconstruct, masked_psnr
from maskvid_edu.data.transforms import normalize
from maskvid_edu.data.wrappers import ClipWindows, collate_videos
from maskvid_edu.masking import running_cell_mask, tube_mask
from maskvid_edu.measure.flops import pretrain_flops, token_counts, vit_block_flops
from maskvid_edu.models import create
from maskvid_edu.models.videomae import VideoMAEConfig
from maskvid_edu.patches import normalize_patches, patchify, unpatchify
from maskvid_edu.widgets import (
    MASK_ALPHA,
    MASK_GREY,
    figure_to_png,
    reconstruction_explorer,
    render_dual_masking,
    render_reconstructions,
)

TINY = dict(img_size=32, num_frames=4, tubelet=2, patch=8, dim=32, depth=1, heads=2,
            decoder_dim=16, decoder_depth=1, decoder_heads=2)  # grid (2, 4, 4), 32 tokens


def _model(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create("videomae_vit_demo", **{**TINY, **overrides}).eval()


def _video(batch=2, T=4, S=32, seed=0, low=0, high=255) -> torch.Tensor:
    """ImageNet-normalised clips whose [0, 1] pixels are multiples of 1/255 in [low, high] / 255."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(low, high + 1, (batch, 3, T, S, S), generator=g).float() / 255
    return normalize(pixels, channel_dim=1)


def _mask(batch=2, ratio=0.75, seed=0) -> torch.Tensor:
    return tube_mask(batch, (2, 4, 4), ratio, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# reconstruct()
# --------------------------------------------------------------------------------------------


def test_reconstruction_keeps_visible_pixels_and_matches_the_model_on_hidden_ones():
    model, video, mask = _model(normalization="none"), _video(), _mask()
    rec = R.reconstruct(model, video, mask, strategy="tube", ratio=0.75)
    truth = rec.original
    assert truth.shape == (2, 3, 4, 32, 32) and truth.min() >= 0 and truth.max() <= 1
    for view in (rec.pixels, rec.pattern, rec.copy):
        tokens, true_tokens = patchify(view, 2, 8), patchify(truth, 2, 8)
        assert torch.equal(tokens[~mask], true_tokens[~mask])  # visible tubelets untouched
    with torch.no_grad():
        pred = model(video, mask).pred.clamp(0, 1)  # raw-pixel target: pred is pixels
    assert torch.allclose(patchify(rec.pixels, 2, 8)[mask], pred.reshape(-1, pred.shape[-1]), atol=1e-6)
    # the copy view is the baseline's own output
    assert torch.allclose(rec.copy, unpatchify(copy_reconstruct(video, mask, 2, 8).patches, (2, 4, 4), 2, 8))
    # PSNR per clip over hidden tokens only
    expected = masked_psnr(patchify(rec.pixels, 2, 8), patchify(truth, 2, 8), mask, per_clip=True)
    assert torch.allclose(rec.psnr_pixels, expected)
    assert rec.psnr_pixels.shape == rec.psnr_copy.shape == rec.psnr_pattern.shape == (2,)
    assert not rec.borrowed and rec.strategy == "tube" and rec.ratio == 0.75 and rec.hidden_share() == 0.75


def test_pattern_view_has_the_true_patch_statistics_and_the_predicted_shape():
    model, video, mask = _model(normalization="none"), _video(low=110, high=145), _mask()  # little clamping
    rec = R.reconstruct(model, video, mask)
    true_hidden = patchify(rec.original, 2, 8)[mask]  # (K, P)
    shown = patchify(rec.pattern, 2, 8)[mask]
    ch = lambda x: x.unflatten(-1, (-1, 3))  # noqa: E731  (K, values, C)
    unclamped = (shown > 0) & (shown < 1)
    rows = unclamped.all(dim=1)  # patches the [0, 1] clamp did not touch
    assert rows.any()
    assert torch.allclose(ch(shown[rows]).mean(1), ch(true_hidden[rows]).mean(1), atol=1e-4)
    assert torch.allclose(ch(shown[rows]).std(1), ch(true_hidden[rows]).std(1), atol=1e-3)
    # ... and its normalised pattern is the model's normalised prediction
    pred = patchify(rec.pixels, 2, 8)[mask]
    assert torch.allclose(normalize_patches(shown[rows][None], "videomae")[0],
                          normalize_patches(pred[rows][None], "videomae")[0], atol=2e-3)


def test_a_perfect_model_scores_infinite_psnr_in_both_views():
    video, mask = _video(), _mask()
    model = _model(normalization="videomae")

    class Oracle(torch.nn.Module):  # predicts the exact normalised target
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config, self.encoder = inner, inner.config, inner.encoder

        def forward(self, v, m):
            out = self.inner(v, m)
            out.pred = out.target.clone()
            return out

    rec = R.reconstruct(Oracle(model), video, mask)
    assert rec.borrowed
    assert torch.allclose(rec.pixels, rec.original, atol=1e-5)
    assert torch.allclose(rec.pattern, rec.original, atol=1e-5)
    assert (rec.psnr_pixels > 90).all() and (rec.psnr_pattern > 90).all()


def test_reconstruct_restores_training_mode_and_rejects_bad_input():
    model = _model()
    model.train()
    R.reconstruct(model, _video(1), _mask(1))
    assert model.training
    with pytest.raises(ValueError, match="mask has batch"):
        R.reconstruct(model, _video(2), _mask(1))
    with pytest.raises(ValueError, match="decoder_mask_ratio"):
        R.reconstruct(_model(decoder_mask_ratio=0.5), _video(1), _mask(1))
    with pytest.raises(ValueError, match="VideoMAE"):
        R.reconstruct(torch.nn.Linear(2, 2), _video(1), _mask(1))
    with pytest.raises(ValueError, match="video must be"):
        R.reconstruct(model, torch.zeros(3, 4), _mask(1))


def test_psnr_table_pools_over_clips_and_matches_single_reconstructions():
    model, video = _model(normalization="none"), _video(4)
    rows = R.psnr_table(model, video, ratios=(0.75,), strategies=("tube", "random"),
                        generator=torch.Generator().manual_seed(3), batch_size=3)
    assert [(r.strategy, r.ratio) for r in rows] == [("tube", 0.75), ("random", 0.75)]
    assert rows[0].visible == 2 * 4 and rows[1].visible == 32 - 24
    mask = tube_mask(4, (2, 4, 4), 0.75, generator=torch.Generator().manual_seed(3))
    rec = R.reconstruct(model, video, mask)
    pooled = masked_psnr(patchify(rec.pixels, 2, 8), patchify(rec.original, 2, 8), mask)
    assert rows[0].model == pytest.approx(float(pooled), abs=1e-4)
    text = R.format_psnr_table(rows, title="t")
    assert text.splitlines()[0] == "t" and "tube" in text and "random" in text and "not a fair score" in text
    assert not rows[0].borrowed and "borrow the true patch statistics too" not in text
    normalised = R.psnr_table(_model(normalization="videomae"), video, ratios=(0.75,))
    assert normalised[0].borrowed and "borrow the true patch statistics too" in R.format_psnr_table(normalised)
    with pytest.raises(ValueError):
        R.format_psnr_table([])


def test_precompute_views_keys_masks_by_seed_and_skips_impossible_masks():
    model = _model()
    clips = {"a": _video(1)[0], "b": _video(1, seed=1)[0]}
    views = R.precompute_views(model, clips, strategies=("tube", "frame"), ratios=(0.5, 0.9), seed=4)
    # frame masking at 0.9 on t = 2 slots hides one slot; at 0.5 also one: all four drawable
    assert set(views) == {(c, s, r) for c in "ab" for s in ("tube", "frame") for r in (0.5, 0.9)}
    again = R.precompute_views(model, clips, strategies=("tube",), ratios=(0.5,), seed=4)
    assert torch.equal(again[("a", "tube", 0.5)].mask, views[("a", "tube", 0.5)].mask)
    assert torch.equal(views[("a", "tube", 0.5)].mask, views[("b", "tube", 0.5)].mask)  # same mask per clip
    with pytest.raises(ValueError, match="one clip"):
        R.precompute_views(model, {"x": _video(2)}, ratios=(0.5,))


def test_clip_windows_and_collate():
    video = torch.arange(3 * 10 * 2 * 2, dtype=torch.float32).reshape(3, 10, 2, 2)
    w = ClipWindows(video, num_frames=4, step=3)
    assert w.starts == [0, 3, 6] and len(w) == 3
    assert torch.equal(w[1]["video"], video[:, 3:7])
    wf = ClipWindows(video, num_frames=4, step=3, last_start=3, flip=True)
    assert len(wf) == 4 and torch.equal(wf[3]["video"], video[:, 3:7].flip(-1)) and torch.equal(wf[-1]["video"], wf[3]["video"])
    with pytest.raises(IndexError):
        wf[4]
    with pytest.raises(ValueError, match="do not fit"):
        ClipWindows(video, num_frames=11)
    with pytest.raises(ValueError, match="num_frames"):
        ClipWindows(video, num_frames=0)
    batch = collate_videos([w[0], {"video": w[1]["video"], "label": 3}])
    assert list(batch) == ["video"] and batch["video"].shape == (2, 3, 4, 2, 2)
    with pytest.raises(ValueError, match="video"):
        collate_videos([{"label": 1}])


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------


def _counted_flops(module: torch.nn.Module, *args) -> int:
    """FLOPs of matrix products measured by torch's FLOP counter (a multiply-add = 2).

    Attention runs on the math backend, whose two batched products the counter sees (it does
    not count the fused CPU kernel).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        module(*args)
    return counter.get_total_flops()


def test_block_flops_matches_torch_flop_counter():
    from maskvid_edu.models.vit import Block

    block = Block(64, 4).eval()
    x = torch.randn(1, 50, 64)
    assert vit_block_flops(64, 50, 4.0) == _counted_flops(block, x)


def test_pretrain_flops_matches_torch_flop_counter_for_all_three_designs():
    model = _model()
    video = _video(1)
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(0))
    assert pretrain_flops(model.config).total == _counted_flops(model, video, mask)
    all_tokens = R.AllTokensVideoMAE(model)
    assert pretrain_flops(model.config, encoder_all_tokens=True).total == _counted_flops(all_tokens, video, mask)
    v2 = _model(decoder_mask_ratio=0.5)
    dec = running_cell_mask(1, (2, 4, 4), 0.5)
    assert pretrain_flops(v2.config).total == _counted_flops(lambda v, m: v2(v, m, dec), video, mask)


def test_vit_b_counts_and_flops():
    c = VideoMAEConfig(mask_ratio=0.9)
    assert token_counts(c) == {"tokens": 1568, "visible": 160, "hidden": 1408, "decoded": 1408}
    assert token_counts(c, 0.5)["decoded"] == 784
    f = pretrain_flops(c)
    assert (f.encoder_tokens, f.decoder_tokens) == (160, 1568)
    # 12 · [(8 + 16)·160·768² + 4·160²·768]
    assert f.encoder == 12 * (24 * 160 * 768**2 + 4 * 160**2 * 768)
    full = pretrain_flops(c, encoder_all_tokens=True)
    assert 12.5 < full.encoder_side / f.encoder_side < 13.0
    v2 = pretrain_flops(c, decoder_mask_ratio=0.5)
    assert v2.decoder_tokens == 160 + 784 and v2.encoder == f.encoder
    random = token_counts(VideoMAEConfig(mask_ratio=0.9, mask_type="random"))
    assert random["hidden"] == 1411


# --------------------------------------------------------------------------------------------
# The all-tokens counterpart and timing
# --------------------------------------------------------------------------------------------


def test_all_tokens_model_shares_weights_and_reconstructs_the_hidden_tokens():
    model = _model(normalization="videomae")
    video, mask = _video(), _mask()
    sym = R.AllTokensVideoMAE(model)
    own = [n for n, _ in sym.named_parameters() if not n.startswith("model.")]
    assert own == ["mask_token"]
    out, ref = sym(video, mask), model(video, mask)
    assert out.pred.shape == ref.pred.shape and torch.equal(out.target, ref.target)
    out.loss.backward()
    assert sym.mask_token.grad is not None and model.encoder.blocks[0].attn.qkv.weight.grad is not None
    # the encoder really sees every token: changing a hidden pixel changes the prediction
    # only through the mask embedding, i.e. not at all; changing a visible one does
    hidden_pos = mask[0].nonzero()[0, 0].item()
    t, rest = divmod(hidden_pos, 16)
    y, x = divmod(rest, 4)
    poked = video.clone()
    poked[0, :, 2 * t:2 * t + 2, 8 * y:8 * y + 8, 8 * x:8 * x + 8] += 1.0
    with torch.no_grad():
        assert torch.allclose(sym(poked, mask).pred, sym(video, mask).pred, atol=1e-6)
    with pytest.raises(ValueError, match="decoder_mask_ratio"):
        R.AllTokensVideoMAE(_model(decoder_mask_ratio=0.5))


def test_time_steps_runs_every_model_and_validates():
    model = _model()
    video, mask = _video(), _mask()
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, inner, name):
            super().__init__()
            self.inner, self.name = inner, name

        def forward(self, v, m):
            calls.append(self.name)
            return self.inner(v, m)

    times = R.time_steps({"a": Counting(model, "a"), "b": Counting(R.AllTokensVideoMAE(model), "b")},
                         video, mask, steps=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # alternating order
    assert [len(v) for v in times.values()] == [3, 3] and all(t > 0 for v in times.values() for t in v)
    assert all(p.grad is None for p in model.parameters())
    assert set(R.median_ms(times)) == {"a", "b"}
    with pytest.raises(ValueError, match="steps"):
        R.time_steps({"a": model}, video, mask, steps=0)
    with pytest.raises(ValueError, match="at least one"):
        R.time_steps({}, video, mask)
    cpu = R.time_steps({"a": model}, video, mask, steps=2, warmup=0, clock="process")
    assert len(cpu["a"]) == 2 and all(t > 0 for t in cpu["a"])
    with pytest.raises(ValueError, match="clock"):
        R.time_steps({"a": model}, video, mask, clock="gpu")


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def _png(fig: Figure) -> Image.Image:
    return Image.open(io.BytesIO(figure_to_png(fig)))


def test_render_reconstructions_draws_one_row_per_reconstruction():
    model = _model()
    recs = [R.reconstruct(model, _video(1), tube_mask(1, (2, 4, 4), r, generator=torch.Generator().manual_seed(0)),
                          strategy="tube", ratio=r) for r in (0.5, 0.75)]
    fig = render_reconstructions(recs, frame=2, title="two ratios")
    axes = [ax for ax in fig.axes]
    assert len(axes) == 10
    assert axes[0].get_title().startswith("encoder sees (frame 2)")
    assert axes[1].get_xlabel().endswith("dB") and axes[1].get_xlabel() == f"{float(recs[0].psnr_pixels[0]):.1f} dB"
    assert "16/32 visible" in axes[0].get_ylabel() and "8/32 visible" in axes[5].get_ylabel()
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "TRUE patch" in texts and "ImageNet" in texts
    # the "original" panel holds the clip's frame, exactly
    original = axes[4].get_images()[0].get_array()
    assert np.array_equal(np.asarray(original), (recs[0].original[0, :, 2] * 255).round().byte().permute(1, 2, 0).numpy())
    # hidden pixels are greyed in the first panel
    seen = np.asarray(axes[0].get_images()[0].get_array()).astype(float) / 255
    hidden_pos = recs[0].mask[0].reshape(2, 4, 4)[1].nonzero()[0]  # frame 2 = slot 1
    y, x = (int(v) * 8 for v in hidden_pos)
    px = recs[0].original[0, :, 2, y, x].numpy()
    assert np.allclose(seen[y, x], (1 - MASK_ALPHA) * px + MASK_ALPHA * MASK_GREY, atol=1 / 255)
    assert _png(fig).size[0] > 300
    with pytest.raises(ValueError, match="labels"):
        render_reconstructions(recs, labels=["x"])
    with pytest.raises(ValueError, match="Reconstruction"):
        render_reconstructions([object()])


def test_render_dual_masking_colours_the_four_kinds_of_tokens():
    video = _video(1)
    mask = tube_mask(1, (2, 4, 4), 0.75, generator=torch.Generator().manual_seed(1))
    dec = running_cell_mask(1, (2, 4, 4), 0.5)
    fig = render_dual_masking(video[0], mask, dec, (2, 4, 4), frames=[0, 2])
    assert len(fig.axes) == 2
    title = fig._suptitle.get_text()
    n_dec = int((~dec).sum())
    assert f"encoder sees {int((~mask).sum())} of 32" in title and f"decoder rebuilds {n_dec}" in title
    assert f"skips {int((mask & dec).sum())} hidden" in title
    with pytest.raises(ValueError):
        render_dual_masking(video[0], mask[:, :10], dec, (2, 4, 4))


def test_reconstruction_explorer_only_indexes_precomputed_views():
    pytest.importorskip("ipywidgets")
    model = _model()
    views = R.precompute_views(model, {"a": _video(1)[0], "b": _video(1, seed=2)[0]}, strategies=("tube", "random"),
                               ratios=(0.5, 0.75))
    box = reconstruction_explorer(views, clip="b", strategy="random", ratio=0.7, frame=1)
    c = box.controls
    assert set(c) == {"clip", "strategy", "ratio", "frame"}
    assert c["ratio"].value == 0.75 and not c["ratio"].continuous_update and not c["frame"].continuous_update
    first = bytes(box.image.value)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    calls = []
    original = R.reconstruct
    R.reconstruct = lambda *a, **k: calls.append(1)  # moving a control must not run the model
    try:
        c["frame"].value = 3
        c["clip"].value = "a"
        c["ratio"].value = 0.5
    finally:
        R.reconstruct = original
    assert not calls and bytes(box.image.value) != first
    expected = figure_to_png(render_reconstructions(views[("a", "random", 0.5)], 3, title="a: random masking, ρ = 0.50"))
    assert bytes(box.image.value) == expected
    with pytest.raises(ValueError, match="strategy"):
        reconstruction_explorer(views, strategy="frame")
    with pytest.raises(ValueError, match="non-empty"):
        reconstruction_explorer({})
