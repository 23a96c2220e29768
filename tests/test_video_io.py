"""Reading real clips: the shipped clip, frame indices (seek + stride) on generated videos, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import brightness_frames
from maskvid_edu.data import video as video_mod
from maskvid_edu.data.transforms import denormalize
from maskvid_edu.data.video import SHIPPED_CLIP, clip_indices, read_clip, shipped_clip, video_info

STEP, FIRST = 5, 20


def decode_indices(clip: torch.Tensor) -> list[int]:
    """Frame indices of a clip of brightness-coded frames ((3, T, H, W) in [0, 1])."""
    level = clip.mean(dim=(0, 2, 3)) * 255.0  # (T,)
    return [round((float(v) - FIRST) / STEP) for v in level]


def test_shipped_clip_info_and_read():
    assert shipped_clip() == SHIPPED_CLIP and SHIPPED_CLIP.parent.name == "data"
    info = video_info(SHIPPED_CLIP)
    assert (info.num_frames, info.fps, info.height, info.width) == (64, 10.0, 240, 320)
    assert info.duration == pytest.approx(6.4)

    clip = read_clip(SHIPPED_CLIP)  # defaults: 16 frames, stride 4, from frame 0, normalised
    assert clip.shape == (3, 16, 240, 320) and clip.dtype == torch.float32
    pixels = denormalize(clip)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert 0.2 < float(pixels.mean()) < 0.8 and float(pixels.std()) > 0.1  # a real picture
    raw = read_clip(SHIPPED_CLIP, normalize=False)
    torch.testing.assert_close(denormalize(clip), raw, atol=1e-5, rtol=0)

    small = read_clip(SHIPPED_CLIP, num_frames=8, stride=2, start="center", size=112, normalize=False)
    assert small.shape == (3, 8, 112, 149)  # shorter side 240 → 112, aspect 4:3 kept
    assert small.min() >= 0 and small.max() <= 1
    square = read_clip(SHIPPED_CLIP, num_frames=4, stride=1, size=(64, 64))
    assert square.shape == (3, 4, 64, 64)
    # people walk: consecutive frames differ, but far less than two unrelated pictures would
    d = (raw[:, 1:] - raw[:, :-1]).abs().mean()
    assert 0.001 < float(d) < 0.1


def test_shipped_clip_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(video_mod, "SHIPPED_CLIP", tmp_path / "data" / "people_walking.mp4")
    with pytest.raises(FileNotFoundError, match="data/.*pip install -e"):
        video_mod.shipped_clip()


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_seek_and_stride_select_the_right_frames(make_video, codec):
    path = make_video(f"index_{codec}.mp4", brightness_frames(40), codec=codec)
    info = video_info(path)
    assert (info.num_frames, info.height, info.width) == (40, 48, 64)
    assert info.fps == pytest.approx(25.0)

    for num_frames, stride, start in [(8, 4, 0), (5, 3, 7), (16, 1, 24), (4, 13, 0), (10, 2, 3)]:
        clip = read_clip(path, num_frames=num_frames, stride=stride, start=start, normalize=False)
        assert clip.shape == (3, num_frames, 48, 64)
        assert decode_indices(clip) == [start + i * stride for i in range(num_frames)], (num_frames, stride, start)

    centred = read_clip(path, num_frames=6, stride=3, start="center", normalize=False)  # span 16 of 40
    assert decode_indices(centred) == [12, 15, 18, 21, 24, 27]
    looped = read_clip(path, num_frames=6, stride=10, start=5, loop=True, normalize=False)
    assert decode_indices(looped) == [5, 15, 25, 35, 5, 15]
    # reading in a different order (backward seeks) gives the same frames
    late = read_clip(path, num_frames=2, stride=1, start=38, normalize=False)
    early = read_clip(path, num_frames=2, stride=1, start=1, normalize=False)
    assert decode_indices(late) == [38, 39] and decode_indices(early) == [1, 2]


def test_a_folder_of_frames_reads_like_a_video(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(brightness_frames(20)):
        Image.fromarray(frame).save(folder / f"{i + 1}.png")  # natural order: 1, 2, …, 10, 11, …
    assert video_info(folder).num_frames == 20
    clip = read_clip(folder, num_frames=5, stride=4, start=1, normalize=False)
    assert decode_indices(clip) == [1, 5, 9, 13, 17]


def test_clip_indices_rules():
    assert clip_indices(100, 16, 4, 0) == list(range(0, 61, 4))
    assert clip_indices(100, 16, 4, "center") == [i + 19 for i in range(0, 61, 4)]  # (100 - 61) // 2 = 19
    assert clip_indices(61, 16, 4, 0)[-1] == 60  # exactly long enough
    assert clip_indices(10, 4, 4, 0, loop=True) == [0, 4, 8, 2]
    assert clip_indices(5, 8, 1, "center", loop=True) == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(ValueError, match=r"need frames 0\.\.60 \(61 frames\), but the video has 60"):
        clip_indices(60, 16, 4, 0)
    with pytest.raises(ValueError, match="stride"):
        clip_indices(60, 4, 0)
    with pytest.raises(ValueError, match="num_frames"):
        clip_indices(60, 0)
    with pytest.raises(ValueError, match="start"):
        clip_indices(60, 4, 1, -1)
    with pytest.raises(ValueError, match="start"):
        clip_indices(60, 4, 1, "middle")


def test_errors_name_the_file_and_the_counts(make_video, tmp_path):
    missing = tmp_path / "nowhere" / "clip.mp4"
    with pytest.raises(FileNotFoundError, match="nowhere/clip.mp4"):
        read_clip(missing)
    with pytest.raises(FileNotFoundError, match="nowhere/clip.mp4"):
        video_info(missing)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty_folder"):  # a folder is read as frames: none here
        read_clip(empty)

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="broken.mp4: could not decode video"):
        read_clip(broken)

    short = make_video("short.mp4", brightness_frames(12))
    with pytest.raises(ValueError, match=r"clip too short: 16 frames at stride 4 .*\(61 frames\), but the video has 12"):
        read_clip(short)
    assert read_clip(short, num_frames=3, stride=5).shape == (3, 3, 48, 64)  # 0, 5, 10 fit
    for bad in (0, (64,), (64, 0), 1.5):
        with pytest.raises(ValueError, match="size"):
            read_clip(short, num_frames=2, stride=1, size=bad)
