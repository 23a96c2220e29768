"""Bad and unusual video files, each built here, and what decoding does with them: the skip
reason a VideoDataset counts, the event it records, the error it raises, or proof that the
frames that come back are exactly the ones asked for."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from maskvid_edu.data.containers import set_ffmpeg_log_level
from maskvid_edu.data.datasets import EVENTS, SkippedItem, VideoDataset, VideoSample
from maskvid_edu.data.decoders import DECODER_EVENTS, VideoDecodeError, decoder_events, open_video
from videofiles import (
    corrupt_middle,
    cut_after_first_frame,
    frame_index,
    gray_frames,
    indexed_frames,
    textured_frames,
    vfr_timestamps,
    write_audio_only,
    write_frame_folder,
    write_random_bytes,
    write_stream,
    write_video,
)


def outcome(path, clip_len: int = 4, stride: int = 2):
    """What VideoDataset does with ``path``: ``("skipped", reason)`` or ``("used", {events})``."""
    ds = VideoDataset([VideoSample(str(path), 0)], mode="val", clip_len=clip_len, stride=stride, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        item = ds[0]
    if isinstance(item, SkippedItem):
        return "skipped", item.reason
    flags = list(zip(EVENTS, item["events"].tolist()))
    flags += zip(DECODER_EVENTS, item.get("decoder_events", [False] * len(DECODER_EVENTS)).tolist()) if "decoder_events" in item else []
    return "used", {name for name, on in flags if on}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    f = {}
    f["one_left"] = cut_after_first_frame(write_video(d / "src.avi", textured_frames(40, 96, 128), "mjpeg_avi"), d / "cut.avi")
    f["mpeg_ps"] = write_stream(d / "program.mpg", indexed_frames(64), "mpeg1video", "mpeg")
    f["vfr_avi"] = write_stream(d / "vfr.avi", indexed_frames(64), "mpeg4", "avi", fps=10,
                                pts=vfr_timestamps(64, 444), options={"qscale": "2"})
    f["vfr_mp4"] = write_stream(d / "vfr.mp4", indexed_frames(64), "libx264", "mp4", fps=10,
                                pts=vfr_timestamps(64, 444), options={"preset": "ultrafast", "bf": "2"})
    f["noisy"] = corrupt_middle(write_video(d / "good.mp4", textured_frames(40, 64, 96), "h264_mp4"), d / "corrupt_mid.mp4")
    return f


# ---------------------------------------------------------------------------------------------
# a file cut off after its first frame is truncated data, not a short video
# ---------------------------------------------------------------------------------------------
def test_avi_cut_after_one_frame_error_naming_promised_and_stored_frames(files):
    r = open_video(files["one_left"])
    assert r.num_frames == 1 and r.claimed_frames == 40 and r.truncated
    with pytest.raises(VideoDecodeError, match="header promises 40 frames but the file holds data for 1") as info:
        r.check_not_truncated()
    assert info.value.kind == "decode_error" and str(files["one_left"]) in str(info.value)
    p = open_video(files["one_left"], "pyav")  # PyAV keeps the promise: past the cut is an error
    assert p.num_frames == 40 and p.truncated
    with pytest.raises(VideoDecodeError, match="truncated file") as info:
        p.get_frames([0, 5])
    assert info.value.kind == "decode_error"


def test_avi_cut_after_one_frame_skipped_and_counted_as_decode_error(files):
    assert outcome(files["one_left"]) == ("skipped", "decode_error")


def test_complete_short_video_is_not_called_truncated(tmp_path):
    r = open_video(write_video(tmp_path / "three.avi", indexed_frames(3), "mjpeg_avi"))
    assert not r.truncated and r.claimed_frames == 3
    r.check_not_truncated()


# ---------------------------------------------------------------------------------------------
# decord's silent wrong frames: checked once per file, read with PyAV instead
# ---------------------------------------------------------------------------------------------
def test_mpeg_program_stream_decodes_exact_frames(files):
    path = files["mpeg_ps"]
    wanted = list(range(40, 64, 4))
    r = open_video(path)
    assert [frame_index(f) for f in r.get_frames(wanted)] == wanted
    assert r.backend == "pyav" and r.events == {"decord_mismatch"}
    assert decoder_events(path) == {"decord_mismatch"}
    again = open_video(path)  # the verdict is remembered: straight to PyAV
    assert again.backend == "pyav" and again.events == {"decord_mismatch"}
    assert [frame_index(f) for f in again.get_frames(wanted[::-1])] == wanted[::-1]


def test_mpeg_program_stream_used_and_counted_as_decord_mismatch(files):
    assert outcome(files["mpeg_ps"]) == ("used", {"decord_mismatch"})


@pytest.mark.parametrize("name, encoder, fmt", [("bframes.mp4", "mpeg4", "mp4"), ("bframes.ts", "mpeg2video", "mpegts")])
def test_mpeg_video_with_b_frames_decodes_exact_frames(tmp_path, name, encoder, fmt):
    path = write_stream(tmp_path / name, textured_frames(48), encoder, fmt, options={"qscale": "3", "bf": "2"})
    wanted = [40, 12, 16, 20, 24, 28]
    exact = open_video(path, "pyav").get_frames(wanted)  # sequential decode: the reference
    assert not np.array_equal(open_video(path, "decord").get_frames(wanted), exact)  # decord alone is off
    r = open_video(path)
    np.testing.assert_array_equal(r.get_frames(wanted), exact)
    assert r.events == {"decord_mismatch"}


def test_files_where_decord_is_exact_stay_on_decord(tmp_path):
    path = write_video(tmp_path / "h264.mp4", indexed_frames(40), "h264_mp4")
    r = open_video(path)
    assert [frame_index(f) for f in r.get_frames([30, 12, 20])] == [30, 12, 20]
    assert r.backend == "decord" and r.events == set() and decoder_events(path) == set()


# ---------------------------------------------------------------------------------------------
# variable frame rate: sample from the pictures that exist, not from the header's time slots
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_vfr_avi_decodes_exact_frames(files, backend):
    r = open_video(files["vfr_avi"], backend)
    assert r.num_frames == 64 and r.claimed_frames > 400 and not r.truncated
    assert [frame_index(f) for f in r.get_frames([63, 0, 40, 62])] == [63, 0, 40, 62]


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_vfr_mp4_last_frame_decodes_exact_frames(files, backend):
    r = open_video(files["vfr_mp4"], backend)
    assert r.num_frames == 64 and not r.truncated
    assert [frame_index(f) for f in r.get_frames([63, 31])] == [63, 31]


def test_vfr_avi_used_with_no_skip(files):
    assert outcome(files["vfr_avi"], clip_len=16, stride=4) == ("used", set())


# ---------------------------------------------------------------------------------------------
# FFmpeg's own log lines stay out of the output; the failure is in the skip counts
# ---------------------------------------------------------------------------------------------
def test_corrupt_h264_is_quiet_and_skipped_and_counted_as_decode_error(files, capfd):
    capfd.readouterr()
    assert outcome(files["noisy"], clip_len=16) == ("skipped", "decode_error")
    assert "[h264 @" not in capfd.readouterr().err
    set_ffmpeg_log_level("error")  # the same decode, FFmpeg allowed to talk: the lines are back
    try:
        with pytest.raises(VideoDecodeError):
            open_video(files["noisy"], "decord").read_all()
        assert "[h264 @" in capfd.readouterr().err
    finally:
        set_ffmpeg_log_level("fatal")
    with pytest.raises(ValueError, match="log level must be one of"):
        set_ffmpeg_log_level("loud")


# ---------------------------------------------------------------------------------------------
# cases that already behaved, kept that way
# ---------------------------------------------------------------------------------------------
def test_zero_byte_file_skipped_and_counted_as_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert outcome(tmp_path / "empty.mp4") == ("skipped", "empty_file")


def test_random_bytes_skipped_and_counted_as_unreadable(tmp_path):
    assert outcome(write_random_bytes(tmp_path / "noise.mp4")) == ("skipped", "unreadable")


def test_text_file_named_mp4_skipped_and_counted_as_unreadable(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    assert outcome(tmp_path / "notes.mp4") == ("skipped", "unreadable")


def test_audio_only_file_skipped_and_counted_as_unreadable(tmp_path):
    path = write_audio_only(tmp_path / "sound.mp4")
    assert outcome(path) == ("skipped", "unreadable")
    with pytest.raises(VideoDecodeError, match="no video stream"):
        open_video(path, "pyav")


def test_mid_file_corruption_skipped_and_counted_as_decode_error(files):
    assert outcome(files["noisy"], clip_len=16) == ("skipped", "decode_error")


def test_missing_file_skipped_and_counted_as_missing_file(tmp_path):
    assert outcome(tmp_path / "nowhere.mp4") == ("skipped", "missing_file")


@pytest.mark.parametrize("n", [1, 3])
def test_very_short_video_decodes_exact_frames_and_is_counted_as_too_short(tmp_path, n):
    path = write_video(tmp_path / f"short{n}.avi", indexed_frames(n), "mjpeg_avi")
    assert [frame_index(f) for f in open_video(path).read_all()] == list(range(n))
    assert outcome(path) == ("used", {"too_short"})


def test_grayscale_video_used_and_counted_as_grayscale(tmp_path):
    assert outcome(write_video(tmp_path / "gray.mkv", gray_frames(10), "ffv1_mkv")) == ("used", {"grayscale"})


def test_odd_frame_size_used_and_counted_as_odd_size(tmp_path):
    path = write_video(tmp_path / "odd.avi", indexed_frames(10, 45, 67), "mjpeg_avi")
    assert open_video(path).size == (45, 67)
    assert outcome(path) == ("used", {"odd_size"})


def test_long_video_decodes_exact_frames(tmp_path):
    frames = np.concatenate([indexed_frames(64, 32, 32)] * 5)  # 320 frames, colours repeat every 64
    path = write_video(tmp_path / "long.mp4", frames, "mpeg4_mp4")
    for backend in ("auto", "pyav"):
        r = open_video(path, backend)
        want = [317, 5, 250, 130, 131, 64]
        assert r.num_frames == 320
        assert [frame_index(f) for f in r.get_frames(want)] == [i % 64 for i in want]


def test_unicode_and_spaces_in_path_decodes_exact_frames(tmp_path):
    folder = tmp_path / "vidéos d'été" / "クリップ 1"
    folder.mkdir(parents=True)
    path = write_video(folder / "marché aux puces.avi", indexed_frames(12), "mjpeg_avi")
    assert [frame_index(f) for f in open_video(path).get_frames([11, 2])] == [11, 2]
    assert outcome(path) == ("used", set())


def test_broken_jpeg_in_frame_folder_skipped_and_counted_as_decode_error(tmp_path):
    folder = write_frame_folder(tmp_path / "frames", indexed_frames(8), ext=".jpg")
    jpeg = folder / "00004.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:120])
    assert outcome(folder, clip_len=8, stride=1) == ("skipped", "decode_error")
    with pytest.raises(VideoDecodeError, match="00004.jpg"):
        open_video(folder).get_frames([3])
