"""Tables 2-5, the comparison with the paper and Figures 3-5 from synthetic records (SPEC 9-10)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from glai.results.tables import mean_std_cell, write_all
from tests.results.records import default_config, make_record, references, write_records

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPS = {"A1": "val_acc", "A2": "val_acc", "B1": "val_loss"}


def _suite():
    """3 experiments x 4 heads x 3 seeds, with A1/glai seed 2 failed and B1/linear seed 1 missing."""
    recs = []
    for k, (exp, monitor) in enumerate(EXPS.items()):
        acc = monitor == "val_acc"
        for s in range(3):
            t_mlp = 10.0 + s + k
            s_mlp = 88.0 + 0.5 * s if acc else 2.0e-4 + 1.0e-5 * s
            structure = {"path_distance": [None] + [0.1 / (e + 1) for e in range(59 - s)],
                         "weight_change": [None] + [0.01 / (e + 1) for e in range(59 - s)]}
            common = dict(monitor=monitor)
            recs.append(make_record(exp, "mlp", s, total_s=t_mlp, bvs=s_mlp, epochs=60 - s,
                                    structure=structure, **common))
            recs.append(make_record(exp, "mlp_reduced", s, total_s=t_mlp * 1.05,
                                    bvs=s_mlp - 1.0 if acc else s_mlp * 1.1, epochs=50, **common))
            if exp == "A1" and s == 2:
                error = "Traceback...\nRuntimeError: boom"
                recs.append(make_record(exp, "glai", s, status="failed", error=error))
            else:
                # distinct speedups 2 + 0.5 s + 0.1 k > 1 and better scores: every D is positive
                recs.append(make_record(exp, "glai", s, total_s=t_mlp / (2 + 0.5 * s + 0.1 * k),
                                        bvs=s_mlp + 2.0 if acc else s_mlp * 0.8, epochs=14 + 2 * s, **common))
            if not (exp == "B1" and s == 1):
                recs.append(make_record(exp, "linear", s, total_s=t_mlp / 1.3,
                                        bvs=s_mlp - 0.5 if acc else s_mlp * 1.2, epochs=30, **common))
    # the rho ablation (Figure 4): GLAI on A1 at two more rho values, made with a rho override
    for rho, gain in ((0.25, 0.5), (0.75, 1.0)):
        for s in range(2):
            overrides = ["experiment=A1", "head=glai", f"rho={rho}"]
            recs.append(make_record("A1", "glai", s, rho=rho, total_s=5.0, bvs=88.0 + gain, epochs=12,
                                    overrides=overrides))
    # the stand-in suite with a single seed; the optimiser-controlled MLP on Adam
    recs.append(make_record("offline/A1", "mlp", 0, total_s=8.0, bvs=70.0, epochs=40))
    recs.append(make_record("offline/A1", "glai", 0, total_s=2.0, bvs=72.0, epochs=9))
    for s in range(3):
        recs.append(make_record("A1", "mlp", s, tag="adam", total_s=6.0, bvs=90.0, epochs=20,
                                config=default_config("A1", "mlp", s, tag="adam", **{"head.optimizer": "adam"})))
    return recs


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    runs = root / "runs"
    write_records(runs, _suite())
    (runs / "A2" / "glai").mkdir(parents=True, exist_ok=True)
    (runs / "A2" / "glai" / "rho0.5-seed9.json").write_text("{not json")
    out = root / "tables"
    written = write_all(runs, out, tag="", conf_dir=root / "no-conf",
                        references=references(["A1", "A2", "B1", "offline/A1"]))
    return out, written


def _md(out, name):
    return (out / f"{name}.md").read_text()


def _row(df, **match):
    sel = df
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, f"{match}: {len(sel)} rows"
    return sel.iloc[0]


def test_every_table_in_three_formats(tables):
    out, written = tables
    for name in ("table2", "table3", "table4", "table5", "comparison", "comparison_tests", "speedup"):
        for ext in ("md", "tex", "csv"):
            path = out / f"{name}.{ext}"
            assert path.exists() and path.stat().st_size > 0, path
            assert path in written
    assert r"\begin{tabular}" in (out / "table3.tex").read_text()
    tex = (out / "table3.tex").read_text()
    assert r"$\pm$" in tex and r"acc in \%" in tex and r"T\_MLP" in tex
    assert not list(out.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_mean_std_cells():
    assert mean_std_cell([]) == "no runs"
    assert mean_std_cell([88.0]) == "88.00 (n=1, need >= 2 for std)"
    assert mean_std_cell([14.0, 16.0]) == "15.00 ± 1.41"
    assert mean_std_cell([1.6e-4, 2.0e-4]) == "1.80e-04 ± 2.83e-05"


def test_table3_cells(tables):
    out, _ = tables
    t3 = pd.read_csv(out / "table3.csv", keep_default_na=False)
    mlp = _row(t3, Exp="A1", Head="MLP")
    assert (mlp["n"], mlp["Epochs"], mlp["Speedup"]) == (3, "59.00 ± 1.00", "1×")
    assert mlp["BVS"] == "acc: 88.50 ± 0.50"
    glai = _row(t3, Exp="A1", Head="GLAI")
    # seeds 0, 1 only (seed 2 failed; the rho = 0.25 / 0.75 runs are not the protocol's)
    assert (glai["n"], glai["Epochs"], glai["BVS"]) == (2, "15.00 ± 1.41", "acc: 90.25 ± 0.35")
    assert glai["Speedup"] == "2.25 ± 0.35×"  # T_mlp / T_glai = 2.0 and 2.5
    assert glai["Notes"] == "failed: seed 2"
    lin = _row(t3, Exp="B1", Head="Linear")
    assert lin["n"] == 2 and lin["Notes"] == "missing: seed 1"
    assert lin["BVS"].startswith("loss: ")
    stand_in = _row(t3, Exp="offline/A1", Head="GLAI")
    assert stand_in["Epochs"] == "9.00 (n=1, need >= 2 for std)"
    assert stand_in["Speedup"] == "4.00× (n=1, need >= 2 for std)"
    raw = pd.read_csv(out / "table3_values.csv")
    r = raw[(raw["experiment"] == "A1") & (raw["head"] == "glai")].iloc[0]
    assert r.speedup_mean == pytest.approx(2.25) and r.speedup_std == pytest.approx(math.sqrt(0.125))


def test_table2_settings(tables):
    out, _ = tables
    t2 = pd.read_csv(out / "table2.csv", keep_default_na=False, dtype=str)
    a1 = _row(t2, Exp="A1")
    settings = (a1["LR"], a1["BS"], a1["WD MLP"], a1["WD GLAI"], a1["rho"])
    assert settings == ("0.001", "16", "0.001", "0.1", "0.5")
    assert a1["Red. epochs"] == "5" and a1["Epochs GLAI"] == "15.00 ± 1.41"
    assert a1["Epochs MLP"] == "59.00 ± 1.00"


def test_tables_4_5(tables):
    out, _ = tables
    t4 = pd.read_csv(out / "table4.csv", keep_default_na=False)
    glai = _row(t4, Suite="paper", Comparison="GLAI vs MLP")
    # 8 pairs, every D_time and D_score positive: W+ = 36 is the maximum, exact p = 1 / 2^8
    assert glai["n pairs"] == 8 and glai["Unpaired"] == 1
    assert glai["Time p-value"] == f"{1 / 256:.4f}" and glai["BVS p-value"] == f"{1 / 256:.4f}"
    red = _row(t4, Suite="paper", Comparison="MLP reduced vs MLP")
    assert red["n pairs"] == 9 and float(red["Time p-value"]) > 0.5
    lin = _row(t4, Suite="paper", Comparison="Linear vs MLP")
    assert lin["n pairs"] == 8 and lin["Unpaired"] == 1
    stand_in = _row(t4, Suite="offline", Comparison="GLAI vs MLP")
    assert stand_in["Time p-value"] == "too few pairs (n=1)"
    t5 = pd.read_csv(out / "table5.csv", keep_default_na=False)
    assert _row(t5, Suite="paper", Comparison="GLAI vs Linear")["n pairs"] == 7
    raw = pd.read_csv(out / "table4_values.csv")
    assert raw[(raw.suite == "paper") & (raw.model == "glai")].iloc[0].time_statistic == 36
    unpaired = (out / "unpaired.md").read_text()
    assert "glai: status failed (RuntimeError: boom)" in unpaired  # the traceback's last line
    assert "linear: no record" in unpaired


def test_failed_runs_listing(tables):
    out, _ = tables
    text = (out / "failed_runs.md").read_text()
    assert "| A1 " in text and "failed" in text and "RuntimeError: boom" in text
    assert "invalid" in text and "seed9" in text
    assert "3 record(s)" not in text and "2 record(s)" in text


def test_comparison_with_paper(tables):
    out, _ = tables
    comp = pd.read_csv(out / "comparison.csv", keep_default_na=False)
    paper = _row(comp, **{"Paper exp": "A1", "Head": "GLAI", "Source": "paper"})
    assert paper["Speedup"] == "2.54 ± 0.52×" and paper["BVS"] == "acc: 90.75 ± 0.28"
    ours = _row(comp, **{"Paper exp": "A1", "Head": "GLAI", "Source": "ours: A1"})
    assert ours["Speedup"] == "2.25 ± 0.35×" and ours["n"] == 2
    stand_in = _row(comp, **{"Paper exp": "A1", "Head": "GLAI", "Source": "ours: offline/A1 (stand-in)"})
    assert stand_in["n"] == 1
    assert _row(comp, **{"Paper exp": "C2", "Head": "MLP", "Source": "ours: C2"})["Epochs"] == "no runs"
    tests = pd.read_csv(out / "comparison_tests.csv", keep_default_na=False, dtype=str)
    row = _row(tests, Comparison="GLAI vs MLP")
    cells = (row["Paper time p"], row["ours n"], row["stand-in time p"])
    assert cells == ("0.0069", "8", "too few pairs (n=1)")


def test_speedup_and_views(tables):
    out, _ = tables
    sp = pd.read_csv(out / "speedup.csv", keep_default_na=False)
    glai = _row(sp, Suite="paper", Head="GLAI")
    assert glai["Experiments"] == 3 and glai["Paper"].startswith("1.92×")
    # Adam view: the MLP's tag-adam runs against GLAI's protocol runs
    adam = pd.read_csv(out / "adam" / "table3.csv", keep_default_na=False)
    assert _row(adam, Exp="A1", Head="MLP")["Epochs"] == "20.00 ± 0.00"
    assert not (out / "sgd").exists()  # no GLAI run tagged sgd


def test_figures_are_pngs(tables):
    out, written = tables
    names = ["fig3_path_distance_A1.png", "fig3_path_distance_B1.png", "fig4_rho_ablation.png",
             "fig5_time_breakdown.png"]
    for name in names:
        path = out / name
        assert path in written
        data = path.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC, name
    fig4 = pd.read_csv(out / "fig4_rho_ablation.csv")
    assert sorted(fig4.rho) == [0.25, 0.5, 0.75] and set(fig4.experiment) == {"A1"}
    assert fig4[fig4.rho == 0.25].glai_median_bvs.item() == pytest.approx(88.5)
    fig5 = pd.read_csv(out / "fig5_time_breakdown.csv")
    a1 = fig5[fig5.experiment == "A1"].iloc[0]
    # GLAI total / MLP total = 1 / 2 and 1 / 2.5, split 0.5 / 0.1 / 0.4
    assert a1.n_seeds == 2 and a1.total == pytest.approx((0.5 + 0.4) / 2)
    assert a1.reduced_mlp == pytest.approx(0.5 * a1.total)


def test_estimator_curves_figure(tmp_path):
    """The estimator diagnosis figure: one line per GLAI variant, the MLP's BVS as reference, a summary table."""
    from glai.results.figures import estimator_curves

    recs = [make_record("A1", "mlp", 0, bvs=90.0)]
    for wd, curve in ((0.1, [91.9, 91.6, 90.9]), (0.0, [95.6, 96.4, 96.1])):
        rec = make_record("A1", "glai", 0, epochs=3, config=default_config("A1", "glai", **{"head.weight_decay": wd}))
        rec["metrics"]["curves"]["val_acc"] = curve
        recs.append(rec)
    path, table = estimator_curves(recs, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and (path.stat().st_mode & 0o777) == 0o644
    row = table[table.variant == "glai: adam lr=0.001 wd=0.1"].iloc[0]
    assert (row.best_epoch, row.bvs, row.final) == (1, 91.9, 90.9) and row.drop_from_bvs == pytest.approx(1.0)
    assert estimator_curves([recs[0]], tmp_path / "none.png") is None


def test_views_side_by_side_and_search_trials_left_out(tmp_path):
    """views.md: each view's MLP and GLAI rows of one experiment; a search's trials are in no table."""
    recs = []
    for s in range(3):
        recs.append(make_record("digits", "mlp", s, total_s=10.0, bvs=90.0, epochs=40))
        recs.append(make_record("digits", "glai", s, total_s=5.0, bvs=91.0, epochs=10))
        fixed = default_config("digits", "glai", s, tag="fixed", **{"experiment.reduced_epochs_mode": "fixed"})
        recs.append(make_record("digits", "glai", s, tag="fixed", total_s=12.0, bvs=91.5, epochs=10, config=fixed))
        tuned = default_config("digits", "mlp", s, tag="tuned", **{"head.optimizer": "adam", "head.lr": 0.0078})
        recs.append(make_record("digits", "mlp", s, tag="tuned", total_s=4.0, bvs=93.0, epochs=12, config=tuned))
        tuned = default_config("digits", "glai", s, tag="tuned", **{"head.lr": 0.002})
        recs.append(make_record("digits", "glai", s, tag="tuned", total_s=6.0, bvs=92.5, epochs=8, config=tuned))
    trial = make_record("digits", "mlp", 0, total_s=1.0, bvs=99.0, epochs=3, config=default_config(
        "digits", "mlp", 0, **{"tuning.role": "search", "head.lr": 0.3}))
    write_records(tmp_path / "runs", recs)
    path = tmp_path / "runs" / "digits" / "mlp" / "trial.json"
    path.write_text(json.dumps({k: v for k, v in trial.items() if k != "_path"}))
    lines = []
    write_all(tmp_path / "runs", tmp_path / "tables", figures=False, conf_dir=tmp_path / "no-conf",
              references=references(["digits"]), echo=lines.append)
    assert "1 search trials (tuning=search) left out" in lines[0] and "6 done protocol runs" in lines[0]
    views = pd.read_csv(tmp_path / "tables" / "views.csv", keep_default_na=False)
    assert list(views["View"].unique()) == ["protocol", "fixed", "tuned"]
    assert len(views) == 6 and set(views["Exp"]) == {"digits"}
    assert _row(views, View="protocol", Head="MLP")["BVS"] == "acc: 90.00 ± 0.00"  # the trial's 99 is not in it
    assert _row(views, View="fixed", Head="MLP")["Epochs"] == _row(views, View="protocol", Head="MLP")["Epochs"]
    assert _row(views, View="fixed", Head="GLAI")["Speedup"].startswith("0.833")  # 10 s / 12 s
    assert _row(views, View="tuned", Head="GLAI")["Speedup"].startswith("0.667")  # the tuned MLP: 4 s / 6 s
    tests = pd.read_csv(tmp_path / "tables" / "views_tests.csv", keep_default_na=False)
    assert list(tests["View"]) == ["protocol", "fixed", "tuned"] and set(tests["n pairs"]) == {3}
    assert (tmp_path / "tables" / "tuned" / "table3.md").is_file()


@pytest.mark.parametrize("bvs", ["abc", None, float("nan")])
def test_a_done_record_without_a_numeric_bvs_is_listed_not_fatal(tmp_path, bvs):
    """make tables crashed on a done record whose metrics.bvs is not a number, naming no file (issue 30)."""
    recs = [make_record("A1", head, seed) for head in ("mlp", "glai") for seed in (0, 1)]
    recs[1]["metrics"]["bvs"] = bvs
    paths = write_records(tmp_path / "runs", recs)
    lines = []
    write_all(tmp_path / "runs", tmp_path / "tables", figures=False, references=references(["A1"]), echo=lines.append)
    assert "1 invalid" in lines[0]
    text = (tmp_path / "tables" / "failed_runs.md").read_text()
    assert paths[1].name in text and "not a finite number" in text


def test_a_record_without_curves_leaves_the_other_seeds_time_to_target(tmp_path):
    """One done record without metrics.curves blanked the time-to-target cell of its whole row (issue 30)."""
    recs = [make_record("A1", head, seed) for head in ("mlp", "glai") for seed in (0, 1, 2)]
    del recs[3]["metrics"]["curves"]  # glai, seed 0
    write_records(tmp_path / "runs", recs)
    write_all(tmp_path / "runs", tmp_path / "tables", figures=False, references=references(["A1"]))
    t3 = pd.read_csv(tmp_path / "tables" / "table3.csv", keep_default_na=False, dtype=str)
    cell = t3[(t3.Exp == "A1") & (t3.Head == "GLAI")].iloc[0]["Time to target [s]"]
    assert cell.endswith("(1 without curves)") and not cell.startswith("n/a"), cell


def test_a_pipe_in_a_cell_keeps_its_markdown_row():
    """A `|` in dataset.name broke the Markdown table row (issue 30)."""
    from glai.results.formatting import markdown

    text = markdown(pd.DataFrame({"Exp": ["A1 [dataset=a|b]"], "n": [3]}))
    rows = text.splitlines()
    assert len(rows) == 3 and all(r.replace("\\|", "").count("|") == 3 for r in rows)
