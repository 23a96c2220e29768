"""Clip augmentation: one box and one flip for all frames, VideoMAE's multi-scale crop rules,
torchvision's random-resized-crop draws, the test-time views and normalisation."""

import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from maskvid_edu.data.augment import (
    ClipTransform,
    center_crop,
    fixed_crop_offsets,
    horizontal_flip,
    multi_scale_crop,
    multi_scale_crop_params,
    random_horizontal_flip,
    random_resized_crop,
    random_resized_crop_params,
    resize_labels,
    resized_crop,
    short_side_resize,
    spatial_crops,
    target_size,
    to_model_input,
)
from maskvid_edu.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize


def gen(seed):
    return torch.Generator().manual_seed(seed)


def ramp_clip(T=4, H=40, W=56):
    """float (T, H, W, 3): frame t = a spatial pattern + t (so frames differ by a constant)."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    base = torch.stack([xx, yy, (xx * yy) % 7], -1) / 10.0  # (H, W, 3)
    return torch.stack([base + t for t in range(T)])  # (T, H, W, 3)


# ---------------------------------------------------------------------------------------------
# layouts and dtypes
# ---------------------------------------------------------------------------------------------
def test_layout_and_dtype_are_preserved():
    thwc = torch.randint(0, 256, (5, 40, 56, 3), dtype=torch.uint8)
    out = random_resized_crop(thwc, 32, generator=gen(0))
    assert out.shape == (5, 32, 32, 3) and out.dtype == torch.uint8
    cthw = thwc.permute(3, 0, 1, 2).float() / 255
    out = random_resized_crop(cthw, (24, 32), generator=gen(0))
    assert out.shape == (3, 5, 24, 32) and out.dtype == torch.float32
    # the same draw crops the same box in either layout
    a = random_resized_crop(thwc.float(), 32, generator=gen(3))
    b = random_resized_crop(thwc.permute(3, 0, 1, 2).float(), 32, generator=gen(3))
    torch.testing.assert_close(a, b.permute(1, 2, 3, 0))
    out = multi_scale_crop(thwc.numpy(), 32, generator=gen(0))  # numpy in, tensor out
    assert isinstance(out, torch.Tensor) and out.shape == (5, 32, 32, 3)


def test_ambiguous_layout_needs_to_be_named():
    clip = torch.zeros(3, 20, 30, 3)  # 3 frames THWC, or CTHW with width 3?
    with pytest.raises(ValueError, match="ambiguous"):
        center_crop(clip, 8)
    assert center_crop(clip, 8, layout="THWC").shape == (3, 8, 8, 3)
    with pytest.raises(ValueError, match="4 dims"):
        center_crop(torch.zeros(20, 30, 3), 8)
    with pytest.raises(ValueError, match="layout"):
        center_crop(clip, 8, layout="NCHW")


@pytest.mark.parametrize(
    "fn",
    [
        lambda v, g: random_resized_crop(v, 24, generator=g),
        lambda v, g: random_resized_crop(v, 24, scale=(0.2, 1.0), interpolation="bicubic", generator=g),
        lambda v, g: multi_scale_crop(v, 24, generator=g),
    ],
)
def test_one_box_for_all_frames(fn):
    clip = ramp_clip()
    for seed in range(10):
        out = fn(clip, gen(seed))  # (T, 24, 24, 3)
        # resizing is linear, so frame t - frame 0 stays exactly t everywhere iff the box is shared
        for t in range(clip.shape[0]):
            torch.testing.assert_close(out[t] - out[0], torch.full_like(out[0], float(t)), atol=1e-4, rtol=0)


def test_seeded_generators_reproduce_a_crop():
    clip = torch.randint(0, 256, (4, 40, 56, 3), dtype=torch.uint8)
    for fn in (random_resized_crop, multi_scale_crop):
        a, b = fn(clip, 24, generator=gen(5)), fn(clip, 24, generator=gen(5))
        assert torch.equal(a, b)
        assert any(not torch.equal(a, fn(clip, 24, generator=gen(s))) for s in range(6, 12))


# ---------------------------------------------------------------------------------------------
# VideoMAE's GroupMultiScaleCrop
# ---------------------------------------------------------------------------------------------
def reference_candidates(width, height, out, scales=(1, 0.875, 0.75, 0.66)):
    """The boxes GroupMultiScaleCrop can produce, written out from its rules (13 fixed offsets)."""
    base = min(width, height)
    sides = [int(base * s) for s in scales]
    sides = [out if abs(x - out) < 3 else x for x in sides]
    boxes = set()
    for i, h in enumerate(sides):
        for j, w in enumerate(sides):
            if abs(i - j) > 1:
                continue
            ws, hs = (width - w) // 4, (height - h) // 4
            for a, b in [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]:
                boxes.add((b * hs, a * ws, h, w))  # (top, left, h, w)
    return boxes


@pytest.mark.parametrize("hw, out", [((240, 320), 224), ((256, 340), 224), ((45, 67), 32)])
def test_multi_scale_crop_draws_exactly_the_reference_boxes(hw, out):
    ref = reference_candidates(hw[1], hw[0], out)
    drawn = {multi_scale_crop_params(hw[0], hw[1], out, generator=gen(s)) for s in range(3000)}
    assert drawn == ref


def test_multi_scale_crop_side_lengths():
    # short side 240: int(240 * s) for s in (1, .875, .75, .66) = 240, 210, 180, 158
    ref = reference_candidates(320, 240, 224)
    assert {b[2] for b in ref} == {240, 210, 180, 158}
    assert (0, 0, 240, 210) in ref and (240, 210, 158, 158) not in ref  # at most one scale step of distortion
    # short side 256: int(256 * .875) = 224 exactly; short side 225 snaps 225 -> 224
    assert 224 in {b[2] for b in reference_candidates(340, 256, 224)}
    top, left, h, w = multi_scale_crop_params(225, 300, 224, scales=(1.0,), generator=gen(0))
    assert (h, w) == (224, 224)
    assert fixed_crop_offsets(320, 240, 210, 240)[:5] == [(0, 0), (108, 0), (0, 0), (108, 0), (54, 0)]
    assert len(fixed_crop_offsets(320, 240, 210, 240, more_fix_crop=False)) == 5


def test_multi_scale_crop_never_leaves_a_small_frame():
    # a frame smaller than the output: sides are capped at the frame (the reference would pad)
    for s in range(200):
        top, left, h, w = multi_scale_crop_params(30, 222, 224, generator=gen(s))
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 222
    out = multi_scale_crop(torch.zeros(2, 30, 222, 3, dtype=torch.uint8), 224, generator=gen(0))
    assert out.shape == (2, 224, 224, 3)


# ---------------------------------------------------------------------------------------------
# random resized crop and flips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.2, 1.0)])
def test_random_resized_crop_matches_torchvision(scale):
    img = torch.zeros(3, 45, 67)
    for s in range(300):
        torch.manual_seed(s)
        expected = RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3])
        assert random_resized_crop_params(45, 67, scale, generator=gen(s)) == tuple(expected)


def test_random_resized_crop_area_and_aspect():
    areas, aspects = [], []
    for s in range(500):
        top, left, h, w = random_resized_crop_params(240, 320, (0.2, 1.0), generator=np.random.default_rng(s))
        assert top >= 0 and left >= 0 and top + h <= 240 and left + w <= 320
        areas.append(h * w / (240 * 320))
        aspects.append(w / h)
    assert min(areas) >= 0.2 - 0.01 and max(areas) <= 1.0
    assert min(aspects) >= 3 / 4 - 0.02 and max(aspects) <= 4 / 3 + 0.02


def test_flips():
    clip = ramp_clip()
    torch.testing.assert_close(horizontal_flip(horizontal_flip(clip)), clip)
    assert torch.equal(horizontal_flip(clip)[:, :, 0], clip[:, :, -1])
    assert torch.equal(random_horizontal_flip(clip, p=1.0), horizontal_flip(clip))
    assert torch.equal(random_horizontal_flip(clip, p=0.0), clip)
    flipped = sum(not torch.equal(random_horizontal_flip(clip, generator=gen(s)), clip) for s in range(200))
    assert 70 < flipped < 130
    # flip=0 in the crop: never mirrored (SSv2); identical to the same box without flip
    a = random_resized_crop(clip, 24, flip=0.0, generator=gen(1))
    top, left, h, w = random_resized_crop_params(40, 56, generator=gen(1))
    torch.testing.assert_close(a, resized_crop(clip, top, left, h, w, 24))


# ---------------------------------------------------------------------------------------------
# test-time views
# ---------------------------------------------------------------------------------------------
def test_short_side_resize_and_center_crop():
    clip = torch.zeros(2, 45, 67, 3, dtype=torch.uint8)
    assert short_side_resize(clip, 32).shape == (2, 32, int(32 * 67 / 45), 3)
    assert short_side_resize(torch.zeros(2, 67, 45, 3), 32).shape == (2, int(32 * 67 / 45), 32, 3)
    x = torch.arange(10 * 12, dtype=torch.float32).reshape(1, 10, 12, 1).expand(1, 10, 12, 3)
    c = center_crop(x, 4)
    assert c.shape == (1, 4, 4, 3) and c[0, 0, 0, 0] == 3 * 12 + 4  # top 3, left 4
    with pytest.raises(ValueError, match="at least"):
        center_crop(x, 11)


def test_three_crops_cover_the_long_side():
    H, W = 32, 80
    xx = torch.arange(W, dtype=torch.float32).expand(2, H, W)  # value = column
    clip = torch.stack([xx, xx, xx], -1)  # (2, H, W, 3)
    crops = spatial_crops(clip, 32, 3)
    assert [c.shape for c in crops] == [(2, 32, 32, 3)] * 3
    assert [c[0, 0, 0, 0].item() for c in crops] == [0, 24, 48]  # starts int(k * (80 - 32) / 2)
    assert crops[-1][0, 0, -1, 0] == W - 1
    tall = spatial_crops(clip.transpose(1, 2), 32, 3)  # (2, 80, 32, 3), value = row: crops go down
    assert [c[0, 0, 0, 0].item() for c in tall] == [0, 24, 48] and tall[2].shape == (2, 32, 32, 3)
    assert torch.equal(tall[1][0, :, 0, 0], torch.arange(24, 56, dtype=torch.float32))
    one = spatial_crops(clip, 32, 1)
    assert len(one) == 1 and one[0][0, 0, 0, 0] == 24


def test_to_model_input_normalises_with_imagenet_stats():
    clip = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    x = to_model_input(clip)
    assert x.shape == (3, 4, 8, 8) and x.dtype == torch.float32
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    torch.testing.assert_close(x, (clip.permute(3, 0, 1, 2).float() / 255 - mean) / std)
    torch.testing.assert_close(denormalize(x), clip.permute(3, 0, 1, 2).float() / 255)
    torch.testing.assert_close(to_model_input(clip, normalized=False), clip.permute(3, 0, 1, 2).float() / 255)


def test_clip_transform_recipes():
    frames = np.random.default_rng(0).integers(0, 256, (4, 45, 67, 3), dtype=np.uint8)
    assert ClipTransform("multiscale", 32)(frames, gen(0)).shape == (3, 4, 32, 32)
    assert ClipTransform("resized_crop", 32, scale=(0.2, 1), interpolation="bicubic")(frames, gen(0)).shape == (3, 4, 32, 32)
    assert ClipTransform("center", 32)(frames).shape == (3, 4, 32, 32)
    views = ClipTransform("three_crop", 32)(frames)
    assert views.shape == (3, 3, 4, 32, 32) and ClipTransform("three_crop", 32).num_views == 3
    assert not torch.equal(views[0], views[2])
    # a 3-frame clip is fine (the transform knows its input is THWC)
    assert ClipTransform("center", 16)(frames[:3]).shape == (3, 3, 16, 16)
    t = ClipTransform("resized_crop", 32)
    assert torch.equal(t(frames, gen(4)), t(frames, gen(4)))
    assert "resized_crop" in repr(t)
    with pytest.raises(ValueError, match="kind"):
        ClipTransform("random", 32)
    with pytest.raises(ValueError, match="flip"):
        ClipTransform("resized_crop", 32, flip=2)


def test_frame_and_label_resizing_helpers():
    assert target_size((45, 67), None) == (45, 67)
    assert target_size((45, 67), 32) == (32, int(32 * 67 / 45))
    assert target_size((45, 67), (20, 30)) == (20, 30)
    labels = torch.randint(0, 5, (3, 45, 67))
    small = resize_labels(labels, (20, 30))
    assert small.shape == (3, 20, 30) and small.dtype == labels.dtype
    assert set(small.unique().tolist()) <= set(labels.unique().tolist())  # no blended ids
    assert torch.equal(resize_labels(labels, (45, 67)), labels)
