"""``maskvid-edu bench`` prints one table; every shipped recipe resolves without training."""

from __future__ import annotations

import pytest
import torch

from maskvid_edu.cli import build_parser, main
from maskvid_edu.models import create, list_models
from maskvid_edu.recipes import build_dataset, load_recipe, resolve_pretrain, shipped_recipes


pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_quick_prints_one_table(capsys):
    """All parts at demo sizes (no timing assertions: benchmarks are not tests)."""
    assert main(["bench", "--quick", "--no-memory", "--steps", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("maskvid-edu bench — videomae_vit_demo, batch 1, 8×64×64")
    header = lines[1].split()
    assert header == ["measurement", "maskvid_edu", "reference", "ratio", "notes"]
    body = "\n".join(lines[3:])
    for row in ("pretrain step ms", "model FLOPs per step", "achieved FLOP/s (MFU)",
                "ConvNeXt V2 step ms", "MAM2 step ms", "step with AdamW fused", "step with activation checkpointing",
                "data loader clips/s", "video bare decode, decord", "video bare decode, PyAV",
                "video VideoMAE reference pipeline", "video ours, items in one process, 1 view", "video ours, DataLoader, 0 workers, 2 views",
                "videomae_demo training clips/s", "videomae_demo with fused AdamW"):
        assert row in body, row
    assert "transformers " in body and "matmul peak" in body and "dense " in body
    assert "peak memory" not in body  # --no-memory
    assert "torch.compile" not in body  # compiled only on CUDA
    # title, header, rule, one row per measurement (6 optimisations; 3 + 2 + 2 video loader rows;
    # the VideoMAE demo recipe as shipped and with its 3 levers)
    assert len(lines) == 3 + 5 + 1 + 6 + 7 + 4


def test_bench_flops_row_matches_the_analytic_count(capsys):
    from maskvid_edu.measure.flops import videomae_pretrain_flops

    assert main(["bench", "--quick", "--what", "flops", "--batch", "2", "--steps", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    expected = videomae_pretrain_flops(create("videomae_vit_demo"), batch=2)["train_step"] / 1e9
    assert f"{expected:.2f} G" in out
    assert "pretrain step" not in out


@pytest.mark.parametrize("argv, message", [
    (["--what", "pretrain,speed"], "--what: unknown part"),
    (["--model", "videomac_resnet50"], "--model 'videomac_resnet50' must be a registered VideoMAE model"),
    (["--steps", "0"], "--steps must be ≥ 1"),
    (["--what", "loader", "--videos", "nowhere.mp4"], "video not found: nowhere.mp4"),
])
def test_bench_bad_flags(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


FULL_SIZE = ["videomae_vit_s_k400", "videomae_vit_b_k400", "videomae_vit_l_k400", "videomae_vit_h_k400",
             "videomae_vit_s_ssv2", "videomae_vit_b_ssv2", "videomae_vit_b_ucf101",
             "videomac_resnet50_ytvos", "videomac_convnextv2_s_ytvos", "mam2_vit_b_k400"]


def test_full_size_recipes_are_shipped():
    assert set(FULL_SIZE) <= set(shipped_recipes())


@pytest.mark.parametrize("name", shipped_recipes())
def test_every_shipped_recipe_resolves(tmp_path, name):
    """Through the CLI's own resolution (sections, model name, TrainConfig), then the model's
    config with the overrides (built on the meta device: nothing allocated) and the dataset."""
    recipe = load_recipe(name)
    args = build_parser().parse_args(["pretrain", "--config", name, "--out", str(tmp_path / "run")])
    plan = resolve_pretrain(args)
    assert plan["model"] == recipe["model"] and plan["model"] in list_models()
    assert plan["method"] == recipe["method"]
    for key, value in (recipe.get("train") or {}).items():
        assert getattr(plan["train"], key) == (tuple(value) if isinstance(value, list) else value), key
    with torch.device("meta"):
        model = create(plan["model"], **plan["model_overrides"])
    for key, value in plan["model_overrides"].items():
        assert getattr(model.config, key) == value, key
    dataset = build_dataset(plan["data"], model, seed=0)
    assert len(dataset) == plan["data"].get("num_samples", len(dataset))
