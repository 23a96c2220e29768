"""The demo-recipe throughput table: each lever runs the real trainer on the recipe, and a lever
that only changes how the step runs trains the same losses."""

import pytest

from maskvid_edu.measure.throughput import LEVERS, bench_throughput, demo_run
from maskvid_edu.recipes import load_recipe


def test_videomae_demo_ships_fused_adamw_with_the_losses_of_the_plain_loop():
    """The demo recipe's fused AdamW is a pure speed lever: the per-tensor loop trains the
    same losses over the first steps (equal to the bit on the course machine; the bound allows
    a CPU whose vector units round the two kernels differently)."""
    assert load_recipe("videomae_demo")["train"]["fused_optimizer"] is True
    fused = demo_run("videomae", 6)
    loop = demo_run("videomae", 6, fused_optimizer=False)
    assert abs(fused["loss"] - loop["loss"]) <= 1e-6 * loop["loss"]


def test_fused_adamw_trains_the_losses_of_the_recipe_as_shipped():
    rows = bench_throughput(("videomae",), ("fused AdamW",), steps=4, rounds=1)
    assert [r["lever"] for r in rows] == ["as shipped", "fused AdamW"]
    shipped, fused = rows
    assert shipped["vs_shipped"] == 1.0 and shipped["loss_diff"] == 0.0
    assert fused["steps"] == 4 and fused["batch_size"] == 8 and fused["clips_per_s"] > 0
    assert fused["loss_diff"] <= 1e-5 * shipped["loss"]


def test_bad_arguments_name_what_is_expected():
    with pytest.raises(ValueError, match="unknown lever"):
        bench_throughput(("videomae",), ("turbo",), steps=4)
    with pytest.raises(ValueError, match="steps must be ≥ 4"):
        demo_run("videomae", 2)
    assert set(LEVERS["2 threads, clips rendered in the main process"]) == {"num_threads", "num_workers"}
