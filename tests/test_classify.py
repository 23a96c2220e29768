"""Action-recognition evaluation: frozen features, linear probe, k-NN, VideoMAE fine-tuning recipe
(mixup/cutmix, label smoothing, layer decay, multi-view testing) and a short fine-tuning run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskvid_edu.data.synthetic import SyntheticVideoDataset
from maskvid_edu.data.wrappers import ClipViews
from maskvid_edu.evaluate.finetune import (
    MixParams,
    VideoClassifier,
    apply_mix,
    draw_mix,
    evaluate_views,
    finetune,
    layer_decay_groups,
    layer_id,
    mix_targets,
    soft_cross_entropy,
)
from maskvid_edu.evaluate.probe import FrameEncoder, extract_features, knn_accuracy, knn_predict, linear_probe
from maskvid_edu.models.vit import VisionTransformer, position_embedding
from maskvid_edu.train import TrainConfig, Trainer


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vit(**overrides) -> VisionTransformer:
    torch.manual_seed(0)
    cfg = dict(img_size=16, num_frames=4, tubelet=2, patch=8, dim=16, depth=2, heads=2)
    cfg.update(overrides)
    return VisionTransformer(**cfg)


class ListDataset:
    """Items given as a list (what a dataset returns), for hand-made cases."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# ---------------------------------------------------------------------------------------------
# Frozen features
# ---------------------------------------------------------------------------------------------


def test_extract_features_of_a_vit_matches_forward_features_and_restores_train_mode():
    vit = tiny_vit()
    vit.train()
    g = torch.Generator().manual_seed(0)
    videos = torch.randn(5, 3, 4, 16, 16, generator=g)
    data = ListDataset([{"video": v, "label": i % 2} for i, v in enumerate(videos)])
    x, y = extract_features(vit, data, batch_size=2, device="cpu")
    assert x.shape == (5, 16) and x.dtype == torch.float32 and y.tolist() == [0, 1, 0, 1, 0]
    vit.eval()
    with torch.no_grad():
        expected = vit.forward_features(videos)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    x3, _ = extract_features(vit, data, max_items=3, device="cpu")
    assert x3.shape == (3, 16)
    vit.train()
    extract_features(vit, data, device="cpu")
    assert vit.training, "the encoder's mode must be restored"


def test_extract_features_pools_maps_averages_views_and_skips_bad_items():
    conv = nn.Conv3d(3, 6, kernel_size=1)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(3, 3, 4, 8, 8, generator=g)
    data = ListDataset([
        {"video": v[0], "label": 0},
        "a SkippedItem stands here",
        {"video": v[1:], "label": 1},  # two views of one clip
    ])
    x, y = extract_features(conv, data, device="cpu")
    with torch.no_grad():
        pooled = conv(v).flatten(2).mean(2)  # (3, 6)
    assert y.tolist() == [0, 1]
    torch.testing.assert_close(x[0], pooled[0])
    torch.testing.assert_close(x[1], pooled[1:].mean(0))
    # a plain callable
    x, _ = extract_features(lambda video: video.mean(dim=(2, 3, 4)), data, device="cpu")
    torch.testing.assert_close(x[0], v[0].mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(conv, data, batch_size=0)
    with pytest.raises(ValueError, match="'video' and 'label'"):
        extract_features(conv, ListDataset([{"video": v[0]}]), device="cpu")


def test_frame_encoder_on_a_videomac_convnet_stage():
    from maskvid_edu.models import create

    torch.manual_seed(0)
    encoder = create("videomac_resnet_demo").encoder
    fe = FrameEncoder(encoder, stage=2)
    video = torch.randn(2, 3, 2, 64, 64)
    with torch.no_grad():
        out = fe(video)
        stage = encoder.forward_stages(video[:, :, 1])[2]  # (2, C, 4, 4)
    assert out.shape == (2, stage.shape[1]) == (2, fe.num_features)
    model = VideoClassifier(fe, 3)
    assert model.config.feature_dim == fe.num_features and model.logits(video).shape == (2, 3)


def test_frame_encoder_averages_frames():
    enc = nn.Conv2d(3, 5, kernel_size=3, padding=1)
    fe = FrameEncoder(enc)
    video = torch.randn(2, 3, 4, 8, 8)
    out = fe(video)
    with torch.no_grad():
        ref = torch.stack([enc(video[:, :, t]).mean(dim=(2, 3)) for t in range(4)], 1).mean(1)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Linear probe and k-NN
# ---------------------------------------------------------------------------------------------


def _separable(n: int, seed: int, classes: int = 4, dim: int = 12):
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(classes, dim) * 6.0
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, dim, generator=g)
    return x, y


def test_linear_probe_separates_separable_features_deterministically():
    train_x, train_y = _separable(200, 0)
    test_x, test_y = _separable(200, 1)
    r = linear_probe(train_x, train_y, test_x, test_y, epochs=60, seed=3)
    assert r.accuracy >= 0.99 and r.train_accuracy >= 0.99
    assert r.losses[-1] < r.losses[0]
    again = linear_probe(train_x, train_y, test_x, test_y, epochs=60, seed=3)
    assert torch.equal(r.weight, again.weight)
    mini = linear_probe(train_x, train_y, test_x, test_y, epochs=20, batch_size=32, seed=0)
    assert mini.accuracy >= 0.99
    # the classifier it returns reproduces its predictions
    assert torch.equal(r.logits(test_x).argmax(1), r.predictions)
    # shuffled labels: chance on held-out data, however well it fits the training set
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    noisy = linear_probe(train_x, train_y[perm], test_x, test_y, epochs=60)
    assert noisy.accuracy < 0.45


def test_linear_probe_rejects_bad_input():
    x, y = _separable(10, 0)
    with pytest.raises(ValueError, match="train_x"):
        linear_probe(x[:, 0], y, x, y)
    with pytest.raises(ValueError, match="train_y"):
        linear_probe(x, y[:5], x, y)
    with pytest.raises(ValueError, match="integer"):
        linear_probe(x, y.float(), x, y)
    with pytest.raises(ValueError, match="dims"):
        linear_probe(x, y, x[:, :3], y)


def test_knn_hand_case():
    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])  # the 3rd is the 2nd, longer
    train_y = torch.tensor([0, 1, 1, 2])
    test_x = torch.tensor([[1.0, 0.2]])
    # cosine similarities to the training points: 1/√1.04, 0.2/√1.04 (twice), −1/√1.04
    s = torch.tensor([1.0, 0.2, 0.2, -1.0]) / math.sqrt(1.04)
    tau = 0.07
    scores = knn_predict(train_x, train_y, test_x, k=3, temperature=tau)
    expected = torch.tensor([[math.exp(s[0] / tau), 2 * math.exp(s[1] / tau), 0.0]])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=0)
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([0]), k=3, temperature=tau) == 1.0
    # a high temperature makes every vote count the same: two votes for class 1 beat one for 0
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([1]), k=3, temperature=100.0) == 1.0
    # k = 1 is the nearest neighbour
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([0]), k=1) == 1.0
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracy(train_x, train_y, test_x, torch.tensor([0]), temperature=0)


def test_knn_on_separable_features():
    train_x, train_y = _separable(200, 0)
    test_x, test_y = _separable(100, 1)
    assert knn_accuracy(train_x, train_y, test_x, test_y) >= 0.99


# ---------------------------------------------------------------------------------------------
# Mixup / CutMix and label smoothing
# ---------------------------------------------------------------------------------------------


def test_mix_targets_match_timm():
    from timm.data.mixup import mixup_target

    labels = torch.tensor([0, 3, 1, 1, 2])
    for lam, smoothing in ((1.0, 0.0), (0.7, 0.1), (0.25, 0.2)):
        ours = mix_targets(labels, 4, lam, smoothing)
        torch.testing.assert_close(ours, mixup_target(labels, 4, lam, smoothing))
        torch.testing.assert_close(ours.sum(1), torch.ones(5))
    # by hand: clip 0 (class 0) mixed with clip 4 (class 2) at λ = 0.7, smoothing 0.1
    row = mix_targets(labels, 4, 0.7, 0.1)[0]
    torch.testing.assert_close(row, torch.tensor([0.7 * 0.925 + 0.3 * 0.025, 0.025, 0.7 * 0.025 + 0.3 * 0.925, 0.025]))
    with pytest.raises(ValueError, match="labels must be in"):
        mix_targets(torch.tensor([0, 4]), 4)


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot_and_smoothing():
    logits = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    torch.testing.assert_close(soft_cross_entropy(logits, mix_targets(labels, 5)), F.cross_entropy(logits, labels))
    torch.testing.assert_close(soft_cross_entropy(logits, mix_targets(labels, 5, 1.0, 0.1)),
                               F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_mixup_and_cutmix_mix_pixels_and_labels_consistently():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(4, 3, 2, 10, 12, generator=g)
    mixed = apply_mix(video, MixParams("mixup", 0.3))
    torch.testing.assert_close(mixed[0], 0.3 * video[0] + 0.7 * video[3])
    torch.testing.assert_close(mixed[1], 0.3 * video[1] + 0.7 * video[2])

    cut = apply_mix(video, MixParams("cutmix", 1 - 12 / 120, (2, 5, 3, 7)))
    inside = torch.zeros(10, 12, dtype=torch.bool)
    inside[2:5, 3:7] = True
    for i in range(4):
        j = 3 - i
        assert torch.equal(cut[i][..., inside], video[j][..., inside]), "the box comes from the partner in every frame"
        assert torch.equal(cut[i][..., ~inside], video[i][..., ~inside])
    assert torch.equal(apply_mix(video, MixParams("none", 1.0)), video)

    # λ of a cutmix draw is exactly the share of own pixels, after clipping at the borders
    for seed in range(50):
        p = draw_mix(10, 12, mixup_alpha=0.0, cutmix_alpha=1.0, generator=torch.Generator().manual_seed(seed))
        y0, y1, x0, x1 = p.box
        assert 0 <= y0 <= y1 <= 10 and 0 <= x0 <= x1 <= 12
        assert p.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 120)
        own = int((apply_mix(video, p)[0] == video[0]).sum())  # (C·T·H·W values; random ones never collide)
        assert own == round(p.lam * video[0].numel())


def test_cutmix_application_matches_timm_on_images():
    """Given the same box, our CutMix of (B, C, H, W) images equals timm's batch-mode CutMix."""
    from timm.data.mixup import Mixup, cutmix_bbox_and_lam

    x = torch.randn(4, 3, 16, 16)
    mixer = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, label_smoothing=0.1, num_classes=5)
    np.random.seed(7)
    theirs, target = mixer(x.clone(), torch.tensor([0, 1, 2, 3]))
    np.random.seed(7)
    np.random.rand()  # the same draws: apply-or-not, then λ, then the box
    lam = float(np.random.beta(1.0, 1.0))
    (y0, y1, x0, x1), lam = cutmix_bbox_and_lam(x.shape, lam)
    ours = apply_mix(x, MixParams("cutmix", float(lam), (int(y0), int(y1), int(x0), int(x1))))
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(mix_targets(torch.tensor([0, 1, 2, 3]), 5, float(lam), 0.1), target)


def test_draw_mix_switches_and_samples_beta():
    kinds, lams = [], []
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        p = draw_mix(64, 64, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, generator=g)
        kinds.append(p.kind)
        if p.kind == "mixup":
            lams.append(p.lam)
    share = kinds.count("cutmix") / len(kinds)
    assert abs(share - 0.5) < 0.07  # binomial sd 0.02
    assert abs(np.mean(lams) - 0.5) < 0.05 and np.var(lams) == pytest.approx(1 / (4 * 2.6), abs=0.02)  # Beta(0.8, 0.8)
    assert draw_mix(8, 8, prob=0.0).kind == "none"
    assert draw_mix(8, 8, mixup_alpha=0.0, cutmix_alpha=0.0).kind == "none"
    assert all(draw_mix(8, 8, cutmix_alpha=0.0, generator=g).kind == "mixup" for _ in range(20))
    a = draw_mix(32, 32, generator=torch.Generator().manual_seed(5))
    b = draw_mix(32, 32, generator=torch.Generator().manual_seed(5))
    assert a == b


# ---------------------------------------------------------------------------------------------
# The classifier and layer decay
# ---------------------------------------------------------------------------------------------


def test_classifier_recipe_head_pooling_and_copy():
    vit = tiny_vit(depth=4)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    model = VideoClassifier(vit, 5, drop_path=0.3, head_init_scale=0.001)
    assert model.encoder is not vit and isinstance(vit.norm, nn.LayerNorm), "the given encoder is left as it was"
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())
    assert isinstance(model.encoder.norm, nn.Identity)
    assert [b.drop_path for b in model.encoder.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert 0.01 * 0.001 < model.head.weight.std() < 0.03 * 0.001 and torch.all(model.head.bias == 0)  # std 0.02 × 0.001
    video = torch.randn(3, 3, 4, 16, 16)
    model.eval()
    with torch.no_grad():
        tokens = model.encoder(video)  # (3, N, D), no final norm
        expected = model.head(model.fc_norm(tokens.mean(1)))
        torch.testing.assert_close(model.logits(video), expected)
        out = model(video, None, label=torch.tensor([0, 1, 2]))
    torch.testing.assert_close(out.loss, F.cross_entropy(expected, torch.tensor([0, 1, 2])))
    assert set(out.terms) == {"loss_ce"} and out.extras["logits"].shape == (3, 5)
    assert model.make_mask(video) is None
    with pytest.raises(ValueError, match="label"):
        model(video)
    with pytest.raises(ValueError, match="unknown VideoClassifier option"):
        VideoClassifier(vit, 5, mixup=0.5)


def test_other_clip_lengths_use_the_interpolated_position_embedding():
    vit = tiny_vit(num_frames=4)  # built for grid (2, 2, 2)
    model = VideoClassifier(vit, 3).eval()
    long_clip = torch.randn(2, 3, 8, 16, 16)  # grid (4, 2, 2)
    pos = model.encoder.position_embedding((4, 2, 2))
    torch.testing.assert_close(pos, position_embedding((4, 2, 2), 16, (2, 2, 2), "interpolate"))
    assert not torch.allclose(pos, position_embedding((4, 2, 2), 16))  # not the rebuilt 1-D table
    with torch.no_grad():
        x = model.encoder.patch_embed(long_clip) + pos
        for blk in model.encoder.blocks:
            x = blk(x)
        torch.testing.assert_close(model.logits(long_clip), model.head(model.fc_norm(x.mean(1))))


def test_layer_decay_scales():
    model = VideoClassifier(tiny_vit(depth=4), 3)
    groups = layer_decay_groups(model, 0.05, 0.75)
    names = [n for g in groups for n in g["names"]]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable) and len(names) == len(set(names))
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert scale["encoder.patch_embed.proj.weight"] == pytest.approx(0.75**5)
    for i in range(4):
        assert scale[f"encoder.blocks.{i}.attn.qkv.weight"] == pytest.approx(0.75 ** (4 - i))
        assert scale[f"encoder.blocks.{i}.norm1.weight"] == pytest.approx(0.75 ** (4 - i))
    assert scale["head.weight"] == scale["fc_norm.weight"] == 1.0
    assert wd["head.weight"] == 0.05 and wd["head.bias"] == 0.0 and wd["fc_norm.weight"] == 0.0
    assert wd["encoder.blocks.0.attn.q_bias"] == 0.0 and wd["encoder.blocks.0.mlp.fc1.weight"] == 0.05
    assert [g["lr_scale"] for g in groups] == sorted((g["lr_scale"] for g in groups), reverse=True)
    assert layer_id("encoder.pos_embed", 12) == 0 and layer_id("encoder.blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id("head.weight", 12) == 13 and layer_id("encoder.layer3.0.conv1.weight", 0) == 0
    # a ConvNet encoder (no blocks) is one layer below the head
    conv_model = VideoClassifier(nn.Conv3d(3, 8, 1), 3, feature_dim=8)
    conv_scale = {n: g["lr_scale"] for g in layer_decay_groups(conv_model, 0.05, 0.5) for n in g["names"]}
    assert conv_scale["encoder.weight"] == 0.5 and conv_scale["head.weight"] == 1.0


class _Frames:
    """Clips whose class is the sign of a global brightness change over time (learnable in a few steps)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 10_000 + i)
        y = i % 2
        ramp = torch.linspace(-1, 1, 4) * (1 if y else -1)
        video = torch.randn(3, 4, 16, 16, generator=g) * 0.3 + ramp[None, :, None, None]
        return {"video": video, "label": y}


def test_trainer_finetunes_with_lr_scales_and_resumes_exactly(tmp_path):
    def run(steps=None, stop_at=None, resume=None, out="a"):
        torch.manual_seed(0)
        model = VideoClassifier(tiny_vit(), 2, layer_decay=0.5, drop_path=0.1)
        cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, min_lr=0.0, warmup_steps=2, betas=(0.9, 0.999),
                          progress=False, device="cpu", log_every=1, out_dir=str(tmp_path / out))
        trainer = Trainer(model, _Frames(32, 0), cfg)  # the one trainer, labels and lr scales included
        trainer.fit(stop_at=stop_at, resume=resume)
        return model, trainer

    full, trainer = run()
    lrs = {g["lr_scale"]: g["lr"] for g in trainer.optimizer.param_groups}
    peak_factor = trainer.schedule(trainer.scheduler.last_epoch)
    for s, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * s * peak_factor)
    assert min(lrs) == pytest.approx(0.0) or min(lrs) / max(lrs) == pytest.approx(0.5 ** 3)
    assert trainer.history[-1]["loss_ce"] == trainer.history[-1]["loss"]
    run(stop_at=3, out="b")
    resumed, _ = run(resume=True, out="b")
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_finetune_learns_a_simple_temporal_class():
    torch.manual_seed(0)
    model = VideoClassifier(tiny_vit(depth=1), 2, mixup_alpha=0.8, cutmix_alpha=1.0, layer_decay=1.0)
    cfg = TrainConfig(steps=40, batch_size=8, lr=3e-3, min_lr=1e-5, warmup_steps=4, betas=(0.9, 0.999),
                      progress=False, device="cpu", log_every=10)
    history = finetune(model, _Frames(320, 0), cfg)
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate_views(model, _Frames(64, 1), device="cpu").accuracy >= 0.95


# ---------------------------------------------------------------------------------------------
# Multi-view testing
# ---------------------------------------------------------------------------------------------


class _FixedLogits(nn.Module):
    """Logits read from the clip: the mean of channel c of the clip is the logit of class c."""

    def logits(self, video):
        return video.mean(dim=(2, 3, 4))


def test_evaluate_views_averages_softmax_not_logits():
    # one clip, two views: logits (10, 0, 0) and (0, 2, 2.1) for 3 classes
    views = torch.zeros(2, 3, 1, 1, 1)
    views[0, :, 0, 0, 0] = torch.tensor([10.0, 0.0, 0.0])
    views[1, :, 0, 0, 0] = torch.tensor([0.0, 4.0, 4.1])
    data = ListDataset([{"video": views, "label": 0}])
    r = evaluate_views(_FixedLogits(), data, device="cpu")
    expected = (torch.softmax(torch.tensor([10.0, 0, 0]), 0) + torch.softmax(torch.tensor([0, 4.0, 4.1]), 0)) / 2
    torch.testing.assert_close(r.probs[0], expected)
    assert r.num_views == 2 and r.accuracy == 1.0 and r.view_accuracy == 0.5
    assert r.top5 is None
    # averaging logits instead can pick another class: mean logits (1.5, 0, 2), mean probabilities (0.498, 0.010, 0.492)
    views2 = torch.zeros(2, 3, 1, 1, 1)
    views2[0, :, 0, 0, 0] = torch.tensor([6.0, 0.0, 0.0])  # sure of class 0: p ≈ (0.995, 0.002, 0.002)
    views2[1, :, 0, 0, 0] = torch.tensor([-3.0, 0.0, 4.0])  # sure of class 2: p ≈ (0.001, 0.018, 0.981)
    r2 = evaluate_views(_FixedLogits(), ListDataset([{"video": views2, "label": 0}]), device="cpu")
    assert views2.mean(dim=(0, 2, 3, 4)).argmax() == 2  # mean logit says class 2
    assert r2.predictions.item() == 0  # mean probability says class 0
    with pytest.raises(ValueError, match="same number of views"):
        evaluate_views(_FixedLogits(), ListDataset([{"video": views, "label": 0}, {"video": views[:1], "label": 0}]),
                       device="cpu", batch_size=2)


def test_clip_views_cut_windows_and_crops_clip_major():
    T, H, W = 10, 6, 9
    t = torch.arange(T).view(1, T, 1, 1).expand(1, T, H, W)
    y = torch.arange(H).view(1, 1, H, 1).expand(1, T, H, W)
    x = torch.arange(W).view(1, 1, 1, W).expand(1, T, H, W)
    video = torch.cat([t, y, x]).float()  # channels hold the coordinates
    views = ClipViews(ListDataset([{"video": video, "label": 3}]), num_clips=3, num_crops=3, clip_len=4, crop_size=4)
    item = views[0]
    assert item["label"] == 3 and item["video"].shape == (9, 3, 4, 4, 4)
    starts = [int(v[0, 0, 0, 0]) for v in item["video"]]
    assert starts == [0, 0, 0, 3, 3, 3, 6, 6, 6]  # clip-major: each window, then its crops
    lefts = [int(v[2, 0, 0, 0]) for v in item["video"][:3]]
    assert lefts == [0, 2, 5]  # along the longer side (width): start, centre, end
    assert {int(v[1, 0, 0, 0]) for v in item["video"]} == {1}  # centred on the shorter side
    with pytest.raises(ValueError, match="crop_size"):
        ClipViews(ListDataset([{"video": video, "label": 0}]), clip_len=4, crop_size=7)[0]


# ---------------------------------------------------------------------------------------------
# Fine-tuning on the motion-defined synthetic data
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_on_synthetic_motion_classes_beats_chance():
    """A small ViT fine-tuned from scratch on ``move_left`` vs ``move_right`` clips.

    The clips use ``camera="static"`` (the object itself moves on screen; the default tracking
    camera, where only the background moves, is not learned by a model this small within a
    CPU minute — measured: chance after 400 steps at 32 and 64 pixels). Measured from this
    seed: 0.97 on 128 held-out clips (chance 0.5; the loss leaves ln 2 after ~220 steps).
    About 20 s on two idle cores (50 s on a loaded machine); the clips are rendered once.
    """
    def clips(n, seed):
        data = SyntheticVideoDataset(num_frames=4, size=32, num_classes=2, num_samples=n, seed=seed,
                                     camera="static", distractor_prob=0.0)
        return ListDataset([data[i] for i in range(n)])

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, num_frames=4, tubelet=2, patch=4, dim=64, depth=1, heads=4)
    model = VideoClassifier(vit, 2, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0, drop_path=0.0, layer_decay=1.0)
    cfg = TrainConfig(steps=400, batch_size=16, lr=2e-3, min_lr=1e-5, warmup_steps=10, weight_decay=0.05,
                      betas=(0.9, 0.999), progress=False, device="cpu", log_every=20)
    history = finetune(model, clips(1024, 0), cfg)
    assert history[-1]["loss"] < 0.4 < history[0]["loss"]
    accuracy = evaluate_views(model, clips(128, 1), device="cpu").accuracy
    assert accuracy >= 0.8, f"held-out accuracy {accuracy:.3f} (chance 0.5, measured 0.97)"
