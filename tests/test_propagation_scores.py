"""Held-out label propagation of zoo encoders: the export, records that resume, paired comparisons."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maskvid_edu.analysis import propagation_scores as ps
from maskvid_edu.cli import main
from maskvid_edu.data.davis import list_davis_sequences
from maskvid_edu.models import create

SMALL = dict(num_samples=3, num_frames=4, size=64)


def _convnet(seed=0):
    torch.manual_seed(seed)
    return create("videomac_convnextv2_demo").encoder


def test_heldout_sequences_are_written_once_and_checked(tmp_path):
    root = ps.heldout_sequences(tmp_path / "davis", **SMALL)
    names = list_davis_sequences(root)
    assert len(names) == 3 and names[0].startswith("00000_")
    assert ps.heldout_sequences(root, **SMALL) == root  # the same export: accepted as it is
    with pytest.raises(ValueError, match="holds 3 sequences, not the 4"):
        ps.heldout_sequences(root, **{**SMALL, "num_samples": 4})
    assert ps.SEQUENCE_SEED not in (0, 1, 2, 1000, 2000, 2001, 2002, 3000)  # zoo, heldout, fine-tuning seeds


def test_records_resume_and_comparisons_pair_the_right_things(tmp_path):
    root = ps.heldout_sequences(tmp_path / "davis", **SMALL)
    path = tmp_path / "propagation.jsonl"
    calls = []

    def factory(seed):
        def build():
            calls.append(seed)
            return _convnet(seed)
        return build

    encoders = {("a", "random"): factory(0), ("b", "random"): factory(1)}
    scores = ps.score_encoders(encoders, path, root, verbose=False)
    assert calls == [0, 1] and set(scores) == set(encoders)
    assert all(0 <= v <= 100 and len(s) == 3 for s in scores.values() for v in s.values())
    again = ps.score_encoders({**encoders, ("c", "random"): factory(0)}, path, root, verbose=False)
    assert calls == [0, 1, 0]  # only the new encoder ran
    assert again["a", "random"] == again["c", "random"] == scores["a", "random"]  # deterministic
    # one run a side: paired over sequences (bootstrap); the same encoder twice: exactly 0
    same = ps.compare(again, "a", [("a", "random")], "c", [("c", "random")])
    assert same["over"] == "3 sequences" and same["diff"].mean == 0 and "no difference" in same["verdict"]
    # several runs a side: paired over seeds (t) on the per-run means
    two = ps.compare(again, "ab", [("a", "random"), ("b", "random")], "cb", [("c", "random"), ("b", "random")])
    assert two["over"] == "2 seeds" and two["diff"].method == "t" and two["diff"].n == 2
    table = ps.format_comparisons([same, two])
    assert "paired over" in table and same["verdict"] in table
    with pytest.raises(KeyError, match="no propagation record"):
        ps.compare(again, "a", [("a", "random")], "z", [("z", "pretrained")])
    with pytest.raises(ValueError, match="pairs runs"):
        ps.compare(again, "a", [("a", "random")], "bc", [("b", "random"), ("c", "random")])
    path.write_text(path.read_text() + "not json\n")
    with pytest.raises(ValueError, match="line 4: not JSON"):
        ps.read_scores(path)


def test_zoo_propagate_command_refuses_unknown_and_unbuilt_names(tmp_path, capsys):
    assert main(["zoo", "propagate", "no_such_recipe", "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "no_such_recipe" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_committed_records_cover_the_chapters_encoders():
    # chapter 4 and 6 read these records: every VideoMAC ablation at seeds 0-2, the VideoMAE
    # checkpoints, random inits; each over the full held-out set, J&F in points
    scores = ps.read_scores(Path(__file__).resolve().parents[1] / "data" / "zoo" / "propagation.jsonl")
    needed = {(f"videomac_{v}{s}", "pretrained") for v in ("sparse", "dense", "gamma0", "noema")
              for s in ("", "_s1", "_s2")}
    needed |= {("videomac_sparse", "random"), ("videomae_tube90", "pretrained"), ("videomae_tube90", "random")}
    assert needed <= set(scores), sorted(needed - set(scores))
    assert {len(s) for s in scores.values()} == {ps.SEQUENCES["num_samples"]}
    for (name, init), s in scores.items():
        assert init in ("pretrained", "random") or (name, init) == ps.COPY_FIRST_FRAME, name
        assert all(0 <= v <= 100 for v in s.values()), name


def test_the_copy_baseline_scores_a_still_object_perfectly_and_a_moving_one_less(tmp_path):
    """Copying the first mask is exact while nothing moves and loses as the object leaves its
    first position; recorded beside the encoders under its own key, kept on resume."""
    from maskvid_edu.evaluate.davis import sequence_jf

    root = ps.heldout_sequences(tmp_path / "davis", **SMALL)
    path = tmp_path / "propagation.jsonl"
    scores = ps.score_encoders({ps.COPY_FIRST_FRAME: None}, path, root, verbose=False)
    copied = scores[ps.COPY_FIRST_FRAME]
    assert sorted(copied) == list_davis_sequences(root)
    # by hand: a still object (its mask repeated) is perfect, one shifted by 8 pixels is not
    mask = torch.zeros(4, 64, 64, dtype=torch.long)
    mask[:, 20:40, 20:40] = 1  # (T, H, W): one object
    moved = mask.clone()
    moved[1:] = torch.roll(mask[1:], 8, dims=2)
    still = sequence_jf({"still": (mask, mask[:1].expand_as(mask).clone())})["sequences"]["still"]
    shifted = sequence_jf({"moved": (moved, moved[:1].expand_as(moved).clone())})["sequences"]["moved"]
    assert still["J&F"] == pytest.approx(1.0) and shifted["J&F"] < 0.9
    # the synthetic shapes move: copying is not perfect on every sequence
    assert min(copied.values()) < 100
    again = ps.score_encoders({ps.COPY_FIRST_FRAME: None, ("a", "random"): _convnet}, path, root, verbose=False)
    assert again[ps.COPY_FIRST_FRAME] == copied and ("a", "random") in again
