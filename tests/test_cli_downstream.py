"""The downstream commands: ``maskvid-edu propagate | finetune | probe`` on tiny data, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskvid_edu.cli import build_parser, main
from maskvid_edu.data.davis import list_davis_sequences, read_davis_sequence, write_davis_dataset
from maskvid_edu.data.synthetic import SyntheticVideoDataset
from maskvid_edu.evaluate.davis import evaluate_davis, load_pretrained
from maskvid_edu.evaluate.metrics import davis_jf
from maskvid_edu.evaluate.propagation import PropagationConfig
from maskvid_edu.train import CHECKPOINT_NAME, load_checkpoint

# a VideoMAE small enough for a test: 4 frames of 32 × 32, patch 8, one block
TINY = ["--model", "videomae_vit_demo"] + [
    f"--model-arg={kv}" for kv in ("img_size=32", "num_frames=4", "dim=32", "depth=1", "heads=2",
                                   "decoder_dim=16", "decoder_depth=1", "decoder_heads=2")
]
QUIET = ["--device", "cpu", "--seed", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A checkpoint of the tiny VideoMAE after two pre-training steps (written by the CLI)."""
    out = tmp_path_factory.mktemp("pretrain")
    assert main(["pretrain", "--out", str(out), *TINY, "--steps", "2", "--batch-size", "2", "--num-samples", "4",
                 "--no-progress", "--num-workers", "0", "--device", "cpu", "--threads", "1"]) == 0
    return out / CHECKPOINT_NAME


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    """Two synthetic clips (8 frames of 32 × 32, one with a distractor) in the DAVIS-2017 layout."""
    root = tmp_path_factory.mktemp("davis")
    data = SyntheticVideoDataset(num_samples=2, num_frames=8, size=32, seed=3, distractor_prob=1.0)
    write_davis_dataset(data, root)
    return root


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_help_of_every_downstream_command(capsys):
    for command in ("propagate", "finetune", "probe"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        sub = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == command)[1]
        for action in sub._actions:
            assert action.help, f"{command} {action.option_strings} has no help text"
            for flag in action.option_strings:
                assert flag in text


def test_propagate_writes_masks_and_prints_jf(pretrained, davis_root, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["propagate", "--ckpt", str(pretrained), "--data", str(davis_root), "--out", str(out),
                 "--topk", "3", "--radius", "4", *QUIET]) == 0
    text = capsys.readouterr().out
    assert "J&F-Mean" in text and "top-k 3, radius 4" in text
    names = list_davis_sequences(davis_root)
    pairs = {}
    for name in names:
        pngs = sorted((out / name).glob("*.png"))
        assert len(pngs) == 8
        _, gt = read_davis_sequence(davis_root, name)
        pred = torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in pngs]).astype(np.int64))
        assert torch.equal(pred[0], gt[0])  # the given first frame is written as it is
        pairs[name] = (gt, pred)
    results = json.loads((out / "results.json").read_text())
    # the score printed and saved is the DAVIS score of the masks written
    assert results["J&F-Mean"] == pytest.approx(davis_jf(pairs)["J&F-Mean"], abs=1e-9)
    assert f"J&F-Mean {results['J&F-Mean']:.3f}" in text
    assert 0.0 <= results["J&F-Mean"] <= 1.0 and results["config"]["topk"] == 3


def test_propagate_matches_the_library_call_and_crw_preset(pretrained, davis_root, tmp_path, capsys):
    model, _ = load_pretrained(pretrained)
    direct = evaluate_davis(model.encoder, davis_root, None, PropagationConfig.crw(), size=64, device="cpu")
    out = tmp_path / "crw"
    assert main(["propagate", "--ckpt", str(pretrained), "--data", str(davis_root), "--out", str(out),
                 "--config", "crw", "--size", "64", *QUIET]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["J&F-Mean"] == pytest.approx(direct["J&F-Mean"], abs=1e-9)
    assert results["config"]["n_last"] == 20 and results["config"]["window"] == "disk"
    # a random encoder is another model: its masks differ
    assert main(["propagate", "--random-init", *TINY, "--data", str(davis_root), "--out", str(tmp_path / "r"),
                 "--sequences", list_davis_sequences(davis_root)[0], *QUIET]) == 0
    assert "random initialisation" in capsys.readouterr().out


def test_propagate_names_what_is_missing(pretrained, davis_root, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert str(missing) in _error(capsys, ["propagate", "--ckpt", str(pretrained), "--data", str(missing), "--out", "x"])
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _error(capsys, ["propagate", "--ckpt", str(pretrained), "--data", str(empty), "--out", "x"])
    assert "JPEGImages" in err and str(empty) in err
    (empty / "JPEGImages" / "480p").mkdir(parents=True)
    (empty / "Annotations" / "480p").mkdir(parents=True)
    assert "ImageSets/2017/val.txt" in _error(capsys, ["propagate", "--ckpt", str(pretrained), "--data", str(empty), "--out", "x"])
    err = _error(capsys, ["propagate", "--ckpt", str(tmp_path / "no.pt"), "--data", str(davis_root), "--out", "x"])
    assert "no.pt" in err and "checkpoint" in err
    assert "--random-init" in _error(capsys, ["propagate", "--data", str(davis_root), "--out", "x"])
    err = _error(capsys, ["propagate", "--ckpt", str(pretrained), "--data", str(davis_root), "--out", "x",
                          "--sequences", "not_a_sequence"])
    assert "not_a_sequence" in err


def test_finetune_then_probe_on_synthetic_data(pretrained, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--ckpt", str(pretrained), "--out", str(out), "--steps", "2", "--batch-size", "4",
                 "--num-samples", "8", "--val-samples", "4", "--num-classes", "4", "--no-progress", *QUIET]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "over 6 view(s) per clip" in text
    results = json.loads((out / "results.json").read_text())
    assert results["num_views"] == 6 and results["num_clips"] == 4 and 0.0 <= results["accuracy"] <= 1.0
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    assert ckpt["step"] == 2 and ckpt["meta"]["kind"] == "finetune" and ckpt["meta"]["num_classes"] == 4
    assert any(k.startswith("head.") for k in ckpt["model"])
    # the fine-tuned checkpoint is loadable by every downstream command
    classifier, words = load_pretrained(out / CHECKPOINT_NAME)
    assert type(classifier).__name__ == "VideoClassifier" and classifier.config.num_classes == 4
    assert main(["probe", "--ckpt", str(out / CHECKPOINT_NAME), "--num-samples", "8", "--val-samples", "8",
                 "--num-classes", "4", "--epochs", "5", "--knn-k", "3", "--out", str(tmp_path / "probe"), *QUIET]) == 0
    text = capsys.readouterr().out
    assert "linear probe: accuracy" in text and "k-NN (k=3" in text
    probe = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert probe["num_train"] == 8 and probe["chance"] == 0.25
    # an existing run is not overwritten
    assert "already holds" in _error(capsys, ["finetune", "--ckpt", str(pretrained), "--out", str(out)])


def test_probe_on_a_list_file_of_real_videos(make_video, tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(4):
        frames = rng.integers(0, 255, size=(12, 40, 48, 3), dtype=np.uint8)
        make_video(f"clip{i}.mp4", frames)
        lines.append(f"clip{i}.mp4 {i % 2}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    assert main(["probe", *TINY, "--data", str(tmp_path / "list.txt"), "--val-data", str(tmp_path / "list.txt"),
                 "--root", str(tmp_path), "--stride", "2", "--epochs", "3", "--knn-k", "2", *QUIET]) == 0
    text = capsys.readouterr().out
    assert "features (4, 32) train" in text and "chance 0.500" in text


def test_classification_data_errors_name_the_missing_file(tmp_path, capsys):
    err = _error(capsys, ["probe", *TINY, "--data", str(tmp_path / "absent.csv")])
    assert "absent.csv" in err
    (tmp_path / "train.txt").write_text("a.mp4 0\n")
    assert "--val-data" in _error(capsys, ["finetune", *TINY, "--out", str(tmp_path / "o"), "--data", str(tmp_path / "train.txt")])
    err = _error(capsys, ["probe", *TINY, "--data", str(tmp_path / "train.txt"), "--val-data", str(tmp_path / "val.txt")])
    assert "val.txt" in err
    ucf = tmp_path / "UCF101"
    ucf.mkdir()
    err = _error(capsys, ["probe", *TINY, "--data", str(ucf)])
    assert "ucfTrainTestlist" in err
    (ucf / "ucfTrainTestlist").mkdir()
    (ucf / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\n")
    err = _error(capsys, ["probe", *TINY, "--data", str(ucf), "--split", "2"])
    assert "trainlist02.txt" in err
    err = _error(capsys, ["finetune", *TINY, "--out", str(tmp_path / "o2"), "--val-data", "v.txt"])
    assert "--val-data" in err and "synthetic" in err


def test_probe_with_the_attentive_head(tmp_path, capsys):
    out = tmp_path / "attentive"
    assert main(["probe", *TINY, "--num-samples", "8", "--val-samples", "8", "--num-classes", "4",
                 "--head", "all", "--attentive-epochs", "3", "--epochs", "3", "--knn-k", "3",
                 "--out", str(out), *QUIET]) == 0
    text = capsys.readouterr().out
    assert "linear probe: accuracy" in text and "attentive probe: accuracy" in text
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["attentive_probe"] <= 1.0 and results["num_train"] == 8
    assert main(["probe", *TINY, "--num-samples", "8", "--val-samples", "8", "--num-classes", "4",
                 "--head", "attentive", "--attentive-epochs", "2", *QUIET]) == 0
    text = capsys.readouterr().out
    assert "attentive probe: accuracy" in text and "linear probe" not in text
