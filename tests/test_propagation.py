"""Label propagation: the vectorised code equals a literal per-pixel loop of each reference
protocol, and propagation with informative features recovers moving objects and keypoints."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from maskvid_edu.evaluate import metrics as Mx
from maskvid_edu.evaluate import propagation as P

# --------------------------------------------------------------------------------------------
# Fixtures: moving objects and features derived from them
# --------------------------------------------------------------------------------------------


def moving_masks(T=10, size=128):
    """A disc moving down-right and a rectangle moving up-left (ids 1, 2), 2–3 px per frame."""
    masks = np.zeros((T, size, size), np.int64)
    yy, xx = np.mgrid[:size, :size] + 0.5
    for t in range(T):
        cy, cx = 34 + 2.2 * t, 34 + 2.9 * t
        masks[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= 26**2] = 1
        y0, x0 = int(round(70 - 1.7 * t)), int(round(80 - 2.6 * t))
        masks[t][y0 : y0 + 44, x0 : x0 + 36] = 2
    return masks


def label_features(masks, stride, noise=0.1, seed=0):
    """Features that *are* the truth: the fraction of each label in each cell, plus noise."""
    k = int(masks.max()) + 1
    onehot = F.one_hot(torch.as_tensor(masks), k).permute(0, 3, 1, 2).float()  # (T, K, H, W)
    feats = F.avg_pool2d(onehot, stride)  # (T, K, H/stride, W/stride)
    return feats + noise * torch.randn(feats.shape, generator=torch.Generator().manual_seed(seed))


def jf(gt, pred):
    return Mx.davis_jf({"seq": (gt, np.asarray(pred))})["J&F-Mean"]


PRESETS = {"dino": P.PropagationConfig.dino(), "crw": P.PropagationConfig.crw()}


# --------------------------------------------------------------------------------------------
# The propagation itself, independent of any model
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["dino", "crw"])
def test_truth_derived_features_give_near_perfect_jf(preset):
    masks = moving_masks()
    pred = P.propagate_masks(label_features(masks, stride=4), masks[0], PRESETS[preset])
    assert pred.dtype == torch.int64 and pred.shape == masks.shape
    assert torch.equal(pred[0], torch.as_tensor(masks[0]))  # frame 0 is the given annotation
    score = jf(masks, pred)
    assert score >= 0.95, score  # measured: 0.971 (DINO), 0.974 (CRW)


@pytest.mark.parametrize("preset", ["dino", "crw"])
def test_uninformative_features_do_much_worse(preset):
    masks = moving_masks(T=4)
    good = jf(masks, P.propagate_masks(label_features(masks, 4), masks[0], PRESETS[preset]))
    noise = torch.randn(label_features(masks, 4).shape, generator=torch.Generator().manual_seed(1))
    bad = jf(masks, P.propagate_masks(noise, masks[0], PRESETS[preset]))
    assert bad < 0.5 and bad < good - 0.4, (good, bad)  # measured ≈ 0.1 vs 0.97


def sliding_texture(T, h, w, v, dim=32, seed=0):
    """Frames cut from one large random feature map by a window that moves by ``v`` cells per
    frame, so the content slides by ``v`` (down, right) — cells entering at the border are new."""
    base = torch.randn(dim, h + T * v[0], w + T * v[1], generator=torch.Generator().manual_seed(seed))
    oy, ox = T * v[0], T * v[1]
    return torch.stack([base[:, oy - t * v[0] : oy - t * v[0] + h, ox - t * v[1] : ox - t * v[1] + w]
                        for t in range(T)])


def test_rigidly_moving_texture_is_tracked_exactly():
    """Each cell that was in frame 0 has one exact match (cosine 1) in every context frame, so
    its label moves with the texture, cell for cell."""
    T, h, w, v = 7, 20, 24, (1, 2)
    feats = sliding_texture(T, h, w, v)
    first = torch.zeros(h, w, dtype=torch.long)
    first[4:9, 3:10] = 1
    first[11:15, 5:8] = 2
    for cfg in PRESETS.values():
        soft = P.propagate_labels(feats, P.downsample_labels(first, (h, w)), cfg)
        for t in range(T):
            dy, dx = t * v[0], t * v[1]
            expected = first[: h - dy, : w - dx]
            assert torch.equal(soft[t].argmax(0)[dy:, dx:], expected), t  # cells seen in frame 0
            assert torch.allclose(soft[t].sum(0), torch.ones(h, w), atol=1e-5)  # weights sum to 1


def test_synthetic_dataset_masks_reach_the_resolution_ceiling():
    synthetic = pytest.importorskip("maskvid_edu.data.synthetic")
    cfg = synthetic.SyntheticConfig(num_frames=6, size=96, num_samples=2, seed=0, distractor_prob=1.0)
    masks = synthetic.SyntheticVideoDataset(cfg)[0]["masks"].numpy()  # (T, H, W)
    stride, grid = 4, (24, 24)
    pred = P.propagate_masks(label_features(masks, stride), masks[0])
    # the best any propagation can do at this grid: the truth itself, pushed through the grid
    ceiling = torch.stack([P.labels_to_mask(P.downsample_labels(m, grid, int(masks.max()) + 1), (96, 96))
                           for m in torch.as_tensor(masks)])
    ceiling[0] = torch.as_tensor(masks[0])
    assert jf(masks, pred) >= jf(masks, ceiling) - 0.03
    assert jf(masks, pred) >= 0.85


# --------------------------------------------------------------------------------------------
# Vectorised path == a literal per-pixel loop of each reference
# --------------------------------------------------------------------------------------------


def dino_reference(feats, first, n_last, topk, radius, temperature):
    """DINO's label_propagation written out per query pixel: exp(aff/τ) × window mask, zero
    what is below the k-th value over the whole context, divide by the sum."""
    T, D, h, w = feats.shape
    f = F.normalize(feats.double(), dim=1)
    labels = [first.double()]
    queue = []  # predicted frames 1..t-1, at most n_last
    for t in range(1, T):
        ctx = [0] + queue
        out = torch.zeros(first.shape[0], h, w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                affs, labs = [], []
                for c in ctx:
                    for a in range(h):
                        for b in range(w):
                            aff = math.exp(float(f[t, :, i, j] @ f[c, :, a, b]) / temperature)
                            if radius > 0 and (abs(i - a) > radius or abs(j - b) > radius):
                                aff = 0.0
                            affs.append(aff)
                            labs.append(labels[c][:, a, b])
                kth = sorted(affs, reverse=True)[topk - 1]
                kept = [x if x >= kth else 0.0 for x in affs]
                total = sum(kept)
                out[:, i, j] = sum(x / total * lab for x, lab in zip(kept, labs))
        labels.append(out)
        queue = (queue + [t])[-n_last:]
    return torch.stack(labels)


def crw_reference(feats, first, n_last, topk, radius, temperature):
    """CRW's loop written out: context = first frame (no window) + the n_last previous frames
    padded with frame 0; −1e10 outside a disk of radius r (distance < r); top-k; softmax."""
    T, D, h, w = feats.shape
    f = F.normalize(feats.double(), dim=1)
    labels = [first.double()]
    for t in range(1, T):
        short = [max(0, t - n_last + i) for i in range(n_last)]
        out = torch.zeros(first.shape[0], h, w, dtype=torch.float64)
        for i in range(h):
            for j in range(w):
                logits, labs = [], []
                for slot, c in enumerate([0] + short):
                    for a in range(h):
                        for b in range(w):
                            s = float(f[t, :, i, j] @ f[c, :, a, b])
                            if slot > 0 and math.sqrt((i - a) ** 2 + (j - b) ** 2) >= radius:
                                s += -1e10
                            logits.append(s / temperature)
                            labs.append(labels[c][:, a, b])
                order = sorted(range(len(logits)), key=lambda n: -logits[n])[:topk]
                m = max(logits[n] for n in order)
                wts = [math.exp(logits[n] - m) for n in order]
                out[:, i, j] = sum(wt / sum(wts) * labs[n] for wt, n in zip(wts, order))
        labels.append(out)
    return torch.stack(labels)


# (chunk_size, max_elements): one block; fixed chunks; a budget too small to keep the whole
# window table, so each chunk builds its own window
@pytest.mark.parametrize("chunk_size, max_elements", [(None, 1 << 24), (5, 1 << 24), (None, 50)])
def test_vectorised_equals_dino_loop(chunk_size, max_elements):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 6, 4, 5, generator=gen)
    first = torch.softmax(3 * torch.randn(3, 4, 5, generator=gen), dim=0)
    cfg = P.PropagationConfig.dino(n_last=2, topk=3, radius=1, temperature=0.1)
    fast = P.propagate_labels(feats, first, cfg, chunk_size=chunk_size, max_elements=max_elements)
    slow = dino_reference(feats, first, cfg.n_last, cfg.topk, cfg.radius, cfg.temperature)
    assert torch.allclose(fast.double(), slow, atol=1e-5), (fast.double() - slow).abs().max()


# (chunk_size, max_elements): one block; fixed chunks; a budget too small to keep the whole
# window table, so each chunk builds its own window
@pytest.mark.parametrize("chunk_size, max_elements", [(None, 1 << 24), (7, 1 << 24), (None, 50)])
def test_vectorised_equals_crw_loop(chunk_size, max_elements):
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(5, 6, 4, 5, generator=gen)
    first = torch.softmax(3 * torch.randn(3, 4, 5, generator=gen), dim=0)
    cfg = P.PropagationConfig.crw(n_last=3, topk=4, radius=1.5, temperature=0.07)
    fast = P.propagate_labels(feats, first, cfg, chunk_size=chunk_size, max_elements=max_elements)
    slow = crw_reference(feats, first, cfg.n_last, cfg.topk, cfg.radius, cfg.temperature)
    assert torch.allclose(fast.double(), slow, atol=1e-5), (fast.double() - slow).abs().max()


def test_no_window_when_radius_is_zero():
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(4, 6, 3, 4, generator=gen)
    first = torch.softmax(torch.randn(2, 3, 4, generator=gen), dim=0)
    cfg = P.PropagationConfig.dino(n_last=2, topk=3, radius=0)
    slow = dino_reference(feats, first, 2, 3, 0, 0.1)
    assert torch.allclose(P.propagate_labels(feats, first, cfg).double(), slow, atol=1e-5)
    huge = P.PropagationConfig.dino(n_last=2, topk=3, radius=100)
    assert torch.allclose(P.propagate_labels(feats, first, huge), P.propagate_labels(feats, first, cfg))


def test_context_frames_of_each_protocol():
    dino, crw = P.PropagationConfig.dino(), P.PropagationConfig.crw()
    assert P._context_frames(1, dino) == [0]
    assert P._context_frames(3, dino) == [0, 1, 2]
    assert P._context_frames(20, dino) == [0] + list(range(13, 20))  # first + last 7
    assert P._context_frames(1, crw) == [0] * 21  # first + 20 copies of frame 0
    assert P._context_frames(25, crw) == [0] + list(range(5, 25))


def test_presets_match_the_guide():
    d, c = P.PropagationConfig(), P.PropagationConfig.crw()
    assert (d.n_last, d.topk, d.radius, d.temperature) == (7, 5, 12, 0.1)
    assert (c.n_last, c.topk, c.radius, c.temperature) == (20, 10, 12, 0.05)
    assert P.PropagationConfig.dino(topk=7).topk == 7


@pytest.mark.parametrize(
    "kwargs, word",
    [(dict(topk=0), "topk"), (dict(n_last=-1), "n_last"), (dict(temperature=0), "temperature"),
     (dict(window="circle"), "window"), (dict(radius=-1), "radius"),
     (dict(label_downsample="area"), "label_downsample")],
)
def test_config_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        P.PropagationConfig(**kwargs)


def test_propagate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="first_labels"):
        P.propagate_labels(torch.randn(3, 4, 5, 6), torch.rand(2, 5, 5))
    with pytest.raises(ValueError, match="features"):
        P.propagate_labels(torch.randn(4, 5, 6), torch.rand(2, 5, 6))
    with pytest.raises(ValueError, match="first_mask"):
        P.propagate_masks(torch.randn(3, 4, 5, 6), torch.rand(20, 24))


# --------------------------------------------------------------------------------------------
# Labels to and from the grid
# --------------------------------------------------------------------------------------------


def test_nearest_downsample_matches_pil_and_is_one_hot():
    mask = np.random.default_rng(0).integers(0, 4, (37, 53)).astype(np.uint8)
    small = np.array(Image.fromarray(mask).resize((11, 7), Image.NEAREST))  # DINO's read_seg
    soft = P.downsample_labels(mask.astype(np.int64), (7, 11))
    assert soft.shape == (4, 7, 11)
    assert np.array_equal(soft.argmax(0).numpy(), small)
    assert torch.equal(soft.sum(0), torch.ones(7, 11))


def test_bilinear_downsample_gives_fractions_on_borders():
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:, 4:] = 1
    soft = P.downsample_labels(mask, (4, 4), mode="bilinear")
    assert torch.allclose(soft.sum(0), torch.ones(4, 4))
    assert torch.allclose(soft[1, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    soft3 = P.downsample_labels(mask, (3, 3), mode="bilinear")  # cell centres not on pixel centres
    assert 0 < soft3[1, 0, 1] < 1


def test_labels_to_mask_norm_and_stride():
    soft = torch.zeros(2, 2, 2)
    soft[0] = 0.6  # background everywhere ...
    soft[1, 0, 0] = 0.4  # ... beats a weak object without normalisation
    assert P.labels_to_mask(soft, (2, 2), norm_mask=False).sum() == 0
    assert P.labels_to_mask(soft, (2, 2), norm_mask=True)[0, 0] == 1  # DINO's norm_mask rescues it
    x = torch.rand(3, 3, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(P.labels_to_mask(x, (24, 40), stride=8), P.labels_to_mask(x, (24, 40)))
    odd = P.labels_to_mask(x, (25, 41), stride=8)  # upsample ×8, then nearest to the frame size
    assert odd.shape == (25, 41) and odd.dtype == torch.int64


# --------------------------------------------------------------------------------------------
# Keypoints
# --------------------------------------------------------------------------------------------


def test_heatmaps_round_trip_and_lost_joints():
    pts = torch.tensor([[3.0, 4.0], [10.2, 2.9], [30.0, 5.0]])  # the last is outside a 12×16 grid
    maps = P.keypoint_heatmaps(pts, (12, 16))
    assert maps.shape == (4, 12, 16)
    assert maps[1, 4, 3] == 1 and maps[2, 3, 10] == 1 and maps[3].sum() == 0
    assert torch.equal(maps[0], (maps[1:].sum(0) == 0).float())
    assert math.isclose(float(maps[1, 4, 4]), math.exp(-2.0), rel_tol=1e-6)  # σ = 0.5: exp(−1/(2σ²))
    xy = P.heatmaps_to_keypoints(maps)
    assert torch.allclose(xy[:2], torch.tensor([[3.0, 4.0], [10.0, 3.0]]), atol=0.2)
    assert torch.equal(xy[2], torch.tensor([-1.0, -1.0]))


def test_keypoints_follow_a_rigid_texture():
    # A texture that wraps around (torch.roll): every cell keeps an exact match in every frame;
    # without a window (radius 0) the wrapped matches are reachable too. (Cells entering at a
    # border would otherwise take labels from look-alikes and could pull the top-3 read-out.)
    T, h, w, v, stride = 6, 24, 24, (1, 1), 4  # v in cells per frame (down, right)
    base = torch.randn(32, h, w, generator=torch.Generator().manual_seed(3))
    feats = torch.stack([torch.roll(base, (t * v[0], t * v[1]), dims=(1, 2)) for t in range(T)])
    first = np.array([[20.0, 24.0], [40.0, 32.0], [28.0, 52.0], [48.0, 60.0]])  # (x, y) pixels
    pred = P.propagate_keypoints(feats, first, (h * stride, w * stride), P.PropagationConfig.dino(radius=0))
    truth = np.stack([first + stride * t * np.array([v[1], v[0]]) for t in range(T)])
    assert pred.shape == (T, 4, 2)
    assert np.abs(pred.numpy() - truth).max() <= 0.25 * stride  # top-3 read-out: within a quarter cell
    assert Mx.pck(pred.numpy(), truth, alphas=(0.1,))[0.1] == 1.0


# --------------------------------------------------------------------------------------------
# Feature extraction adapters
# --------------------------------------------------------------------------------------------


def test_conv_adapter_gives_normalised_maps_in_batches():
    conv = nn.Conv2d(3, 8, kernel_size=4, stride=4)
    frames = torch.randn(5, 3, 16, 20)
    ext = P.FeatureExtractor(conv, batch_size=2)
    feats = ext(frames)
    assert feats.shape == (5, 8, 4, 5)
    assert torch.allclose(feats.norm(dim=1), torch.ones(5, 4, 5), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(feats, F.normalize(conv(frames), dim=1), atol=1e-6)


def test_token_adapter_lays_tokens_in_raster_order_and_drops_cls():
    def fake_vit(x):  # (B, 3, H, W) → (B, 1 + h·w, 2): token n carries (n, batch index)
        B, _, H, W = x.shape
        n = (H // 4) * (W // 4)
        idx = torch.arange(n, dtype=torch.float32)
        tokens = torch.stack([idx.expand(B, n), x[:, 0, 0, 0, None].expand(B, n)], dim=-1)
        return torch.cat([torch.full((B, 1, 2), -7.0), tokens], dim=1)

    frames = torch.zeros(3, 3, 8, 12)
    frames[:, 0, 0, 0] = torch.tensor([0.0, 1.0, 2.0])
    feats = P.FeatureExtractor(fake_vit, output="tokens", patch_size=4, num_prefix_tokens=1,
                               l2_normalize=False)(frames)
    assert feats.shape == (3, 2, 2, 3)
    assert torch.equal(feats[0, 0], torch.arange(6.0).reshape(2, 3))  # token n at (n // w, n % w)
    assert torch.equal(feats[:, 1, 0, 0], torch.tensor([0.0, 1.0, 2.0]))  # frames stay in order


def test_video_adapter_repeats_each_frame_and_averages_time_steps():
    seen = []

    def fake_video_vit(x):  # (B, 3, n, H, W) with tubelet 2 → (B, (n/2)·h·w, 1)
        seen.append(tuple(x.shape))
        assert torch.equal(x[:, :, 0], x[:, :, -1])  # a static clip
        B, _, n, H, W = x.shape
        t = n // 2
        per_step = torch.arange(t, dtype=torch.float32)[None, :, None].expand(B, t, (H // 4) * (W // 4))
        return per_step.reshape(B, -1, 1)

    frames = torch.randn(3, 3, 8, 8)
    feats = P.FeatureExtractor(fake_video_vit, output="tokens", patch_size=4, frames_per_clip=4,
                               l2_normalize=False)(frames)
    assert seen == [(3, 3, 4, 8, 8)]
    assert torch.allclose(feats, torch.full((3, 1, 2, 2), 0.5))  # mean of time steps 0 and 1


def test_adapter_with_the_library_vit():
    vit_mod = pytest.importorskip("maskvid_edu.models.vit")
    vit = vit_mod.VisionTransformer(img_size=32, num_frames=2, tubelet=2, patch=16, dim=32, depth=1, heads=2).eval()
    ext = P.FeatureExtractor(vit, output="tokens", patch_size=16, frames_per_clip=2)
    feats = ext(torch.randn(4, 3, 32, 48))
    assert feats.shape == (4, 32, 2, 3)
    masks = P.propagate_masks(feats, torch.zeros(32, 48, dtype=torch.long).index_fill_(1, torch.arange(20), 1))
    assert masks.shape == (4, 32, 48)


def test_adapter_rejects_bad_setups():
    with pytest.raises(ValueError, match="patch_size"):
        P.FeatureExtractor(lambda x: x, output="tokens")
    with pytest.raises(ValueError, match="output"):
        P.FeatureExtractor(lambda x: x, output="grid")
    with pytest.raises(ValueError, match="frames"):
        P.FeatureExtractor(lambda x: x)(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="map"):
        P.FeatureExtractor(lambda x: x.flatten(2))(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="grid"):
        P.FeatureExtractor(lambda x: torch.randn(x.shape[0], 5, 4), output="tokens", patch_size=4)(
            torch.randn(2, 3, 8, 8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    masks = moving_masks(T=5)
    feats = label_features(masks, 4)
    cpu = P.propagate_masks(feats, masks[0])
    gpu = P.propagate_masks(feats.cuda(), masks[0])
    assert (cpu == gpu).float().mean() > 0.999


# --------------------------------------------------------------------------------------------
# DAVIS submission layout
# --------------------------------------------------------------------------------------------


def test_voc_palette_values():
    pal = P.DAVIS_PALETTE
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[:8].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0],
                                [0, 0, 128], [128, 0, 128], [0, 128, 128], [128, 128, 128]]
    assert pal[8].tolist() == [64, 0, 0] and pal[255].tolist() == [224, 224, 192]


def test_palette_png_round_trip(tmp_path):
    masks = np.random.default_rng(0).integers(0, 5, (3, 12, 17))
    paths = P.write_davis_masks(masks, tmp_path, "bear")
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["bear/00000.png", "bear/00001.png", "bear/00002.png"]
    for path, mask in zip(paths, masks):
        img = Image.open(path)
        assert img.mode == "P"
        assert np.array_equal(np.array(img), mask)
        assert np.array(img.getpalette()[:15]).reshape(5, 3).tolist() == P.DAVIS_PALETTE[:5].tolist()
    with pytest.raises(ValueError, match="255"):
        P.write_davis_masks(np.full((1, 2, 2), 300), tmp_path, "bad")
