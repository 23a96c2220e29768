"""The ``maskvid-edu`` command line: help, a short pre-training run, recipes, clear errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import yaml

from maskvid_edu.cli import build_parser, main
from maskvid_edu.recipes import load_recipe, shipped_recipes
from maskvid_edu.train import CHECKPOINT_NAME, load_checkpoint

SMALL = ["--steps", "3", "--batch-size", "2", "--num-samples", "8", "--log-every", "1", "--no-progress", "--num-workers", "0",
         "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    sub = build_parser().parse_args(["pretrain", "--out", "x"]).parser  # the pretrain sub-parser
    flags = [s for a in sub._actions for s in a.option_strings if s.startswith("--")]
    assert len(flags) > 25
    for flag in flags:
        assert flag in text, flag
    for action in sub._actions:
        assert action.help, f"{action.option_strings} has no help text"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "pretrain" in capsys.readouterr().out


def test_short_pretrain_writes_checkpoint_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--out", str(out), *SMALL, "--mask-ratio", "0.75"]) == 0
    for name in (CHECKPOINT_NAME, "metrics.jsonl", "config.yaml", "loss_curve.png", "reconstruction.png"):
        assert (out / name).is_file(), name
    for png in ("loss_curve.png", "reconstruction.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    assert ckpt["step"] == 3
    assert ckpt["meta"]["model"] == "videomae_vit_demo" and ckpt["meta"]["model_overrides"]["mask_ratio"] == 0.75
    assert ckpt["model_config"]["mask_ratio"] == 0.75
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert "done: step 3" in capsys.readouterr().out

    # the written config.yaml reruns the same recipe; --resume continues a run
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["train"]["steps"] == 3 and resolved["model"] == "videomae_vit_demo"
    with pytest.warns(UserWarning, match=r"differs in \['steps'\]"):  # a longer schedule than the first run's
        assert main(["pretrain", "--out", str(out), "--config", str(out / "config.yaml"), "--steps", "5",
                     "--resume", "--no-progress"]) == 0
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 5


def test_recipe_layers_flags_win(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "method": "videomae", "model": "videomae_vit_demo", "model_overrides": {"decoder_depth": 1},
        "data": {"num_samples": 8, "camera": "static"}, "train": {"steps": 7, "lr": 1e-3, "batch_size": 2},
    }))
    from maskvid_edu.recipes import resolve_pretrain

    args = build_parser().parse_args(["pretrain", "--out", str(tmp_path / "o"), "--config", str(recipe),
                                      "--base-lr", "2e-4", "--model-arg", "decoder_dim=32"])
    plan = resolve_pretrain(args)
    assert plan["model_overrides"] == {"decoder_depth": 1, "decoder_dim": 32}
    assert plan["data"] == {"source": "synthetic", "num_samples": 8, "camera": "static"}
    t = plan["train"]
    assert (t.steps, t.batch_size, t.lr, t.base_lr, t.out_dir) == (7, 2, None, 2e-4, str(tmp_path / "o"))
    # the method's demo recipe is the default
    plan = resolve_pretrain(build_parser().parse_args(["pretrain", "--out", "x", "--epochs", "2"]))
    assert plan["model"] == "videomae_vit_demo" and plan["train"].epochs == 2 and plan["train"].steps is None


def test_shipped_recipes_are_valid():
    from maskvid_edu.models import list_models
    from maskvid_edu.train import TrainConfig

    names = shipped_recipes()
    assert "videomae_demo" in names
    for name in names:
        recipe = load_recipe(name)
        assert recipe["model"] in list_models(), name
        TrainConfig.from_dict({**recipe["train"], "out_dir": None})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pretrain", "--out", "{o}", "--data", "/no/such/clips"], "/no/such/clips'. neither one of"),
        (["pretrain", "--out", "{o}", "--data", "{o}"], "(folder of videos).*no samples"),
        (["pretrain", "--out", "{o}", "--model", "no_such_model"], "not registered"),
        (["pretrain", "--out", "{o}", "--method", "mam2", "--model", "videomae_vit_demo"], "not a mam2 model"),
        (["pretrain", "--out", "{o}", "--mask-ratio", "1.5"], "--mask-ratio must be in"),
        (["pretrain", "--out", "{o}", "--config", "no_such_recipe"], "no such file, nor a shipped recipe"),
        (["pretrain", "--out", "{o}", "--model-arg", "depth"], "KEY=VALUE"),
        (["pretrain", "--out", "{o}", "--model-arg", "no_field=3"], "unknown override"),
        (["pretrain", "--out", "{o}", "--batch-size", "0"], "batch_size must be a positive int"),
        (["pretrain", "--out", "{o}", "--resume"], "does not exist"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, argv, message):
    argv = [a.replace("{o}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "maskvid-edu pretrain: error:" in err
    assert re.search(message, err), err


def test_argparse_level_errors(capsys):
    for argv, message in [
        (["pretrain"], "--out"),
        (["pretrain", "--out", "x", "--steps", "3", "--epochs", "1"], "not allowed with"),
        (["pretrain", "--out", "x", "--amp", "fp8"], "invalid choice"),
        (["pretrain", "--out", "x", "--steps", "three"], "invalid int value"),
        (["finetune"], "--out"),
        (["nonsense"], "invalid choice"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"x")
    with pytest.raises(SystemExit):
        main(["pretrain", "--out", str(tmp_path), *SMALL])
    assert "pass --resume" in capsys.readouterr().err
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == b"x"


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "maskvid_edu", "pretrain", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--mask-ratio" in proc.stdout, proc.stderr


class _Oracle(torch.nn.Module):
    """Wraps a model and predicts its targets exactly: a perfect reconstruction."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def make_mask(self, video, generator=None):
        return self.inner.make_mask(video, generator)

    def forward(self, video, mask):
        out = self.inner(video, mask)
        out.pred = out.target
        return out


@pytest.mark.parametrize(
    "name, overrides, frames, note",
    [
        ("videomae_vit_demo", {"normalization": "videomae"}, 8, True),
        ("videomae_vit_demo", {"normalization": "mae"}, 8, True),
        ("videomae_vit_demo", {"normalization": "none"}, 8, False),
        ("mam2_vit_demo", {}, 9, True),  # T + 1 frames in, appearance = per-patch normalised pixels
    ],
)
def test_reconstruction_figure_undoes_the_target_normalisation(name, overrides, frames, note):
    from maskvid_edu.widgets import reconstruction_figure
    from maskvid_edu.data.synthetic import SyntheticVideoDataset
    from maskvid_edu.models import create, list_models

    if name not in list_models():
        pytest.skip(f"{name} is not registered")
    model = _Oracle(create(name, **overrides))
    video = SyntheticVideoDataset(num_frames=frames, size=64, num_samples=1)[0]["video"]
    fig = reconstruction_figure(model, video, generator=torch.Generator().manual_seed(0))
    axes = fig.axes
    cols = len(axes) // 3
    for c in range(cols):
        original = axes[c].images[0].get_array()
        recon = axes[2 * cols + c].images[0].get_array()
        masked = axes[cols + c].images[0].get_array()
        assert abs(original - recon).max() < 1e-5  # a perfect prediction gives the clip back
        assert abs(original - masked).max() > 0.1  # hidden patches are greyed
    text = " ".join(t.get_text() for t in fig.texts)
    assert ("un-normalised with each true patch's mean and std" in text) == note


def test_pretrain_on_a_list_of_real_videos_skips_and_counts_a_broken_file(tmp_path, capsys):
    from videofiles import textured_frames, write_video

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        write_video(clips / f"v{i}.avi", textured_frames(20, 64, 64, seed=i))
    (clips / "broken.avi").write_bytes(b"not a video at all" * 50)
    listing = tmp_path / "train.txt"
    listing.write_text("".join(f"{name} 0\n" for name in ["v0.avi", "v1.avi", "broken.avi", "v2.avi"]))
    out = tmp_path / "run"
    argv = ["pretrain", "--out", str(out), "--data", str(listing), "--root", str(clips),
            "--model-arg", "img_size=32", "--model-arg", "num_frames=4",
            "--steps", "2", "--batch-size", "2", "--log-every", "1", "--no-progress",
            "--num-workers", "0", "--device", "cpu"]
    with pytest.warns(UserWarning, match="broken.avi"):
        assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (out / CHECKPOINT_NAME).exists()
    assert re.search(r"skipped|unreadable", printed), printed


def test_pretrain_rejects_a_missing_data_path(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "nope.txt")])
    assert exit_info.value.code == 2
    assert "nope.txt" in capsys.readouterr().err


def test_full_size_recipe_with_a_real_list_builds_a_video_dataset(tmp_path):
    from videofiles import textured_frames, write_video

    from maskvid_edu.recipes import build_dataset, resolve_pretrain

    write_video(tmp_path / "a.avi", textured_frames(40, 64, 64))
    listing = tmp_path / "train.csv"
    listing.write_text("path,label\na.avi,0\n")
    args = build_parser().parse_args(["pretrain", "--config", "videomae_vit_b_k400", "--data", str(listing),
                                      "--root", str(tmp_path), "--out", str(tmp_path / "run")])
    plan = resolve_pretrain(args)
    model = torch.nn.Module()
    model.config = type("Cfg", (), {"num_frames": 16, "img_size": 224})()
    dataset = build_dataset(plan["data"], model, seed=0)
    item = dataset[0]
    assert tuple(item["video"].shape) == (3, 16, 224, 224)


def test_synthetic_pair_gap_gives_two_adjacent_frames_of_longer_clips():
    from maskvid_edu.data.synthetic import SyntheticConfig, SyntheticVideoDataset
    from maskvid_edu.data.wrappers import FramePairs
    from maskvid_edu.models import create
    from maskvid_edu.recipes import build_dataset

    model = create("videomac_convnextv2_demo")
    data = {"source": "synthetic", "num_samples": 4, "num_frames": 8, "size": 64, "pair_gap": 2}
    dataset = build_dataset(data, model, seed=3)
    assert isinstance(dataset, FramePairs) and dataset.gap == 2 and len(dataset) == 4
    item = dataset[1]
    assert tuple(item["video"].shape) == (3, 2, 64, 64) and set(item) == {"video", "frame_indices"}
    t = int(item["frame_indices"][0])
    assert int(item["frame_indices"][1]) == t + 2
    clip = SyntheticVideoDataset(SyntheticConfig(num_frames=8, size=64, num_samples=4, seed=3))[1]["video"]
    torch.testing.assert_close(item["video"], clip[:, [t, t + 2]], rtol=0, atol=0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="pair_gap"):
            build_dataset({**data, "pair_gap": bad}, model, seed=3)


@pytest.mark.slow
def test_pretrain_mam2_with_a_vqgan_checkpoint_trains_on_codes(tmp_path):
    import json

    from maskvid_edu.tokenizers import TamingVQGANEncoder

    ckpt = tmp_path / "vqgan.ckpt"
    torch.save({"state_dict": TamingVQGANEncoder.from_preset("vqgan_imagenet_f16_1024").state_dict()}, ckpt)
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "mam2", "--out", str(out), "--tokenizer", str(ckpt),
                 "--model-arg", "patch=16", *SMALL]) == 0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    # cross-entropy over 1024 codes starts near ln(1024) ≈ 6.9, far from a pixel MSE
    assert first["loss_appearance"] > 3.0


def test_tokenizer_flag_is_for_mam2_and_names_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--out", str(tmp_path / "a"), "--tokenizer", str(tmp_path / "none.ckpt")])
    assert "--tokenizer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "--method", "mam2", "--out", str(tmp_path / "b"), "--tokenizer", str(tmp_path / "none.ckpt")])
    assert "none.ckpt" in capsys.readouterr().err


@pytest.mark.parametrize("method,mask", [("videomae", "motion-guided"), ("vjepa", "multiblock")])
def test_motion_guided_and_vjepa_pretraining_run_on_synthetic_clips_and_a_folder_of_real_videos(
        tmp_path, capsys, method, mask):
    from videofiles import textured_frames, write_video

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        write_video(clips / f"v{i}.avi", textured_frames(20, 64, 64, seed=i))
    tiny = ["--model-arg", "img_size=32", "--model-arg", "num_frames=4", "--steps", "2", "--batch-size", "2",
            "--log-every", "1", "--no-progress", "--num-workers", "0", "--device", "cpu"]
    for data in (["--num-samples", "8"], ["--data", str(clips)]):
        out = tmp_path / f"run_{data[0].strip('-')}"
        assert main(["pretrain", "--method", method, "--mask", mask, "--out", str(out), *data, *tiny]) == 0
        ckpt = load_checkpoint(out / CHECKPOINT_NAME)
        assert ckpt["step"] == 2
        assert yaml.safe_load((out / "config.yaml").read_text())["model_overrides"]["mask_type"] == mask.replace("-", "_")


def test_mask_flag_is_refused_for_videomac(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--method", "videomac", "--mask", "tube", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "frame-pair mask" in capsys.readouterr().err
