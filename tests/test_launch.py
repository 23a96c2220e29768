"""Launch planning (``maskvid_edu.launch``, ``maskvid-edu launch``): the batch arithmetic, the
schedule as the trainer computes it, the generated commands (parsed by torchrun's and our own
argument parsers, and one run end to end), and the recipes' ``launch`` sections."""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
from importlib import resources

import pytest
import torch
import yaml

from maskvid_edu.cli import build_parser, main
from maskvid_edu.launch import LaunchPlan, format_plan, plan_launch, recipe_gpus, torchrun_command
from maskvid_edu.recipes import load_recipe, recipe_schedule, resolve_pretrain, shipped_recipes

pytestmark = pytest.mark.usefixtures("one_thread")

VIT_B = "videomae_vit_b_k400"


def _recipe_numbers(name):
    r = load_recipe(name)
    t = r["train"]
    return r, t["batch_size"], t["accum_steps"], r["launch"]["gpus"], t["base_lr"], r["data"]["num_samples"]


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes, gpus_per_node, accum", [(1, 1, 64), (1, 8, 8), (8, 8, 1), (2, 8, 4)])
def test_vit_b_k400_keeps_the_2048_batch(nodes, gpus_per_node, accum):
    recipe, batch, recipe_accum, gpus, base_lr, n = _recipe_numbers(VIT_B)
    assert batch * recipe_accum * gpus == 2048  # the paper's 64 GPUs × 32 clips
    plan = plan_launch(VIT_B, nodes=nodes, gpus_per_node=gpus_per_node)
    assert isinstance(plan, LaunchPlan)
    assert (plan.world_size, plan.batch_size, plan.accum_steps) == (nodes * gpus_per_node, 32, accum)
    assert plan.effective_batch == plan.target_batch == 2048
    assert plan.peak_lr == pytest.approx(1.2e-3)
    assert plan.peak_lr == pytest.approx(base_lr * 2048 / 256)
    # the schedule as the trainer computes it: whole micro-batches per process, ⌈epochs · batches / K⌉
    batches = n // plan.world_size // 32
    assert plan.batches_per_epoch == batches
    assert plan.steps_per_epoch == pytest.approx(batches / accum)
    assert plan.total_steps == math.ceil(recipe["train"]["epochs"] * batches / accum)
    assert plan.warmup_steps == round(recipe["train"]["warmup_epochs"] * batches / accum)
    if accum > 1:
        assert any(f"2048 reached with {accum} accumulation steps" in note for note in plan.notes), plan.notes
    else:
        assert not any("≠" in note for note in plan.notes), plan.notes


def test_full_size_schedule_in_numbers():
    plan = plan_launch(VIT_B, nodes=8, gpus_per_node=8)
    # 240 000 clips / 64 processes = 3750 each = 117 micro-batches of 32 (6 clips left over);
    # 800 epochs × 117 = 93 600 steps, 40 warm-up epochs = 4680 steps
    assert (plan.batches_per_epoch, plan.total_steps, plan.warmup_steps) == (117, 93600, 4680)
    assert any("384 of 240000 clips left out" in note for note in plan.notes), plan.notes


def test_a_target_that_does_not_divide_overshoots_and_says_so():
    plan = plan_launch(VIT_B, gpus_per_node=8, batch_size=24)
    # 2048 / (8 × 24) = 10.67 → 11 accumulation steps, 2112 clips per step
    assert plan.accum_steps == 11 and plan.effective_batch == 8 * 24 * 11 == 2112
    assert plan.peak_lr == pytest.approx(1.5e-4 * 2112 / 256)
    text = " | ".join(plan.notes)
    assert "effective batch 2112 ≠ recipe 2048" in text and "lr scaled linearly" in text
    assert "24 clips per GPU instead of the recipe's 32" in text
    # the largest per-GPU batch ≤ 24 that meets 2048 exactly on 8 GPUs: 16 × 16 steps
    assert "batch_size 16 reaches 2048 exactly: 8 GPUs × 16 clips, 16 accumulation steps" in text
    exact = plan_launch(VIT_B, gpus_per_node=8, batch_size=16)
    assert exact.effective_batch == 2048 and exact.accum_steps == 16


def test_explicit_target_batch_rescales_the_lr():
    plan = plan_launch(VIT_B, gpus_per_node=8, target_batch=1536)
    assert plan.accum_steps == 6 and plan.effective_batch == 1536 and plan.target_batch == 1536
    assert plan.peak_lr == pytest.approx(1.5e-4 * 1536 / 256)
    assert any("target batch 1536 set explicitly (the recipe's is 2048" in note for note in plan.notes), plan.notes


def test_more_gpus_than_the_target_needs():
    plan = plan_launch(VIT_B, nodes=16, gpus_per_node=8)  # 128 × 32 = 4096 > 2048
    assert plan.accum_steps == 1 and plan.effective_batch == 4096
    assert plan.peak_lr == pytest.approx(1.5e-4 * 4096 / 256)
    assert any("batch_size 16 reaches 2048 exactly" in note for note in plan.notes), plan.notes


def test_total_steps_from_epochs_and_the_dataset_size():
    recipe = {"method": "videomae", "data": {"source": "synthetic", "num_samples": 1000},
              "train": {"epochs": 3, "batch_size": 7, "accum_steps": 2, "base_lr": 1e-3, "warmup_epochs": 0.5},
              "launch": {"gpus": 4}}
    plan = plan_launch(recipe, gpus_per_node=3)
    assert plan.target_batch == 7 * 2 * 4 == 56
    assert plan.accum_steps == math.ceil(56 / 21) == 3 and plan.effective_batch == 63
    # 1000 // 3 = 333 clips per process, 47 micro-batches of 7, 15.67 steps per epoch
    assert plan.batches_per_epoch == 47 and plan.steps_per_epoch == pytest.approx(47 / 3)
    assert plan.total_steps == math.ceil(3 * 47 / 3) == 47
    assert plan.warmup_steps == round(0.5 * 47 / 3) == 8
    assert plan.num_samples == 1000
    # num_samples overrides the recipe's count (the real list may hold fewer clips)
    assert plan_launch(recipe, gpus_per_node=3, num_samples=500).total_steps == math.ceil(3 * (500 // 3 // 7) / 3)
    # a recipe that counts steps keeps them, and says what a different batch means
    by_steps = dict(recipe, train={**recipe["train"], "steps": 100, "epochs": None})
    plan = plan_launch(by_steps, gpus_per_node=3)
    assert plan.total_steps == 100
    assert any("counts 100 optimizer steps" in note for note in plan.notes), plan.notes
    # no dataset size: the step counts are left to the trainer
    unknown = dict(recipe, data={"source": "clips.txt"})
    plan = plan_launch(unknown, gpus_per_node=3)
    assert plan.num_samples is None and plan.total_steps is None and plan.warmup_steps is None
    assert "unknown" in format_plan(plan)


def test_plan_agrees_with_the_trainer(monkeypatch):
    """The trainer's own numbers for the same config and world size (it plans in __init__)."""
    from maskvid_edu.train import TrainConfig, Trainer

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def make_mask(self, video, generator=None):
            return None

        def forward(self, video, mask):
            return None

    class Clips:
        def __len__(self):
            return 1003

        def __getitem__(self, i):
            raise AssertionError("planning reads no clip")

    recipe = {"data": {"source": "synthetic", "num_samples": 1003},
              "train": {"epochs": 5, "batch_size": 6, "accum_steps": 1, "base_lr": 2e-4, "min_lr": 1e-6,
                        "warmup_epochs": 1.25}, "launch": {"gpus": 16}}
    for world in (1, 4, 6):
        plan = plan_launch(recipe, nodes=2 if world % 2 == 0 else 1, gpus_per_node=world // 2 if world % 2 == 0 else world)
        assert plan.world_size == world
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("RANK", "0")
        config = TrainConfig.from_dict({**recipe["train"], "batch_size": plan.batch_size,
                                        "accum_steps": plan.accum_steps, "device": "cpu"})
        trainer = Trainer(Model(), Clips(), config)
        assert trainer.effective_batch == plan.effective_batch
        assert trainer.peak_lr == pytest.approx(plan.peak_lr)
        assert trainer.batches_per_epoch == plan.batches_per_epoch
        assert trainer.steps_per_epoch == pytest.approx(plan.steps_per_epoch)
        assert trainer.total_steps == plan.total_steps
        assert trainer.warmup_steps == plan.warmup_steps


def test_a_recipe_that_fixes_lr_is_not_rescaled():
    plan = plan_launch("videomae_demo", gpus_per_node=2)
    demo = load_recipe("videomae_demo")["train"]
    assert plan.target_batch == demo["batch_size"] * demo.get("accum_steps", 1)  # no launch section: 1 GPU
    assert plan.effective_batch == 2 * demo["batch_size"] and plan.peak_lr == demo["lr"]
    assert plan.base_lr is None
    assert any("fixes lr" in note and "pass --lr" in note for note in plan.notes), plan.notes
    assert "the recipe's lr, not scaled" in format_plan(plan)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nodes": 0}, "nodes must be a positive int, got 0"),
        ({"gpus_per_node": -2}, "gpus_per_node must be a positive int, got -2"),
        ({"gpus_per_node": True}, "gpus_per_node must be a positive int"),
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive int"),
        ({"target_batch": 0}, "target_batch must be a positive int"),
        ({"num_samples": 0}, "num_samples must be a positive int"),
        ({"nodes": 4, "gpus_per_node": 8, "num_samples": 100}, "not a single full micro-batch"),
        ({"target_batch": 8, "batch_size": 1}, "below the recipe's min_lr"),  # 1.5e-4 × 8 / 256 < 1e-5
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_launch(VIT_B, **kwargs)


def test_recipe_argument_forms(tmp_path):
    by_name = plan_launch(VIT_B, gpus_per_node=8)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(load_recipe(VIT_B)))
    assert plan_launch(path, gpus_per_node=8) == by_name
    assert plan_launch(str(path), gpus_per_node=8) == by_name
    assert plan_launch(load_recipe(VIT_B), gpus_per_node=8) == by_name
    with pytest.raises(FileNotFoundError, match="no such file, nor a shipped recipe"):
        plan_launch("no_such_recipe")
    with pytest.raises(ValueError, match="recipe must be"):
        plan_launch(42)
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['gpus'\]"):
        plan_launch({"train": {"steps": 1}, "gpus": 8})
    for bad, message in (({"gpus": 0}, "launch.gpus must be a positive int"),
                         ({"gpu": 8}, r"unknown field\(s\) \['gpu'\] in section 'launch'"),
                         ([8], "section 'launch' must be a mapping")):
        with pytest.raises(ValueError, match=message):
            plan_launch({"train": {"steps": 1}, "launch": bad})


# --------------------------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------------------------


def _pretrain_argv(tokens):
    i = tokens.index("pretrain")
    return tokens[i:]


def test_one_gpu_command():
    plan = plan_launch(VIT_B)
    tokens = shlex.split(torchrun_command(plan, VIT_B, out="runs/vit b"))
    assert tokens == ["maskvid-edu", "pretrain", "--config", VIT_B, "--batch-size", "32", "--accum-steps", "64",
                      "--out", "runs/vit b"]


def test_one_machine_command_parses_with_torchrun_and_pretrain(tmp_path):
    from torch.distributed.run import get_args_parser

    plan = plan_launch(VIT_B, gpus_per_node=8)
    out = tmp_path / "run"
    command = torchrun_command(plan, VIT_B, out=out, data="data/k400/train.csv", root="data/k400/train")
    tokens = shlex.split(command)
    assert tokens[:6] == ["torchrun", "--standalone", "--nproc-per-node", "8", "-m", "maskvid_edu"]
    launcher = get_args_parser().parse_args(tokens[1:])  # torchrun's own parser
    assert launcher.standalone and launcher.nproc_per_node == "8" and launcher.module
    assert launcher.training_script == "maskvid_edu" and launcher.training_script_args == _pretrain_argv(tokens)
    args = build_parser().parse_args(_pretrain_argv(tokens))  # every flag exists in `pretrain`
    assert (args.config, args.batch_size, args.accum_steps, args.out) == (VIT_B, 32, 8, str(out))
    assert (args.data, args.root, args.resume) == ("data/k400/train.csv", "data/k400/train", False)
    # and it resolves to the planned effective batch (without --data: the recipe's synthetic data)
    no_data = build_parser().parse_args(_pretrain_argv(shlex.split(torchrun_command(plan, VIT_B, out=out))))
    train = resolve_pretrain(no_data)["train"]
    assert train.batch_size * train.accum_steps * plan.world_size == plan.effective_batch == 2048


def test_several_nodes_command():
    from torch.distributed.run import get_args_parser

    plan = plan_launch(VIT_B, nodes=8, gpus_per_node=8)
    command = torchrun_command(plan, VIT_B, out="/shared/runs/vit_b", rdzv_endpoint="node0:29500", job_id="vitb",
                               resume=True)
    tokens = shlex.split(command)
    launcher = get_args_parser().parse_args(tokens[1:])
    assert tokens[0] == "torchrun" and "--standalone" not in tokens
    assert (launcher.nnodes, launcher.nproc_per_node) == ("8", "8")
    assert (launcher.rdzv_backend, launcher.rdzv_endpoint, launcher.rdzv_id) == ("c10d", "node0:29500", "vitb")
    assert launcher.module and launcher.training_script == "maskvid_edu"
    args = build_parser().parse_args(launcher.training_script_args)
    assert (args.batch_size, args.accum_steps, args.out, args.resume) == (32, 1, "/shared/runs/vit_b", True)


@pytest.mark.parametrize(
    "nodes, kwargs, message",
    [
        (2, {}, "rdzv_endpoint is required for 2 nodes"),
        (2, {"rdzv_endpoint": "node0"}, "rdzv_endpoint must be HOST:PORT"),
        (2, {"rdzv_endpoint": "node0:port"}, "rdzv_endpoint must be HOST:PORT"),
        (2, {"rdzv_endpoint": "node0:70000"}, "rdzv_endpoint must be HOST:PORT"),
        (2, {"rdzv_endpoint": "node0:29500", "job_id": "my job"}, "job_id must be a non-empty name"),
        (1, {"rdzv_endpoint": "node0:29500"}, "rdzv_endpoint is for several nodes"),
        (1, {"root": "videos"}, "root goes with data"),
        (1, {"out": ""}, "out must be a non-empty"),
    ],
)
def test_command_errors(nodes, kwargs, message):
    plan = plan_launch(VIT_B, nodes=nodes, gpus_per_node=8)
    kwargs = {"out": "runs/x", **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        torchrun_command(plan, VIT_B, **kwargs)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available in this build")
def test_generated_command_runs_under_torchrun(tmp_path):
    """The one-machine command for 2 processes (gloo on CPU), shortened with pretrain's own flags."""
    plan = plan_launch("videomae_demo", gpus_per_node=2, target_batch=8, batch_size=2)
    assert (plan.accum_steps, plan.effective_batch) == (2, 8)
    out = tmp_path / "run"
    tokens = shlex.split(torchrun_command(plan, "videomae_demo", out=out))
    assert tokens[0] == "torchrun"
    argv = [sys.executable, "-m", "torch.distributed.run", *tokens[1:],
            "--steps", "2", "--num-samples", "16", "--device", "cpu", "--threads", "1", "--no-progress", "--log-every", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    from maskvid_edu.train import CHECKPOINT_NAME, load_checkpoint

    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    assert ckpt["step"] == 2 and int(ckpt["data"]["world_size"]) == 2
    saved = ckpt["config"]
    assert saved["batch_size"] * saved["accum_steps"] * 2 == plan.effective_batch


# --------------------------------------------------------------------------------------------
# the command line and the recipes
# --------------------------------------------------------------------------------------------


def test_cli_prints_the_plan_and_the_command(capsys):
    assert main(["launch", "--config", VIT_B, "--gpus-per-node", "8", "--data", "k400/train.csv",
                 "--root", "k400/train"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"accumulation steps\s+8\n", text), text
    assert re.search(r"effective batch\s+2048 \(target 2048", text), text
    assert re.search(r"peak lr\s+0\.0012 \(base_lr 0\.00015 × 2048 / 256\)", text), text
    command = text.strip().splitlines()[-1].strip()
    assert command == torchrun_command(plan_launch(VIT_B, gpus_per_node=8), VIT_B, out=f"runs/{VIT_B}",
                                       data="k400/train.csv", root="k400/train")

    assert main(["launch", "--config", VIT_B, "--nodes", "2", "--gpus-per-node", "8",
                 "--rdzv-endpoint", "10.0.0.1:29500", "--out", "/shared/vit_b", "--resume"]) == 0
    text = capsys.readouterr().out
    assert "command (the same on every node):" in text
    assert "--rdzv-endpoint 10.0.0.1:29500" in text and text.rstrip().endswith("--out /shared/vit_b --resume")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--nodes", "0"], "--nodes must be a positive int, got 0"),
        (["--gpus-per-node", "0"], "--gpus-per-node must be a positive int"),
        (["--batch-size", "-1"], "--batch-size must be a positive int"),
        (["--target-batch", "0"], "--target-batch must be a positive int"),
        (["--nodes", "2"], "--rdzv-endpoint is required for 2 nodes"),
        (["--nodes", "2", "--rdzv-endpoint", "nohost"], "--rdzv-endpoint must be HOST:PORT"),
        (["--root", "videos"], "--root goes with --data"),
    ],
)
def test_cli_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["launch", "--config", VIT_B, *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("maskvid-edu launch: error: ") and message in err, err
    with pytest.raises(SystemExit):
        main(["launch", "--config", "no_such_recipe"])
    assert "no such file, nor a shipped recipe" in capsys.readouterr().err


def test_full_size_recipes_state_their_gpus_and_pretrain_ignores_them(tmp_path):
    full = [n for n in shipped_recipes() if not n.endswith("_demo")]
    assert len(full) >= 10
    for name in full:
        recipe = load_recipe(name)
        assert "launch" in recipe, name
        gpus = recipe_gpus(recipe)
        text = (resources.files("maskvid_edu") / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
        stated = re.search(r"(\d+) GPUs × (\d+) clips = (\d+) clips per step", text)
        if stated:  # the comment's numbers and the recipe's agree
            g, b, total = map(int, stated.groups())
            assert (g, b, total) == (gpus, recipe["train"]["batch_size"], gpus * b), name
        # pretrain reads the recipe, ignores the launch section and keeps the written batch
        args = build_parser().parse_args(["pretrain", "--config", name, "--out", str(tmp_path / name)])
        resolved = resolve_pretrain(args)
        assert "launch" not in resolved
        assert resolved["train"].batch_size == recipe["train"]["batch_size"]
        assert plan_launch(name, gpus_per_node=gpus).effective_batch == plan_launch(name).target_batch


def test_pretrain_rejects_a_bad_launch_section(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"method": "videomae", "train": {"steps": 1}, "launch": {"gpus": "eight"}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--config", str(path), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "launch.gpus must be a positive int" in capsys.readouterr().err


def test_recipe_schedule_reads_the_trainers_batch_and_lr_rule():
    """The schedule a chapter prints beside its preset is the one the trainer runs: effective
    batch = batch_size × accum_steps × gpus, lr = base_lr × batch / 256 unless lr is given."""
    vit_b = recipe_schedule(load_recipe("videomae_vit_b_k400"))
    assert vit_b == {"length": "800 epochs", "batch": 32 * 64, "lr": pytest.approx(1.5e-4 * 8)}
    vjepa = recipe_schedule(load_recipe("vjepa_vit_l_videomix2m"))
    assert vjepa["length"] == "90,000 steps" and vjepa["lr"] == pytest.approx(6.25e-4)
    own = {"train": {"steps": 10, "batch_size": 4, "accum_steps": 3, "base_lr": 1e-3},
           "launch": {"gpus": 2}}
    assert recipe_schedule(own) == {"length": "10 steps", "batch": 24,
                                    "lr": pytest.approx(1e-3 * 24 / 256)}
