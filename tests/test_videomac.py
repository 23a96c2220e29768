"""VideoMAC: shapes and loss terms, symmetric masks, sparse encoders, the EMA target through the
trainer (accumulation, resume), the release's loss arithmetic, frame pairs; and the chapter-3
measurements (dissipation profile, backend agreement, the dissipation viewer)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskvid_edu import sparse, widgets
from maskvid_edu.analysis import sparse_dissipation
from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset
from maskvid_edu.data.transforms import denormalize, normalize
from maskvid_edu.data.wrappers import FramePairs
from maskvid_edu.ema import cosine_momentum
from maskvid_edu.masking import masked_tokens, random_mask
from maskvid_edu.models import create, list_models
from maskvid_edu.models.videomac import VideoMAC, VideoMACConfig, pair_reconstruction
from maskvid_edu.train import CHECKPOINT_NAME, TrainConfig, load_checkpoint, train

DEMOS = ("videomac_convnextv2_demo", "videomac_resnet_demo")


def _video(B=2, T=2, H=64, W=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.rand(B, 3, T, H, W, generator=g), channel_dim=1)


class Clips(torch.utils.data.Dataset):
    """Random normalised frame pairs, a pure function of the index."""

    def __init__(self, n=16, size=64):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"video": _video(1, 2, self.size, self.size, seed=1000 + i)[0]}


def _model(name="videomac_convnextv2_demo", seed=0, **overrides):
    torch.manual_seed(seed)
    return create(name, **overrides)


# ------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEMOS)
def test_shapes_and_terms(name):
    model = _model(name, gamma=0.5)
    video = _video()  # (2, 3, 2, 64, 96): grid (2, 3), 6 patches, floor(0.75·6) = 4 hidden
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(1))
    out = model(video, mask)
    M, P = 4, 32 * 32 * 3
    assert out.pred.shape == out.target.shape == (2, 2 * M, P)
    assert set(out.terms) == {"loss_online", "loss_target", "loss_consistency"}
    assert torch.allclose(out.loss, out.loss_online + out.loss_target + 0.5 * out.loss_consistency)
    assert out.extras["online_pred"].shape == out.extras["target_pred"].shape == (2, M, P)
    assert out.extras["latent"].shape == (2, model.encoder.num_features, 2, 3)
    # pred/target follow the mask's raster order: frame 1's hidden patches, then frame 2's
    assert torch.equal(out.pred[:, :M], out.extras["online_pred"])
    assert torch.equal(out.pred[:, M:], out.extras["target_pred"])
    f1, f2 = video[:, :, 0], video[:, :, 1]
    assert torch.equal(out.target[:, :M], masked_tokens(model.targets(f1), mask[:, :6]))
    assert torch.equal(out.target[:, M:], masked_tokens(model.targets(f2), mask[:, 6:]))
    assert out.mask is mask
    # the same weights and the same frame give the same reconstruction in both branches
    same = model(video[:, :, [0, 0]], mask)
    assert torch.allclose(same.extras["online_pred"], same.extras["target_pred"], atol=1e-6)
    assert same.loss_consistency.item() < 1e-10


def test_make_mask_is_symmetric_and_reproducible():
    model = _model()
    video = _video(B=5, H=96, W=128)  # grid (3, 4): floor(0.75·12) = 9 hidden per frame
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(3))
    assert mask.shape == (5, 24) and mask.dtype == torch.bool
    assert torch.equal(mask[:, :12], mask[:, 12:])
    assert (mask[:, :12].sum(1) == 9).all()
    again = model.make_mask(video, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)
    assert not torch.equal(mask, model.make_mask(video, generator=torch.Generator().manual_seed(4)))


def test_frames_of_a_longer_clip_and_bad_input():
    model = _model(frame_gap=2, num_frames=3)
    video = _video(T=4)
    mask = model.make_mask(video)
    out = model(video, mask)
    pair = _model()(video[:, :, [0, 2]], mask)  # same init, gap 1 on frames 0 and frame_gap
    assert torch.equal(out.loss, pair.loss)
    with pytest.raises(ValueError, match="frame_gap"):
        model(video[:, :, :2], mask)
    asym = mask.clone()
    asym[:, 6:] = asym[:, 6:].roll(1, dims=1)
    if torch.equal(asym, mask):
        asym[:, 6:] = ~asym[:, 6:]
    with pytest.raises(ValueError, match="symmetric"):
        model(video, asym)
    with pytest.raises(ValueError, match="mask"):
        model(video, mask[:, :6])
    with pytest.raises(ValueError, match="multiple of 32"):
        model(_video(T=4, H=48), mask)
    with pytest.raises(ValueError, match="channels"):
        model(video[:, :2], mask)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(video[:, :, 0], mask)


def test_config_is_validated():
    with pytest.raises(ValueError, match="encoder"):
        VideoMACConfig(encoder="vit_b")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        VideoMACConfig(momentum_schedule="per_epoch_buggy")
    with pytest.raises(ValueError, match="momentum_schedule"):
        VideoMACConfig(momentum_schedule="linear")
    with pytest.raises(ValueError, match="drop_path"):
        VideoMACConfig(encoder="mac_resnet50", drop_path=0.1)
    with pytest.raises(ValueError, match="num_frames"):
        VideoMACConfig(num_frames=2, frame_gap=2)
    with pytest.raises(ValueError, match="gamma"):
        VideoMACConfig(gamma=-1)
    with pytest.raises(ValueError, match="unknown override"):
        create("videomac_resnet_demo", gama=1.0)


def test_registry_names_and_encoders():
    names = set(list_models("videomac"))
    sizes = ("atto", "femto", "pico", "nano", "tiny", "small", "base", "large", "huge")
    assert {f"videomac_convnextv2_{s}" for s in sizes} | {
        "videomac_resnet18", "videomac_resnet50", "videomac_resnet50_tv",
        "videomac_convnextv2_demo", "videomac_resnet_demo"} == names
    cfg = create("videomac_convnextv2_atto").config
    assert (cfg.encoder, cfg.decoder_dim, cfg.decoder_depth, cfg.mask_ratio, cfg.gamma) == ("convnextv2_atto", 512, 1, 0.75, 1.0)
    assert (cfg.momentum_base, cfg.momentum_final, cfg.normalization, cfg.img_size) == (0.996, 1.0, "mae", 224)
    r18 = create("videomac_resnet18")
    assert isinstance(r18, VideoMAC) and r18.encoder.num_features == 512 and r18.encoder.config.norm == "ln"
    assert r18.decoder.proj.in_channels == 512 and r18.decoder.pred.out_channels == 32 * 32 * 3


@pytest.mark.parametrize("name", DEMOS)
def test_hidden_patches_of_the_encoder_output_are_exactly_zero(name):
    model = _model(name)
    video = _video(B=3, H=96, W=96)
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(0))
    out = model(video, mask)
    for key in ("latent", "target_latent"):
        z = out.extras[key]  # (B, C, 3, 3)
        hidden = mask[:, :9].view(3, 3, 3)
        assert (z.permute(0, 2, 3, 1)[hidden] == 0).all(), key
        assert (z.permute(0, 2, 3, 1)[~hidden].abs().sum(-1) > 0).all(), key


@pytest.mark.parametrize("name", DEMOS)
def test_dense_encoder_input_zeroes_hidden_pixels_and_fills_hidden_cells(name):
    # encoder_input="dense": the ablation of a dense ConvNet on a zero-filled frame. What is
    # under a hidden patch cannot matter (it is zeroed), yet the hidden cells of the features
    # are no longer empty, and the same weights give other numbers than the sparse encoder.
    sparse_model = _model(name)
    dense_model = _model(name, encoder_input="dense")
    dense_model.load_state_dict(sparse_model.state_dict())  # same parameters, same names
    video = _video(B=2, H=96, W=96)
    mask = dense_model.make_mask(video, generator=torch.Generator().manual_seed(0))
    hidden = sparse.upsample_mask(mask[:, :9], (3, 3), 32)  # (B, 96, 96), frame 1
    noisy = video.clone()
    noisy[:, :, 0][hidden.unsqueeze(1).expand(-1, 3, -1, -1)] = 7.0  # only hidden pixels change
    out, out_noisy = dense_model(video, mask), dense_model(noisy, mask)
    torch.testing.assert_close(out.extras["latent"], out_noisy.extras["latent"], rtol=0, atol=0)
    z = out.extras["latent"].permute(0, 2, 3, 1)  # (B, 3, 3, C)
    assert (z[mask[:, :9].view(2, 3, 3)].abs().sum(-1) > 0).all()
    assert not torch.allclose(out.extras["latent"], sparse_model(video, mask).extras["latent"])
    assert dense_model.target.module.dense  # the EMA copy runs the same way
    with pytest.raises(ValueError, match="encoder_input"):
        VideoMACConfig(encoder_input="zeros")


def test_target_gets_no_gradient_and_loss_target_has_no_gradient_path():
    model = _model(gamma=1.0)
    video = _video()
    mask = model.make_mask(video)
    out = model(video, mask)
    assert not out.loss_target.requires_grad
    assert out.loss_consistency.requires_grad and out.loss_online.requires_grad
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.target.parameters())
    full = {n: p.grad.clone() for n, p in model.online.named_parameters()}
    # the same gradients without L_target: it adds nothing
    model.zero_grad(set_to_none=True)
    out = model(video, mask)
    (out.loss_online + out.loss_consistency).backward()
    for n, p in model.online.named_parameters():
        assert torch.allclose(full[n], p.grad, rtol=1e-5, atol=1e-7), n
    # with γ = 0 only L_online trains the online network
    model.config.gamma = 0.0
    model.zero_grad(set_to_none=True)
    out = model(video, mask)
    out.loss.backward()
    g0 = {n: p.grad.clone() for n, p in model.online.named_parameters()}
    model.zero_grad(set_to_none=True)
    model(video, mask).loss_online.backward()
    for n, p in model.online.named_parameters():
        assert torch.allclose(g0[n], p.grad, rtol=1e-5, atol=1e-7), n


def _release_patchify(imgs, p=32):
    """The release's image patchify: (N, 3, H, W) → (N, L, p²·3) via 'nchpwq->nhwpqc'."""
    n, _, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(n, 3, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, h * w, p * p * 3)


def _release_decoder(dec, z, mask_hw):
    """The release's forward_decoder + Decoder_Block, written out with functional ops."""
    x = F.conv2d(z, dec.proj.weight, dec.proj.bias)
    m = mask_hw.unsqueeze(1).type_as(x)
    x = x * (1.0 - m) + dec.mask_token.repeat(x.shape[0], 1, x.shape[2], x.shape[3]) * m
    blk = dec.blocks[0]
    inp = x
    y = F.conv2d(x, blk.dwconv.weight, blk.dwconv.bias, padding=3, groups=x.shape[1]).permute(0, 2, 3, 1)
    y = F.layer_norm(y, (y.shape[-1],), blk.norm.weight, blk.norm.bias, 1e-6)
    y = F.gelu(F.linear(y, blk.pwconv1.weight, blk.pwconv1.bias))
    gx = torch.norm(y, p=2, dim=(1, 2), keepdim=True)
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    y = blk.grn.gamma * (y * nx) + blk.grn.beta + y
    y = F.linear(y, blk.pwconv2.weight, blk.pwconv2.bias).permute(0, 3, 1, 2)
    x = inp + y
    return F.conv2d(x, dec.pred.weight, dec.pred.bias)  # (N, p²·3, h, w)


def test_losses_match_the_release_arithmetic():
    """loss_online / loss_target / loss_consistency as the release computes them (forward_loss with
    norm_pix_loss and cons_loss), with the release's decoder written out independently."""
    model = _model(target_space="input").double()
    with torch.no_grad():  # non-trivial GRN and a target that differs from the online network
        for p in model.decoder.blocks[0].grn.parameters():
            p.normal_(0, 0.5)
        for p in model.target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    video = _video(H=96, W=96).double()
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(2))
    out = model(video, mask)
    f1, f2 = video[:, :, 0], video[:, :, 1]
    m = mask[:, :9].double()  # (N, L), 1 = remove

    def forward_loss(imgs, pred_map):
        pred = torch.einsum("ncl->nlc", pred_map.reshape(pred_map.shape[0], pred_map.shape[1], -1))
        target = _release_patchify(imgs)
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * m).sum() / m.sum(), pred

    hidden = mask[:, :9].view(2, 3, 3)
    with torch.no_grad():
        z1 = model.online.encoder(f1, mask[:, :9])
        z2 = model.target.module.encoder(f2, mask[:, 9:])
        pred1 = _release_decoder(model.online.decoder, z1, hidden)
        pred2 = _release_decoder(model.target.module.decoder, z2, hidden)
    lo, p1 = forward_loss(f1, pred1)
    lt, p2 = forward_loss(f2, pred2)
    lc = (((p1 - p2) ** 2).mean(dim=-1) * m).sum() / m.sum()
    for ours, theirs in ((out.loss_online, lo), (out.loss_target, lt), (out.loss_consistency, lc)):
        assert abs(ours.item() - theirs.item()) < 1e-10 * max(1.0, theirs.item())


def test_pixel_targets_undo_the_imagenet_normalisation_then_normalise_each_patch():
    model = _model()
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    t = model.targets(normalize(pixels, channel_dim=1))
    p = _release_patchify(pixels)
    expect = (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True) + 1e-6).sqrt()
    assert t.shape == (2, 4, 3072) and torch.allclose(t, expect, atol=2e-5)
    raw = _model(normalization="none")
    assert torch.allclose(raw.targets(normalize(pixels, channel_dim=1)), p, atol=1e-6)


# ------------------------------------------------------------------------------------------
# the EMA target
# ------------------------------------------------------------------------------------------


def test_on_optimizer_step_is_the_ema_rule_with_the_scheduled_momentum():
    model = _model()
    with torch.no_grad():
        for p in model.online.parameters():
            p.add_(torch.randn_like(p))
    before = {n: p.clone() for n, p in model.target.module.named_parameters()}
    online = dict(model.online.named_parameters())
    model.on_optimizer_step(3, 10)
    m = cosine_momentum(3, 10)
    assert model.last_momentum == m and int(model.ema_updates) == 1
    for n, p in model.target.module.named_parameters():
        assert torch.allclose(p, m * before[n] + (1 - m) * online[n], atol=1e-6), n


def test_momentum_schedules():
    cos = _model(momentum_base=0.99)
    assert cos.momentum_at(0, 100) == pytest.approx(0.99) and cos.momentum_at(100, 100) == pytest.approx(1.0)
    assert cos.momentum_at(50, 100) == pytest.approx(0.995)
    fixed = _model(momentum_schedule="fixed", momentum_base=0.98)
    assert {fixed.momentum_at(s, 100) for s in (0, 50, 99)} == {0.98}
    buggy = _model(momentum_schedule="per_epoch_buggy", steps_per_epoch=10)
    ms = [buggy.momentum_at(s, 40) for s in range(40)]
    assert ms[0] == ms[10] == ms[20] == ms[30] == pytest.approx(0.996)  # restarts every epoch
    assert ms[9] == pytest.approx(cosine_momentum(9, 40)) and max(ms) < cosine_momentum(10, 40)


def _cfg(out_dir=None, **kw):
    base = dict(steps=4, batch_size=2, lr=1e-3, warmup_steps=1, log_every=1, progress=False, device="cpu",
                num_threads=1, out_dir=None if out_dir is None else str(out_dir))
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_updates_the_target_once_per_optimizer_step_with_accumulation():
    model = _model("videomac_resnet_demo")
    calls = []
    hook = model.on_optimizer_step
    model.on_optimizer_step = lambda step, total: (calls.append((step, total)), hook(step, total))
    start = {n: p.clone() for n, p in model.target.module.named_parameters()}
    train(model, Clips(12), _cfg(steps=3, accum_steps=2))  # 6 micro-batches, 3 optimizer steps
    assert calls == [(0, 3), (1, 3), (2, 3)]
    assert int(model.ema_updates) == 3
    moved = [n for n, p in model.target.module.named_parameters() if not torch.equal(p, start[n])]
    assert moved  # the target followed the online network
    online = dict(model.online.named_parameters())
    assert any(not torch.equal(p, online[n]) for n, p in model.target.module.named_parameters())


def test_checkpoint_and_resume_restore_the_target_exactly(tmp_path):
    straight = _model()
    train(straight, Clips(8), _cfg(tmp_path / "a"))
    first = _model()
    train(first, Clips(8), _cfg(tmp_path / "b"), stop_at=2)
    resumed = _model(seed=99)  # a different init: everything must come from the checkpoint
    train(resumed, Clips(8), _cfg(tmp_path / "b"), resume=True)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert int(resumed.ema_updates) == 4
    assert any(k.startswith("target.module.") for k in straight.state_dict())
    fresh = _model(seed=5)
    load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME, fresh)
    for (k, v), w in zip(straight.target.state_dict().items(), fresh.target.state_dict().values()):
        assert torch.equal(v, w), k


def test_short_pretraining_on_synthetic_pairs_lowers_the_loss():
    data = FramePairs(SyntheticVideoDataset(SyntheticConfig(num_frames=4, size=96, num_samples=48, seed=0)),
                      gap=1, cache=True, keys=("video",))
    model = _model(momentum_base=0.98)
    hist = train(model, data, _cfg(steps=60, batch_size=8, lr=3e-3, warmup_steps=6, log_every=10))
    first, last = hist[0], hist[-1]
    assert last["loss_online"] < first["loss_online"] - 0.1, (first, last)
    assert last["loss_target"] < first["loss_target"]  # the EMA copy improves too, with a lag
    assert int(model.ema_updates) == 60


# ------------------------------------------------------------------------------------------
# frame pairs and reconstructions
# ------------------------------------------------------------------------------------------


def test_frame_pairs_take_two_frames_gap_apart():
    clips = SyntheticVideoDataset(SyntheticConfig(num_frames=6, size=32, num_samples=5, seed=1))
    pairs = FramePairs(clips, gap=2, seed=7)
    item = pairs[3]
    t0, t1 = item["frame_indices"].tolist()
    assert t1 - t0 == 2 and 0 <= t0 <= 3
    assert item["video"].shape == (3, 2, 32, 32) and item["masks"].shape == (2, 32, 32)
    assert torch.equal(item["video"], clips[3]["video"][:, [t0, t1]])
    assert item["label"] == clips[3]["label"]
    assert torch.equal(pairs[3]["frame_indices"], item["frame_indices"])  # seeded: a function of the index
    random_gap = FramePairs(clips, max_gap=3, seed=0)
    assert {int(torch.diff(random_gap[i]["frame_indices"])) for i in range(5)} <= {1, 2, 3}
    cached = FramePairs(clips, cache=True, keys=("video",), seed=0)
    assert set(cached[0]) == {"video", "frame_indices"} and len(cached._items) == 1
    assert len(pairs) == 5 and pairs[-1]["video"].shape == (3, 2, 32, 32)
    with pytest.raises(IndexError):
        pairs[5]
    with pytest.raises(ValueError, match="gap"):
        FramePairs(clips, gap=0)
    with pytest.raises(ValueError, match="keys"):
        FramePairs(clips, keys=("label",))


def test_pair_reconstruction_keeps_visible_patches():
    model = _model()
    video = _video(B=1, H=64, W=64)
    images = pair_reconstruction(model, video, generator=torch.Generator().manual_seed(0))
    assert model.training  # mode restored
    hidden = images["hidden"][0]  # (H, W)
    pixels = denormalize(video[:, :, 0], channel_dim=1).clamp(0, 1)[0]
    assert torch.allclose(images["online"][0][:, ~hidden], pixels[:, ~hidden], atol=1e-6)
    assert not torch.allclose(images["online"][0][:, hidden], pixels[:, hidden], atol=1e-3)
    assert set(images) == {"frame1", "frame2", "online", "target", "hidden"}
    assert images["target"].shape == (1, 3, 64, 64)


# ------------------------------------------------------------------------------------------
# full size (CPU, batch 1)
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name,features", [("videomac_convnextv2_small", 768), ("videomac_resnet50", 2048)])
def test_full_size_forward_backward(name, features):
    model = _model(name)
    video = _video(B=1, H=224, W=224)
    mask = model.make_mask(video, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (1, 98) and int(mask[:, :49].sum()) == 36
    out = model(video, mask)
    assert out.pred.shape == (1, 72, 3072) and out.extras["latent"].shape == (1, features, 7, 7)
    out.loss.backward()
    grads = [p.grad for p in model.online.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in model.target.parameters())


# ------------------------------------------------------------------------------------------
# chapter 3: dissipation and agreement of the sparse backends (maskvid_edu.analysis.sparse_dissipation)
# ------------------------------------------------------------------------------------------


def _image_and_mask(size=128, ratio=0.75, seed=0):
    x = _video(B=1, T=1, H=size, W=size, seed=seed)[:, :, 0]  # (1, 3, H, W)
    g = size // 32
    return x, random_mask(1, (1, g, g), ratio, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["encoder_convnextv2_demo", "encoder_resnet_demo"])
def test_dissipation_sparse_stays_empty_dense_fills_up(name):
    torch.manual_seed(0)
    enc = create(name)
    x, mask = _image_and_mask()
    dense = sparse_dissipation.dissipation_profile(enc, x, mask, sparse=False)
    sparse_ = sparse_dissipation.dissipation_profile(enc, x, mask, sparse=True)
    assert [r["name"] for r in dense] == [r["name"] for r in sparse_] == [n for n, _ in sparse_dissipation.dissipation_layers(enc)]
    assert all(r["reached"] == 0 and r["nonzero"] == 0 for r in sparse_)
    assert dense[0]["reached"] == 0  # the non-overlapping 4×4 stem cannot leak
    assert dense[-1]["reached"] == 1.0 and dense[-1]["stride"] == 32
    reached = [r["reached"] for r in dense]
    assert all(b >= a for a, b in zip(reached, reached[1:]))
    assert dense[0]["hidden_sites"] == int(mask.sum()) * 8 * 8
    assert enc.training  # mode restored


def test_dissipation_after_one_depthwise_block_is_the_kernel_reach():
    """After ConvNeXt V2's first block (7×7 depthwise conv at stride 4) a hidden site is reached
    exactly when a visible site lies within 3 sites of it (Chebyshev distance)."""
    torch.manual_seed(0)
    enc = create("encoder_convnextv2_demo")
    x, mask = _image_and_mask(size=160, ratio=0.8, seed=3)
    prof = sparse_dissipation.dissipation_profile(enc, x, mask, sparse=False, return_maps=True)
    row = prof[1]
    assert row["name"] == "stage0.0"
    hidden = sparse.upsample_mask(mask, (5, 5), 8)  # (1, 40, 40)
    near = F.max_pool2d((~hidden).float().unsqueeze(1), 7, 1, 3)[:, 0] > 0  # a visible site within 3
    assert torch.equal(row["map"] & hidden, near & hidden)
    assert row["reached"] == pytest.approx(float((near & hidden).sum()) / float(hidden.sum()))


def test_dissipation_profile_rejects_bad_input():
    enc = create("encoder_resnet_demo")
    x, mask = _image_and_mask()
    with pytest.raises(ValueError, match="mask"):
        sparse_dissipation.dissipation_profile(enc, x, mask[:, :4])
    with pytest.raises(ValueError, match="multiple"):
        sparse_dissipation.dissipation_profile(enc, x[..., :100], mask)
    with pytest.raises(ValueError, match="layers"):
        sparse_dissipation.dissipation_layers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("k,stride,groups", [(3, 1, 1), (7, 1, 4), (2, 2, 1), (1, 1, 1)])
def test_conv_agreement_of_masked_reference_and_minkowski(k, stride, groups):
    torch.manual_seed(0)
    conv = sparse.SparseConv2d(4, 4 if groups > 1 else 6, k, stride=stride, groups=groups).double()
    x = torch.randn(2, 4, 12, 10, dtype=torch.float64)
    mask = torch.rand(2, 12, 10, generator=torch.Generator().manual_seed(1)) < 0.6
    r = sparse_dissipation.conv_agreement(conv, x, mask)
    assert r["masked_vs_reference"] < 1e-12 and r["same_active_sites"] and r["active_sites"] > 0
    if sparse.minkowski_available():
        assert r["minkowski_vs_reference"] < 1e-12
    else:
        assert r["minkowski_vs_reference"] is None


@pytest.mark.minkowski
@pytest.mark.skipif(not sparse.minkowski_available(), reason="MinkowskiEngine is not installed (make minkowski)")
def test_encoder_agreement_with_minkowski():
    torch.manual_seed(0)
    enc = create("encoder_convnextv2_demo").double()
    x, mask = _image_and_mask(size=96)
    r = sparse_dissipation.encoder_agreement(enc, x.double(), mask)
    assert r["forward"] < 1e-10 and r["gradient"] < 1e-9


def test_dissipation_figures_and_viewer():
    ipywidgets = pytest.importorskip("ipywidgets")
    torch.manual_seed(0)
    encoders = {"cnx": create("encoder_convnextv2_demo"), "rn": create("encoder_resnet_demo")}
    x, mask = _image_and_mask(size=96)
    profiles = {n: {v: sparse_dissipation.dissipation_profile(e, x, mask, sparse=v == "sparse") for v in ("dense", "sparse")}
                for n, e in encoders.items()}
    fig = widgets.render_dissipation(profiles)
    assert len(fig.axes) == 2 and fig.dpi == widgets.DPI
    with pytest.raises(ValueError, match="metric"):
        widgets.render_dissipation(profiles, metric="energy")
    rows = {v: sparse_dissipation.dissipation_profile(encoders["rn"], x, mask, sparse=v == "sparse", return_maps=True)[2]
            for v in ("dense", "sparse")}
    assert len(widgets.render_dissipation_maps(x[0], mask, rows).axes) == 3
    box = widgets.dissipation_viewer(x[0], encoders, layer=2)
    assert isinstance(box, ipywidgets.VBox) and set(box.controls) == {"encoder", "layer", "ratio", "seed"}
    assert box.controls["layer"].max == len(sparse_dissipation.dissipation_layers(encoders["cnx"])) - 1
    seen = [bytes(box.image.value)]
    for name, value in (("layer", 4), ("ratio", 0.5), ("seed", 2), ("encoder", "rn")):
        box.controls[name].value = value
        seen.append(bytes(box.image.value))
        assert seen[-1] != seen[-2], name
    assert box.controls["layer"].max == len(sparse_dissipation.dissipation_layers(encoders["rn"])) - 1
    with pytest.raises(ValueError, match="layer"):
        widgets.dissipation_viewer(x[0], encoders, layer=99)
