"""Checkpoints: parity with transformers' VideoMAE, official round trips, errors, atomic saving.

Tolerance for the parity tests: float32, max |Δ| ≤ 1e-5 on predictions and losses (the two
implementations do the same arithmetic in a different order: one qkv matrix product vs three).
"""

import argparse
import os

import pytest
import torch

from maskvid_edu.checkpoints import (
    BIAS_LAYOUTS,
    LoadReport,
    detect_format,
    load_videomae,
    read_state_dict,
    save_checkpoint,
    to_official,
    to_transformers,
    transformers_bias_layout,
)
from maskvid_edu.models import create
from maskvid_edu.models.videomae import VideoMAE, VideoMAEConfig
from maskvid_edu.models.vit import ViTConfig, VisionTransformer

transformers = pytest.importorskip("transformers")
from maskvid_edu.measure.bench import transformers_config, transformers_twin  # noqa: E402

ATOL = 1e-5


def small(**kw):
    base = dict(img_size=32, num_frames=4, tubelet=2, patch=8, dim=48, depth=2, heads=4,
                decoder_dim=24, decoder_depth=2, decoder_heads=2, mask_ratio=0.75)
    base.update(kw)
    return VideoMAEConfig(**base)


def random_hf(config: VideoMAEConfig, seed=0):
    """transformers' pre-training model with random weights (biases and LayerNorms too)."""
    torch.manual_seed(seed)
    hf = transformers.VideoMAEForPreTraining(transformers_config(config))
    hf.decoder.norm.eps = config.ln_eps  # transformers hard-codes 1e-5 there; the official value is 1e-6
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "bias" in name or "layernorm" in name or "norm." in name:
                p.add_(0.1 * torch.randn_like(p))
    return hf.eval()


def video_and_mask(config, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, 3, config.num_frames, config.img_size, config.img_size, generator=g)
    mask = VideoMAE(config).make_mask(video, g)
    return video, mask


@pytest.mark.parametrize("normalization", ["videomae", "none"])
def test_transformers_weights_give_equal_predictions_and_loss(normalization):
    config = small(normalization=normalization)
    hf = random_hf(config)
    ours = VideoMAE(config).eval()
    report = load_videomae(ours, hf.state_dict())
    assert report.format == "transformers" and not report.missing and not report.unexpected
    video, mask = video_and_mask(config)
    with torch.no_grad():
        out = ours(video, mask)
        ref = hf(video.transpose(1, 2), bool_masked_pos=mask)  # transformers takes (B, T, C, H, W)
    assert (out.pred - ref.logits).abs().max() <= ATOL
    assert abs(out.loss.item() - ref.loss.item()) <= ATOL


def test_transformers_parity_at_vit_b_width():
    """ViT-B widths (768 / 12 heads, decoder 384 / 6 heads) on a short, small clip."""
    config = small(img_size=64, patch=16, dim=768, heads=12, depth=2, decoder_dim=384, decoder_heads=6,
                   decoder_depth=1, mask_ratio=0.9, num_frames=4)
    hf = random_hf(config)
    ours = VideoMAE(config).eval()
    load_videomae(ours, hf.state_dict())
    video, mask = video_and_mask(config, batch=1)
    with torch.no_grad():
        out = ours(video, mask)
        ref = hf(video.transpose(1, 2), bool_masked_pos=mask)
    assert (out.pred - ref.logits).abs().max() <= ATOL
    assert abs(out.loss.item() - ref.loss.item()) <= ATOL


@pytest.mark.slow
def test_transformers_parity_full_vit_b():
    ours = create("videomae_vit_b").eval()
    hf = transformers_twin(ours).eval()  # weights copied ours → transformers
    video = torch.randn(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0))
    mask = ours.make_mask(video, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = ours(video, mask)
        ref = hf(video.transpose(1, 2), bool_masked_pos=mask)
    assert (out.pred - ref.logits).abs().max() <= ATOL
    assert abs(out.loss.item() - ref.loss.item()) <= ATOL


def test_transformers_encoder_and_export_round_trip():
    config = small()
    hf = random_hf(config)
    ours = VideoMAE(config)
    load_videomae(ours, hf.state_dict())
    exported = to_transformers(ours)
    assert exported.keys() == hf.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in hf.state_dict().items())
    # transformers' bare VideoMAEModel → our encoder: same features for all tokens
    encoder = VisionTransformer(config.encoder_config()).eval()
    report = load_videomae(encoder, hf.videomae.state_dict())
    assert report.format == "transformers" and not report.missing
    video, _ = video_and_mask(config)
    with torch.no_grad():
        ref = hf.videomae(video.transpose(1, 2)).last_hidden_state
        assert (encoder(video) - ref).abs().max() <= ATOL


# The two names transformers has used for a block's query / value biases, written out here (not
# taken from maskvid_edu) so that the tests check the converter against the libraries themselves:
# transformers 4.57 VideoMAESelfAttention: self.q_bias = nn.Parameter(...), self.v_bias = ...
# transformers 5.24 VideoMAESelfAttention: self.query = nn.Linear(..., bias=config.qv_bias), same for value
V4_BIASES = ("attention.attention.q_bias", "attention.attention.v_bias")
V5_BIASES = ("attention.attention.query.bias", "attention.attention.value.bias")


def in_bias_layout(state_dict, names):
    """``state_dict`` with its query / value biases renamed to ``names`` (either layout in)."""
    out = {}
    for key, value in state_dict.items():
        for old in V4_BIASES + V5_BIASES:
            if key.endswith(old):
                key = key[: -len(old)] + names[(V4_BIASES + V5_BIASES).index(old) % 2]
        out[key] = value
    return out


def test_the_installed_transformers_layout_is_recognised():
    hf = random_hf(small())
    names = set(hf.state_dict())
    layout = transformers_bias_layout()
    assert layout in BIAS_LAYOUTS
    expected = V4_BIASES if layout == "q_bias" else V5_BIASES
    assert {f"videomae.encoder.layer.0.{n}" for n in expected} <= names
    assert not any(k.endswith("attention.attention.key.bias") for k in names)


@pytest.mark.parametrize("names", [V4_BIASES, V5_BIASES], ids=["transformers4", "transformers5"])
def test_both_bias_layouts_load_strictly_with_equal_predictions(names):
    config = small()
    hf = random_hf(config)
    state = in_bias_layout(hf.state_dict(), names)
    assert sum(k.endswith(names) for k in state) == 2 * (config.depth + config.decoder_depth)
    ours = VideoMAE(config).eval()
    report = load_videomae(ours, state, strict=True)
    assert report.format == "transformers" and not report.missing and not report.unexpected
    for ours_name, hf_name in (("encoder.blocks.1.attn.q_bias", "videomae.encoder.layer.1." + names[0]),
                               ("decoder.blocks.0.attn.v_bias", "decoder.decoder_layers.0." + names[1])):
        assert torch.equal(ours.state_dict()[ours_name], state[hf_name])
    video, mask = video_and_mask(config)
    with torch.no_grad():
        assert (ours(video, mask).pred - hf(video.transpose(1, 2), bool_masked_pos=mask).logits).abs().max() <= ATOL


def test_a_checkpoint_with_both_bias_layouts_is_refused():
    state = random_hf(small()).state_dict()
    doubled = {**in_bias_layout(state, V4_BIASES), **in_bias_layout(state, V5_BIASES)}
    with pytest.raises(ValueError, match="same bias twice.*q_bias.*linear"):
        load_videomae(VideoMAE(small()), doubled)


def test_export_in_each_bias_layout():
    config = small()
    hf = random_hf(config)
    ours = VideoMAE(config)
    load_videomae(ours, hf.state_dict())
    for layout, names in (("q_bias", V4_BIASES), ("linear", V5_BIASES)):
        exported = to_transformers(ours, bias_layout=layout)
        reference = in_bias_layout(hf.state_dict(), names)
        assert exported.keys() == reference.keys(), layout
        assert all(torch.equal(exported[k], v) for k, v in reference.items()), layout
    hf.load_state_dict(to_transformers(ours), strict=True)  # default: the installed layout
    with pytest.raises(ValueError, match="bias_layout must be one of .*'qkv'"):
        to_transformers(ours, bias_layout="qkv")


def test_official_round_trip_and_wrappers(tmp_path):
    torch.manual_seed(0)
    source = VideoMAE(small())
    official = to_official(source)
    assert "encoder_to_decoder.weight" in official and "mask_token" in official
    assert "encoder.blocks.0.attn.qkv.weight" in official and "encoder.blocks.0.attn.q_bias" in official
    assert not any("pos_embed" in k for k in official)
    for wrapped in (official, {"model": official}, {"module": {"module." + k: v for k, v in official.items()}}):
        target = VideoMAE(small())
        report = load_videomae(target, wrapped)
        assert report.format == "official_pretrain" and len(report.loaded) == len(official)
        assert all(torch.equal(target.state_dict()[k], v) for k, v in official.items())
    # from a file, as the official training script saves it (with its argparse.Namespace)
    path = save_checkpoint({"model": official, "epoch": 799, "args": argparse.Namespace(model="x")}, tmp_path / "ck.pth")
    target = VideoMAE(small())
    load_videomae(target, path)
    video, mask = video_and_mask(small())
    with torch.no_grad():
        assert torch.equal(target(video, mask).pred, source(video, mask).pred)


def test_official_position_embeddings_are_checked_and_ignored():
    model = VideoMAE(small())
    sd = to_official(model)
    sd["encoder.pos_embed"] = model.encoder.pos_embed.unsqueeze(0).clone()  # (1, N, D) as stored officially
    sd["pos_embed"] = model.decoder_pos_embed.unsqueeze(0).clone()
    report = load_videomae(VideoMAE(small()), sd)
    assert set(report.ignored) == {"encoder.pos_embed", "pos_embed"}
    sd["encoder.pos_embed"] = torch.randn_like(sd["encoder.pos_embed"])
    with pytest.raises(ValueError, match="learned position"):
        load_videomae(VideoMAE(small()), sd)


def test_official_finetuned_layout_into_encoder():
    torch.manual_seed(0)
    encoder_config = ViTConfig(**{**small().encoder_config().__dict__, "use_mean_pooling": True, "num_classes": 7})
    source = VisionTransformer(encoder_config)
    sd = to_official(source)
    assert {"fc_norm.weight", "head.weight", "blocks.0.attn.qkv.weight", "patch_embed.proj.weight"} <= set(sd)
    assert detect_format(sd) == "official_finetune"
    target = VisionTransformer(encoder_config)
    report = load_videomae(target, sd)
    assert report.format == "official_finetune" and not report.missing
    video = torch.randn(2, 3, 4, 32, 32)
    assert torch.equal(target.eval().classify(video), source.eval().classify(video))
    # a mean-pooling checkpoint into a final-norm encoder: a clear error with a hint
    with pytest.raises(ValueError, match="use_mean_pooling=True"):
        load_videomae(VisionTransformer(small().encoder_config()), sd)


def test_pretrain_checkpoint_into_encoder_ignores_decoder():
    torch.manual_seed(0)
    pretrained = VideoMAE(small())
    encoder = VisionTransformer(small().encoder_config())
    report = load_videomae(encoder, to_official(pretrained))
    assert not report.missing and not report.unexpected
    assert "mask_token" in report.ignored and any(k.startswith("decoder.") for k in report.ignored)
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(encoder(video), pretrained.encoder(video))


def test_missing_and_unexpected_keys():
    sd = to_official(VideoMAE(small()))
    del sd["decoder.head.weight"]
    sd["decoder.extra.weight"] = torch.zeros(3)
    model = VideoMAE(small())
    before = model.state_dict()["encoder.norm.weight"].clone()
    with pytest.raises(ValueError, match=r"missing 1 \[decoder\.head\.weight\].*unexpected 1 \[decoder\.extra\.weight\]"):
        load_videomae(model, sd)
    assert torch.equal(model.state_dict()["encoder.norm.weight"], before)  # nothing loaded
    sd["encoder.norm.weight"] = torch.full_like(before, 2.0)
    report = load_videomae(model, sd, strict=False)
    assert isinstance(report, LoadReport)
    assert report.missing == ["decoder.head.weight"] and report.unexpected == ["decoder.extra.weight"]
    assert torch.equal(model.state_dict()["encoder.norm.weight"], sd["encoder.norm.weight"])
    assert "missing (1)" in str(report)


def test_shape_mismatch_is_an_error():
    sd = to_official(VideoMAE(small()))
    with pytest.raises(ValueError, match="shape mismatch"):
        load_videomae(VideoMAE(small(dim=64)), sd, strict=False)


def test_file_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_videomae(VideoMAE(small()), missing)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.txt"):
        read_state_dict(text)
    listing = save_checkpoint([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth.*state dict"):
        read_state_dict(listing)
    with pytest.raises(ValueError, match="not a VideoMAE state dict"):
        load_videomae(VideoMAE(small()), {"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="VideoMAE or a VisionTransformer"):
        load_videomae(torch.nn.Linear(2, 2), {})


def test_save_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "sub" / "last.pth"
    save_checkpoint({"step": 1}, path)
    assert torch.load(path)["step"] == 1
    with pytest.raises(Exception):
        save_checkpoint({"step": 2, "bad": lambda: None}, path)  # cannot be pickled mid-write
    assert torch.load(path)["step"] == 1  # the previous checkpoint survives intact
    assert os.listdir(path.parent) == ["last.pth"]  # no temporary file left behind
