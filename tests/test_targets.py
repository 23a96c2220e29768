"""RGB-difference motion targets, the target switch and VQ-code targets."""

import math

import pytest
import torch

from maskvid_edu.data.transforms import IMAGENET_STD, denormalize, normalize
from maskvid_edu.patches import normalize_patches, patchify, pixel_targets, unpatchify
from maskvid_edu.targets import (
    code_targets,
    frame_differences,
    make_targets,
    motion_targets,
    split_motion_clip,
)
from maskvid_edu.tokenizers import VQVAE, vqvae_config

# Three 2×2 one-channel frames (values in tenths) — one 2×2×2 tubelet per two frames.
F0 = [[0, 1], [2, 3]]
F1 = [[1, 1], [4, 0]]
F2 = [[1, 3], [4, 0]]


def _clip(*frames):
    return torch.tensor(frames, dtype=torch.float64)[None, None] / 10  # (1, 1, T, 2, 2)


def test_hand_computed_t_plus_one_clip():
    video = _clip(F0, F1, F2)  # T + 1 = 3 frames → T = 2 differences
    target = motion_targets(video, tubelet=2, patch=2, normalization="none", input_normalized=False)
    # d0 = F1 − F0, d1 = F2 − F1, laid out (frame, row, col, channel)
    expected = torch.tensor([[1, 0, 2, -3, 0, 2, 0, 0]], dtype=torch.float64) / 10
    assert target.shape == (1, 1, 8)
    torch.testing.assert_close(target[0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "border, last",
    [("repeat", [1, 0, 2, -3]), ("zero", [0, 0, 0, 0])],
)
def test_hand_computed_border_frame(border, last):
    video = _clip(F0, F1)  # exactly T = 2 frames: one true difference, one from the border rule
    target = motion_targets(
        video, tubelet=2, patch=2, normalization="none", input_normalized=False, num_frames=2, border=border
    )
    expected = torch.tensor([[1, 0, 2, -3] + last], dtype=torch.float64) / 10
    torch.testing.assert_close(target[0], expected, rtol=0, atol=1e-12)


def test_border_rule_on_a_longer_clip_only_touches_the_last_frame():
    video = _clip(F0, F1, F2)  # exactly T = 3 frames
    d = frame_differences(video, num_frames=3, border="repeat")[0, 0]  # (3, 2, 2)
    torch.testing.assert_close(d[0], (_clip(F1) - _clip(F0))[0, 0, 0])
    torch.testing.assert_close(d[1], (_clip(F2) - _clip(F1))[0, 0, 0])
    torch.testing.assert_close(d[2], d[1])
    assert frame_differences(video, num_frames=3, border="zero")[0, 0, 2].abs().max() == 0


def test_direction_is_next_minus_current():
    # a white column moves one pixel to the right between frames 0 and 1
    video = torch.zeros(1, 1, 2, 4, 4)
    video[:, :, 0, :, 1] = 1
    video[:, :, 1, :, 2] = 1
    d = frame_differences(video)[0, 0, 0]  # (4, 4)
    assert (d[:, 2] == 1).all(), "where the object arrives the difference is positive"
    assert (d[:, 1] == -1).all(), "where it left the difference is negative"
    assert d[:, [0, 3]].abs().max() == 0


def test_undoes_imagenet_normalisation_and_scale_option_is_difference_of_normalised_frames():
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 5, 8, 8, generator=g)  # T + 1 = 5
    video = normalize(pixels, channel_dim=1)
    raw = motion_targets(video, tubelet=2, patch=4, normalization="none")
    torch.testing.assert_close(raw, patchify(pixels[:, :, 1:] - pixels[:, :, :-1], 2, 4), rtol=0, atol=1e-6)
    scaled = motion_targets(video, tubelet=2, patch=4)  # default: "scale" with the ImageNet std
    torch.testing.assert_close(scaled, patchify(video[:, :, 1:] - video[:, :, :-1], 2, 4), rtol=0, atol=1e-5)
    half = motion_targets(video, tubelet=2, patch=4, normalization="scale", scale=0.5)
    torch.testing.assert_close(half, 2 * raw, rtol=0, atol=1e-6)
    std = torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(scaled.unflatten(-1, (-1, 3)), raw.unflatten(-1, (-1, 3)) / std, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["videomae", "mae"])
def test_per_patch_normalisations_reuse_patches_module(mode):
    pixels = torch.rand(2, 3, 5, 8, 8, generator=torch.Generator().manual_seed(1))
    video = normalize(pixels, channel_dim=1)
    raw = motion_targets(video, tubelet=2, patch=4, normalization="none")
    normed = motion_targets(video, tubelet=2, patch=4, normalization=mode)
    torch.testing.assert_close(normed, normalize_patches(raw, mode), rtol=0, atol=0)
    # per-patch statistics: zero mean (per channel for videomae), unit (unbiased) std
    groups = normed.unflatten(-1, (-1, 3)).transpose(-1, -2) if mode == "videomae" else normed
    torch.testing.assert_close(groups.mean(-1), torch.zeros_like(groups.mean(-1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(groups.std(-1), torch.ones_like(groups.std(-1)), rtol=0, atol=1e-3)


@pytest.mark.parametrize("mode", ["none", "scale", "videomae", "mae"])
def test_static_clip_gives_exactly_zero_and_finite_targets(mode):
    frame = torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    video = normalize(frame.expand(-1, -1, 5, -1, -1), channel_dim=1)  # the same frame 5 times
    target = motion_targets(video, tubelet=2, patch=4, normalization=mode)
    assert torch.isfinite(target).all()
    assert target.abs().max() == 0  # std 0 + eps: 0 / eps stays exactly 0


def test_eps_behaviour_on_near_static_clip():
    """Per-patch normalisation keeps tiny noise finite but amplifies it; the fixed scale does not."""
    base = torch.rand(1, 3, 1, 8, 8, generator=torch.Generator().manual_seed(3)).expand(-1, -1, 5, -1, -1)
    noise = 1e-4 * torch.randn(1, 3, 5, 8, 8, generator=torch.Generator().manual_seed(4))
    video = normalize(base + noise, channel_dim=1)
    n = 2 * 4 * 4  # values per patch and channel
    vm = motion_targets(video, tubelet=2, patch=4, normalization="videomae")
    assert torch.isfinite(vm).all() and vm.abs().max() <= (n - 1) / math.sqrt(n)  # bound of a z-score
    assert vm.std() > 0.5, "videomae normalisation lifts 1e-4 noise to unit scale"
    mae = motion_targets(video, tubelet=2, patch=4, normalization="mae")
    assert mae.std() < 0.2, "mae's sqrt(var + 1e-6) divides the ~1.4e-4 noise by ~1e-3, not by its own std"
    scaled = motion_targets(video, tubelet=2, patch=4, normalization="scale")
    assert scaled.abs().max() < 1e-2


def test_patch_layout_agrees_with_patchify_and_round_trips():
    pixels = torch.rand(2, 3, 9, 16, 24, generator=torch.Generator().manual_seed(5))
    target = motion_targets(pixels, tubelet=2, patch=8, normalization="none", input_normalized=False)
    diffs = frame_differences(pixels)  # (2, 3, 8, 16, 24)
    assert target.shape == (2, 4 * 2 * 3, 2 * 8 * 8 * 3)
    assert torch.equal(target, patchify(diffs, 2, 8))
    assert torch.equal(unpatchify(target, (4, 2, 3), 2, 8), diffs)
    # the same token grid as the pixel targets of the model input
    model_input, source = split_motion_clip(pixels)
    assert pixel_targets(model_input, 2, 8, "none", input_normalized=False).shape == target.shape


def test_split_motion_clip():
    video = torch.randn(2, 3, 9, 8, 8)
    model_input, source = split_motion_clip(video, num_frames=8)
    assert model_input.shape == (2, 3, 8, 8, 8) and torch.equal(model_input, video[:, :, :8])
    assert source is video
    with pytest.raises(ValueError, match="num_frames \\+ 1 = 9"):
        split_motion_clip(video[:, :, :8], num_frames=8)
    with pytest.raises(ValueError, match="at least 2 frames"):
        split_motion_clip(video[:, :, :1])
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        split_motion_clip(video[0])


def test_make_targets_switch():
    pixels = torch.rand(2, 3, 5, 8, 8, generator=torch.Generator().manual_seed(6))
    video = normalize(pixels, channel_dim=1)  # a T + 1 = 5 frame clip for T = 4
    kw = dict(tubelet=2, patch=4)
    four = video[:, :, :4]
    torch.testing.assert_close(make_targets(four, "pixels", **kw), pixel_targets(four, 2, 4, "none"))
    torch.testing.assert_close(make_targets(four, "pixels_norm", **kw), pixel_targets(four, 2, 4, "videomae"))
    torch.testing.assert_close(make_targets(four, "pixels", normalization="mae", **kw), pixel_targets(four, 2, 4, "mae"))
    # num_frames takes the model's T frames from the T + 1 clip, so every head shares one grid
    first = make_targets(video, "pixels_norm", num_frames=4, **kw)
    torch.testing.assert_close(first, pixel_targets(video[:, :, :4], 2, 4, "videomae"))
    motion = make_targets(video, "motion", num_frames=4, **kw)
    assert motion.shape == first.shape
    torch.testing.assert_close(motion, motion_targets(video, 2, 4, "scale"))
    torch.testing.assert_close(make_targets(video, "motion", normalization="none", **kw), motion_targets(video, 2, 4, "none"))


def test_code_targets_group_codes_by_token():
    torch.manual_seed(0)
    tok = VQVAE(vqvae_config("vqvae_demo")).eval()  # downsample 8
    video = normalize(torch.rand(2, 3, 5, 32, 48, generator=torch.Generator().manual_seed(7)), channel_dim=1)
    codes = make_targets(video, "codes", tubelet=2, patch=16, num_frames=4, tokenizer=tok)
    assert codes.dtype == torch.int64
    assert codes.shape == (2, 2 * 2 * 3, 2 * 2 * 2)  # tokens (t, h, w) = (2, 2, 3); 2 frames × 2×2 codes
    per_frame = torch.stack([tok.encode(video[:, :, t]) for t in range(4)], dim=1)  # (B, T, 4, 6)
    # token (slot 1, row 0, col 2), frame 1 of its tubelet, code (row 1, col 0) within the token
    n = 1 * 6 + 0 * 3 + 2
    assert codes[:, n, 1 * 4 + 1 * 2 + 0].tolist() == per_frame[:, 3, 0 * 2 + 1, 2 * 2 + 0].tolist()
    expected = patchify(per_frame.unsqueeze(1), 2, 2)  # (B, 1, T, h', w') → (B, N, 2·2·2)
    assert torch.equal(codes, expected)
    # un-normalised input gives the same codes
    pixels = denormalize(video, channel_dim=1)
    same = code_targets(pixels, tok, 2, 16, input_normalized=False, num_frames=4)
    assert (same == codes).float().mean() > 0.99  # float rounding may flip a near-tie


def test_errors_name_the_argument():
    video = torch.randn(1, 3, 5, 8, 8)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_targets(video, "flow")
    with pytest.raises(ValueError, match="normalization must be one of"):
        motion_targets(video, 1, 4, normalization="bn")
    with pytest.raises(ValueError, match="normalization for kind='pixels'"):
        make_targets(video, "pixels", tubelet=1, patch=4, normalization="scale")
    with pytest.raises(ValueError, match="border must be one of"):
        motion_targets(video, 1, 4, border="wrap")
    with pytest.raises(ValueError, match="num_frames=3"):
        motion_targets(video, 1, 4, num_frames=3)
    with pytest.raises(ValueError, match="num_frames >= 2"):
        frame_differences(video[:, :, :1], num_frames=1)
    with pytest.raises(ValueError, match="scale must be"):
        motion_targets(video, 1, 4, scale=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="needs a tokenizer"):
        make_targets(video, "codes")
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        make_targets(video[0], "motion")
    tok = VQVAE(vqvae_config("vqvae_demo"))
    with pytest.raises(ValueError, match="multiple of the tokenizer's downsample"):
        code_targets(torch.randn(1, 3, 2, 16, 16), tok, tubelet=1, patch=4)
