"""``maskvid-edu launch --slurm`` (``maskvid_edu.launch.sbatch_script``): the script passes
``bash -n``; run with stand-ins for ``scontrol`` and ``srun``, its torchrun line expands to a
command that torchrun's parser and ours accept, with the rendezvous taken from SLURM's
environment."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from maskvid_edu.cli import build_parser, main
from maskvid_edu.launch import plan_launch, sbatch_script

VIT_B = "videomae_vit_b_k400"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def _run_script(script: str, tmp_path) -> list[str]:
    """Run ``script`` with fake ``scontrol`` (two hosts) and ``srun`` (writes its argv, NUL-separated)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/bash\n[ "$1 $2" = "show hostnames" ] && printf "gpu-a17\\ngpu-a18\\n"\n')
    (bin_dir / "srun").write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {tmp_path / "argv"}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    job = tmp_path / "job.sh"
    job.write_text(script)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-a[17-18]", "SLURM_NNODES": "2",
           "SLURM_JOB_ID": "4711"}
    subprocess.run([BASH, str(job)], env=env, check=True, timeout=30)
    return (tmp_path / "argv").read_text().split("\0")[:-1]


def test_sbatch_script_parses_with_bash_torchrun_and_pretrain(tmp_path):
    from torch.distributed.run import get_args_parser

    plan = plan_launch(VIT_B, nodes=2, gpus_per_node=8)
    script = sbatch_script(plan, VIT_B, out="/shared/runs/vit b", data="k400/train.csv", root="k400/train",
                           time="2-00:00:00", partition="gpu", account="proj42", resume=True)
    assert subprocess.run([BASH, "-n"], input=script, text=True).returncode == 0
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert header == ["#SBATCH --job-name=maskvid-videomae_vit_b_k400", "#SBATCH --nodes=2",
                      "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8", "#SBATCH --time=2-00:00:00",
                      "#SBATCH --output=%x-%j.out", "#SBATCH --partition=gpu", "#SBATCH --account=proj42"]
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in script

    tokens = _run_script(script, tmp_path)
    assert tokens[0] == "torchrun"
    launcher = get_args_parser().parse_args(tokens[1:])  # torchrun's own parser
    assert (launcher.nnodes, launcher.nproc_per_node, launcher.rdzv_backend) == ("2", "8", "c10d")
    assert (launcher.rdzv_endpoint, launcher.rdzv_id) == ("gpu-a17:29500", "4711")
    assert launcher.module and launcher.training_script == "maskvid_edu"
    args = build_parser().parse_args(launcher.training_script_args)  # every flag exists in `pretrain`
    assert (args.command, args.config, args.batch_size, args.accum_steps) == ("pretrain", VIT_B, 32, 4)
    assert (args.data, args.root, args.out, args.resume) == ("k400/train.csv", "k400/train", "/shared/runs/vit b", True)


def test_sbatch_script_without_partition_or_account(tmp_path):
    script = sbatch_script(plan_launch(VIT_B, gpus_per_node=4), VIT_B, out="runs/x")
    assert "--partition" not in script and "--account" not in script and "#SBATCH --nodes=1" in script
    tokens = _run_script(script, tmp_path)
    assert tokens[:3] == ["torchrun", "--nnodes", "2"]  # the allocation's size, from $SLURM_NNODES


@pytest.mark.parametrize("kwargs, message", [
    ({"time": "tomorrow"}, "time must be SLURM's"),
    ({"partition": "a b"}, "partition must be a non-empty name"),
    ({"port": 0}, "port must be an integer"),
])
def test_sbatch_script_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sbatch_script(plan_launch(VIT_B), VIT_B, out="runs/x", **kwargs)


def test_cli_prints_the_script(capsys, tmp_path):
    argv = ["launch", "--config", VIT_B, "--nodes", "2", "--gpus-per-node", "8", "--slurm", "--time", "12:00:00",
            "--account", "proj42", "--out", "/shared/vit_b"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text == sbatch_script(plan_launch(VIT_B, nodes=2, gpus_per_node=8), VIT_B, out="/shared/vit_b",
                                 time="12:00:00", account="proj42")
    with pytest.raises(SystemExit):
        main(["launch", "--config", VIT_B, "--slurm", "--time", "soon"])
    assert "maskvid-edu launch: error: --time must be SLURM's" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["launch", "--config", VIT_B, "--nodes", "2", "--slurm", "--rdzv-endpoint", "n0:1"])
    assert "--rdzv-endpoint goes without --slurm" in capsys.readouterr().err
