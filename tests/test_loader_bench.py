"""The loader benchmark's contenders read the same clips, and ours equals the reference pipeline
(VideoMAE's decord + PIL way) within the stated resize tolerance; the uint8 fast paths it relies
on agree with PIL and with the float normalisation."""

import numpy as np
import pytest
import torch
from PIL import Image

from maskvid_edu.data.augment import resized_crop, to_model_input
from maskvid_edu.data.datasets import is_grayscale
from maskvid_edu.data.transforms import IMAGENET_STD, normalize, normalize_uint8
from maskvid_edu.data.video import shipped_clip
from maskvid_edu.measure.loader import (bench_loader, clip_plan, decode_decord, decode_pyav, decode_torchcodec,
                                        loader_summary, reference_clip, torchcodec_available)

# One uint8 level in normalised units is 1 / (255 · std) ≈ 0.0175 at most (std 0.224).
LEVEL = 1 / (255 * min(IMAGENET_STD))


def _photo(seed=0, t=4, h=60, w=80):
    """Smooth frames with edges (a resize test on white noise would exaggerate rounding)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 4) % 256, ((xx - yy) * 2) % 256], -1)
    frames = np.stack([np.roll(base, k, axis=1) for k in range(t)]).astype(np.int64)
    frames += rng.integers(0, 20, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)  # (T, H, W, 3)


@pytest.mark.parametrize("interpolation, pil", [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)])
def test_uint8_resize_is_pils_filter_within_two_levels(interpolation, pil):
    frames = _photo()
    ours = resized_crop(frames, 5, 7, 41, 53, 32, interpolation=interpolation, layout="THWC")
    assert ours.dtype == torch.uint8
    ref = np.stack([np.asarray(Image.fromarray(f).crop((7, 5, 60, 46)).resize((32, 32), pil)) for f in frames])
    diff = np.abs(ours.numpy().astype(int) - ref.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.03, (diff.max(), (diff > 0).mean())


def test_uint8_normalisation_equals_the_float_route():
    x = torch.from_numpy(_photo(1)).permute(3, 0, 1, 2)  # (C, T, H, W) uint8 view
    fused = normalize_uint8(x)
    assert fused.dtype == torch.float32 and fused.is_contiguous()
    torch.testing.assert_close(fused, normalize(x.float() / 255), rtol=0, atol=1e-6)
    torch.testing.assert_close(to_model_input(_photo(1), layout="THWC"), fused, rtol=0, atol=0)
    unnormalised = to_model_input(_photo(1), layout="THWC", normalized=False)
    torch.testing.assert_close(unnormalised, x.float() / 255, rtol=0, atol=0)
    with pytest.raises(TypeError, match="uint8"):
        normalize_uint8(x.float())


def test_gray_check_reads_every_frame():
    gray = np.repeat(_photo(2)[..., :1], 3, axis=-1)
    assert is_grayscale(gray) and is_grayscale(gray[:1])
    late = gray.copy()
    late[-1, 3, 4, 2] += 1  # one pixel of the last frame is coloured
    assert not is_grayscale(late)
    assert not is_grayscale(_photo(2))


def test_pyav_seek_decodes_the_frames_decord_does():
    path = shipped_clip()
    for idx in ([0, 4, 8], [21, 25, 29, 33, 60], [63]):
        np.testing.assert_array_equal(decode_pyav(path, idx), decode_decord(path, idx))
    assert decode_pyav(path, [8, 8, 0]).shape[0] == 3  # repeats and order kept


@pytest.mark.skipif(not torchcodec_available(), reason="pip install torchcodec (and FFmpeg's shared libraries)")
def test_torchcodec_decodes_the_frames_decord_does():
    path = shipped_clip()
    np.testing.assert_array_equal(decode_torchcodec(path, [0, 4, 8, 60]), decode_decord(path, [0, 4, 8, 60]))


def test_ours_equals_the_reference_pipeline_on_the_same_clip():
    path = shipped_clip()
    dataset = clip_plan([path], 4, clip_len=8, stride=4, size=112, seed=5)
    for i in range(4):
        g = dataset.generator(i)
        idx, _ = dataset.frame_indices(64, g)
        ref = reference_clip(path, idx, 112, g)  # (3, T, 112, 112)
        ours = dataset[i]["video"]
        assert ours.shape == ref.shape == (3, 8, 112, 112)
        diff = (ours - ref).abs()
        # the same frames and crop box; only PIL's and torch's fixed-point rounding differ
        assert diff.max() <= 2 * LEVEL + 1e-5 and (diff > 1e-5).float().mean() < 0.03


def test_bench_rows_and_ratios():
    rows = bench_loader(clips=4, clip_len=4, stride=2, size=64, workers=(0,), views=(1, 2), batch_size=2, rounds=1)
    names = [r["name"] for r in rows]
    assert names[:3] == ["bare decode, decord (get_batch of the clip's frames)",
                         "bare decode, PyAV (seek to keyframe, decode forward)",
                         "VideoMAE reference pipeline (decord + PIL crop/resize + normalise)"]
    ours = [r for r in rows if "workers" in r]
    assert [(r["workers"], r["views"]) for r in ours] == [(None, 1), (None, 2), (0, 1), (0, 2)]
    decoders = [r for r in rows if r["name"].startswith("bare decode")]
    assert len(rows) == 3 + len(ours) + (1 if torchcodec_available() else 0) and len(decoders) >= 2
    assert all(r["clips_per_s"] > 0 for r in rows)
    assert max(r["vs_decode"] for r in decoders) == pytest.approx(1.0)
    assert rows[2]["vs_reference"] == pytest.approx(1.0)
    summary = loader_summary(rows)
    assert summary["per_process_clips_per_s"] == ours[0]["clips_per_s"]
    with pytest.raises(ValueError, match="batch_size"):
        bench_loader(clips=3, batch_size=2)
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        bench_loader(["nowhere.mp4"], clips=4, batch_size=2)
