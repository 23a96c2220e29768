"""VIP and JHMDB readers on tiny copies of their layouts written by the tests."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from maskvid_edu.data.jhmdb import (
    JHMDB_JOINTS,
    JHMDBDataset,
    jhmdb_videos,
    read_jhmdb_video,
    read_joint_positions,
    read_pair_list,
)
from maskvid_edu.data.vip import VIP_NUM_CLASSES, VIPDataset, read_vip_video, vip_videos
from videofiles import textured_frames

H, W = 40, 56


def make_vip(root, videos=("videos1", "videos7"), annotated=(0, 2), n=3):
    """VIP_Fine/Images/<v>/*.jpg, Annotations/Category_ids/<v>/*.png (frames in ``annotated``)."""
    frames = textured_frames(n, H, W)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, VIP_NUM_CLASSES, (n, H, W)).astype(np.uint8)
    for v in videos:
        (root / "Images" / v).mkdir(parents=True)
        (root / "Annotations" / "Category_ids" / v).mkdir(parents=True)
        for t in range(n):
            stem = f"{t * 25 + 1:012d}"
            Image.fromarray(frames[t]).save(root / "Images" / v / f"{stem}.jpg", quality=98)
            if t in annotated:
                Image.fromarray(labels[t], mode="L").save(root / "Annotations" / "Category_ids" / v / f"{stem}.png")
    (root / "lists").mkdir()
    (root / "lists" / "val_videos.txt").write_text(f"{videos[0]}\nVIP_Fine/Images/{videos[1]}/\n\n")
    return frames, labels


@pytest.fixture
def vip(tmp_path):
    root = tmp_path / "VIP_Fine"
    frames, labels = make_vip(root)
    return root, frames, labels


def test_vip_list_and_video(vip):
    root, frames, labels = vip
    assert vip_videos(root, "val") == ["videos1", "videos7"]
    item = read_vip_video(root, "videos1")
    assert item["frames"].shape == (3, 3, H, W) and item["frames"].dtype == torch.float32
    assert 0 <= item["frames"].min() and item["frames"].max() <= 1
    assert (item["frames"] * 255 - torch.from_numpy(frames).permute(0, 3, 1, 2)).abs().mean() < 3  # JPEG
    assert item["has_label"].tolist() == [True, False, True]
    np.testing.assert_array_equal(item["labels"][0].numpy(), labels[0])
    np.testing.assert_array_equal(item["labels"][2].numpy(), labels[2])
    assert (item["labels"][1] == -1).all()  # not annotated
    assert item["frame_names"] == ["000000000001.jpg", "000000000026.jpg", "000000000051.jpg"]
    ds = VIPDataset(root, "val")
    assert len(ds) == 2 and ds[1]["name"] == "videos7" and ds.num_classes == 20


def test_vip_resize_keeps_label_ids(vip):
    root, _, labels = vip
    item = read_vip_video(root, "videos1", size=20)
    h, w = 20, int(20 * W / H)
    assert item["frames"].shape == (3, 3, h, w) and item["labels"].shape == (3, h, w)
    assert set(item["labels"][0].unique().tolist()) <= set(np.unique(labels[0]).tolist())
    assert (item["labels"][1] == -1).all() and item["orig_size"] == (H, W)
    assert read_vip_video(root, "videos1", max_frames=2)["frames"].shape[0] == 2


def test_vip_errors(tmp_path, vip):
    root, _, _ = vip
    with pytest.raises(FileNotFoundError, match="VIP folder not found"):
        VIPDataset(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="train_videos.txt"):
        vip_videos(root, "train")
    with pytest.raises(FileNotFoundError, match="no frame folder.*videos9"):
        VIPDataset(root, ["videos1", "videos9"])
    first = root / "Annotations" / "Category_ids" / "videos7" / "000000000001.png"
    first.unlink()
    with pytest.raises(ValueError, match="first frame of videos7 has no label"):
        read_vip_video(root, "videos7")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(first)  # a colour image is not a label map
    with pytest.raises(ValueError, match="mode L or P"):
        read_vip_video(root, "videos7")
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(first)
    with pytest.raises(ValueError, match=f"is {W}x{H + 2}"):
        read_vip_video(root, "videos7")


# ---------------------------------------------------------------------------------------------
# JHMDB
# ---------------------------------------------------------------------------------------------
def make_jhmdb(root, action="walk", video="v1", n=4):
    frames = textured_frames(n, H, W)
    fdir = root / "Rename_Images" / action / video
    fdir.mkdir(parents=True)
    for t in range(n):
        Image.fromarray(frames[t]).save(fdir / f"{t + 1:05d}.png")
    rng = np.random.default_rng(1)
    pos = np.stack([rng.uniform(1, W, (15, n)), rng.uniform(1, H, (15, n))])  # (2, 15, T), 1-based
    mdir = root / "joint_positions" / action / video
    mdir.mkdir(parents=True)
    savemat(mdir / "joint_positions.mat", {"pos_img": pos, "scale": np.ones(n)})
    return frames, pos, fdir, mdir / "joint_positions.mat"


def test_joint_positions_become_zero_based_xy(tmp_path):
    _, pos, _, mat = make_jhmdb(tmp_path)
    kp = read_joint_positions(mat)
    assert kp.shape == (4, 15, 2) and kp.dtype == np.float32 and len(JHMDB_JOINTS) == 15
    np.testing.assert_allclose(kp[2, 5], [pos[0, 5, 2] - 1, pos[1, 5, 2] - 1], rtol=1e-6)
    np.testing.assert_allclose(kp, pos.transpose(2, 1, 0) - 1, rtol=1e-6)


def test_jhmdb_video_and_resize(tmp_path):
    frames, pos, fdir, mat = make_jhmdb(tmp_path)
    item = read_jhmdb_video(fdir, mat)
    assert item["frames"].shape == (4, 3, H, W)
    np.testing.assert_array_equal((item["frames"] * 255).round().byte().permute(0, 2, 3, 1).numpy(), frames)  # PNG
    np.testing.assert_allclose(item["keypoints"].numpy(), pos.transpose(2, 1, 0) - 1, rtol=1e-6)
    small = read_jhmdb_video(fdir, mat, size=(20, 28))
    assert small["frames"].shape == (4, 3, 20, 28)
    np.testing.assert_allclose(small["keypoints"].numpy(), (pos.transpose(2, 1, 0) - 1) * 0.5, rtol=1e-5)


def test_jhmdb_split_files_and_lists(tmp_path):
    make_jhmdb(tmp_path, "walk", "v1")
    make_jhmdb(tmp_path, "walk", "v2")
    make_jhmdb(tmp_path, "jump", "v3")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "walk_test_split1.txt").write_text("v1.avi 2\nv2.avi 1\n")
    (tmp_path / "splits" / "jump_test_split1.txt").write_text("v3.avi 2\n")
    pairs = jhmdb_videos(tmp_path, 1, "test")
    assert [p[0].split("/")[-1] for p in pairs] == ["v3", "v1"]
    assert pairs[1][1] == str(tmp_path / "joint_positions" / "walk" / "v1" / "joint_positions.mat")
    ds = JHMDBDataset(pairs, size=20)
    assert len(ds) == 2 and ds[0]["keypoints"].shape == (4, 15, 2) and ds[0]["name"] == "v3"
    lst = tmp_path / "jhmdb_val.txt"
    lst.write_text("Rename_Images/walk/v1 joint_positions/walk/v1/joint_positions.mat\n")
    assert read_pair_list(lst) == [pairs[1]]
    assert len(JHMDBDataset(lst)) == 1


def test_jhmdb_errors_and_length_mismatch(tmp_path):
    _, _, fdir, mat = make_jhmdb(tmp_path)
    (fdir / "00004.png").unlink()  # 3 frames, 4 joint sets
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        item = read_jhmdb_video(fdir, mat)
    assert item["frames"].shape[0] == item["keypoints"].shape[0] == 3
    assert any("has 3 frames" in str(w.message) for w in rec)
    bad = tmp_path / "bad.mat"
    savemat(bad, {"something_else": np.zeros(3)})
    with pytest.raises(ValueError, match="no 'pos_img'"):
        read_joint_positions(bad)
    savemat(bad, {"pos_img": np.zeros((2, 14, 3))})
    with pytest.raises(ValueError, match=r"\(2, 15, T\)"):
        read_joint_positions(bad)
    with pytest.raises(FileNotFoundError, match="joint file not found"):
        JHMDBDataset([(str(fdir), str(tmp_path / "missing.mat"))])
    with pytest.raises(FileNotFoundError, match="frame folder not found"):
        read_jhmdb_video(tmp_path / "nope", mat)
    with pytest.raises(FileNotFoundError, match="splits"):
        jhmdb_videos(tmp_path)
