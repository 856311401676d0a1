"""Run identity (SPEC 12): every config key is classified, fingerprints separate exactly what they should,
and tables label every group honestly (a variant is never "the paper's X")."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from glai.config import Config, compose_config, reference_configs
from glai.results.groups import assign_groups, group_label
from glai.results.identity import CLASSES, IDENTITY, RUNTIME_KEYS, differences, fingerprint
from glai.results.records import record_fingerprint
from glai.results.tables import write_all
from tests.results.records import default_config, make_record, references, write_records


def _schema_keys(cls, prefix="") -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            keys |= _schema_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.add(f"{prefix}{f.name}")
    return keys


def test_every_config_key_is_classified_once():
    """A key added to the schema must be classified in glai.results.identity.IDENTITY (and vice versa)."""
    schema = _schema_keys(Config)
    assert schema - set(IDENTITY) == set(), "classify these keys in glai/results/identity.py IDENTITY"
    assert set(IDENTITY) - schema == set(RUNTIME_KEYS), "IDENTITY lists keys the schema no longer has"
    assert set(IDENTITY.values()) <= set(CLASSES)


def test_composed_configs_have_no_unclassified_keys():
    from omegaconf import OmegaConf

    from glai.results.identity import flatten

    for overrides in (["experiment=A1", "head=glai"], ["experiment=offline/C2", "head=mlp"], []):
        keys = set(flatten(OmegaConf.to_container(compose_config(overrides), resolve=True)))
        assert keys <= set(IDENTITY), keys - set(IDENTITY)


@pytest.mark.parametrize("key, value, changes", [
    ("head.lr", 0.1, True), ("rho", 0.25, False), ("dataset.path", "/data/mine", True), ("device", "cuda", True),
    ("data_content", "ab12", True),
    ("num_threads", 4, True), ("tag", "adam", True), ("seed", 3, True), ("experiment.arch", [64, 10, 10], True),
    ("results_dir", "/elsewhere", False), ("cache_dir", "/c", False), ("verbose", False, False),
    ("overwrite", True, False), ("wandb.enabled", True, False), ("data_root", "/d", False),
    ("experiment.deviations", ["x"], False), ("backbone.num_workers", 8, False),
])
def test_fingerprint_separates_what_changes_a_run(key, value, changes):
    """For the MLP (which never reads rho: issue 19, a rho sweep retrained it once per rho)."""
    base = json.loads(json.dumps(default_config("A1", "mlp")))
    base.update({"cache_dir": "c", "verbose": True, "overwrite": False, "wandb": {"enabled": False},
                 "data_root": "d", "backbone": {"num_workers": 0}})
    base["experiment"].update(arch=[64, 32, 10], deviations=[])
    other = json.loads(json.dumps(base))
    node = other
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    assert (fingerprint(base) != fingerprint(other)) == changes
    assert len(fingerprint(base)) == 64


def test_group_fingerprint_ignores_the_seed_only():
    a, b = default_config("A1", "mlp", seed=0), default_config("A1", "mlp", seed=1)
    assert fingerprint(a) != fingerprint(b) and fingerprint(a, seed=False) == fingerprint(b, seed=False)
    c = default_config("A1", "mlp", seed=1, **{"head.lr": 0.1})
    assert fingerprint(a, seed=False) != fingerprint(c, seed=False)


def test_schema_1_records_get_their_fingerprint_from_the_stored_config():
    rec = make_record("A1", "mlp", 0, config=default_config("A1", "mlp", device="auto"))
    # a schema-1 record, as written before run identity: no fingerprint stored, device "auto"
    for key in ("fingerprint", "group_fingerprint", "process", "deviations", "data_s"):
        rec.pop(key)
    rec["schema_version"] = 1
    rec["environment"]["device"] = "cpu"
    # "auto" is read as the device that ran, so the old record matches a new run on that device
    assert record_fingerprint(rec) == fingerprint(default_config("A1", "mlp"))
    assert record_fingerprint({"config": {}}) is None


def test_labels_name_the_differing_settings():
    ref = default_config("A1", "mlp")
    assert group_label("A1", differences(default_config("A1", "mlp", **{"head.lr": 0.1}), ref)) == "A1 [head.lr=0.1]"
    custom = default_config("A1", "mlp", **{"backbone.name": "mobilenetv3_small_075", "backbone.library": "timm",
                                            "dataset.path": "/data/flowers", "experiment.arch": [432, 256, 3]})
    label = group_label("A1", differences(custom, ref))
    assert label == "A1 [backbone=mobilenetv3_small_075, dataset.path=/data/flowers, experiment.arch=[432,256,3]]"
    rho = default_config("A1", "glai", rho=0.25)
    assert group_label("A1", differences(rho, default_config("A1", "glai"))) == "A1 [rho=0.25]"


def _mixed_suite():
    """Protocol A1 runs of two heads, an MLP lr sweep, a custom-dataset MLP run of experiment=A1, GLAI on GPU."""
    recs = []
    for s in range(3):
        recs.append(make_record("A1", "mlp", s, total_s=10.0, bvs=88.0 + s, epochs=50))
        recs.append(make_record("A1", "glai", s, total_s=5.0, bvs=90.0 + s, epochs=12))
        for lr in (0.01, 0.1):
            recs.append(make_record("A1", "mlp", s, total_s=9.0, bvs=70.0, epochs=30,
                                    config=default_config("A1", "mlp", s, **{"head.lr": lr})))
    custom = {"backbone.name": "mobilenetv3_small_075", "dataset.path": "/data/flowers",
              "experiment.arch": [432, 256, 3]}
    recs.append(make_record("A1", "mlp", 0, total_s=3.0, bvs=94.17, epochs=20,
                            config=default_config("A1", "mlp", 0, **custom)))
    recs.append(make_record("A1", "glai", 0, total_s=1.0, bvs=91.0, epochs=8,
                            config=default_config("A1", "glai", 0, device="cuda")))
    return recs


def _write_mixed(root):
    runs = root / "runs"
    recs = _mixed_suite()
    for k, rec in enumerate(recs):  # distinct file names, as fingerprints give them
        path = runs / rec["experiment"] / rec["head"] / f"rho0.5-seed{rec['seed']}-{k:010d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({k2: v for k2, v in rec.items() if k2 != "_path"}))
    return runs


def test_groups_of_a_mixed_results_folder():
    recs = _mixed_suite()
    counts = assign_groups(recs, references(["A1"]))
    labels = {(r["head"], r["_label"]) for r in recs}
    assert ("mlp", "A1") in labels and ("mlp", "A1 [head.lr=0.01]") in labels and ("mlp", "A1 [head.lr=0.1]") in labels
    custom = next(r for r in recs if r["metrics"]["bvs"] == 94.17)
    assert not custom["_protocol"] and custom["_label"].startswith("A1 [backbone=mobilenetv3_small_075")
    # the GPU run has the protocol's settings but never shares a row with the CPU runs
    # ... while the CPU runs keep the bare label and still pair with the CPU MLPs (issue 19: an environment
    # variant used to relabel every group of its cell and orphan the protocol rows)
    glai = {r["_label"] for r in recs if r["head"] == "glai"}
    assert glai == {"A1", "A1 {device=cuda}"}
    assert counts.read == len(recs) and counts.protocol == 7 and counts.non_protocol == 7


def test_make_tables_prints_every_group_under_its_own_label(tmp_path):
    runs = _write_mixed(tmp_path)
    lines = []
    write_all(runs, tmp_path / "tables", references=references(["A1"]), figures=False, echo=lines.append)
    assert lines == ["14 records read: 0 invalid (skipped), 0 failed, 0 running or interrupted, 7 done protocol "
                     "runs, 7 done runs grouped as non-protocol (A1 [backbone=mobilenetv3_small_075, "
                     "dataset.path=/data/flowers, experiment.arch=[432,256,3]], A1 [head.lr=0.01], "
                     "A1 [head.lr=0.1])"]
    t3 = pd.read_csv(tmp_path / "tables" / "table3.csv", keep_default_na=False)
    mlp = t3[(t3.Exp == "A1") & (t3.Head == "MLP")].iloc[0]
    assert mlp["n"] == 3 and mlp["BVS"] == "acc: 89.00 ± 1.00"  # the lr sweep is not averaged in
    assert t3[(t3.Exp == "A1 [head.lr=0.1]") & (t3.Head == "MLP")].iloc[0]["n"] == 3
    comp = pd.read_csv(tmp_path / "tables" / "comparison.csv", keep_default_na=False)
    ours = comp[(comp["Paper exp"] == "A1") & (comp["Source"].str.startswith("ours: A1"))]
    assert not any("94.17" in b for b in ours.BVS), "a custom-dataset run of experiment=A1 is never 'ours: A1'"
    assert set(ours.Source) == {"ours: A1", "ours: A1 {device=cuda}"}
    t2 = pd.read_csv(tmp_path / "tables" / "table2.csv", keep_default_na=False, dtype=str)
    assert t2[t2.Exp == "A1 [head.lr=0.1]"].iloc[0]["LR"] == "0.1"


def test_reference_configs_compose_the_unmodified_experiment():
    refs = reference_configs([("A1", "mlp"), ("offline/C1", "glai"), ("no-such-experiment", "mlp")])
    assert set(refs) == {("A1", "mlp"), ("offline/C1", "glai")}
    assert refs[("A1", "mlp")]["head"]["lr"] == refs[("A1", "mlp")]["experiment"]["lr"]
    run_cfg = json.loads(json.dumps(refs[("A1", "mlp")]))
    run_cfg.update(device="cpu", seed=2, results_dir="/x")
    assert differences(run_cfg, refs[("A1", "mlp")]) == {}


def test_write_records_helper_round_trips(tmp_path):
    paths = write_records(tmp_path, [make_record("A1", "mlp", 0)])
    assert json.loads(paths[0].read_text())["config"]["head"]["name"] == "mlp"


def test_glai_only_settings_do_not_change_other_heads():
    for head, changes in (("mlp", False), ("linear", False), ("glai", True)):
        a = default_config("A1", head)
        b = default_config("A1", head, **{"experiment.reduced_epochs": 7, "experiment.reduced_epochs_mode": "auto"})
        assert (fingerprint(a) != fingerprint(b)) == changes, head


def test_a_feature_switched_off_leaves_the_fingerprint():
    """head.l0_lambda = 0 (and its sigma) is the run as it was before the l0 penalty existed: no re-runs."""
    config = default_config("digits", "glai", **{"head.l0_lambda": 0.0, "head.l0_sigma": 1e-4})
    before = {k: v for k, v in config["head"].items() if k not in ("l0_lambda", "l0_sigma")}
    assert fingerprint({**config, "head": before}) == fingerprint(config)
    assert fingerprint({**config, "head": {**config["head"], "l0_sigma": 0.5}}) == fingerprint(config)
    on = {**config, "head": {**config["head"], "l0_lambda": 1e-3}}
    assert fingerprint(on) != fingerprint(config)
    assert fingerprint({**on, "head": {**on["head"], "l0_sigma": 0.5}}) != fingerprint(on)
    assert differences(on, config) == {"head.l0_lambda": 1e-3, "head.l0_sigma": on["head"]["l0_sigma"]}


@pytest.mark.parametrize("head, counts", [("mlp", False), ("linear", False), ("mlp_reduced", True), ("glai", True)])
def test_rho_counts_only_for_the_heads_that_read_it(head, counts):
    base = default_config("A1", head)
    other = default_config("A1", head, rho=0.25)
    other["head"]["width_factor"] = base["head"]["width_factor"] if not counts else 0.25
    assert (fingerprint(base) != fingerprint(other)) == counts


@pytest.mark.parametrize("key, value", [("head.backend", "auto"), ("head.estimator", "dense"),
                                        ("head.reduced_optimizer", "adam"), ("head.structure_threshold", 0.1)])
def test_glai_only_head_keys_leave_the_mlp_fingerprint(key, value):
    """An MLP never reads GLAI's backend or reduced phase: its stored default (``auto``) must not make it an
    environment variant of the GLAI runs beside it (issue 19: own-data views found 'no MLP pair')."""
    base = default_config("A1", "mlp")
    other = default_config("A1", "mlp", **{key: value})
    assert fingerprint(base) == fingerprint(other)
    glai = default_config("A1", "glai")
    assert fingerprint(glai) != fingerprint(default_config("A1", "glai", **{key: value}))
