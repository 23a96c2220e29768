"""DAVIS-2017 layout: palette, export of synthetic clips, reading back, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from maskvid_edu.data.davis import (
    DAVIS_PALETTE,
    PALETTE_ASSET,
    davis_palette,
    list_davis_sequences,
    read_davis_sequence,
    write_davis_dataset,
    write_davis_sequence,
)
from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset


def test_palette_is_the_voc_colour_map_and_matches_the_asset():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                5: (128, 0, 128), 7: (128, 128, 128), 8: (64, 0, 0), 9: (192, 0, 0), 255: (224, 224, 192)}
    for i, rgb in expected.items():
        assert tuple(DAVIS_PALETTE[i]) == rgb, i
    assert len({tuple(c) for c in DAVIS_PALETTE}) == 256  # every id its own colour
    np.testing.assert_array_equal(np.load(PALETTE_ASSET), davis_palette())
    np.testing.assert_array_equal(davis_palette(4), DAVIS_PALETTE[:4])
    with pytest.raises(ValueError, match="n must be"):
        davis_palette(0)


def test_synthetic_export_round_trip(tmp_path):
    ds = SyntheticVideoDataset(SyntheticConfig(num_frames=6, size=48, num_samples=10, seed=3, distractor_prob=1.0))
    names = write_davis_dataset(ds, tmp_path, indices=[0, 3, 7])
    assert names == ["00000_move_left", "00003_move_down", "00007_shrink"]
    assert list_davis_sequences(tmp_path) == names
    # the DAVIS layout, file by file
    assert sorted(p.name for p in (tmp_path / "JPEGImages" / "480p" / names[1]).iterdir()) == [
        f"{t:05d}.jpg" for t in range(6)]
    png = Image.open(tmp_path / "Annotations" / "480p" / names[1] / "00000.png")
    assert png.mode == "P" and png.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]

    for name, i in zip(names, [0, 3, 7]):
        frames, masks = read_davis_sequence(tmp_path, name)
        clip = ds.clip(i)
        assert frames.shape == (6, 3, 48, 48) and frames.dtype == torch.float32
        assert masks.shape == (6, 48, 48) and masks.dtype == torch.int64
        torch.testing.assert_close(masks, clip["masks"], rtol=0, atol=0)  # PNG ids: exact
        err = (frames - clip["frames"].permute(1, 0, 2, 3)).abs()  # JPEG q95, 4:4:4: small error
        assert float(err.mean()) < 0.015 and float(err.max()) < 0.25, (float(err.mean()), float(err.max()))
        assert set(masks.unique().tolist()) <= {0, 1, 2}

    # exporting more clips to the same root extends the split without repeating names
    write_davis_dataset(ds, tmp_path, indices=[3, 9])
    assert list_davis_sequences(tmp_path) == names + ["00009_move_right"]


def test_missing_annotations_and_errors(tmp_path):
    frames = torch.rand(4, 3, 16, 20)
    masks = torch.zeros(4, 16, 20, dtype=torch.int64)
    masks[:, 4:9, 5:12] = 3
    write_davis_sequence(tmp_path, "seq", frames, masks)

    # DAVIS test splits annotate only the first frame
    for t in (1, 3):
        (tmp_path / "Annotations" / "480p" / "seq" / f"{t:05d}.png").unlink()
    with pytest.raises(ValueError, match="2 of 4 frames have no annotation .*00001.png"):
        read_davis_sequence(tmp_path, "seq")
    _, got = read_davis_sequence(tmp_path, "seq", allow_missing_masks=True)
    assert got[0].equal(masks[0]) and got[2].equal(masks[2])
    assert (got[1] == -1).all() and (got[3] == -1).all()
    (tmp_path / "Annotations" / "480p" / "seq" / "00000.png").unlink()
    with pytest.raises(FileNotFoundError, match="first-frame annotation not found: .*seq/00000.png"):
        read_davis_sequence(tmp_path, "seq", allow_missing_masks=True)

    with pytest.raises(FileNotFoundError, match="DAVIS root not found: .*nowhere"):
        read_davis_sequence(tmp_path / "nowhere", "seq")
    with pytest.raises(FileNotFoundError, match=r"frames folder not found: .*480p/other \(sequences there: \['seq'\]\)"):
        read_davis_sequence(tmp_path, "other")
    with pytest.raises(FileNotFoundError, match="1080p does not exist"):
        read_davis_sequence(tmp_path, "seq", resolution="1080p")
    with pytest.raises(FileNotFoundError, match="split file not found: .*ImageSets/2017/val.txt"):
        list_davis_sequences(tmp_path)
    (tmp_path / "JPEGImages" / "480p" / "empty").mkdir()
    (tmp_path / "Annotations" / "480p" / "empty").mkdir()
    with pytest.raises(ValueError, match="no frames"):
        read_davis_sequence(tmp_path, "empty")
    write_davis_sequence(tmp_path, "gone", frames[:1], masks[:1])
    shutil.rmtree(tmp_path / "Annotations" / "480p" / "gone")
    with pytest.raises(FileNotFoundError, match="annotations folder not found: .*Annotations/480p/gone"):
        read_davis_sequence(tmp_path, "gone")

    # an RGB annotation is not a map of ids
    write_davis_sequence(tmp_path, "rgb", frames[:2], masks[:2])
    Image.new("RGB", (20, 16)).save(tmp_path / "Annotations" / "480p" / "rgb" / "00001.png")
    with pytest.raises(ValueError, match="indexed .* got mode RGB"):
        read_davis_sequence(tmp_path, "rgb")

    with pytest.raises(ValueError, match="masks must be"):
        write_davis_sequence(tmp_path, "bad", frames, masks[:, :8])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        write_davis_sequence(tmp_path, "bad", frames, masks + 300)
    with pytest.raises(ValueError, match="frames must be"):
        write_davis_sequence(tmp_path, "bad", frames.permute(1, 0, 2, 3), masks)
    with pytest.raises(ValueError, match="name"):
        write_davis_sequence(tmp_path, "a/b", frames, masks)
