"""``maskvid_edu.evaluate.features.write_features`` and ``maskvid-edu features``: sliding windows
over generated videos of different lengths (one shorter than a window), index.csv, resuming,
bad files counted and listed, ViT blocks and tokens, a ConvNet encoder."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch

from maskvid_edu.cli import main
from maskvid_edu.data.lists import BadVideoWarning
from maskvid_edu.evaluate.features import INDEX_COLUMNS, window_starts, write_features
from maskvid_edu.models import create
from videofiles import textured_frames, write_random_bytes, write_video

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTHS = {"long": 20, "exact": 8, "short": 5}  # frames; windows of 8


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i, (name, n) in enumerate(LENGTHS.items()):
        write_video(root / f"{name}.avi", textured_frames(n, 32, 40, seed=i), fps=10)
    return root


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create("videomae_vit_demo").encoder


def _index(out):
    with open(out / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_window_starts():
    assert window_starts(20, 8, 4) == [0, 4, 8, 12]
    assert window_starts(20, 8, 8) == [0, 8]
    assert window_starts(8, 8, 4) == [0]
    assert window_starts(5, 8, 4) == [0]  # shorter than a window: one padded window
    assert window_starts(0, 8, 4) == []


def test_sliding_windows_index_and_resume(videos, encoder, tmp_path):
    out = tmp_path / "feats"
    size = encoder.config.img_size
    run = write_features(encoder, videos, out, window=8, stride=4, size=size, progress=False)
    assert sorted(run.written) == sorted(LENGTHS) and not run.skipped and not run.existing
    dim = encoder.config.dim
    shapes = {name: np.load(out / f"{name}.npy").shape for name in LENGTHS}
    assert shapes == {"long": (4, dim), "exact": (1, dim), "short": (1, dim)}
    rows = _index(out)
    assert tuple(rows[0]) == INDEX_COLUMNS and len(rows) == 6 == run.num_windows
    long = [r for r in rows if r["file"] == "long.npy"]
    assert [(r["start_frame"], r["end_frame"], r["start_s"], r["end_s"]) for r in long] == [
        ("0", "8", "0.000", "0.800"), ("4", "12", "0.400", "1.200"), ("8", "16", "0.800", "1.600"),
        ("12", "20", "1.200", "2.000")]
    short = next(r for r in rows if r["file"] == "short.npy")
    assert (short["end_frame"], short["padded"], short["shape"]) == ("5", "1", str(dim))
    assert run.stats.events["too_short"] == 1 and run.stats.used == 3

    # the pooled features are the encoder's own clip features of each window
    from maskvid_edu.data.augment import ClipTransform
    from maskvid_edu.data.decoders import open_video
    with open_video(str(videos / "long.avi")) as reader:
        frames = reader.get_frames(np.arange(4, 12))
    clip = ClipTransform("center", size)(frames)[None]
    with torch.no_grad():
        expected = encoder.eval().forward_features(clip)[0].numpy()
    np.testing.assert_allclose(np.load(out / "long.npy")[1], expected, rtol=1e-4, atol=1e-5)

    # resumable: what exists is not recomputed, a removed file is
    before = (out / "exact.npy").stat().st_mtime_ns
    (out / "short.npy").unlink()
    again = write_features(encoder, videos, out, window=8, stride=4, size=size, progress=False)
    assert again.written == ["short"] and sorted(again.existing) == ["exact", "long"]
    assert (out / "exact.npy").stat().st_mtime_ns == before and len(_index(out)) == 6
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_bad_videos_are_counted_and_listed(videos, encoder, tmp_path):
    bad = write_random_bytes(tmp_path / "broken.mp4", 2000)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{videos / 'long.avi'}\n{bad}\n{tmp_path / 'missing.mp4'}\n")
    with pytest.warns(BadVideoWarning):
        run = write_features(encoder, listing, tmp_path / "out", window=8, size=encoder.config.img_size,
                             progress=False)
    assert run.written == ["long"]
    assert sorted(s.reason for s in run.skipped) == ["missing_file", "unreadable"]
    assert run.stats.skipped["missing_file"] == 1 and "skipped" in run.summary()
    with open(tmp_path / "out" / "skipped.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_layer_and_tokens(videos, encoder, tmp_path):
    size = encoder.config.img_size
    run = write_features(encoder, videos, tmp_path / "tok", window=8, size=size, layer=0, tokens=True,
                         progress=False)
    arr = np.load(tmp_path / "tok" / "long.npy")
    grid = (8 // encoder.config.tubelet) * (size // encoder.config.patch) ** 2
    assert arr.shape == (2, grid, encoder.config.dim) and run.num_windows == 4
    assert _index(tmp_path / "tok")[0]["shape"] == f"{grid}x{encoder.config.dim}"
    with pytest.raises(ValueError, match="layer must be a block"):
        write_features(encoder, videos, tmp_path / "x", window=8, layer=99, progress=False)
    with pytest.raises(ValueError, match="multiple of the encoder's tubelet"):
        write_features(encoder, videos, tmp_path / "x", window=7, progress=False)


def test_convnet_encoder_gives_pooled_stage_features(videos, tmp_path):
    torch.manual_seed(0)
    enc = create("videomac_resnet_demo").encoder
    write_features(enc, videos, tmp_path / "cnn", window=4, stride=8, size=32, layer=1, amp="bf16", progress=False)
    arr = np.load(tmp_path / "cnn" / "long.npy")
    assert arr.ndim == 2 and arr.shape[0] == 3 and np.isfinite(arr).all()


def test_cli_features(videos, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["features", "--model", "videomae_vit_demo", "--data", str(videos), "--out", str(out),
            "--window", "8", "--stride", "4", "--batch-size", "3", "--no-progress"]
    assert main(argv + ["--num-workers", "1"]) == 0  # decoded in a worker process, chunks of 3 windows
    text = capsys.readouterr().out
    assert "3 written now" in text and len(_index(out)) == 6
    torch.manual_seed(0)  # the model `features --seed 0` builds without --ckpt
    run = write_features(create("videomae_vit_demo").encoder, videos, tmp_path / "direct", window=8, stride=4,
                         batch_size=8, progress=False)  # one chunk per video: the same windows
    assert run.num_windows == 6
    np.testing.assert_allclose(np.load(out / "long.npy"), np.load(tmp_path / "direct" / "long.npy"), rtol=1e-4, atol=1e-5)
    assert main(argv) == 0
    assert "3 already there" in capsys.readouterr().out


def test_two_videos_for_one_file_are_refused(videos, encoder, tmp_path):
    import shutil
    for ext in (".avi", ".mkv"):
        shutil.copy(videos / "short.avi", tmp_path / f"long{ext}")
    listing = tmp_path / "list.txt"
    listing.write_text("long.avi\nlong.mkv\n")
    with pytest.raises(ValueError, match="would both write long.npy"):
        write_features(encoder, listing, tmp_path / "out", window=8, progress=False)
