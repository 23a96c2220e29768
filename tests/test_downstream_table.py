"""Chapter 6's table of every zoo encoder (analysis.downstream_table): each cell read from the
record it names, intervals of the right kind, and what has no record listed, never filled in."""

import json

import pytest

from maskvid_edu import zoo
from maskvid_edu.analysis import downstream_table as dt


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_rows_come_from_the_records_and_missing_cells_are_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    jf = {f"seq{i}": 60.0 + i for i in range(10)}
    _write(tmp_path / "prop.jsonl", [{"encoder": "videomae_tube90", "init": "pretrained", "scores": jf},
                                     {"encoder": "videomac_sparse", "init": "random", "scores": jf}])
    steps = zoo.load_zoo_recipe("videomae_tube90")["train"]["steps"]
    _write(tmp_path / "frozen.jsonl", [
        {"name": "videomae_tube90", "seed": 0, "step": steps, "kind": "linear", "accuracy": 0.75, "correct": "1110" * 4},
        {"name": "videomae_tube90", "seed": 0, "step": 0, "kind": "knn", "accuracy": 0.25, "correct": "1000" * 4},
        {"name": "videomac_sparse", "seed": 0, "step": zoo.load_zoo_recipe("videomac_sparse")["train"]["steps"],
         "kind": "linear", "accuracy": 0.5, "correct": "1100" * 4}])
    _write(tmp_path / "zoo" / "videomae_tube90" / "finetune.jsonl", [
        {"init": init, "num_labelled": 512, "seed": s, "steps": 400, "accuracy": acc + 0.01 * s}
        for s in range(3) for init, acc in (("pretrained", 0.9), ("random", 0.3))]
        + [{"init": "pretrained", "num_labelled": 128, "seed": 0, "steps": 400, "accuracy": 0.1}])
    final = zoo.load_zoo_recipe("mam2_pixels")["train"]["steps"]
    _write(tmp_path / "curves.jsonl", [
        {"name": "mam2_pixels", "seed": 0, "step": final, "kind": "finetune", "accuracy": 0.5, "correct": "10" * 8}])
    table = dt.downstream_rows(propagation=tmp_path / "prop.jsonl", frozen=tmp_path / "frozen.jsonl",
                               curves=tmp_path / "curves.jsonl")
    rows = table["rows"]
    tube = rows["VideoMAE, tube 0.9"]
    assert tube["J&F"].mean == pytest.approx(64.5)
    assert tube["linear probe"].mean == pytest.approx(75.0) and tube["k-NN"] is None
    assert tube["fine-tune"].mean == pytest.approx(91.0)  # t over the 3 seeds at 512 clips, not the 128-clip run
    assert rows["ViT at random init"]["fine-tune"].mean == pytest.approx(31.0)
    assert rows["ViT at random init"]["k-NN"].mean == pytest.approx(25.0)
    assert rows["MAM2 pixels, 1k steps"]["fine-tune"].mean == pytest.approx(50.0)  # one run: bootstrap over clips
    # a frame encoder: probed, never fine-tuned as a clip classifier (no fine-tune cell at all)
    assert set(rows["VideoMAC ConvNet"]) == {"J&F", "linear probe", "k-NN"}
    assert rows["VideoMAC ConvNet"]["J&F"] is None and rows["VideoMAC ConvNet"]["k-NN"] is None
    assert rows["VideoMAC ConvNet"]["linear probe"].mean == pytest.approx(50.0)
    assert rows["ConvNet at random init"]["J&F"] is not None
    assert rows[dt.COPY_ROW] == {"J&F": None} and (dt.COPY_ROW, "J&F") in table["missing"]
    assert ("VideoMAE, tube 0.9", "k-NN") in table["missing"] and ("VideoMAC ConvNet", "J&F") in table["missing"]
    text = dt.format_downstream(table)
    assert "n/a" in text and "no record yet:" in text
    leaders = dt.format_leaders(table)
    assert leaders.splitlines()[-1].startswith("fine-tune: highest VideoMAE, tube 0.9, 91.0")


def test_agreement_ranks_the_encoders_that_have_both_columns():
    rows = {f"e{i}": {"J&F": dt.bootstrap_ci([60.0 + i, 61.0 + i]), "fine-tune": dt.bootstrap_ci([90.0 - i] * 2)}
            for i in range(5)}
    rows["e5"] = {"J&F": dt.bootstrap_ci([1.0, 2.0])}  # no fine-tune: left out
    rows[dt.COPY_ROW] = {"J&F": dt.bootstrap_ci([99.0, 99.0])}  # no encoder: left out
    table = {"rows": rows, "missing": []}
    e = dt.column_agreement(table, "J&F", "fine-tune")
    assert e.n == 5 and e.mean == pytest.approx(-1.0)
    assert "opposite orders" in dt.format_agreement(table, [("J&F", "fine-tune")])


def test_pretraining_losses_say_which_videomae_runs_left_predicting_nothing():
    from maskvid_edu.analysis import pretraining_curves as pc

    level = pc.trivial_losses("mam2_pixels")["loss_appearance"]
    lines = dt.format_pretraining_losses({"tube": "videomae_tube90", "none": None, "mam2": "mam2_pixels"})
    (line,) = lines.splitlines()  # only the VideoMAE row
    final = zoo.read_card("videomae_tube90")["final_loss"]
    assert line.startswith("tube") and f"{final:.3f}" in line and f"({level:.4f})" in line
    assert line.endswith("left it" if final < (1 - pc.TRIVIAL_MARGIN) * level else "at it")


def test_chapter_8_rows_pair_their_cells_with_a_reference_row(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    base = {f"seq{i}": 60.0 + i for i in range(12)}
    _write(tmp_path / "prop.jsonl", [
        {"encoder": "videomae_tube90", "init": "pretrained", "scores": base},
        {"encoder": "vjepa_multiblock", "init": "pretrained", "scores": {k: v + 2.0 for k, v in base.items()}}])
    final = {n: zoo.load_zoo_recipe(n)["train"]["steps"] for n in ("videomae_tube90", "vjepa_multiblock")}
    _write(tmp_path / "frozen.jsonl", [
        {"name": "videomae_tube90", "seed": 0, "step": final["videomae_tube90"], "kind": "attentive",
         "accuracy": 0.5, "correct": "10" * 20},
        {"name": "vjepa_multiblock", "seed": 0, "step": final["vjepa_multiblock"], "kind": "attentive",
         "accuracy": 0.5, "correct": "01" * 20}])  # the same accuracy on other clips
    for name, acc in (("videomae_tube90", 0.8), ("vjepa_multiblock", 0.6)):
        _write(tmp_path / "zoo" / name / "finetune.jsonl", [
            {"init": "pretrained", "num_labelled": 512, "seed": s, "steps": 400, "accuracy": acc + 0.01 * s}
            for s in range(3)])
    table = dt.downstream_rows(propagation=tmp_path / "prop.jsonl", frozen=tmp_path / "frozen.jsonl",
                               curves=tmp_path / "none.jsonl", encoders=dt.BEYOND_ENCODERS,
                               columns=dt.BEYOND_COLUMNS, copy_row=False)
    assert table["columns"] == dt.BEYOND_COLUMNS and dt.COPY_ROW not in table["rows"]
    vjepa, tube = "V-JEPA, multi-block 0.6", "VideoMAE, tube 0.9"
    assert table["rows"][vjepa]["attentive probe"].mean == pytest.approx(50.0)
    diffs = dt.compare_rows(table, vjepa, tube)
    assert diffs["J&F"].mean == pytest.approx(2.0) and diffs["J&F"].low == pytest.approx(2.0)  # paired by sequence
    att = diffs["attentive probe"]  # paired by test clip: every clip disagrees, so the interval is wide
    assert att.mean == pytest.approx(0.0) and att.low < -20 and att.high > 20 and att.n == 40
    assert diffs["fine-tune"].mean == pytest.approx(-20.0) and diffs["fine-tune"].method == "t"  # by seed
    assert "linear probe" not in diffs  # no records: nothing to pair
    text = dt.format_comparison(table, vjepa, tube)
    assert text.splitlines()[0].startswith("J&F: V-JEPA, multi-block 0.6 beats VideoMAE, tube 0.9 by 2.0")
    assert "attentive probe" in dt.format_downstream(table)
    assert dt.format_column_comparison(table, "attentive probe", "linear probe") == ""  # no linear records
    same = dt.format_column_comparison(table, "attentive probe", "attentive probe").splitlines()
    assert len(same) == 2 and all("no difference resolvable" in line for line in same)


def test_chapter_1_masking_rows_have_every_record_and_pair_with_tube():
    """Chapter 1 reads the masking ablation from the committed records: every cell of its
    columns exists, and each row pairs with tube 0.9 on every column (same sequences, test
    clips, seeds), so each comparison it prints is a paired one."""
    assert set(dt.MASKING_ENCODERS.values()) - {None} <= set(zoo.zoo_recipes())
    table = dt.downstream_rows(encoders=dt.MASKING_ENCODERS, columns=dt.COLUMNS, copy_row=False)
    assert table["missing"] == []
    for label in dt.MASKING_ENCODERS:
        if label != "VideoMAE, tube 0.9":
            assert set(dt.compare_rows(table, "VideoMAE, tube 0.9", label)) == set(dt.COLUMNS), label
