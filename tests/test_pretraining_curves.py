"""Downstream scores against pre-training steps (analysis.pretraining_curves): the checkpoints
read, the records kept and resumed, identical weights measured once, and the race's reading."""

import json

import pytest

from maskvid_edu import zoo
from maskvid_edu.analysis import data_efficiency, pretraining_curves as pc

TINY = """
method: mam2
model: mam2_vit_demo
model_overrides: {{appearance_target: pixels_norm, w_motion: {w_motion}, dim: 32, depth: 1, heads: 2,
  regressor_depth: 1, regressor_heads: 2, appearance_dim: 16, appearance_depth: 1, appearance_heads: 2,
  motion_dim: 16, motion_depth: 1, motion_heads: 2}}
data: {{source: synthetic, num_samples: 16}}
train: {{steps: 6, batch_size: 2, lr: 1.0e-3, warmup_steps: 1, num_threads: 1, log_every: 2, ckpt_every: 2}}
zoo: {{seed: 0, keep: encoder, snapshots: [2], dtype: float16}}
"""


@pytest.fixture
def tiny_mam2(tmp_path, monkeypatch):
    recipes = tmp_path / "configs"
    recipes.mkdir()
    for stem, w_motion in (("mam2_appmotion", 1.0), ("mam2_pixels", 0.0)):
        (recipes / f"{stem}.yaml").write_text(TINY.format(w_motion=w_motion))
    monkeypatch.setattr(zoo, "_recipe_folder", lambda: recipes)
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    monkeypatch.setattr(zoo, "WORK_DIR", tmp_path / "work")
    monkeypatch.setattr(data_efficiency, "TEST_CLIPS", 24)
    monkeypatch.setattr(pc, "NUM_LABELLED", 24)
    return tmp_path


def test_measure_reads_every_checkpoint_once_and_resumes(tiny_mam2):
    zoo.build("mam2_appmotion")
    out = tiny_mam2 / "curves.jsonl"
    result = pc.measure(["mam2_appmotion", "mam2_pixels"], out, kinds=("linear", "knn"), verbose=False)
    # mam2_pixels is not built: its snapshot and final weights are skipped and counted, step 0 is not
    assert sorted((n, s) for n, s, _ in result["skipped"]) == [("mam2_pixels", 2), ("mam2_pixels", 6)]
    records = {(r["name"], r["step"], r["kind"]): r for r in result["records"]}
    assert sorted({(n, s) for n, s, _ in records}) == [("mam2_appmotion", 0), ("mam2_appmotion", 2),
                                                       ("mam2_appmotion", 6), ("mam2_pixels", 0)]
    # the two variants share their initialisation: measured once, copied with its source named
    twin = records["mam2_pixels", 0, "linear"]
    assert twin["same_weights_as"] == "mam2_appmotion"
    assert twin["correct"] == records["mam2_appmotion", 0, "linear"]["correct"]
    assert records["mam2_appmotion", 2, "knn"]["weights_sha256"] != records["mam2_appmotion", 6, "knn"]["weights_sha256"]
    for r in records.values():
        assert len(r["correct"]) == 24 and r["accuracy"] == r["correct"].count("1") / 24
    before = out.read_text()
    assert pc.measure(["mam2_appmotion"], out, kinds=("linear", "knn"), verbose=False)["skipped"] == []
    assert out.read_text() == before  # nothing left to measure: the file is untouched
    with pytest.raises(ValueError, match="kinds must be among"):
        pc.measure(["mam2_appmotion"], out, kinds=("probe",))
    with pytest.raises(ValueError, match="read at steps \\[0, 2, 6\\], not 3"):
        pc.encoder_at("mam2_appmotion", 3)


def _records(acc):
    """Records from ``{(stem, seed): {step: accuracy}}``."""
    out = []
    for (stem, seed), curve in acc.items():
        name = stem + ("", "_s1", "_s2")[seed]
        out += [{"name": name, "seed": seed, "step": s, "kind": "finetune", "accuracy": a} for s, a in curve.items()]
    return out


def test_race_reads_the_level_the_first_step_and_the_half_budget():
    acc = {}
    for seed in range(3):
        acc["mam2_pixels", seed] = {0: 0.25, 250: 0.30, 500: 0.50 + 0.01 * seed, 1000: 0.70 + 0.01 * seed}
        acc["mam2_appmotion", seed] = {0: 0.25, 250: 0.60, 500: 0.80 + 0.01 * seed, 1000: 0.90}
        acc["mam2_motion", seed] = {0: 0.25, 250: 0.26, 500: 0.27, 1000: 0.28 + 0.02 * seed}
    result = pc.race(_records(acc), "finetune")
    assert result["level"] == pytest.approx(71.0) and result["total"] == 1000 and result["half"] == 500
    assert result["first_reach"]["pixels"] == {0: None, 1: 1000, 2: 1000}
    assert result["first_reach"]["appearance + motion"] == {0: 500, 1: 500, 2: 500}
    assert result["first_reach"]["motion only"] == {0: None, 1: None, 2: None}
    diff, sentence = result["half_vs_full"]["appearance + motion"]
    assert diff.mean == pytest.approx(10.0) and diff.low > 0 and sentence.startswith("appearance + motion at step 500 beats")
    assert "pixels" not in result["at_end"] and "motion only" in result["at_end"]
    text = pc.format_race(result)
    assert "71.0 %" in text and "seed 0: not within the budget" in text
    curves = pc.format_curves(_records(acc), "finetune")
    assert "step 1000" in curves.splitlines()[0] and len(curves.splitlines()) == 5


def test_one_seed_is_paired_clip_by_clip():
    records = []
    for stem, correct in (("mam2_pixels", "1100" * 25), ("mam2_appmotion", "1110" * 25), ("mam2_motion", "1000" * 25)):
        for step in (0, 500, 1000):
            c = correct if step else "1000" * 25
            records.append({"name": stem, "seed": 0, "step": step, "kind": "linear",
                            "accuracy": c.count("1") / len(c), "correct": c})
    result = pc.race(records, "linear")
    assert result["level"] == pytest.approx(50.0)
    diff, sentence = result["half_vs_full"]["appearance + motion"]
    assert diff.mean == pytest.approx(25.0) and diff.low > 0  # every clip pixels gets right, it gets right too
    table = pc.curve_table(records, "linear")
    assert table["pixels"][1000].mean == pytest.approx(50.0) and table["pixels"][1000].low < 50.0
    assert "one seed" in pc.format_curves(records, "linear")


def test_trivial_losses_are_the_mean_squared_targets(tiny_mam2):
    losses = pc.trivial_losses("mam2_appmotion", num_clips=4)
    assert losses["loss_appearance"] == pytest.approx(1.0, abs=0.02)  # normalised patches: unit variance
    assert 0 < losses["loss_motion"] < 1
    zoo.build("mam2_appmotion")
    assert set(pc.logged_losses("mam2_appmotion")) == {"loss_appearance", "loss_motion"}
    assert pc.first_step_below("mam2_appmotion", 1e9) == 2 and pc.first_step_below("mam2_appmotion", -1.0) is None
    line = pc.format_learning(["mam2_appmotion"], num_clips=4)
    assert line.startswith("mam2_appmotion: appearance ") and ("trivial solution" in line)


def test_cli_zoo_curves_measures_and_names_bad_input(tiny_mam2, capsys):
    from maskvid_edu.cli import main

    zoo.build("mam2_appmotion")
    out = tiny_mam2 / "c.jsonl"
    assert main(["zoo", "curves", "mam2_appmotion", "--kinds", "linear", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 records in" in text and "linear probe" in text
    assert main(["zoo", "curves", "nope", "--out", str(out)]) == 2
    assert "no zoo recipe 'nope'" in capsys.readouterr().err


def test_a_frame_encoder_is_probed_per_frame_and_never_fine_tuned():
    """VideoMAC's ConvNet reads frames: wrapped so a clip gives one feature vector (frames
    averaged), and refused as a fine-tuning start before anything is measured."""
    import torch

    from maskvid_edu.evaluate.probe import FrameEncoder

    assert pc.frame_encoder("videomac_sparse") and not pc.frame_encoder("videomae_tube90")
    encoder = pc.encoder_at("videomac_sparse", 0)
    assert isinstance(encoder, FrameEncoder)
    video = torch.randn(2, 3, 8, 64, 64)  # (B, C, T, H, W): a task clip
    with torch.no_grad():
        features = encoder.forward_features(video)  # (B, C'): one vector per clip
        frames = encoder.encoder(video[0].transpose(0, 1))  # (T, C', h, w): clip 0 frame by frame
    assert features.shape == (2, encoder.num_features)
    torch.testing.assert_close(features[0], frames.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="frame encoders.*not fine-tuned"):
        pc.measure(["videomac_sparse"], "unused.jsonl", kinds=("linear", "finetune"))
