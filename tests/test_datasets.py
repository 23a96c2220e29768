"""VideoDataset on files the tests write: list formats, the bad-data policy (skip, never substitute;
count per reason, also across DataLoader workers), exact frame sampling, and the modes."""

import json
import warnings

import numpy as np
import pytest
import torch

from maskvid_edu.data.augment import ClipTransform
from maskvid_edu.data.datasets import (
    EVENTS,
    DataStats,
    SkippedItem,
    VideoDataset,
    collate_skip_bad,
)
from maskvid_edu.data.lists import (
    BadVideoWarning,
    VideoSample,
    folder_samples,
    hmdb51_samples,
    read_video_list,
    ssv2_label,
    ssv2_samples,
    ucf101_samples,
)
from maskvid_edu.data.decoders import VideoDecodeError
from maskvid_edu.data.sampling import uniform_clips
from maskvid_edu.data.transforms import denormalize
from videofiles import (
    ZOO_EXPECTED,
    frame_index,
    indexed_frames,
    make_zoo,
    textured_frames,
    write_frame_folder,
    write_video,
)

SMALL = dict(clip_len=4, stride=2, size=32)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def zoo_list(zoo, tmp_path_factory):
    """A ``path label`` list over the whole zoo plus three malformed lines."""
    folder = tmp_path_factory.mktemp("lists")
    lines = ["# the zoo: good and bad videos", ""]
    lines += [f"{p} {k}" for k, p in enumerate(zoo.values())]
    lines += ["only_a_path_but three fields", "video.mp4 not_a_label", "video.mp4 -3"]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    return folder / "train.txt"


def decoded_indices(video):
    """Frame numbers of an un-normalised clip (C, T, H, W) in [0, 1] made of indexed frames."""
    return [frame_index(video[:, t].permute(1, 2, 0).numpy() * 255) for t in range(video.shape[1])]


# ---------------------------------------------------------------------------------------------
# list formats
# ---------------------------------------------------------------------------------------------
def test_path_label_list_with_malformed_lines(zoo_list, zoo):
    with pytest.warns(BadVideoWarning) as rec:
        parsed = read_video_list(zoo_list)
    msgs = [str(w.message) for w in rec]
    assert len(parsed.samples) == len(zoo) and len(parsed.malformed) == 3
    assert [m.line for m in parsed.malformed] == [len(zoo) + 3, len(zoo) + 4, len(zoo) + 5]
    assert all(f"{zoo_list}:{m.line}" in msg for m, msg in zip(parsed.malformed, msgs))
    assert "not an integer" in msgs[1] and "negative" in msgs[2] and "3 fields" in msgs[0]
    assert parsed.samples[1] == VideoSample(str(zoo["good_avi"]), 1)
    with pytest.raises(ValueError, match=rf"strict=True.*{zoo_list.name}:{len(zoo) + 3}"):
        read_video_list(zoo_list, strict=True)


def test_list_paths_relative_to_root_and_videomae_v2_lines(tmp_path):
    (tmp_path / "videos").mkdir()
    f = tmp_path / "pretrain.txt"
    f.write_text("a.mp4\nsub/b.mp4 3\n/abs/c 0 -1 7\n")
    s = read_video_list(f).samples
    assert s == [VideoSample(str(tmp_path / "a.mp4")), VideoSample(str(tmp_path / "sub/b.mp4"), 3), VideoSample("/abs/c", 7)]
    assert read_video_list(f, root=tmp_path / "videos").samples[0].path == str(tmp_path / "videos" / "a.mp4")
    with pytest.raises(FileNotFoundError, match="video root folder"):
        read_video_list(f, root=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="video list not found: .*missing.txt"):
        read_video_list(tmp_path / "missing.txt")


def test_csv_with_header(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text('path,label\n"my videos/a b.mp4",2\nx.mp4,\ny.mp4,cat\nz.mp4,1,extra\n')
    with pytest.warns(BadVideoWarning) as rec:
        parsed = read_video_list(f)
    assert ["train.csv:4" in str(rec[0].message), "train.csv:5" in str(rec[1].message)] == [True, True]
    assert parsed.samples == [VideoSample(str(tmp_path / "my videos/a b.mp4"), 2), VideoSample(str(tmp_path / "x.mp4"))]
    assert [m.line for m in parsed.malformed] == [4, 5]


def test_kinetics_csv_maps_to_downloaded_files(tmp_path):
    (tmp_path / "abseiling").mkdir()
    (tmp_path / "air_drumming").mkdir()
    (tmp_path / "abseiling" / "aaa_000010_000020.mp4").write_bytes(b"x")
    (tmp_path / "air_drumming" / "bbb_000001_000011.mp4").write_bytes(b"x")
    f = tmp_path / "train.csv"
    f.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "air drumming,bbb,1,11,train,0\n"
        "abseiling,aaa,10,20,train,0\n"
        "abseiling,ccc,x,20,train,0\n"
        "abseiling,ddd,5,15,train,0\n"
    )
    with pytest.warns(BadVideoWarning, match="train.csv:4"):
        parsed = read_video_list(f)
    assert parsed.classes == ["abseiling", "air drumming"]
    assert parsed.samples[0] == VideoSample(str(tmp_path / "air_drumming" / "bbb_000001_000011.mp4"), 1)
    assert parsed.samples[1] == VideoSample(str(tmp_path / "abseiling" / "aaa_000010_000020.mp4"), 0)
    assert parsed.samples[2].path.endswith("abseiling/ddd_000005_000015.mp4")  # missing: skipped at load
    with pytest.warns(BadVideoWarning) as rec:
        read_video_list(f, classes=["abseiling"])
    assert any("not in the 1 given classes" in str(w.message) for w in rec)


def test_ucf101_split_files(tmp_path):
    vids, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    vids.mkdir(), splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n")
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "HandStandPushups/v_HandStandPushups_g08_c01.avi 2\n"  # the case differs from classInd
        "YoYo/v_YoYo_g08_c01.avi 1\n"  # wrong id: malformed
    )
    (splits / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    with pytest.warns(BadVideoWarning, match="trainlist01.txt:3"):
        train = ucf101_samples(vids, splits, 1, "train")
    assert [s.label for s in train.samples] == [0, 1] and train.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert train.samples[0].path == str(vids / "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi")
    test = ucf101_samples(vids, splits, 1, "test")
    assert [s.label for s in test.samples] == [2, 0] and not test.malformed
    with pytest.raises(FileNotFoundError, match="testlist02.txt"):
        ucf101_samples(vids, splits, 2, "test")
    with pytest.raises(FileNotFoundError, match="UCF101 video folder not found"):
        ucf101_samples(tmp_path / "nope", splits)


def test_hmdb51_split_flags(tmp_path):
    vids, splits = tmp_path / "hmdb51", tmp_path / "splits"
    vids.mkdir(), splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "wave_test_split1.txt").write_text("d.avi 2\ne.avi 1\nf.avi 7\n")
    (splits / "wave_test_split2.txt").write_text("d.avi 1\n")
    with pytest.warns(BadVideoWarning, match="wave_test_split1.txt:3"):
        train = hmdb51_samples(vids, splits, 1, "train")
    assert train.classes == ["brush_hair", "wave"]
    assert train.samples == [VideoSample(str(vids / "brush_hair/a.avi"), 0), VideoSample(str(vids / "wave/e.avi"), 1)]
    with pytest.warns(BadVideoWarning):
        test = hmdb51_samples(vids, splits, 1, "test")
    assert [(s.path.split("/")[-1], s.label) for s in test.samples] == [("b.avi", 0), ("d.avi", 1)]
    with pytest.raises(FileNotFoundError, match="_test_split3"):
        hmdb51_samples(vids, splits, 3)


def test_ssv2_json_and_template_labels(tmp_path):
    vids, ann = tmp_path / "20bn", tmp_path / "labels"
    vids.mkdir(), ann.mkdir()
    labels = {"Holding something next to something": "0", "Putting something on a surface": "1"}
    (ann / "labels.json").write_text(json.dumps(labels))
    train = [
        {"id": "78687", "label": "holding potato next to vicks",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks"]},
        {"id": "42326", "label": "putting a cup on a table",
         "template": "Putting [something] on a surface", "placeholders": ["a cup"]},
        {"id": "1", "template": "Dancing [something]"},
    ]
    (ann / "something-something-v2-train.json").write_text(json.dumps(train))
    (ann / "something-something-v2-test.json").write_text(json.dumps([{"id": "5"}]))
    assert ssv2_label("Putting [something] on a surface") == "Putting something on a surface"
    with pytest.warns(BadVideoWarning, match="template not found"):
        parsed = ssv2_samples(vids, ann, "train")
    assert parsed.samples == [VideoSample(str(vids / "78687.webm"), 0), VideoSample(str(vids / "42326.webm"), 1)]
    assert parsed.classes == list(labels)
    assert ssv2_samples(vids, ann, "test").samples == [VideoSample(str(vids / "5.webm"))]
    with pytest.raises(FileNotFoundError, match="validation"):
        ssv2_samples(vids, ann, "validation")
    with pytest.warns(BadVideoWarning, match="template not found"):
        ds = VideoDataset.ssv2(vids, ann, "train", mode="train", size=32, clip_len=4)
    assert ds.sampling == "segment" and ds.transform.flip == 0.0  # left/right matter in SSv2


def test_folder_of_classes_with_videos_and_frame_folders(tmp_path):
    (tmp_path / "cls_b").mkdir()
    write_video(tmp_path / "cls_b" / "v1.avi", indexed_frames(8), "mjpeg_avi")
    write_frame_folder(tmp_path / "cls_a" / "clip_frames", indexed_frames(8))
    (tmp_path / "cls_a" / "readme.txt").write_text("not a video")
    parsed = folder_samples(tmp_path)
    assert parsed.classes == ["cls_a", "cls_b"]
    assert [(s.path.split("/")[-1], s.label) for s in parsed.samples] == [("clip_frames", 0), ("v1.avi", 1)]
    ds = VideoDataset.from_folder(tmp_path, mode="val", **SMALL)
    assert [ds[i]["label"] for i in range(2)] == [0, 1]


# ---------------------------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------------------------
def test_arguments_are_checked_up_front(tmp_path, zoo):
    one = [VideoSample(str(zoo["good_avi"]), 0)]
    with pytest.raises(FileNotFoundError, match="video list not found: .*nope.txt"):
        VideoDataset.from_list(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="mode"):
        VideoDataset(one, mode="finetune")
    with pytest.raises(ValueError, match="sampling"):
        VideoDataset(one, sampling="random")
    with pytest.raises(ValueError, match="clip_len"):
        VideoDataset(one, clip_len=0)
    with pytest.raises(ValueError, match="supports sampling"):
        VideoDataset(one, mode="test", sampling="pair")
    with pytest.raises(ValueError, match=r"needs a label .*good.avi"):
        VideoDataset([VideoSample(str(zoo["good_avi"]))], mode="train")
    with pytest.raises(ValueError, match="no samples"):
        VideoDataset([])
    with pytest.raises(ValueError, match="backend"):
        VideoDataset(one, backend="opencv")
    with pytest.raises(ValueError, match="num_repeats"):
        VideoDataset(one, mode="train", num_repeats=2)
    with pytest.raises(TypeError, match="transform"):
        VideoDataset(one, transform="multiscale")


# ---------------------------------------------------------------------------------------------
# the bad-data policy
# ---------------------------------------------------------------------------------------------
def test_each_zoo_video_gets_its_documented_outcome(zoo):
    samples = [VideoSample(str(p), k) for k, p in enumerate(zoo.values())]
    ds = VideoDataset(samples, mode="train", seed=0, **SMALL)
    for k, name in enumerate(zoo):
        reason, events = ZOO_EXPECTED[name]
        if reason is None:
            item = ds[k]
            assert item["index"] == k and item["label"] == k  # its own sample, never another
            assert item["video"].shape == (3, 4, 32, 32)
            assert {e for e, on in zip(EVENTS, item["events"].tolist()) if on} == events, name
        else:
            with pytest.warns(BadVideoWarning, match=str(zoo[name])):
                item = ds[k]
            assert isinstance(item, SkippedItem), name
            assert (item.index, item.path, item.reason) == (k, str(zoo[name]), reason)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_epoch_over_a_mixed_list_counts_every_skip(zoo_list, zoo, num_workers):
    with pytest.warns(BadVideoWarning):
        ds = VideoDataset.from_list(zoo_list, mode="train", seed=0, **SMALL)
    expected_skips = {}
    expected_events = {}
    for reason, events in ZOO_EXPECTED.values():
        if reason:
            expected_skips[reason] = expected_skips.get(reason, 0) + 1
        for e in events:
            expected_events[e] = expected_events.get(e, 0) + 1
    good = sum(r is None for r, _ in ZOO_EXPECTED.values())
    seen_index, seen_labels = [], []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for batch in ds.loader(batch_size=4, num_workers=num_workers, shuffle=False):
            assert batch["video"].shape[1:] == (3, 4, 32, 32)
            seen_index += batch["index"].tolist()
            seen_labels += batch["label"].tolist()
    assert seen_labels == seen_index  # labels are list positions: nothing was swapped in
    assert len(seen_index) == good
    stats = ds.stats.as_dict()
    assert stats == {"seen": len(zoo), "used": good, "skipped": expected_skips, "events": expected_events, "malformed_line": 3}
    summary = [str(w.message) for w in rec if "epoch summary" in str(w.message)]
    assert len(summary) == 1 and "zero_frames 1" in summary[0] and str(zoo["corrupt"]) in summary[0]
    # a second epoch starts from zero again
    with pytest.warns(BadVideoWarning):
        list(ds.loader(batch_size=4, num_workers=0))
    assert ds.stats.as_dict()["seen"] == len(zoo) and ds.epoch == 2


def test_strict_mode_raises_with_the_path(zoo, zoo_list):
    samples = [VideoSample(str(zoo["good_avi"]), 0), VideoSample(str(zoo["corrupt"]), 1), VideoSample(str(zoo["missing"]), 2)]
    ds = VideoDataset(samples, mode="train", strict=True, **SMALL)
    assert ds[0]["video"].shape == (3, 4, 32, 32)
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        ds[1]
    with pytest.raises(FileNotFoundError, match="does_not_exist.mp4"):
        ds[2]
    with pytest.raises(ValueError, match="malformed list line"):
        VideoDataset.from_list(zoo_list, strict=True)


def test_collate_skip_bad_and_manual_counting():
    good = {"video": torch.zeros(3, 2, 4, 4), "index": 0, "events": torch.tensor([True, False, False])}
    bad = SkippedItem(1, "/v/x.mp4", "unreadable", "random bytes")
    batch = collate_skip_bad([good, bad, None, good])
    assert batch["video"].shape == (2, 3, 2, 4, 4)
    assert [s.reason for s in batch["skipped"]] == ["unreadable", "returned_none"]
    empty = collate_skip_bad([bad])
    assert "video" not in empty and empty["skipped"] == [bad]
    stats = DataStats()
    stats.update(batch)
    stats.update(empty)
    stats.record(good)
    assert stats.as_dict() == {
        "seen": 6, "used": 3, "skipped": {"unreadable": 2, "returned_none": 1},
        "events": {"too_short": 3}, "malformed_line": 0,
    }
    assert "/v/x.mp4" in stats.summary() and "too_short 3" in stats.summary()


def test_loader_leaves_out_batches_with_nothing_usable(zoo):
    samples = [VideoSample(str(zoo["corrupt"]), 0), VideoSample(str(zoo["empty"]), 0), VideoSample(str(zoo["good_avi"]), 0)]
    ds = VideoDataset(samples, mode="train", **SMALL)
    with pytest.warns(BadVideoWarning):
        batches = list(ds.loader(batch_size=2, shuffle=False))
    assert len(batches) == 1 and batches[0]["index"].tolist() == [2]
    assert ds.stats.as_dict()["skipped"] == {"unreadable": 1, "empty_file": 1}


# ---------------------------------------------------------------------------------------------
# what the items hold
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["good_mp4", "good_avi", "good_webm", "frames"])
def test_test_views_hold_exactly_the_sampled_frames(zoo, name):
    raw = ClipTransform("center", 32, normalized=False)
    ds = VideoDataset([VideoSample(str(zoo[name]), 5)], mode="test", clip_len=4, stride=3, test_clips=3, transform=raw)
    item = ds[0]
    assert item["video"].shape == (3, 3, 4, 32, 32) and item["label"] == 5
    want = uniform_clips(20, 4, 3, 3).indices
    assert [decoded_indices(v) for v in item["video"]] == want.tolist()


def test_test_mode_clip_major_views_and_normalisation(zoo):
    one = [VideoSample(str(zoo["good_avi"]), 1)]
    ds = VideoDataset(one, mode="test", clip_len=4, stride=3, size=32, test_clips=2, test_crops=3)
    v = ds[0]["video"]  # (6, 3, 4, 32, 32): clip 0's three crops, then clip 1's
    assert v.shape == (6, 3, 4, 32, 32)
    frames = [decoded_indices(denormalize(x)) for x in v]
    assert frames[0] == frames[1] == frames[2] != frames[3] == frames[4] == frames[5]
    one_crop = VideoDataset([VideoSample(str(zoo["good_avi"]), 1)], mode="test", test_crops=1, test_clips=2, **SMALL)
    assert one_crop[0]["video"].shape == (2, 3, 4, 32, 32)


def test_pretrain_repeated_views_share_the_decoded_frames(tmp_path):
    path = write_video(tmp_path / "tex.avi", textured_frames(20), "mjpeg_avi")
    ds = VideoDataset([VideoSample(str(path))], mode="pretrain", num_repeats=4, seed=1, **SMALL)
    item = ds[0]
    assert set(item) == {"video", "index", "events"}  # pre-training: no label
    v = item["video"]
    assert v.shape == (4, 3, 4, 32, 32)
    assert not torch.equal(v[0], v[1])  # four different crops ...
    indexed = write_video(tmp_path / "idx.avi", indexed_frames(20), "mjpeg_avi")
    raw = VideoDataset([VideoSample(str(indexed))], mode="pretrain", num_repeats=4, seed=1, stack_repeats=False,
                       transform=ClipTransform("multiscale", 32, normalized=False), clip_len=4, stride=2)
    views = raw[0]["video"]
    assert isinstance(views, list) and len(views) == 4
    frames = [decoded_indices(x) for x in views]
    assert frames[0] == frames[1] == frames[2] == frames[3]  # ... of one decoded clip
    assert np.all(np.diff(frames[0]) == 2)


def test_seeded_items_do_not_depend_on_workers_and_change_with_the_epoch(zoo):
    samples = [VideoSample(str(zoo[n]), 0) for n in ("good_mp4", "good_avi", "good_webm", "frames")]
    ds = VideoDataset(samples, mode="train", seed=123, **SMALL)
    a = torch.cat([b["video"] for b in ds.loader(batch_size=2, shuffle=False, num_workers=0)])
    b = torch.cat([b["video"] for b in ds.loader(batch_size=2, shuffle=False, num_workers=2)])
    # each completed pass advanced the epoch: compare with a fresh dataset at epochs 0 and 1
    assert ds.epoch == 2
    ds0 = VideoDataset(samples, mode="train", seed=123, **SMALL)
    c = torch.cat([ds0[i]["video"][None] for i in range(4)])
    torch.testing.assert_close(a, c)
    ds0.set_epoch(1)
    d = torch.cat([ds0[i]["video"][None] for i in range(4)])
    torch.testing.assert_close(b, d)
    assert not torch.equal(a, b)


def test_pair_and_motion_sampling_through_the_dataset(zoo):
    raw = ClipTransform("center", 32, normalized=False)
    pairs = VideoDataset([VideoSample(str(zoo["good_avi"]))], sampling="pair", transform=raw, seed=0)
    for epoch in range(5):
        pairs.set_epoch(epoch)
        a, b = decoded_indices(pairs[0]["video"])
        assert b == a + 1  # VideoMAC: adjacent frames
    motion = VideoDataset([VideoSample(str(zoo["good_avi"]))], sampling="motion", clip_len=4, stride=2, transform=raw, seed=0)
    idx = decoded_indices(motion[0]["video"])
    assert len(idx) == 5 and np.all(np.diff(idx) == 2)


def test_too_short_video_is_padded_with_its_last_frame(zoo):
    raw = ClipTransform("center", 32, normalized=False)
    ds = VideoDataset([VideoSample(str(zoo["short3"]), 0)], mode="val", clip_len=6, stride=1, transform=raw)
    item = ds[0]
    assert decoded_indices(item["video"]) == [0, 1, 2, 2, 2, 2]
    assert item["events"].tolist() == [True, False, False, False]  # too_short, grayscale, odd_size, decord_mismatch


def test_repr_and_summary(zoo):
    ds = VideoDataset([VideoSample(str(zoo["good_avi"]), 0)], mode="val", **SMALL)
    assert "mode='val'" in repr(ds) and "center" in repr(ds)
    list(ds.loader(batch_size=1))
    assert ds.summary().startswith("1 samples loaded, 1 used, 0 skipped")
