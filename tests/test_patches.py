"""Patchify round trips and both per-patch normalisations against hand computations."""

import pytest
import torch

from maskvid_edu.data.transforms import denormalize, normalize
from maskvid_edu.patches import (
    denormalize_patches,
    normalize_patches,
    patchify,
    pixel_targets,
    unpatchify,
)


def test_video_round_trip_and_shape():
    x = torch.randn(2, 3, 8, 32, 48)
    p = patchify(x, tubelet=2, patch=16)
    assert p.shape == (2, 4 * 2 * 3, 2 * 16 * 16 * 3)
    assert torch.equal(unpatchify(p, (4, 2, 3), tubelet=2, patch=16), x)


def test_layout_is_frame_row_col_channel_with_channel_fastest():
    # value = c + 10·col + 100·row + 1000·frame in one 2×2×2 tubelet
    T, H, W = 2, 2, 2
    f, r, c = torch.meshgrid(torch.arange(T), torch.arange(H), torch.arange(W), indexing="ij")
    x = torch.stack([ch + 10 * c + 100 * r + 1000 * f for ch in range(3)]).float()[None]  # (1,3,2,2,2)
    p = patchify(x, tubelet=2, patch=2)[0, 0]
    expected = [ch + 10 * cc + 100 * rr + 1000 * ff for ff in range(2) for rr in range(2) for cc in range(2) for ch in range(3)]
    assert p.tolist() == expected


def test_raster_order_t_slowest():
    x = torch.zeros(1, 1, 4, 4, 6)
    x[:, :, 2:4, 0:2, 2:4] = 1  # slot 1, row 0, col 1 with patch 2, tubelet 2
    p = patchify(x, tubelet=2, patch=2)
    hot = p.sum(-1).nonzero()[:, 1].tolist()
    assert hot == [1 * (2 * 3) + 0 * 3 + 1]


def test_image_patchify_matches_mae_layout():
    img = torch.randn(2, 3, 8, 8)
    p = patchify(img, patch=4)
    assert p.shape == (2, 4, 48)
    ref = img.reshape(2, 3, 2, 4, 2, 4).permute(0, 2, 4, 3, 5, 1).reshape(2, 4, 48)  # 'nchpwq->nhwpqc'
    assert torch.equal(p, ref)


def test_patchify_errors():
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 3, 8, 30, 32))
    with pytest.raises(ValueError, match="T of 7"):
        patchify(torch.zeros(1, 3, 7, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        patchify(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="do not fit grid"):
        unpatchify(torch.zeros(1, 5, 1536), (4, 2, 3))


def test_videomae_normalisation_hand_computed():
    # one patch of 4 positions × 2 channels, channel fastest: channel 0 = 1,2,3,4; channel 1 = 2,2,2,6
    patch = torch.tensor([[[1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 4.0, 6.0]]])
    out = normalize_patches(patch, "videomae", channels=2)[0, 0]
    # channel 0: mean 2.5, unbiased std sqrt(5/3); channel 1: mean 3, unbiased std 2
    s0 = (5 / 3) ** 0.5 + 1e-6
    s1 = 2.0 + 1e-6
    expected = [(1 - 2.5) / s0, (2 - 3) / s1, (2 - 2.5) / s0, (2 - 3) / s1,
                (3 - 2.5) / s0, (2 - 3) / s1, (4 - 2.5) / s0, (6 - 3) / s1]
    assert torch.allclose(out, torch.tensor(expected), atol=1e-6)


def test_mae_normalisation_hand_computed():
    patch = torch.tensor([[[1.0, 2.0, 3.0, 6.0]]])
    out = normalize_patches(patch, "mae")[0, 0]
    # mean 3, unbiased var (4 + 1 + 0 + 9) / 3 = 14/3
    expected = (torch.tensor([1.0, 2.0, 3.0, 6.0]) - 3) / (14 / 3 + 1e-6) ** 0.5
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["videomae", "mae", "none"])
def test_denormalize_inverts_with_reference_stats(mode):
    raw = torch.rand(2, 10, 2 * 4 * 4 * 3, dtype=torch.float64)
    norm = normalize_patches(raw, mode)
    assert torch.allclose(denormalize_patches(norm, raw, mode), raw, atol=1e-10)


def test_unknown_normalisation():
    with pytest.raises(ValueError, match="normalization must be one of"):
        normalize_patches(torch.zeros(1, 1, 6), "layer")
    with pytest.raises(ValueError, match="normalization must be one of"):
        pixel_targets(torch.zeros(1, 3, 2, 16, 16), normalization="zscore")


def test_pixel_targets_undo_imagenet_normalisation():
    pixels = torch.rand(1, 3, 4, 32, 32)
    video = normalize(pixels)
    assert torch.allclose(denormalize(video), pixels, atol=1e-6)
    raw = pixel_targets(video, normalization="none")
    assert torch.allclose(raw, patchify(pixels), atol=1e-6)
    norm = pixel_targets(video, normalization="videomae")
    assert torch.allclose(norm, normalize_patches(patchify(pixels), "videomae"), atol=1e-5)
