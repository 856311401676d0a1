"""Family T's tables say what they are: a test pairs runs of one setting only (a variant, another data set, is
never pooled into a stand-in's view), a head without a same-setting ffn_mlp has "no reference" (not "never"), and
five seeds give a per-set p-value."""

from __future__ import annotations

import pandas as pd

from glai.results.groups import assign_groups
from glai.results.transformer import transformer_table, transformer_tests
from tests.results.records import default_config, make_record

HEADS = ("ffn_mlp", "ffn_lora", "ffn_glai")


def _record(experiment, head, seed, bvs, total_s=10.0, tag="", **changes):
    config = default_config(experiment, head, seed, tag=tag, **changes)
    config["experiment"]["family"] = "T"
    rec = make_record(experiment, head, seed, tag=tag, bvs=bvs, total_s=total_s, config=config)
    rec["family"] = "T"
    rec["cost"]["params"] = {"trainable": 1000}
    # a curve that reaches its BVS at the last epoch
    rec["metrics"]["curves"]["val_acc"] = [bvs - 5.0, bvs - 1.0, bvs]
    rec["metrics"]["curves"]["epoch_time_s"] = [total_s / 3] * 3
    rec["_path"] = f"{experiment}/{head}{tag}/{seed}/{sorted(changes.items())}"
    return rec


def _labelled(records, experiments=("ffn/dbpedia", "ffn/ag_news")):
    refs = {}
    for e in experiments:
        for h in HEADS:
            config = default_config(e, h)
            config["experiment"]["family"] = "T"
            refs[(e, h)] = config
    assign_groups(records, refs)
    return [{**r, "experiment": r["_label"]} for r in records]


def _study(seeds=range(5)):
    """Both stand-ins as configured (GLAI 1 point above each head, twice as fast), and on DBPedia a learning-rate
    variant of ffn_glai and ffn_mlp (GLAI below), which must never join the stand-ins' pooled tests."""
    recs = []
    for s in seeds:
        for e in ("ffn/dbpedia", "ffn/ag_news"):
            recs += [_record(e, "ffn_mlp", s, 90.0 + 0.1 * s, 20.0), _record(e, "ffn_lora", s, 89.0 + 0.1 * s, 20.0),
                     _record(e, "ffn_glai", s, 91.0 + 0.1 * s, 10.0)]
        recs += [_record("ffn/dbpedia", "ffn_glai", s, 80.0, 30.0, **{"head.lr": 3e-4}),
                 _record("ffn/dbpedia", "ffn_mlp", s, 95.0, 5.0, **{"head.lr": 3e-4})]
    return recs


def test_a_view_pairs_runs_of_one_setting_and_pools_only_the_stand_ins_as_configured():
    tests = transformer_tests(_labelled(_study()))
    variant = "ffn/dbpedia [head.lr=0.0003]"
    assert set(tests["Data"]) == {"ffn/dbpedia", "ffn/ag_news", variant, "pooled: ffn/ag_news, ffn/dbpedia"} or \
        set(tests["Data"]) == {"ffn/dbpedia", "ffn/ag_news", variant, "pooled: ffn/dbpedia, ffn/ag_news"}
    mlp = tests[tests["Comparison"] == "ffn_glai vs ffn_mlp"].set_index("Data")
    pooled = next(d for d in mlp.index if d.startswith("pooled"))
    # 5 seeds x 2 stand-ins, nothing of the variant; every run has its partner
    assert mlp.loc[pooled, "n pairs"] == 10 and mlp.loc[pooled, "Unpaired"] == 0
    assert float(mlp.loc[pooled, "mean BVS difference (pp)"]) == 1.0
    # the variant is tested alone, against its own ffn_mlp at the same learning rate
    assert mlp.loc[variant, "n pairs"] == 5 and float(mlp.loc[variant, "mean BVS difference (pp)"]) == -15.0
    # five pairs give a per-set p-value: 1/32 when all five favour GLAI
    assert mlp.loc["ffn/dbpedia", "BVS p-value"] == "0.0312"
    assert mlp.loc[variant, "BVS p-value"] == "1.0000"
    # the variant has no LoRA run of its setting: no row rather than a pairing with the stand-in's LoRA
    lora = tests[tests["Comparison"] == "ffn_glai vs ffn_lora"]
    assert variant not in set(lora["Data"])


def test_a_head_without_a_same_setting_reference_says_so():
    recs = _study(range(2))
    # a GLAI variant whose ffn_mlp never ran at its setting
    recs += [_record("ffn/ag_news", "ffn_glai", s, 85.0, 10.0, **{"head.lr": 2e-3}) for s in range(2)]
    table = transformer_table(_labelled(recs)).set_index(["Exp", "Head"])
    assert table.loc[("ffn/ag_news [head.lr=0.002]", "ffn_glai"), "Time to ffn_mlp's BVS (s)"] == "no reference"
    # a run that had its reference and never reached it is "never"; one that did, its seconds
    assert table.loc[("ffn/dbpedia [head.lr=0.0003]", "ffn_glai"), "Time to ffn_mlp's BVS (s)"] == "never"
    assert table.loc[("ffn/dbpedia", "ffn_glai"), "Time to ffn_mlp's BVS (s)"].startswith("6.67")


def test_no_table_row_mixes_two_data_sets():
    recs = _study(range(2))
    recs += [_record("ffn/dbpedia", h, s, 70.0, 10.0, **{"dataset.name": "news", "dataset.path": "/data/news.csv"})
             for h in ("ffn_mlp", "ffn_glai") for s in range(2)]
    table = transformer_table(_labelled(recs))
    news = table[table["Exp"] == "ffn/dbpedia [dataset=news]"]
    assert len(news) == 2 and set(news["n"]) == {2}
    assert pd.Series(table.groupby(["Exp", "Head"]).size()).max() == 1
