"""VideoMAE / VideoMAE V2 pre-training model: registry, sizes, loss, masking semantics."""

import math

import pytest
import torch
import torch.nn.functional as F

from maskvid_edu.masking import masked_tokens, running_cell_mask, tube_mask
from maskvid_edu.models import PretrainOutput, create, list_models
from maskvid_edu.models.videomae import VideoMAE, VideoMAEConfig
from maskvid_edu.patches import pixel_targets

SIZES = ["videomae_vit_s", "videomae_vit_b", "videomae_vit_l", "videomae_vit_h", "videomae_vit_g"]

# Whole pre-training models (encoder + encoder_to_decoder + mask_token + decoder) of the official
# definitions with the decoder depth of the released recipes (4 for S/B/g, 12 for L/H);
# transformers' VideoMAEForPreTraining with the same config has the same counts.
OFFICIAL_PRETRAIN_PARAMS = {
    "videomae_vit_s": 24_029_376,
    "videomae_vit_b": 94_210_944,
    "videomae_vit_l": 342_996_992,
    "videomae_vit_h": 692_487_296,
    "videomae_vit_g": 1_026_306_560,
}


def tiny(**kw):
    base = dict(img_size=32, num_frames=4, tubelet=2, patch=8, dim=32, depth=2, heads=4,
                decoder_dim=16, decoder_depth=1, decoder_heads=2, mask_ratio=0.75)
    base.update(kw)
    return VideoMAE(VideoMAEConfig(**base))


def clip(b=2, t=4, s=32, seed=0):
    return torch.randn(b, 3, t, s, s, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_and_builds():
    names = list_models("videomae")
    assert set(SIZES + ["videomae_vit_demo"]) <= set(names)
    assert names == sorted(names)
    assert list_models("no_such_prefix") == []
    model = create("videomae_vit_demo", mask_ratio=0.75)
    assert isinstance(model, VideoMAE) and model.config.mask_ratio == 0.75


def test_registry_errors():
    with pytest.raises(ValueError, match="videomae_vit_b"):  # the message lists known names
        create("videomae_vit_xl")
    with pytest.raises(ValueError, match="'mask_ration'"):
        create("videomae_vit_demo", mask_ration=0.5)
    with pytest.raises(ValueError, match="decoder_mask_ratio"):
        create("videomae_vit_demo", decoder_mask_ratio=1.5)


@pytest.mark.parametrize("name", SIZES)
def test_published_configs_and_parameter_counts(name):
    with torch.device("meta"):
        model = create(name)
    c = model.config
    expected = {
        "videomae_vit_s": (384, 12, 6, 192, 3, 4),
        "videomae_vit_b": (768, 12, 12, 384, 6, 4),
        "videomae_vit_l": (1024, 24, 16, 512, 8, 12),
        "videomae_vit_h": (1280, 32, 16, 640, 8, 12),
        "videomae_vit_g": (1408, 40, 16, 512, 8, 4),
    }[name]
    assert (c.dim, c.depth, c.heads, c.decoder_dim, c.decoder_heads, c.decoder_depth) == expected
    assert c.ln_eps == 1e-6 and c.mask_ratio == 0.9 and c.normalization == "videomae"
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PRETRAIN_PARAMS[name]
    assert c.decoder_mask_ratio == (0.5 if name == "videomae_vit_g" else 0.0)


def test_parameter_count_equals_transformers():
    transformers = pytest.importorskip("transformers")
    from maskvid_edu.measure.bench import transformers_config

    with torch.device("meta"):
        ours = create("videomae_vit_b")
        hf = transformers.VideoMAEForPreTraining(transformers_config(ours.config))
    assert sum(p.numel() for p in hf.parameters()) == OFFICIAL_PRETRAIN_PARAMS["videomae_vit_b"]


def test_l_h_decoder_depth_override():
    with torch.device("meta"):
        model = create("videomae_vit_l", decoder_depth=4)
    assert len(model.decoder.blocks) == 4


def test_demo_preset_size():
    model = create("videomae_vit_demo")
    c = model.config
    assert c.grid == (4, 8, 8)
    assert sum(p.numel() for p in model.encoder.parameters()) < 1_000_000
    video = torch.randn(8, 3, 8, 64, 64)
    mask = model.make_mask(video, torch.Generator().manual_seed(0))
    assert mask.shape == (8, 256) and int(mask[0].sum()) == 4 * math.floor(0.9 * 64)


def test_forward_output_and_targets():
    torch.manual_seed(0)
    model = tiny()
    video = clip()
    mask = model.make_mask(video, torch.Generator().manual_seed(1))
    out = model(video, mask)
    assert isinstance(out, PretrainOutput)
    n_mask = 2 * math.floor(0.75 * 16)
    assert out.pred.shape == out.target.shape == (2, n_mask, 2 * 8 * 8 * 3)
    assert torch.equal(out.mask, mask) and torch.equal(out.extras["decoded"], mask)
    expected_target = masked_tokens(pixel_targets(video, 2, 8, "videomae"), mask)
    assert torch.allclose(out.target, expected_target, atol=1e-6)
    assert torch.allclose(out.loss, F.mse_loss(out.pred, expected_target))
    assert out.loss_pixel is out.terms["loss_pixel"] is out.loss


@pytest.mark.parametrize("normalization", ["none", "mae", "videomae"])
def test_target_normalisations(normalization):
    model = tiny(normalization=normalization)
    video = clip()
    mask = model.make_mask(video, torch.Generator().manual_seed(2))
    out = model(video, mask)
    assert torch.allclose(out.target, masked_tokens(pixel_targets(video, 2, 8, normalization), mask), atol=1e-6)
    if normalization == "none":  # raw pixels in [0, 1]-ish range of the un-normalised clip
        assert torch.allclose(out.target, masked_tokens(pixel_targets(video, 2, 8, "none"), mask))


def test_pred_depends_only_on_visible_pixels():
    """Changing hidden tubelets changes the target, never the prediction."""
    torch.manual_seed(0)
    model = tiny().eval()
    video = clip()
    mask = model.make_mask(video, torch.Generator().manual_seed(3))
    # a pixel-space copy with every hidden tubelet replaced by noise
    token_of_pixel = torch.arange(32).view(2, 4, 4).repeat_interleave(2, 0).repeat_interleave(8, 1).repeat_interleave(8, 2)
    hidden = mask[:, token_of_pixel.flatten()].view(2, 1, 4, 32, 32)  # (B, 1, T, H, W)
    changed = torch.where(hidden, torch.randn_like(video), video)
    a, b = model(video, mask), model(changed, mask)
    assert torch.allclose(a.pred, b.pred, atol=1e-6)
    assert not torch.allclose(a.target, b.target)


def test_gradients_reach_every_parameter():
    model = tiny()
    video = clip()
    model(video, model.make_mask(video)).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_v2_decoder_masking_semantics():
    """Dual masking as the official code: decode (and score) every token the running-cell mask keeps."""
    torch.manual_seed(0)
    model = tiny(decoder_mask_ratio=0.5)
    video = clip()
    mask = model.make_mask(video, torch.Generator().manual_seed(4))
    dmask = running_cell_mask(2, (2, 4, 4), 0.5, generator=torch.Generator().manual_seed(5))
    seen = {}
    handle = model.decoder.register_forward_pre_hook(lambda m, args: seen.__setitem__("in", args[0].shape))
    out = model(video, mask, dmask)
    handle.remove()
    n_vis, n_dec = 2 * 4, 32 // 2
    assert seen["in"] == (2, n_vis + n_dec, 16)  # visible tokens + one mask token per decoded position
    assert out.pred.shape == out.target.shape == (2, n_dec, 384)
    assert torch.equal(out.extras["decoded"], ~dmask)
    expected = masked_tokens(pixel_targets(video, 2, 8, "videomae"), ~dmask)
    assert torch.allclose(out.target, expected, atol=1e-6)
    assert torch.allclose(out.loss, F.mse_loss(out.pred, expected))
    # some decoded tokens were visible to the encoder; they stay in the loss, as in the official code
    assert ((~dmask) & ~mask).any()


def test_v2_tokens_neither_visible_nor_decoded_do_not_matter():
    torch.manual_seed(0)
    model = tiny(decoder_mask_ratio=0.5).eval()
    video = clip()
    mask = model.make_mask(video, torch.Generator().manual_seed(6))
    dmask = running_cell_mask(2, (2, 4, 4), 0.5, generator=torch.Generator().manual_seed(7))
    ignored = mask & dmask  # hidden from the encoder and not reconstructed
    token_of_pixel = torch.arange(32).view(2, 4, 4).repeat_interleave(2, 0).repeat_interleave(8, 1).repeat_interleave(8, 2)
    where = ignored[:, token_of_pixel.flatten()].view(2, 1, 4, 32, 32)
    changed = torch.where(where, torch.randn_like(video), video)
    assert torch.allclose(model(video, mask, dmask).loss, model(changed, mask, dmask).loss, atol=1e-6)


def test_v2_draws_decoder_mask_when_not_given():
    model = tiny(decoder_mask_ratio=0.5)
    video = clip()
    mask = model.make_mask(video)
    out = model(video, mask)
    assert out.pred.shape[1] == 16
    decoded = out.extras["decoded"]
    assert (decoded.sum(1) == 16).all()
    assert model.make_decoder_mask(video).shape == (2, 32)
    assert tiny().make_decoder_mask(video) is None


def test_make_mask_is_tube_and_seeded():
    model = tiny()
    video = clip()
    m1 = model.make_mask(video, torch.Generator().manual_seed(9))
    m2 = model.make_mask(video, torch.Generator().manual_seed(9))
    assert torch.equal(m1, m2) and m1.dtype == torch.bool
    assert torch.equal(m1, tube_mask(2, (2, 4, 4), 0.75, generator=torch.Generator().manual_seed(9)))
    grid = m1.view(2, 2, 16)
    assert torch.equal(grid[:, 0], grid[:, 1])  # the same spatial positions in every slot
    rnd = tiny(mask_type="random").make_mask(video, torch.Generator().manual_seed(9))
    assert int(rnd[0].sum()) == math.floor(0.75 * 32)


def test_deterministic_with_fixed_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = tiny()
        video = clip(seed=4)
        mask = model.make_mask(video, torch.Generator().manual_seed(5))
        outs.append(model(video, mask))
    assert torch.equal(outs[0].pred, outs[1].pred) and torch.equal(outs[0].loss, outs[1].loss)


def test_other_input_size():
    model = tiny().eval()
    video = clip(s=48)
    out = model(video, model.make_mask(video))
    assert out.pred.shape == (2, 2 * math.floor(0.75 * 36), 384)


def test_input_errors():
    model = tiny()
    video = clip()
    with pytest.raises(ValueError, match="mask"):
        model(video, torch.zeros(2, 31, dtype=torch.bool))
    with pytest.raises(ValueError, match="decoder_mask"):
        model(video, model.make_mask(video), torch.zeros(2, 32))
    with pytest.raises(ValueError, match="normalization"):
        tiny(normalization="per_frame")
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny(mask_ratio=1.0)


def test_bench_runs_on_demo_size():
    pytest.importorskip("transformers")
    from maskvid_edu.measure.bench import bench_pretrain, format_result

    before = torch.get_num_threads()
    r = bench_pretrain("videomae_vit_demo", batch=2, frames=8, size=64, steps=1, warmup=0, memory=False,
                       threads=1, verbose=False)
    assert torch.get_num_threads() == before and r["threads"] == 1
    assert r["loss_abs_diff"] <= r["loss_tolerance"]
    assert len(r["times_ours"]) == len(r["times_transformers"]) == 1 and r["speedup"] > 0
    assert "speed-up" in format_result(r)


@pytest.mark.slow
def test_bench_measures_cpu_memory_in_fresh_processes():
    pytest.importorskip("transformers")
    from maskvid_edu.measure.bench import bench_pretrain

    r = bench_pretrain("videomae_vit_demo", batch=2, frames=8, size=64, steps=1, warmup=0, device="cpu",
                       memory=True, verbose=False)
    # at least parameters + gradients + two AdamW moments of the ~1 M-parameter model
    params_mib = sum(p.numel() for p in create("videomae_vit_demo").parameters()) * 4 / 2**20
    for kind in ("ours", "transformers"):
        assert 4 * params_mib < r[f"peak_mib_{kind}"] < 2048


@pytest.mark.slow
def test_full_size_vit_b_step_on_cpu():
    torch.manual_seed(0)
    model = create("videomae_vit_b")
    video = torch.randn(1, 3, 16, 224, 224)
    mask = model.make_mask(video, torch.Generator().manual_seed(0))
    assert int(mask.sum()) == 8 * math.floor(0.9 * 196)
    out = model(video, mask)
    assert out.pred.shape == (1, 8 * 176, 1536)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
