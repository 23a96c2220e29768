"""Fine-tuning augmentation (``maskvid_edu.data.augment.ClipAugment``): torchvision's RandAugment
and random erasing, one draw per clip (every frame gets the same operation), reproducible under a
seed, VideoMAE's published settings on by default in ``finetune`` on real videos and off on the
synthetic CPU preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskvid_edu.cli import build_parser
from maskvid_edu.data.augment import (
    VIDEOMAE_ERASING,
    VIDEOMAE_RAND_AUGMENT,
    ClipAugment,
    ClipTransform,
    parse_rand_augment,
)
from maskvid_edu.data.datasets import VideoDataset, VideoSample
from maskvid_edu.recipes import classification_data
from videofiles import textured_frames, write_video

pytestmark = pytest.mark.usefixtures("one_thread")


def _frames(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 40, 48, 3), dtype=np.uint8)


def test_recipe_values_are_videomae_s():
    # run_class_finetuning.py: --aa rand-m7-n4-mstd0.5-inc1 --reprob 0.25 --remode pixel --recount 1
    assert VIDEOMAE_RAND_AUGMENT == "rand-m7-n4-mstd0.5-inc1" and VIDEOMAE_ERASING == 0.25
    assert parse_rand_augment(VIDEOMAE_RAND_AUGMENT) == {"magnitude": 7, "num_ops": 4, "mstd": 0.5, "inc": 1}
    aug = ClipAugment()
    ra, er = aug._randaugment, aug._erase
    assert (ra.num_ops, ra.magnitude, ra.num_magnitude_bins) == (4, 7, 11)  # m7 of 10, as in timm
    assert er.p == 0.25 and er.value is None  # value None: per-pixel normal noise (timm's "pixel")
    assert tuple(er.scale) == (0.02, 0.33) and tuple(er.ratio) == (0.3, 3.3)
    for bad in ("m7-n4", "rand-n4", "rand-m7-x1", "rand-m11"):
        with pytest.raises(ValueError, match="rand_augment"):
            parse_rand_augment(bad)


@pytest.mark.parametrize("seed", range(12))
def test_identical_frames_stay_identical(seed):
    clip = np.repeat(_frames(1, seed), 6, axis=0)  # (6, H, W, 3), every frame the same
    out = ClipTransform("resized_crop", 32, augment=ClipAugment(erasing=1.0))(clip, torch.Generator().manual_seed(seed))
    assert out.shape == (3, 6, 32, 32)
    assert torch.equal(out, out[:, :1].expand_as(out))  # same op, same box, same noise in every frame


def test_every_frame_gets_the_same_operation():
    a, b = _frames(2, 1)
    aug = ClipAugment(erasing=1.0)
    for seed in range(8):
        mixed = aug.randaugment(torch.from_numpy(np.stack([a, b, a])), torch.Generator().manual_seed(seed))
        only_a = aug.randaugment(torch.from_numpy(np.stack([a, a, a])), torch.Generator().manual_seed(seed))
        assert torch.equal(mixed[0], only_a[0]) and torch.equal(mixed[0], mixed[2])
        video = torch.randn(3, 4, 16, 16)
        erased = aug.erase(video, torch.Generator().manual_seed(seed))
        changed = erased != video  # (C, T, H, W): one box, the same in every frame
        assert changed.any() and torch.equal(changed, changed[:, :1].expand_as(changed))


def test_augmentation_does_something_and_order():
    clip = _frames(4, 2)
    plain = ClipTransform("resized_crop", 32)
    augmented = ClipTransform("resized_crop", 32, augment=ClipAugment(erasing=0.0))
    differs = [not torch.equal(plain(clip, torch.Generator().manual_seed(s)), augmented(clip, torch.Generator().manual_seed(s)))
               for s in range(8)]
    assert any(differs)  # the crop is the same draw; RandAugment changed the pixels
    # erasing comes after normalisation: the noise is standard normal in normalised units
    erase_only = ClipTransform("resized_crop", 32, augment=ClipAugment(None, erasing=1.0))
    out, ref = erase_only(clip, torch.Generator().manual_seed(0)), plain(clip, torch.Generator().manual_seed(0))
    noise = out[out != ref]
    assert noise.numel() > 100 and abs(float(noise.mean())) < 0.3 and 0.7 < float(noise.std()) < 1.3


def test_deterministic_under_a_seed_and_global_rng_untouched():
    clip = _frames(5, 3)
    t = ClipTransform("resized_crop", 32, augment=ClipAugment())
    state = torch.get_rng_state()
    a = t(clip, torch.Generator().manual_seed(7))
    b = t(clip, np.random.default_rng(7))
    assert torch.equal(a, t(clip, torch.Generator().manual_seed(7)))
    assert torch.equal(b, t(clip, np.random.default_rng(7)))
    assert torch.equal(torch.get_rng_state(), state)  # a seeded call leaves torch's generator alone
    assert not torch.equal(a, t(clip, torch.Generator().manual_seed(8)))


def test_off_switches():
    assert not ClipAugment(None, 0.0)
    assert ClipTransform("resized_crop", 32, augment=ClipAugment(None, 0.0)).augment is None
    with pytest.raises(ValueError, match="resized_crop"):
        ClipTransform("center", 32, augment=ClipAugment())
    with pytest.raises(ValueError, match="augment goes with mode='train'"):
        VideoDataset([VideoSample("a.mp4", 0)], mode="val", augment=ClipAugment())


@pytest.fixture(scope="module")
def video_list(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    for i in range(4):
        write_video(root / f"v{i}.avi", textured_frames(12, 40, 48, seed=i))
    listing = root / "list.txt"
    listing.write_text("".join(f"v{i}.avi {i % 2}\n" for i in range(4)))
    return listing


def test_finetune_recipe_turns_them_on_for_real_videos_only(video_list, tmp_path):
    parser = build_parser()
    args = parser.parse_args(["finetune", "--out", str(tmp_path), "--data", str(video_list), "--val-data", str(video_list)])
    assert (args.rand_augment, args.erasing) == ("rand-m7-n4-mstd0.5-inc1", 0.25)  # VideoMAE's, on by default
    train, val, k, _ = classification_data(args, 4, 32, train_mode="train", val_mode="test")
    aug = train.transform.augment
    assert (aug.rand_augment, aug.erasing) == (VIDEOMAE_RAND_AUGMENT, VIDEOMAE_ERASING)
    assert not hasattr(val.transform, "augment") or val.transform.augment is None
    assert train[0]["video"].shape == (3, 4, 32, 32)
    off = parser.parse_args(["finetune", "--out", str(tmp_path), "--data", str(video_list), "--val-data",
                             str(video_list), "--rand-augment", "none", "--erasing", "0"])
    assert classification_data(off, 4, 32, train_mode="train", val_mode="test")[0].transform.augment is None
    # probing reads training clips in val mode: no augmentation
    probe = parser.parse_args(["probe", "--data", str(video_list), "--val-data", str(video_list)])
    assert classification_data(probe, 4, 32, train_mode="val", val_mode="val")[0].transform.kind == "center"
    # the CPU preset (synthetic clips) has none
    cpu = parser.parse_args(["finetune", "--out", str(tmp_path)])
    synthetic = classification_data(cpu, 4, 32, train_mode="train", val_mode="test")[0]
    assert not hasattr(synthetic, "transform") or getattr(synthetic.transform, "augment", None) is None
