"""Decoders on real files written by the tests: agreement between backends, exact frame
indices, grayscale and odd sizes, and one documented error kind per kind of broken file."""

import pickle

import numpy as np
import pytest

from maskvid_edu.data.decoders import (
    AutoReader,
    VideoDecodeError,
    available_backends,
    list_frame_files,
    open_video,
)
from videofiles import (
    CODECS,
    encoder_available,
    frame_index,
    gray_frames,
    indexed_frames,
    make_zoo,
    textured_frames,
    write_frame_folder,
    write_video,
)

FILE_BACKENDS = ["decord", "pyav"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("zoo"))


def _codec_or_skip(codec):
    if not encoder_available(CODECS[codec][1]):
        pytest.skip(f"PyAV's FFmpeg has no {CODECS[codec][1]} encoder")


def test_both_file_backends_are_installed():
    assert {"decord", "pyav", "frames"} <= set(available_backends())


@pytest.mark.parametrize("codec", list(CODECS))
def test_decord_and_pyav_give_the_same_frames(tmp_path, codec):
    _codec_or_skip(codec)
    src = textured_frames(12)
    path = write_video(tmp_path / f"clip{CODECS[codec][0]}", src, codec)
    a = open_video(path, "decord").read_all().astype(np.int16)
    b = open_video(path, "pyav").read_all().astype(np.int16)
    assert a.shape == b.shape == (12, 48, 64, 3)
    # same FFmpeg YUV->RGB conversion: measured identical; allow 2 levels for other builds
    assert np.abs(a - b).max() <= 2
    # and both are the encoded clip (lossy codecs: the moving square's sharp edges cost most)
    assert np.abs(b - src).mean() < 12


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_frames_come_back_in_request_order(tmp_path, codec, backend):
    _codec_or_skip(codec)
    path = write_video(tmp_path / f"idx{CODECS[codec][0]}", indexed_frames(20), codec)
    r = open_video(path, backend)
    assert r.num_frames == 20 and r.size == (48, 64) and r.fps == pytest.approx(10.0)
    want = [5, 0, 19, 5, 7, 7, 12]
    frames = r.get_frames(want)
    assert frames.dtype == np.uint8 and frames.shape == (7, 48, 64, 3)
    assert [frame_index(f) for f in frames] == want


def test_frame_folder_is_exact_and_in_natural_order(tmp_path):
    src = indexed_frames(12)
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image

    for i, f in enumerate(src):  # 1.png ... 12.png: a plain sort would put 10 before 2
        Image.fromarray(f).save(folder / f"{i + 1}.png")
    (folder / "notes.txt").write_text("not a frame")
    assert [p.name for p in list_frame_files(folder)][:3] == ["1.png", "2.png", "3.png"]
    r = open_video(folder)
    assert r.backend == "frames" and r.num_frames == 12 and r.fps is None
    np.testing.assert_array_equal(r.get_frames([11, 1, 10]), src[[11, 1, 10]])
    assert open_video(folder, fps=25).fps == 25


def test_grayscale_sources_become_three_equal_channels(tmp_path):
    gray = gray_frames(6)
    path = write_video(tmp_path / "gray.mkv", gray, "ffv1_mkv")
    import av

    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "gray"  # a real gray file
    for backend in FILE_BACKENDS:
        x = open_video(path, backend).read_all()
        assert x.shape == (6, 48, 64, 3)
        np.testing.assert_array_equal(x, np.repeat(gray[..., None], 3, -1))  # lossless
    folder = write_frame_folder(tmp_path / "gray_png", gray)  # mode-L PNGs
    np.testing.assert_array_equal(open_video(folder).read_all(), np.repeat(gray[..., None], 3, -1))


@pytest.mark.parametrize("codec", ["mjpeg_avi", "mpeg4_avi"])
def test_odd_sizes_are_kept(tmp_path, codec):
    path = write_video(tmp_path / f"odd{CODECS[codec][0]}", indexed_frames(5, 45, 67), codec)
    for backend in FILE_BACKENDS:
        r = open_video(path, backend)
        assert r.size == (45, 67)
        x = r.get_frames([4, 0])
        assert x.shape == (2, 45, 67, 3) and [frame_index(f) for f in x] == [4, 0]


def test_decord_width_bug_and_auto_fallback(tmp_path):
    # decord 0.6.0 fails on 48-pixel-wide frames (the module docstring says so); auto must still work
    path = write_video(tmp_path / "w48.avi", indexed_frames(10, 32, 48), "mjpeg_avi")
    with pytest.raises(VideoDecodeError) as info:
        open_video(path, "decord").get_frames([0])
    assert info.value.kind == "decode_error" and "size must exactly match" in info.value.reason
    r = open_video(path)
    assert isinstance(r, AutoReader)
    assert [frame_index(f) for f in r.get_frames([9, 3])] == [9, 3]
    assert r.backend == "pyav" and r.size == (32, 48)


def test_webm_frame_count_without_container_metadata(zoo):
    import av

    with av.open(str(zoo["good_webm"])) as c:
        assert c.streams.video[0].frames == 0  # WebM does not store it: PyAV counts packets
    assert open_video(zoo["good_webm"], "pyav").num_frames == 20


# ---------------------------------------------------------------------------------------------
# broken files: each raises its documented kind, naming the path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, backend, kind",
    [
        ("empty", "auto", "empty_file"),
        ("empty", "pyav", "empty_file"),
        ("corrupt", "auto", "unreadable"),
        ("corrupt", "decord", "unreadable"),
        ("corrupt", "pyav", "unreadable"),
        ("zero", "auto", "zero_frames"),
        ("zero", "pyav", "zero_frames"),
        ("zero", "decord", "unreadable"),  # decord cannot even open a stream without frames
    ],
)
def test_broken_files_raise_their_kind(zoo, name, backend, kind):
    with pytest.raises(VideoDecodeError) as info:
        open_video(zoo[name], backend)
    err = info.value
    assert err.kind == kind and str(zoo[name]) in str(err)
    assert isinstance(err, RuntimeError) and isinstance(err, ValueError)


def test_truncated_file_fails_where_the_data_stops(zoo):
    r = open_video(zoo["truncated"])
    assert r.num_frames == 4  # what decord's index holds of the cut file
    assert [frame_index(f) for f in r.get_frames([0, 1, 2])] == [0, 1, 2]
    with pytest.raises(VideoDecodeError) as info:
        r.get_frames([0, 3])
    assert info.value.kind == "decode_error" and str(zoo["truncated"]) in str(info.value)
    p = open_video(zoo["truncated"], "pyav")
    assert p.num_frames == 40  # the AVI header still claims 40
    with pytest.raises(VideoDecodeError, match="decode"):
        p.get_frames([10])


def test_missing_path_bad_index_and_bad_backend(zoo, tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        open_video(zoo["missing"])
    r = open_video(zoo["good_avi"])
    with pytest.raises(IndexError, match=r"\[0, 20\)"):
        r.get_frames([20])
    with pytest.raises(IndexError):
        r.get_frames([-1])
    with pytest.raises(ValueError, match="backend"):
        open_video(zoo["good_avi"], "opencv")
    with pytest.raises(ValueError, match="folder"):
        open_video(zoo["good_avi"], "frames")
    with pytest.raises(ValueError, match="folder"):
        open_video(zoo["frames"], "pyav")
    empty_dir = tmp_path / "no_frames"
    empty_dir.mkdir()
    with pytest.raises(VideoDecodeError) as info:
        open_video(empty_dir)
    assert info.value.kind == "zero_frames"


def test_frame_folder_with_a_broken_or_mismatched_image(tmp_path):
    folder = write_frame_folder(tmp_path / "f", indexed_frames(4), ext=".jpg")
    (folder / "00003.jpg").write_bytes((folder / "00003.jpg").read_bytes()[:100])  # cut JPEG
    r = open_video(folder)
    assert r.get_frames([0, 1]).shape == (2, 48, 64, 3)
    with pytest.raises(VideoDecodeError) as info:
        r.get_frames([2])
    assert info.value.kind == "decode_error" and "00003.jpg" in str(info.value)
    folder2 = write_frame_folder(tmp_path / "g", indexed_frames(2))
    write_frame_folder(folder2, indexed_frames(1, 40, 64), start=3)
    with pytest.raises(VideoDecodeError, match="00003.png is 64x40"):
        open_video(folder2).read_all()


def test_decode_error_survives_pickling():
    err = pickle.loads(pickle.dumps(VideoDecodeError("/x/y.mp4", "cut", "decode_error")))
    assert (err.path, err.reason, err.kind) == ("/x/y.mp4", "cut", "decode_error")
    with pytest.raises(ValueError, match="kind"):
        VideoDecodeError("p", "r", "weird")
