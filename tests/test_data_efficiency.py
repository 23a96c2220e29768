"""The data-efficiency experiment: committed records reproduce, the summary is the paired
interval over seeds, an interrupted grid resumes, bad records and names fail clearly."""

import json
import math

import pytest
import torch

from maskvid_edu import zoo
from maskvid_edu.analysis import data_efficiency as de
from maskvid_edu.analysis.stats import paired_difference, verdict
from maskvid_edu.cli import main

NAME = "videomae_tube90"
RECORDS = zoo.ZOO_DIR / NAME / "finetune.jsonl"


def encoders(init):
    return (zoo.load(NAME) if init == "pretrained" else zoo.fresh(NAME)).encoder


@pytest.mark.skipif(not RECORDS.is_file(), reason="the data-efficiency records are not built")
@pytest.mark.parametrize("init", de.INITS)
def test_first_steps_reproduce_the_committed_records(init):
    torch.set_num_threads(1)
    committed = {(r["init"], r["num_labelled"], r["seed"]): r for r in de.read_records(RECORDS)}
    record = committed[init, min(n for i, n, _ in committed if i == init), 0]
    rerun = de.finetune_once(encoders, init, record["num_labelled"], 0, test_clips=de.task_clips(8, de.TEST_SEED),
                             steps=record["steps"], stop_at=20)
    assert rerun["losses"] == record["losses"][:2]  # log_every 10: the losses at steps 10 and 20, bit for bit


@pytest.mark.skipif(not RECORDS.is_file(), reason="the data-efficiency records are not built")
def test_committed_records_are_complete_and_consistent():
    records = de.read_records(RECORDS)
    keys = {(r["init"], r["num_labelled"], r["seed"]) for r in records}
    assert len(keys) == len(records)
    for r in records:
        assert r["steps"] == de.FINETUNE["steps"] and r["num_test"] == de.TEST_CLIPS == len(r["correct"])
        assert r["accuracy"] == pytest.approx(r["correct"].count("1") / r["num_test"])
        assert len(r["losses"]) == r["steps"] // de.FINETUNE["log_every"]
        assert r["chance_loss"] == pytest.approx(math.log(4))
    for row in de.summarise(records):  # every size has both inits on the same seeds
        assert len(row["seeds"]) >= 3


def _record(init, n, seed, acc, steps=400):
    right = round(acc * 100)
    return {"init": init, "num_labelled": n, "seed": seed, "steps": steps, "accuracy": right / 100,
            "num_test": 100, "correct": "1" * right + "0" * (100 - right), "train_accuracy": 1.0,
            "losses": [1.38, 0.5], "chance_loss": math.log(4), "wall_s": 1.0}


def test_summary_is_the_paired_t_interval_over_seeds_and_its_verdict():
    pre, rnd = [0.90, 0.85, 0.95], [0.30, 0.25, 0.40]
    records = [_record("pretrained", 32, s, a) for s, a in enumerate(pre)]
    records += [_record("random", 32, s, a) for s, a in enumerate(rnd)] + [_record("random", 32, 7, 0.5)]
    (row,) = de.summarise(records)
    assert row["seeds"] == [0, 1, 2]  # seed 7 has no pre-trained partner: not in the pairing
    expected = paired_difference([100 * a for a in pre], [100 * a for a in rnd])
    assert row["difference"].mean == pytest.approx(expected.mean) and row["difference"].low == pytest.approx(expected.low)
    assert row["verdict"].startswith("pre-trained (32 labelled clips) beats random init by 58.3 points, 95 % CI [")
    assert row["random"].n == 4 and row["pretrained"].n == 3
    table = de.format_summary([row])
    assert "58.3" in table and row["verdict"] in table


def test_a_start_that_did_not_fit_its_clips_is_named():
    (row,) = de.summarise([_record("pretrained", 32, 0, 0.9), _record("random", 32, 0, 0.25)])
    row = dict(row, pretrained_final_loss=0.01, random_final_loss=1.30)
    (warning,) = de.fit_warnings([row])
    assert warning.startswith("random init (32 labelled clips) did not fit") and "1.300" in warning
    assert de.fit_warnings([dict(row, random_final_loss=0.2)]) == []
    assert warning in de.format_summary([row])


def test_a_null_difference_says_what_it_could_resolve():
    records = [_record("pretrained", 8, s, a) for s, a in enumerate([0.5, 0.3, 0.4])]
    records += [_record("random", 8, s, a) for s, a in enumerate([0.4, 0.4, 0.4])]
    (row,) = de.summarise(records)
    assert row["verdict"].startswith("no difference resolvable") and "smallest resolvable difference" in row["verdict"]


def test_grid_writes_each_run_at_once_and_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_once(factory, init, n, seed, *, test_clips, steps=None, stop_at=None):
        calls.append((init, n, seed))
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted in the third run
        return _record(init, n, seed, 0.5, steps or 400)

    monkeypatch.setattr(de, "finetune_once", fake_once)
    monkeypatch.setattr(de, "task_clips", lambda n, seed: [])
    path = tmp_path / "records.jsonl"
    with pytest.raises(KeyboardInterrupt):
        de.run_grid(None, path, sizes=[4, 8], seeds=[0], verbose=False)
    assert [(r["init"], r["num_labelled"]) for r in de.read_records(path)] == [("pretrained", 4), ("random", 4)]
    calls.clear()
    records = de.run_grid(None, path, sizes=[4, 8], seeds=[0], verbose=False)
    assert calls == [("pretrained", 8, 0), ("random", 8, 0)]  # the two finished runs are not redone
    assert len(records) == 4


def test_a_real_run_learns_its_labelled_clips():
    torch.set_num_threads(1)
    record = de.finetune_once(encoders, "random", 16, 0, test_clips=de.task_clips(8, de.TEST_SEED), steps=30)
    assert record["steps"] == 30 and len(record["losses"]) == 3 and len(record["correct"]) == 8
    assert record["losses"][-1] < record["losses"][0]


def test_bad_records_file_names_the_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(_record("random", 4, 0, 0.5)) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"records.jsonl, line 2: not JSON"):
        de.read_records(path)
    path.write_text('{"init": "random"}\n')
    with pytest.raises(ValueError, match="line 1: expected a record with init, num_labelled, seed and accuracy"):
        de.read_records(path)
    with pytest.raises(ValueError, match="init must be one of"):
        de.finetune_once(encoders, "imagenet", 4, 0, test_clips=[])


def test_cli_finetune_refuses_an_unknown_or_unbuilt_encoder(capsys, tmp_path, monkeypatch):
    assert main(["zoo", "finetune", "no_such_recipe"]) == 2
    assert "no_such_recipe" in capsys.readouterr().err
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)  # nothing built here
    assert main(["zoo", "finetune", NAME, "--sizes", "4"]) == 2
    assert "is not built: run `maskvid-edu zoo build videomae_tube90` first" in capsys.readouterr().err


def test_figure_draws_each_init_with_its_interval():
    from maskvid_edu.widgets import render_data_efficiency

    records = [_record(i, n, s, a) for n in (32, 128) for s in range(3)
               for i, a in (("pretrained", 0.6 + 0.1 * s), ("random", 0.3))]
    records[-1]["accuracy"] = 0.31  # some spread for the random init's interval
    fig = render_data_efficiency(de.summarise(records))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pre-trained encoder", "random init"]
    assert len(ax.containers) == 2  # one errorbar container per init
    with pytest.raises(ValueError, match="at least one summary row"):
        render_data_efficiency([])


def test_compare_starts_pairs_every_two_starts_by_seed():
    starts = {
        "tube": [_record("pretrained", 128, s, a) for s, a in enumerate([0.80, 0.82, 0.84])],
        "random mask": [_record("pretrained", 128, s, a) for s, a in enumerate([0.70, 0.75, 0.74])],
        "random init": [_record("random", 128, s, 0.3) for s in range(2)] + [_record("random", 32, 2, 0.3)],
    }
    lines, verdicts = de.compare_starts(starts, 128)
    assert lines[2].endswith("(2 seeds)")  # the 32-clip run is not at this size
    assert lines[0].endswith("train 100%, final loss 0.500  (3 seeds)")  # did it fit its clips?
    starts["random init"] = [dict(_record("random", 128, s, 0.3), losses=[1.38, 1.2]) for s in range(2)]
    assert "final loss 1.200 (did not fit its clips)" in de.compare_starts(starts, 128)[0][2]
    expected = paired_difference([80, 82, 84], [70, 75, 74])
    assert verdicts[0] == verdict("tube", "random mask", expected)
    assert verdicts[1].startswith("tube beats random init by 51.0 points")  # seeds 0 and 1 only
    assert len(verdicts) == 3


def test_frozen_accuracy_reads_the_heads_asked_for():
    from maskvid_edu.models import create

    torch.manual_seed(0)
    encoder = create("videomae_vit_demo").encoder
    labelled, test = de.task_clips(16, de.LABELLED_SEED), de.task_clips(12, de.TEST_SEED)
    scores = de.frozen_accuracy(encoder, labelled, test, heads=("attentive", "linear"))
    assert sorted(scores) == ["attentive", "linear"]
    assert all(len(v) == 12 and set(v) <= {0, 1} for v in scores.values())
    again = de.frozen_accuracy(encoder, labelled, test, heads=("attentive",))
    assert again["attentive"] == scores["attentive"]  # seeded: the same clips, the same head
    with pytest.raises(ValueError, match="heads must be among"):
        de.frozen_accuracy(encoder, labelled, test, heads=("svm",))
