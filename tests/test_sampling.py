"""Frame-index samplers: exact layouts, the ranges they draw from, the short-video policy
(pad with the last frame), and agreement with VideoMAE's index formulas."""

import numpy as np
import pytest
import torch

from maskvid_edu.data.decoders import open_video
from maskvid_edu.data.sampling import (
    FrameIndices,
    clip_span,
    dense_clip,
    frame_pair,
    motion_clip,
    randint,
    segment_clip,
    segment_views,
    uniform_clips,
)
from videofiles import frame_index, indexed_frames, write_video


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_clip_span():
    assert clip_span(16, 4) == 61 and clip_span(16, 2) == 31 and clip_span(1, 7) == 1


@pytest.mark.parametrize("n, T, s", [(300, 16, 4), (100, 16, 2), (61, 16, 4), (40, 8, 1)])
def test_dense_clip_layout_and_start_range(n, T, s):
    starts = set()
    for seed in range(300):
        idx, padded = dense_clip(n, T, s, generator=gen(seed))
        assert not padded and idx.dtype == np.int64 and idx.shape == (T,)
        np.testing.assert_array_equal(np.diff(idx), s)
        starts.add(int(idx[0]))
    last = n - ((T - 1) * s + 1)  # the last start that fits
    assert min(starts) >= 0 and max(starts) <= last
    assert min(starts) <= 0.05 * last and max(starts) >= 0.95 * last  # the whole range is used


def test_dense_clip_center_and_reproducibility():
    idx, _ = dense_clip(100, 16, 4, mode="center")
    assert idx[0] == (100 - 61) // 2
    a = dense_clip(300, 16, 4, generator=gen(7)).indices
    b = dense_clip(300, 16, 4, generator=gen(7)).indices
    np.testing.assert_array_equal(a, b)
    c = dense_clip(300, 16, 4, generator=np.random.default_rng(7)).indices  # numpy generators too
    assert c.shape == (16,)
    with pytest.raises(ValueError, match="mode"):
        dense_clip(100, 4, 2, mode="middle")


@pytest.mark.parametrize("n", [1, 3, 20, 60])
def test_short_videos_repeat_the_last_frame(n):
    idx, padded = dense_clip(n, 16, 4, generator=gen(0))  # needs 61 frames
    assert padded
    np.testing.assert_array_equal(idx, np.minimum(np.arange(16) * 4, n - 1))
    assert idx.max() == n - 1 and (idx < n).all()
    # the stride is kept while frames last, then the last frame repeats
    k = (n - 1) // 4 + 1
    np.testing.assert_array_equal(idx[:k], np.arange(k) * 4)


def test_exactly_long_enough_is_not_padded():
    idx, padded = dense_clip(61, 16, 4, generator=gen(0))
    assert not padded and idx[0] == 0 and idx[-1] == 60


def test_segment_clip_one_frame_per_segment():
    n, S = 50, 16
    L = n // S
    seen = np.zeros((S, L), bool)
    for seed in range(200):
        idx, padded = segment_clip(n, S, generator=gen(seed))
        assert not padded and idx.shape == (S,)
        k = np.arange(S)
        assert ((idx >= k * L) & (idx < (k + 1) * L)).all()
        seen[k, idx - k * L] = True
    assert seen.all()  # every offset inside every segment gets drawn


def test_segment_center_and_views_match_videomae_test_indices():
    for n in (16, 17, 45, 100, 233):
        tick = n / 16
        middles = [int(tick / 2.0 + tick * x) for x in range(16)]
        np.testing.assert_array_equal(segment_clip(n, 16, mode="center").indices, middles)
        # VideoMAE's SSv2 test: the middles and the starts of the segments, two views
        starts = [int(tick * x) for x in range(16)]
        views, padded = segment_views(n, 16, num_views=2)
        assert views.shape == (2, 16) and not padded
        np.testing.assert_array_equal(views[0], starts)
        np.testing.assert_array_equal(views[1], middles)


def test_segment_short_video_padded():
    idx, padded = segment_clip(5, 8, generator=gen(0))
    assert padded and idx.tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    views, padded = segment_views(5, 8, 2)
    assert padded and views.shape == (2, 8) and (views[:, -1] == 4).all()


def test_frame_pair_adjacent_and_random_gap():
    for seed in range(50):
        (a, b), padded = frame_pair(30, generator=gen(seed))
        assert b == a + 1 and 0 <= a <= 28 and not padded
    gaps = set()
    for seed in range(300):
        (a, b), _ = frame_pair(30, max_gap=5, generator=gen(seed))
        gaps.add(int(b - a))
        assert 0 <= a and b <= 29
    assert gaps == {1, 2, 3, 4, 5}
    idx, padded = frame_pair(3, gap=5)
    assert padded and idx.tolist() == [0, 2]
    idx, padded = frame_pair(1)
    assert padded and idx.tolist() == [0, 0]


def test_motion_clip_has_one_more_frame():
    idx, padded = motion_clip(100, 16, 2, generator=gen(3))
    assert idx.shape == (17,) and not padded
    np.testing.assert_array_equal(np.diff(idx), 2)
    idx, padded = motion_clip(20, 16, 2, generator=gen(3))  # needs 33 frames
    assert padded and idx[-1] == 19


def test_uniform_clips_match_videomae_test_starts():
    n, T, s, C = 300, 16, 4, 5
    clips, padded = uniform_clips(n, T, s, C)
    assert clips.shape == (C, T) and not padded
    span = (T - 1) * s + 1
    step = max((n - span) / (C - 1), 0)  # VideoMAE: temporal_step, start = int(k * step)
    np.testing.assert_array_equal(clips[:, 0], [int(k * step) for k in range(C)])
    assert clips[0, 0] == 0 and clips[-1, -1] == n - 1
    np.testing.assert_array_equal(np.diff(clips, axis=1), s)
    one, _ = uniform_clips(n, T, s, 1)
    assert one[0, 0] == (n - span) // 2
    short, padded = uniform_clips(10, 8, 2, 3)
    assert padded and (short == np.minimum(np.arange(8) * 2, 9)).all()


def test_samplers_pick_the_frames_a_real_file_holds(tmp_path):
    path = write_video(tmp_path / "v.avi", indexed_frames(40), "mjpeg_avi")
    with open_video(path) as r:
        for idx in (
            dense_clip(r.num_frames, 8, 4, generator=gen(1)).indices,
            segment_clip(r.num_frames, 8, generator=gen(2)).indices,
            frame_pair(r.num_frames, max_gap=6, generator=gen(3)).indices,
            uniform_clips(r.num_frames, 4, 3, 3).indices.reshape(-1),
        ):
            assert [frame_index(f) for f in r.get_frames(idx)] == idx.tolist()


def test_bad_arguments():
    with pytest.raises(ValueError, match="no frames"):
        dense_clip(0, 16, 4)
    with pytest.raises(TypeError):
        dense_clip(10.0, 16, 4)
    with pytest.raises(ValueError, match="clip_len"):
        dense_clip(10, 0, 4)
    with pytest.raises(ValueError, match="stride"):
        dense_clip(10, 4, -1)
    with pytest.raises(ValueError, match="num_segments"):
        segment_clip(10, 0)
    with pytest.raises(ValueError, match="max_gap"):
        frame_pair(10, max_gap=0)
    with pytest.raises(TypeError, match="generator"):
        randint(0, 3, generator=42)
    assert isinstance(dense_clip(5, 2, 1), FrameIndices)
