"""Bad inputs at the command line: each one a clear error (exit status 2, no traceback) or a
counted skip.

Every case builds its bad input in a fixture (no files shipped): tiny textured AVIs
(``videofiles``), list files naming them, and checkpoints written here. Errors must name the
thing that is wrong and the flag that fixes it, and refuse before the run writes anything.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import yaml
from videofiles import textured_frames, write_video

from maskvid_edu.cli import main
from maskvid_edu.models import create
from maskvid_edu.recipes import load_recipe, resolve_pretrain
from maskvid_edu.train import CHECKPOINT_FORMAT, CHECKPOINT_NAME

pytestmark = pytest.mark.usefixtures("one_thread")

#: A run of the VideoMAE demo preset on 4-frame 32-pixel clips: seconds on a CPU.
TINY = ["--model-arg", "img_size=32", "--model-arg", "num_frames=4", "--device", "cpu"]
SHORT = ["--steps", "2", "--batch-size", "2", "--log-every", "1", "--no-progress", "--num-workers", "0"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three good 20-frame AVIs and one file of random bytes named ``broken.avi``."""
    folder = tmp_path_factory.mktemp("videos")
    for i in range(3):
        write_video(folder / f"v{i}.avi", textured_frames(20, 64, 64, seed=i))
    (folder / "broken.avi").write_bytes(bytes(range(256)) * 8)
    return folder


def listing(folder, name: str, lines: list[str]):
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def error(capsys, argv) -> str:
    """Run ``maskvid-edu argv``, check it exits with status 2 and no traceback; return stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SystemExit) as info:
            main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: " in err, err
    return err


def checkpoint(path, model_name: str, method: str, **overrides):
    """A trainer-format checkpoint of a freshly built model, as ``pretrain`` records it."""
    state = create(model_name, **overrides).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "model": state, "step": 1,
                "meta": {"method": method, "model": model_name, "model_overrides": overrides}}, path)
    return path


# ---------------------------------------------------------------------------------------------
# pretrain on real clips
# ---------------------------------------------------------------------------------------------
def test_first_list_entry_unreadable_skipped_and_counted_as_unreadable(videos, tmp_path, capsys):
    """The figure after training used to take ``dataset[0]``, a SkippedItem here."""
    train = listing(tmp_path, "train.txt", ["broken.avi 0", "v0.avi 0", "v1.avi 0", "v2.avi 0"])
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["pretrain", "--out", str(out), "--data", str(train), "--root", str(videos), *TINY, *SHORT]) == 0
    printed = capsys.readouterr().out
    assert "unreadable" in printed, printed
    assert (out / "reconstruction.png").exists() and "reconstruction figure skipped" not in printed


def test_list_of_missing_files_error_naming_the_list_and_the_reason(videos, tmp_path, capsys):
    """A wrong list (or --root) ends the run with the usable-data rule's message, not a traceback."""
    train = listing(tmp_path, "train.txt", [f"gone_{i}.avi 0" for i in range(4)])
    err = error(capsys, ["pretrain", "--out", str(tmp_path / "run"), "--data", str(train), "--root", str(videos),
                         *TINY, *SHORT])
    assert str(train) in err and "missing_file" in err


@pytest.mark.parametrize("data", ["synthetic", "list"])
def test_fewer_clips_than_the_batch_error_naming_batch_size(videos, tmp_path, capsys, data):
    source = ["--num-samples", "3"] if data == "synthetic" else [
        "--data", str(listing(tmp_path, "train.txt", ["v0.avi", "v1.avi", "v2.avi"])), "--root", str(videos)]
    out = tmp_path / "run"
    err = error(capsys, ["pretrain", "--out", str(out), *source, *TINY, "--steps", "2", "--batch-size", "8"])
    assert "3 clips" in err and "--batch-size 8" in err and "--batch-size 3 or less" in err
    assert not out.exists()  # refused before config.yaml (or anything else) was written


# ---------------------------------------------------------------------------------------------
# --config layering and --decoder
# ---------------------------------------------------------------------------------------------
def test_config_holding_only_a_data_section_keeps_the_demo_lr_and_target(videos, tmp_path):
    config = tmp_path / "pyav.yaml"
    config.write_text(yaml.safe_dump({"data": {"backend": "pyav"}}))
    train = listing(tmp_path, "train.txt", ["v0.avi", "v1.avi"])
    plan = resolve_pretrain(config=str(config), data=str(train), out=str(tmp_path / "run"))
    demo = load_recipe("videomae_demo")
    assert plan["model"] == demo["model"] and plan["model_overrides"] == demo["model_overrides"]
    assert (plan["train"].lr, plan["train"].steps, plan["train"].warmup_steps) == (
        demo["train"]["lr"], demo["train"]["steps"], demo["train"]["warmup_steps"])
    assert plan["data"] == {"source": str(train), "backend": "pyav"}
    # a section the config gives replaces the demo's whole; a model of its own drops the demo's overrides
    config.write_text(yaml.safe_dump({"model": "videomae_vit_s", "train": {"steps": 5, "lr": 1e-4}}))
    plan = resolve_pretrain(config=str(config), out=str(tmp_path / "run"))
    assert plan["model_overrides"] == {} and (plan["train"].steps, plan["train"].lr) == (5, 1e-4)
    assert plan["train"].warmup_steps != demo["train"]["warmup_steps"]


def test_decoder_flag_sets_the_backend_and_an_unknown_one_error_naming_the_choices(videos, tmp_path, capsys):
    train = listing(tmp_path, "train.txt", ["v0.avi", "v1.avi"])
    plan = resolve_pretrain(decoder="pyav", data=str(train), out=str(tmp_path / "run"))
    assert plan["data"]["backend"] == "pyav"
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--out", str(tmp_path / "run"), "--decoder", "ffmpeg"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--decoder" in err and all(name in err for name in ("auto", "decord", "pyav", "frames"))
    assert "--decoder" in error(capsys, ["pretrain", "--out", str(tmp_path / "run"), "--decoder", "pyav"])


def test_unknown_resolve_option_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="unknown option.*'stpes'"):
        resolve_pretrain(out=str(tmp_path), stpes=3)


# ---------------------------------------------------------------------------------------------
# labels against --num-classes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["train", "val"])
def test_label_beyond_num_classes_error_naming_the_list_line_label_and_num_classes(videos, tmp_path, capsys, which):
    good = ["v0.avi 0", "v1.avi 1"]
    train = listing(tmp_path, "train.txt", good + (["v2.avi 7"] if which == "train" else []))
    val = listing(tmp_path, "val.txt", good + (["v2.avi 7"] if which == "val" else []))
    out = tmp_path / "ft"
    err = error(capsys, ["finetune", "--model", "videomae_vit_demo", *TINY, "--data", str(train), "--val-data", str(val),
                         "--root", str(videos), "--num-classes", "2", "--out", str(out), "--steps", "1"])
    bad = train if which == "train" else val
    assert f"{bad}:3" in err and "label 7" in err and "--num-classes 2" in err
    assert not (out / CHECKPOINT_NAME).exists()


# ---------------------------------------------------------------------------------------------
# checkpoints that do not fit
# ---------------------------------------------------------------------------------------------
def test_videomac_checkpoint_loaded_as_videomae_error_naming_both_models_and_the_fix(tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "mac" / CHECKPOINT_NAME, "videomac_convnextv2_demo", "videomac")
    err = error(capsys, ["probe", "--ckpt", str(ckpt), "--model", "videomae_vit_demo", "--num-samples", "4",
                         "--val-samples", "4", "--device", "cpu"])
    assert str(ckpt) in err and "'videomac_convnextv2_demo'" in err and "'videomae_vit_demo'" in err
    assert "missing key" in err and "unexpected key" in err and "leave out --model" in err


def test_wrong_shape_tensor_error_naming_the_key_and_both_shapes(tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "mae" / CHECKPOINT_NAME, "videomae_vit_demo", "videomae")
    err = error(capsys, ["probe", "--ckpt", str(ckpt), "--model-arg", "decoder_dim=32", "--num-samples", "4",
                         "--val-samples", "4", "--device", "cpu"])
    assert str(ckpt) in err and "of another shape" in err and "--model-arg" in err
    assert re.search(r"mask_token: expected \(1, 1, 32\), found \(1, 1, \d+\)", err), err


def test_resume_of_a_videomac_run_without_method_error_naming_the_file_and_method_flag(tmp_path, capsys):
    out = tmp_path / "run"
    ckpt = checkpoint(out / CHECKPOINT_NAME, "videomac_convnextv2_demo", "videomac")
    err = error(capsys, ["pretrain", "--out", str(out), "--resume", "--steps", "4"])
    assert str(ckpt) in err and "videomac_convnextv2_demo" in err and "--method videomac" in err
    assert not (out / "config.yaml").exists()


def test_resume_from_a_truncated_checkpoint_error_naming_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    ckpt = checkpoint(out / CHECKPOINT_NAME, "videomae_vit_demo", "videomae")
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    err = error(capsys, ["pretrain", "--out", str(out), "--resume", "--steps", "4"])
    assert str(ckpt) in err and "could not be read" in err and "--resume" in err
    assert not (out / "config.yaml").exists()
