"""Every GPU-hour estimate the book quotes comes from the one cost model (measure.flops.gpu_hours).

The test recomputes each estimate from the FLOP functions and the model's stated peak and MFU,
then scans every chapter — markdown, code and committed outputs — for numbers of GPU- or
H100-hours: each one must be a recomputed estimate, or sit on a line that says it was
*reported* (the papers' own wall-clock hours, quoted beside the estimates).
"""

import json
import re
from pathlib import Path

import pytest

from maskvid_edu.measure import flops, scaling
from maskvid_edu.models.videomae import VideoMAEConfig
from maskvid_edu.models.vjepa import vjepa_config

BOOK = Path(__file__).resolve().parent.parent / "book"
K400_CLIPS = 240_000


def _text(chapter: str) -> str:
    """Sources and stream outputs of one chapter, as the reader sees them."""
    nb = json.loads((BOOK / f"{chapter}.ipynb").read_text())
    parts = []
    for cell in nb["cells"]:
        parts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append("".join(out["text"]))
    return "\n".join(parts)


def _hours(step_flops_per_clip: float, epochs: int) -> int:
    return round(flops.gpu_hours(flops.run_flops(step_flops_per_clip, K400_CLIPS, epochs)))


def _estimates() -> dict[str, dict[str, int]]:
    """chapter → {what: GPU-hours}, recomputed from the cost model."""
    vit_b = flops.train_step_flops(flops.pretrain_flops(VideoMAEConfig(mask_ratio=0.9)).total)
    sizes = scaling.model_sizes(["videomae_vit_s", "videomae_vit_b", "videomae_vit_l",
                                 "videomae_vit_h"])
    vjepa = flops.vjepa_pretrain_flops(vjepa_config("l"))
    return {
        "02_videomae": {"ViT-B, 800 epochs": _hours(vit_b, 800)},
        # chapter 5 rounds the per-clip step costs it quotes (≈ 200 GFLOP for VideoMAE, 620 for
        # MAM2, 1.7 TFLOP more for VQGAN codes computed on the fly)
        "05_rgb_difference_motion": {"VideoMAE, 800 epochs": _hours(200e9, 800),
                                     "MAM2, 400 epochs, cached codes": _hours(620e9, 400),
                                     "MAM2, 400 epochs, codes on the fly": _hours(2320e9, 400)},
        "07_scaling_up": {r["name"]: _hours(r["step_flops"], 800) for r in sizes},
        "08_beyond_pixels": {"V-JEPA ViT-L": round(flops.gpu_hours(vjepa["train_step"] * 3072 * 90_000))},
    }


ESTIMATES = _estimates()
QUOTE = re.compile(r"(\d[\d ,]*?)\s*(?:GPU|H100)-hours")


def test_the_cost_model_is_one_formula_with_stated_inputs():
    assert flops.gpu_hours(flops.H100_BF16_PEAK * flops.ASSUMED_MFU * 3600) == pytest.approx(1.0)
    assert flops.gpu_hours(1e18, peak=1e12, mfu=0.5) == pytest.approx(1e18 / 5e11 / 3600)
    # VideoMAE's report, 27 h on 64 V100s for ViT-B's 800 epochs: about 5 % of a V100's peak
    vit_b = flops.run_flops(flops.train_step_flops(flops.pretrain_flops(VideoMAEConfig(mask_ratio=0.9)).total),
                            K400_CLIPS, 800)
    assert flops.sustained_flops(vit_b, 27 * 64) / flops.V100_FP16_PEAK == pytest.approx(0.05, abs=0.005)
    for bad in (dict(total_flops=0), dict(total_flops=1e18, mfu=0), dict(total_flops=1e18, mfu=1.5)):
        with pytest.raises(ValueError):
            flops.gpu_hours(**bad)
    with pytest.raises(ValueError):
        flops.run_flops(1e9, 0)
    with pytest.raises(ValueError):
        flops.sustained_flops(1e18, 0)


@pytest.mark.parametrize("chapter", sorted(ESTIMATES))
def test_each_estimate_is_quoted_where_its_chapter_gives_it(chapter):
    text = _text(chapter)
    for what, hours in ESTIMATES[chapter].items():
        assert re.search(rf"(?<![\d.]){hours}\s*(?:GPU-hours|H100-hours|with codes)", text), \
            f"{chapter}: the estimate for {what} ({hours} GPU-hours by the cost model) is not quoted"


def test_no_chapter_quotes_gpu_hours_the_cost_model_did_not_compute():
    known = {h for per in ESTIMATES.values() for h in per.values()}
    stray = []
    for path in sorted(BOOK.glob("*.ipynb")):
        for line in _text(path.stem).splitlines():
            if "reported" in line.lower():
                continue  # a paper's own wall-clock hours, quoted as such
            for m in QUOTE.finditer(line):
                number = int(m.group(1).replace(" ", "").replace(",", ""))
                if number not in known:
                    stray.append(f"{path.name}: {line.strip()}")
    assert not stray, "GPU-hour numbers not produced by measure.flops.gpu_hours:\n" + "\n".join(stray)


RECIPES = Path(__file__).resolve().parent.parent / "maskvid_edu" / "configs"
# recipes whose cost comment rests on a per-step count the FLOP model does not compute (MAM2's
# regressor and decoders, ConvNet frames): the stated count, clips (or pairs) and epochs
STATED = {"mam2_vit_b_k400": (620e9, 240_000, 400),
          "videomac_convnextv2_s_ytvos": (70e9, 3_500, 100),
          "videomac_resnet50_ytvos": (35e9, 3_500, 100)}


def _recipe_cost_quotes():
    for path in sorted(RECIPES.glob("*.yaml")):
        text = path.read_text()
        quotes = re.findall(r"≈ ([\d.]+) H100-hours", text)
        if quotes:
            yield path.stem, text, [float(q) for q in quotes]


RECIPE_QUOTES = list(_recipe_cost_quotes())


@pytest.mark.parametrize("name,text,quotes", RECIPE_QUOTES, ids=[q[0] for q in RECIPE_QUOTES])
def test_recipe_cost_comments_come_from_the_cost_model(name, text, quotes):
    import torch

    from maskvid_edu.models import create
    from maskvid_edu.recipes import load_recipe

    assert "A100" not in text, f"{name}: a second cost convention (A100) in the comment"
    if name in STATED:
        step, clips, epochs = STATED[name]
    else:
        recipe = load_recipe(name)
        with torch.device("meta"):
            model = create(recipe["model"], **recipe.get("model_overrides", {}))
        step = flops.videomae_pretrain_flops(model)["train_step"]
        if getattr(model.config, "use_checkpoint", False):
            step *= 4 / 3  # the recomputed forward of activation checkpointing
        stated = re.search(r"([\d.]+) (G|T)FLOPs per clip per step", text)
        assert stated, f"{name}: the comment states no per-step count"
        value = float(stated.group(1)) * (1e9 if stated.group(2) == "G" else 1e12)
        base = flops.videomae_pretrain_flops(model)["train_step"]
        assert value == pytest.approx(base, rel=0.01), f"{name}: stated {value:.3g}, computed {base:.3g}"
        clips, epochs = recipe["data"]["num_samples"], recipe["train"]["epochs"]
    hours = flops.gpu_hours(flops.run_flops(step, clips, epochs))
    digits = len(str(quotes[0]).split(".")[1]) if quotes[0] != int(quotes[0]) else 0
    assert quotes[0] == pytest.approx(round(hours, digits)), f"{name}: quoted {quotes[0]}, model {hours:.3g}"
