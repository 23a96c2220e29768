"""Bad inputs on the way in: list files, dataset folders and checkpoints.

Every case builds its bad input in a fixture (no files shipped) and checks one behaviour: the
input is read as meant, or it is skipped and counted under a reason, or the error names what is
wrong. Videos are tiny MJPEG AVIs of indexed frames (``videofiles``), so a test can also check
that the frames decoded come from the real video and not from a stand-in.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from maskvid_edu.checkpoints import check_finite, load_videomae, read_state_dict
from maskvid_edu.data.datasets import SkippedItem, UnusableDataError, VideoDataset
from maskvid_edu.data.lists import (
    MIN_FOLDER_FRAMES,
    BadVideoWarning,
    VideoSample,
    folder_samples,
    read_video_list,
)
from maskvid_edu.models.videomae import VideoMAE, VideoMAEConfig
from maskvid_edu.train import CHECKPOINT_FORMAT, load_checkpoint
from videofiles import frame_index, gray_frames, indexed_frames, write_frame_folder, write_video

SMALL = dict(clip_len=4, stride=2, size=32)


def raw(frames, generator=None):
    """A transform that keeps the decoded frames as they are: uint8 (T, H, W, 3) → float (C, T, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()


def decoded_indices(video) -> list[int]:
    """Frame numbers of a clip (C, T, H, W) of indexed frames, values in [0, 255]."""
    return [frame_index(video[:, t].permute(1, 2, 0).numpy()) for t in range(video.shape[1])]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """One good 12-frame AVI, copied wherever a test needs a video."""
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", indexed_frames(12), "mjpeg_avi")


def copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def quiet(fn, *args, **kwargs):
    """Call ``fn`` and return ``(result, [BadVideoWarning messages])``."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(w.message) for w in rec if issubclass(w.category, BadVideoWarning)]


# ---------------------------------------------------------------------------------------------
# list files
# ---------------------------------------------------------------------------------------------
def test_list_with_utf8_byte_order_mark_read_by_its_header(tmp_path, clip):
    """A CSV saved by a spreadsheet program starts with EF BB BF; read as plain UTF-8 the header
    became '\\ufeffpath,label', every row a bad path 'clip.avi,0'."""
    copy(clip, tmp_path / "clip.avi")
    csv_file = tmp_path / "train.csv"
    csv_file.write_bytes("path,label\nclip.avi,0\nmissing.avi,1\n".encode("utf-8-sig"))
    assert csv_file.read_bytes()[:3] == b"\xef\xbb\xbf"
    parsed = read_video_list(csv_file)
    assert parsed.samples == [VideoSample(str(tmp_path / "clip.avi"), 0), VideoSample(str(tmp_path / "missing.avi"), 1)]
    assert parsed.malformed == []
    # the same mark in front of a 'path label' list and a Kinetics CSV
    lines = tmp_path / "train.txt"
    lines.write_bytes("clip.avi 3\n".encode("utf-8-sig"))
    assert read_video_list(lines).samples == [VideoSample(str(tmp_path / "clip.avi"), 3)]
    kinetics = tmp_path / "k400.csv"
    kinetics.write_bytes("label,youtube_id,time_start,time_end,split\nyoga,abc,1,11,train\n".encode("utf-8-sig"))
    parsed = read_video_list(kinetics)
    assert parsed.classes == ["yoga"] and parsed.samples[0].path.endswith("yoga/abc_000001_000011.mp4")
    # and the dataset built on the CSV decodes the real clip, skipping only the missing one
    ds, _ = quiet(VideoDataset.from_list, csv_file, mode="train", transform=raw, **SMALL)
    item, missing = ds[0], quiet(ds.__getitem__, 1)[0]
    assert item["label"] == 0 and item["video"].shape[1] == 4 and missing.reason == "missing_file"


def test_malformed_list_lines_skipped_and_counted_as_malformed_line(tmp_path, clip):
    copy(clip, tmp_path / "clip.avi")
    f = tmp_path / "train.csv"
    f.write_text("path,label\nclip.avi,0\nclip.avi,zero\nclip.avi,1,extra\n,2\nclip.avi,-1\n", encoding="utf-8")
    with pytest.warns(BadVideoWarning) as rec:
        ds = VideoDataset.from_list(f, mode="val", **SMALL)
    assert len(ds) == 1
    assert ds.stats.as_dict()["malformed_line"] == 4
    assert [m.line for m in ds.stats.malformed] == [3, 4, 5, 6]
    messages = " ".join(str(w.message) for w in rec)
    for line in (3, 4, 5, 6):
        assert f"{f}:{line}" in messages
    assert "malformed list lines dropped when the dataset was built: 4" in ds.summary()


def test_unicode_and_spaces_in_paths_read_and_decoded(tmp_path, clip):
    spaced = copy(clip, tmp_path / "vidéos à moi" / "clip ü 1.avi")
    plain = copy(clip, tmp_path / "ñandú" / "clip_日本.avi")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"path,label\n{spaced.relative_to(tmp_path)},0\n", encoding="utf-8")
    txt_file = tmp_path / "list.txt"
    txt_file.write_text(f"{plain.relative_to(tmp_path)} 1\n", encoding="utf-8")
    for f, path, label in ((csv_file, spaced, 0), (txt_file, plain, 1)):
        ds = VideoDataset.from_list(f, mode="val", transform=raw, **SMALL)
        assert ds.samples == [VideoSample(str(path), label)]
        item = ds[0]
        ds.stats.record(item)
        assert ds.stats.used == 1 and decoded_indices(item["video"]) == [2, 4, 6, 8]  # the centre clip


def test_missing_file_in_list_skipped_and_counted_as_missing_file(tmp_path, clip):
    copy(clip, tmp_path / "clip.avi")
    f = tmp_path / "train.txt"
    f.write_text("clip.avi 0\ngone.avi 1\n", encoding="utf-8")
    ds = VideoDataset.from_list(f, mode="val", **SMALL)
    with pytest.warns(BadVideoWarning, match="gone.avi"):
        batches = list(ds.loader(batch_size=2))
    assert ds.stats.as_dict()["skipped"] == {"missing_file": 1} and ds.stats.used == 1
    assert len(batches) == 1 and batches[0]["video"].shape[0] == 1
    assert batches[0]["skipped"][0].path == str(tmp_path / "gone.avi")


@pytest.mark.parametrize(
    "text, why",
    [("", "holds no entries"), ("# only a comment\n\n", "holds no entries"),
     ("a.mp4 x\nb.mp4 -1\n", "all 2 of its entries are malformed")],
    ids=["empty", "comments_only", "all_malformed"],
)
def test_empty_list_error_naming_the_list_file(tmp_path, text, why):
    f = tmp_path / "train.txt"
    f.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadVideoWarning)
        with pytest.raises(ValueError, match="no samples") as info:
            VideoDataset.from_list(f)
    assert str(f) in str(info.value) and why in str(info.value)


# ---------------------------------------------------------------------------------------------
# dataset folders
# ---------------------------------------------------------------------------------------------
def test_stray_thumbnail_beside_videos_skipped_and_counted_as_ignored_path(tmp_path, clip):
    """``<root>/<class>/`` with two videos and a thumb.png: the folder once passed for a one-frame
    frame-folder video and the real videos were dropped. Now the videos are the samples."""
    for name in ("a.avi", "b.avi"):
        copy(clip, tmp_path / "cooking" / name)
    write_frame_folder(tmp_path / "cooking", indexed_frames(1, 16, 16))
    (tmp_path / "cooking" / "00001.png").rename(tmp_path / "cooking" / "thumb.png")
    for labelled in (False, True):  # the CLI's --data <folder> reads it unlabelled
        ds, msgs = quiet(VideoDataset.from_folder, tmp_path, labelled=labelled, mode="pretrain", transform=raw, seed=0, **SMALL)
        assert [s.path for s in ds.samples] == [str(tmp_path / "cooking" / n) for n in ("a.avi", "b.avi")]
        assert [s.label for s in ds.samples] == ([0, 0] if labelled else [None, None])
        assert [i.path for i in ds.ignored] == [str(tmp_path / "cooking" / "thumb.png")]
        assert "beside 2 video(s)" in ds.ignored[0].reason
        assert len(msgs) == 1 and "thumb.png" in msgs[0] and "ignored 1 path" in msgs[0]
        assert "not videos, left out when the dataset was built: 1" in ds.summary()
        assert ds[0]["video"].shape[1] == 4  # a clip of the real video


def test_listed_class_folder_with_a_stray_image_skipped_and_counted_as_unreadable(tmp_path, clip):
    """A list line naming a folder of videos (plus a thumbnail) is not a frame-folder video: the
    decoder refuses it instead of serving the thumbnail as a one-frame clip."""
    copy(clip, tmp_path / "cooking" / "a.avi")
    write_frame_folder(tmp_path / "cooking", indexed_frames(1, 16, 16))
    ds = VideoDataset([VideoSample(str(tmp_path / "cooking"))], mode="pretrain", transform=raw, seed=0, **SMALL)
    item, msgs = quiet(ds.__getitem__, 0)
    assert isinstance(item, SkippedItem) and item.reason == "unreadable"
    assert "holding 1 video file(s) (a.avi) is not a frame folder" in item.detail


def test_folder_of_one_image_skipped_and_counted_as_ignored_path(tmp_path):
    write_frame_folder(tmp_path / "poster", indexed_frames(1))
    write_frame_folder(tmp_path / "clip", indexed_frames(MIN_FOLDER_FRAMES + 4))
    parsed, msgs = quiet(folder_samples, tmp_path, labelled=False)
    assert parsed.samples == [VideoSample(str(tmp_path / "clip"))]
    assert [(i.path, i.reason) for i in parsed.ignored] == [
        (str(tmp_path / "poster"), f"holds 1 image(s): a frame folder needs at least {MIN_FOLDER_FRAMES} frames")
    ]
    assert msgs and "poster" in msgs[0]


def test_class_tree_of_videos_and_frame_folders_read_in_every_documented_layout(tmp_path, clip):
    """The layouts data/README.md describes: flat, <root>/<class>/<video>, frame folders of any
    listed image type (pgm/ppm once gave 'no samples')."""
    copy(clip, tmp_path / "tree" / "archery" / "v1.avi")
    copy(clip, tmp_path / "tree" / "bowling" / "v2.avi")
    write_frame_folder(tmp_path / "tree" / "bowling" / "v3", indexed_frames(8), ext=".ppm")
    write_frame_folder(tmp_path / "tree" / "curling" / "v4", gray_frames(8), ext=".pgm")
    copy(clip, tmp_path / "flat" / "v1.avi")
    write_frame_folder(tmp_path / "flat" / "v2", indexed_frames(8), ext=".jpeg")
    write_frame_folder(tmp_path / "flat" / "v3", indexed_frames(8), ext=".bmp")
    tree = tmp_path / "tree"
    labelled = folder_samples(tree)
    assert labelled.classes == ["archery", "bowling", "curling"] and labelled.ignored == []
    assert [(s.path, s.label) for s in labelled.samples] == [
        (str(tree / "archery/v1.avi"), 0), (str(tree / "bowling/v2.avi"), 1),
        (str(tree / "bowling/v3"), 1), (str(tree / "curling/v4"), 2),
    ]
    unlabelled = folder_samples(tree, labelled=False)  # what `--data <folder>` reads
    assert [s.path for s in unlabelled.samples] == [s.path for s in labelled.samples]
    flat = folder_samples(tmp_path / "flat", labelled=False)
    assert [s.path.split("/")[-1] for s in flat.samples] == ["v1.avi", "v2", "v3"]
    # every one of them decodes to its own frames
    ds = VideoDataset(labelled, mode="val", transform=raw, clip_len=4, stride=1, size=32)
    assert decoded_indices(ds[2]["video"]) == [2, 3, 4, 5]  # the .ppm frames, centre clip
    gray = ds[3]["video"]  # the .pgm frames: gray repeated into R, G, B
    assert torch.equal(gray[0], gray[1]) and gray[0, :, 0, 0].tolist() == [16 + 8 * i for i in (2, 3, 4, 5)]


def test_folder_without_videos_error_naming_what_was_searched_and_found(tmp_path):
    (tmp_path / "notes.txt").write_text("what to film next")
    (tmp_path / "talk.gif").write_bytes(b"GIF89a")
    write_frame_folder(tmp_path / "covers", indexed_frames(1))
    for labelled in (False, True):
        with pytest.raises(ValueError) as info:
            folder_samples(tmp_path, labelled=labelled)
        msg = str(info.value)
        assert msg.startswith(f"no samples in folder {str(tmp_path)!r}")
        assert ".mp4" in msg and ".avi" in msg and "jpg/jpeg/png/bmp/webp/pgm/ppm" in msg  # what it looked for
        assert "<root>/<class>/<video file>" in msg
        assert ("<root>/<video file>" in msg) is (not labelled)
        assert "found 3 file(s) (.gif 1, .png 1, .txt 1) and 1 folder(s)" in msg  # what it found
        assert "covers, notes.txt, talk.gif" in msg
        # and why each entry was not taken
        assert ("covers: holds 1 image(s): a frame folder needs at least 2 frames" in msg) is (not labelled)
        assert ("notes.txt: not inside a class folder" in msg) is labelled


def test_videos_outside_class_folders_error_naming_the_unlabelled_layout(tmp_path, clip):
    copy(clip, tmp_path / "a.avi")
    with pytest.raises(ValueError, match=r"found 1 file\(s\) \(.avi 1\).*read them unlabelled \(labelled=False\)"):
        folder_samples(tmp_path, labelled=True)
    assert folder_samples(tmp_path, labelled=False).samples == [VideoSample(str(tmp_path / "a.avi"))]
    frames = write_frame_folder(tmp_path / "frames_only", indexed_frames(4))
    with pytest.raises(ValueError, match="the root itself looks like the frames of one video"):
        folder_samples(frames, labelled=False)


# ---------------------------------------------------------------------------------------------
# checkpoints with non-finite weights
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nan_weights():
    """A tiny VideoMAE's state dict with a NaN in one weight and an inf in another."""
    config = VideoMAEConfig(img_size=32, num_frames=4, tubelet=2, patch=8, dim=32, depth=1, heads=2,
                            decoder_dim=16, decoder_depth=1, decoder_heads=2)
    sd = VideoMAE(config).state_dict()
    first = next(k for k in sd if k.endswith("weight") and sd[k].is_floating_point())
    sd[first].view(-1)[3] = float("nan")
    sd["encoder.norm.bias"][0] = float("inf")
    return config, sd, first


def test_checkpoint_with_nan_weights_error_naming_file_and_first_key(tmp_path, nan_weights):
    config, sd, first = nan_weights
    n_float = sum(v.is_floating_point() for v in sd.values())
    path = tmp_path / "diverged.pth"
    torch.save({"model": sd}, path)
    expected = rf"checkpoint '{path}' holds non-finite weights: 2 of its {n_float} floating-point tensors .*'{first}' \(1 NaN"
    with pytest.raises(ValueError, match=expected):
        read_state_dict(path)
    with pytest.raises(ValueError, match=expected):
        load_videomae(VideoMAE(config), path)
    with pytest.raises(ValueError, match=rf"non-finite weights: 2 of .*'{first}'"):
        load_videomae(VideoMAE(config), sd)  # a state dict in memory
    # a checkpoint of the trainer, read by resume, train_or_load and every downstream command
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": sd, "meta": {"model": "videomae_vit_demo"}}, ckpt)
    with pytest.raises(ValueError, match=rf"checkpoint '{ckpt}' holds non-finite weights: 2 of .*'{first}'"):
        load_checkpoint(ckpt)
    # finite weights, integer buffers included, pass
    clean = {k: torch.nan_to_num(v, nan=0.0, posinf=1.0) for k, v in sd.items()}
    check_finite({**clean, "steps": torch.tensor(7)})
    assert read_state_dict(_save(tmp_path / "clean.pth", clean)).keys() == sd.keys()


def _save(path, obj):
    torch.save(obj, path)
    return path


def test_probe_on_checkpoint_with_nan_weights_error_naming_file_and_first_key(tmp_path, nan_weights, capsys):
    from maskvid_edu.cli import main

    _, sd, first = nan_weights
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": sd, "meta": {"model": "videomae_vit_demo"}}, ckpt)
    with pytest.raises(SystemExit) as info:
        main(["probe", "--ckpt", str(ckpt), "--num-samples", "4", "--val-samples", "4", "--device", "cpu"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and first in err and "non-finite" in err and "Traceback" not in err


def test_loader_over_a_list_of_missing_files_error_naming_the_list_and_root(tmp_path):
    """The evaluation loops' loader applies the trainer's usable-data rule: a list whose every
    path is wrong ends with one error, not an empty pass."""
    listing = tmp_path / "val.txt"
    listing.write_text("".join(f"gone_{i}.mp4 0\n" for i in range(5)))
    (tmp_path / "videos").mkdir()  # the right folder, but the list names files that are not there
    ds = VideoDataset.from_list(listing, tmp_path / "videos", mode="val", transform=raw, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnusableDataError, match="a whole epoch .5 clips. yielded no usable clip") as err:
            list(ds.loader(batch_size=2))
    assert str(listing) in str(err.value) and "missing_file 5" in str(err.value)
