"""Tuned comparison (SPEC 12): the tuning split, the search's objective, tuned settings, the views."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from glai.config import compose_config
from glai.data.loading import load_data, tuning_pool_split, tuning_splits
from glai.data.splits import EmbeddingSplit
from glai.errors import ConfigError
from glai.results.identity import fingerprint
from glai.runner import objective, run, run_identity

ROOT = Path(__file__).resolve().parents[2]
FAST = ["experiment.max_epochs=2", "experiment.reduced_epochs_mode=fixed", "experiment.reduced_epochs=1",
        "structure_samples=0", "verbose=false"]


def _rows(split: EmbeddingSplit) -> set[bytes]:
    return {row.numpy().tobytes() for row in split.x}


def test_tuning_split_is_a_stratified_seeded_part_of_train():
    y = torch.arange(10).repeat_interleave(7)  # 10 classes x 7 rows
    x = torch.randn(70, 3)
    parts = tuning_splits(EmbeddingSplit(x, y), 0.3, seed=4)
    tune, rest = parts["val"], parts["train"]
    assert len(tune.x) + len(rest.x) == 70 and not (_rows(tune) & _rows(rest))
    assert _rows(tune) | _rows(rest) == _rows(EmbeddingSplit(x, y))
    assert torch.bincount(tune.y, minlength=10).tolist() == [2] * 10  # round(0.3 * 7) per class
    again = tuning_splits(EmbeddingSplit(x, y), 0.3, seed=4)["val"]
    other = tuning_splits(EmbeddingSplit(x, y), 0.3, seed=5)["val"]
    assert torch.equal(again.x, tune.x) and not torch.equal(other.x, tune.x)
    unlabelled = tuning_splits(EmbeddingSplit(x, None), 0.2, seed=0)
    assert len(unlabelled["val"].x) == 14 and unlabelled["val"].y is None
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="tuning.fraction"):
            tuning_splits(EmbeddingSplit(x, y), bad, seed=0)


def test_a_search_never_reads_the_validation_split_of_any_seed():
    """digits' split is fixed (dataset.fixed_split): the tuning rows of a search are training rows of every
    run seed, and no validation row of any seed reaches a search run."""
    ordinary = {s: load_data(compose_config([f"seed={s}"])) for s in (0, 1, 2)}
    search = {s: load_data(compose_config(["tuning=search", "tuning.folds=1", f"seed={s}"])) for s in (0, 1)}
    val_rows = set().union(*(_rows(o["val"]) for o in ordinary.values()))
    assert all(_rows(o["val"]) == _rows(ordinary[0]["val"]) for o in ordinary.values())
    for parts in search.values():
        assert not (_rows(parts["val"]) | _rows(parts["train"])) & val_rows
        assert _rows(parts["val"]) <= _rows(ordinary[0]["train"])
    # the tuning split depends on tuning.seed, not the run seed: every trial and head scores the same rows
    assert _rows(search[0]["val"]) == _rows(search[1]["val"])
    moved = load_data(compose_config(["tuning=search", "tuning.folds=1", "tuning.seed=1"]))
    # k-fold (auto on digits: a 20 % tuning split holds 287 < 500 rows): every fold inside train as well
    folded = load_data(compose_config(["tuning=search"]))
    assert sorted(folded) == sorted(f"fold{j}/{p}" for j in range(5) for p in ("train", "val"))
    assert not set().union(*(_rows(s) for s in folded.values())) & val_rows
    assert _rows(moved["val"]) != _rows(search[0]["val"])


def test_search_settings_count_in_the_fingerprint_only_when_searching():
    base = compose_config([])
    config, fp, _ = run_identity(base)
    stripped = {k: v for k, v in config.items() if k != "tuning"}
    assert fingerprint(stripped) == fp  # an ordinary run is the run it was before tuning existed
    assert run_identity(compose_config(["tuning.fraction=0.3"]))[1] == fp
    search = run_identity(compose_config(["tuning=search"]))[1]
    assert search != fp and run_identity(compose_config(["tuning=search", "tuning.fraction=0.3"]))[1] != search


@pytest.mark.parametrize("overrides, match", [
    (["tuning.role=held_out"], "held_out splits a family C pool"),
    (["tuning=search", "tuning.fraction=1.0"], "tuning.fraction"),
    # mlp_reduced: a head the shipped settings (conf/tuned/best) have no search of
    (["tuning=best", "head=mlp_reduced"], r"no tuned settings .* Fix: python run.py -m tuning=search "
                                          r"experiment=digits head=mlp_reduced"),
    (["tuning=search", "study.name=retrain"], "study.name=standard"),
])
def test_bad_tuning_requests_fail_before_any_work(tmp_path, overrides, match):
    cfg = compose_config([*overrides, f"results_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    assert not any(tmp_path.rglob("*.json"))


def test_family_c_tuning_pool_split_never_meet_the_tuned_runs_episodes():
    """Family C: a search draws from the tuning classes, the tuned runs (held_out) from the others only."""
    y = torch.arange(12).repeat_interleave(5)
    pool = EmbeddingSplit(torch.randn(60, 4), y)
    parts = tuning_pool_split(pool, 0.25, seed=3, n_way=4)
    tune, held = set(parts["tuning"].y.tolist()), set(parts["held_out"].y.tolist())
    assert len(tune) == 4 and len(held) == 8 and not tune & held  # round(0.25 * 12) = 3, raised to n_way
    assert len(parts["tuning"].x) + len(parts["held_out"].x) == 60
    assert tuning_pool_split(pool, 0.25, seed=3, n_way=4)["tuning"].y.unique().tolist() == sorted(tune)
    assert len(set(tuning_pool_split(pool, 0.9, seed=3, n_way=4)["held_out"].y.tolist())) == 4  # kept >= n_way
    # fewer than 2 x n_way classes (AG News: 4 classes, 4-way): a stratified split of every class's rows
    rows = tuning_pool_split(pool, 0.4, seed=0, n_way=7)
    assert set(rows["tuning"].y.tolist()) == set(rows["held_out"].y.tolist()) == set(range(12))
    assert torch.bincount(rows["tuning"].y).tolist() == [2] * 12 and not _rows(rows["tuning"]) & _rows(rows["held_out"])
    with pytest.raises(ValueError, match="labelled pool"):
        tuning_pool_split(EmbeddingSplit(pool.x, None), 0.5, seed=0, n_way=4)
    # through the config: digits as a 5-way family C experiment
    c = ["experiment.family=C", "experiment.arch=[64,128,5]", "experiment.n_way=5"]
    searched = load_data(compose_config([*c, "tuning=search"]))["pool"]
    tuned = load_data(compose_config([*c, "tuning.role=held_out"]))["pool"]
    full = load_data(compose_config(c))["pool"]
    assert not set(searched.y.tolist()) & set(tuned.y.tolist())
    assert len(searched.x) + len(tuned.x) == len(full.x) and not _rows(searched) & _rows(tuned)


def test_objective_maximises_accuracy_and_minimises_loss():
    assert objective({"status": "done", "metrics": {"bvs": 91.5, "mode": "max"}}) == 91.5
    assert objective({"status": "done", "metrics": {"bvs": 0.25, "mode": "min"}}) == -0.25
    assert math.isnan(objective({"status": "failed", "metrics": {}}))
    assert math.isnan(objective({"status": "running"}))


def test_a_search_run_is_scored_on_the_tuning_split(tmp_path):
    rec = run(compose_config(["tuning=search", "tuning.folds=1", "head=mlp", f"results_dir={tmp_path}", *FAST]))
    parts = load_data(compose_config(["tuning=search", "tuning.folds=1"]))
    assert rec["status"] == "done" and rec["config"]["tuning"]["role"] == "search"
    # every validation accuracy is a count over the tuning split's rows (287), which the validation split's
    # 360 rows could only give at 0 or 100 %
    n_tune, n_val = len(parts["val"].x), len(load_data(compose_config([]))["val"].x)
    assert n_tune != n_val and 0 < rec["metrics"]["bvs"] < 100
    for acc in rec["metrics"]["curves"]["val_acc"]:
        assert abs(acc * n_tune / 100 - round(acc * n_tune / 100)) < 1e-6
    assert objective(rec) == rec["metrics"]["bvs"]


def _write_tuned(root: Path, head: str, settings: dict, overrides: list[str] | None = None, **extra) -> Path:
    """A tuned file of the group of ``overrides`` (format 2, as scripts/save_tuned.py writes it)."""
    import yaml

    from glai.tuned import FORMAT, group_of, tuned_path

    cfg = compose_config([f"head={head}", *(overrides or [])])
    group = group_of(cfg)
    path = tuned_path(root, str(cfg.experiment.name), head, group)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": FORMAT, "experiment": str(cfg.experiment.name), "head": head, "group": group,
            "settings": settings, "tuning": {"role": "none"}, **extra}
    path.write_text(yaml.safe_dump(body))
    return path


#: What a tuned run may differ in from the trial it applies: the data roles (tuning.*) and, where the trial ran
#: the auto rule, how its reduced phase is written (the count is compared instead).
REDUCED_RULE = ("reduced_epochs_mode", "reduced_fraction")


@pytest.mark.slow
def test_search_is_what_tuning_best_runs(tmp_path):
    """A GLAI search through Hydra (hydra/sweeper=glai_optuna), scripts/save_tuned.py, then tuning=best: the applied
    config equals the chosen trial's record in every key the head reads (data roles aside), every trial's settings
    would apply as they ran, and the protocol default trial (auto rule) rerun from its saved settings on the same
    split runs the same reduced epochs and scores the same (issue 27: the search measured 9 reduced epochs, the tuned
    runs ran 3-4)."""
    import yaml

    from tests.conftest import load_script

    save = load_script("save_tuned")
    shipped = {p: p.read_bytes() for p in (ROOT / "conf" / "tuned").rglob("*.yaml")}
    sweep, tuned = tmp_path / "sweep", tmp_path / "tuned"
    # another group than digits' own: a user's arch, and a protocol change (both count in the group)
    own = ["experiment.arch=[64,96,10]", "experiment.max_epochs=3", "structure_samples=0"]
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "tuning=search", "head=glai", *own,
           "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=1", f"hydra.sweep.dir={sweep}",
           f"results_dir={tmp_path}/runs", "verbose=false"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (sweep / "optimization_results.yaml").is_file() and (sweep / "optuna.journal").is_file()
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "save_tuned.py"), str(sweep), "--out", str(tuned)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (saved,) = (tuned / "digits" / "glai").glob("*.yaml")
    data = yaml.safe_load(saved.read_text())
    assert saved.stem != "protocol" and "experiment.arch" in data["group"] and data["format"] == 2
    info, study = save.load_search(sweep)
    trials = study.get_trials()
    assert len(trials) == 5 and data["search"]["n_trials"] + data["search"]["pruned"] == 5
    chosen = next(t for t in trials if t.number == data["search"]["chosen_score"]["trial"])
    default = next(t for t in trials if t.user_attrs.get("default") == "protocol")
    assert data["search"]["default_score"]["value"] == default.value and default.user_attrs["se"] > 0
    assert {p: p.read_bytes() for p in (ROOT / "conf" / "tuned").rglob("*.yaml")} == shipped

    from glai.tuned import apply_tuned, check_settings

    def same_as_trial(cfg, trial):
        ran = json.loads(Path(trial.user_attrs["record"]).read_text())
        applied = run_identity(cfg)[0]
        auto = (ran["metrics"].get("reduced_epochs_rule") or {}).get("mode") == "auto"
        assert applied["head"] == ran["config"]["head"]
        for key, value in ran["config"]["experiment"].items():
            if key == "reduced_epochs" and auto:
                assert applied["experiment"][key] == ran["metrics"]["reduced_epochs_rule"]["reduced_epochs"]
            elif not (auto and key in REDUCED_RULE):
                assert applied["experiment"][key] == value, key
        return ran

    cfg = apply_tuned(compose_config(["tuning=best", "head=glai", *own, f"tuned_dir={tuned}"]))
    assert cfg.tag == "tuned" and cfg.tuning.role == "none"
    same_as_trial(cfg, chosen)
    keys = save._searched_keys(trials, info["fixed"])
    for trial in (t for t in trials if t.state.name == "COMPLETE"):  # whichever could win: the run it was
        ran = save.trial_record(trial)
        settings = save.trial_settings(ran, keys)
        same_as_trial(check_settings(saved, "glai", settings, compose_config(["head=glai", *own])), trial)
    # the default trial ran the auto rule on its partner (the protocol MLP on the same folds): its saved count, rerun
    # on the same split, trains the same reduced phase and scores the same
    ran = save.trial_record(default)
    settings = save.trial_settings(ran, keys)
    assert settings["experiment.reduced_epochs_mode"] == "fixed"
    again = run(check_settings(saved, "glai", settings, compose_config(info["fixed"])))
    assert again["fingerprint"] != ran["fingerprint"]  # a run of its own, not the trial's record read back
    assert again["metrics"]["reduced_epochs"] == ran["metrics"]["reduced_epochs"] == settings[
        "experiment.reduced_epochs"]
    assert again["metrics"]["bvs"] == pytest.approx(ran["metrics"]["bvs"], abs=1e-9)
    # as a sweep job (Hydra is running: the group's reference config is composed beside it); no partner MLP is read
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "tuning=best", "head=glai", "seed=0", *own,
                          f"tuned_dir={tuned}", f"results_dir={tmp_path}/runs3", f"hydra.sweep.dir={tmp_path}/s3",
                          "verbose=false"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [p.parent.name for p in (tmp_path / "runs3").rglob("*.json")] == ["glai-tuned"]
    find = [sys.executable, str(ROOT / "scripts" / "save_tuned.py"), "--out", str(tuned), "--find", "head=glai"]
    assert subprocess.run([*find, *own], cwd=ROOT, capture_output=True).returncode == 0
    assert subprocess.run([*find, *own, "tuning.shipped=false"], cwd=ROOT, capture_output=True).returncode == 0
    # a group never searched is refused before any work, naming the search for that data
    with pytest.raises(ConfigError, match=r"no tuned settings .*experiment.arch=\[64, 80, 10\].*Fix: python run.py "
                                          r"-m tuning=search experiment=digits head=glai experiment.arch=\[64,80,10\]"):
        run(compose_config(["tuning=best", "head=glai", "experiment.arch=[64,80,10]", f"tuned_dir={tuned}",
                            f"results_dir={tmp_path}/runs2", "tuning.shipped=false"]),
            ["tuning=best", "experiment.arch=[64,80,10]"])
    assert not (tmp_path / "runs2").exists()
    # the search's trials never become table rows
    from glai.results.tables import write_all

    lines = []
    write_all(tmp_path / "runs", tmp_path / "tables", figures=False, references={}, echo=lines.append)
    assert "search trials (tuning=search) left out" in lines[0]


def test_tuning_best_refuses_a_command_line_key_it_would_replace(tmp_path):
    """tuning=best head.lr=0.5 ran with the tuned lr and the plain tuned run's fingerprint, exit 0 (issue 27)."""
    common = [f"results_dir={tmp_path}/runs", f"tuned_dir={tmp_path}/tuned", "tuning.shipped=false"]
    _write_tuned(tmp_path / "tuned", "mlp", {"head.optimizer": "adam", "head.lr": 0.0102})
    with pytest.raises(ConfigError, match=r"tuning=best sets head.lr=0.0102 \(from .*\), and the command line gives "
                                          r"head.lr=0.5.*Fix: drop head.lr=0.5"):
        run(compose_config(["tuning=best", "head=mlp", "head.lr=0.5", *common]), ["tuning=best", "head.lr=0.5"])
    assert not (tmp_path / "runs").exists()
    from glai.tuned import apply_tuned

    # the same value, or a key the file does not set (an environment variant), is applied and fingerprinted
    cfg = apply_tuned(compose_config(["tuning=best", "head=mlp", "head.lr=0.0102", "num_threads=2", *common]),
                      ["tuning=best", "head.lr=0.0102", "num_threads=2"])
    assert cfg.head.lr == 0.0102 and cfg.num_threads == 2 and cfg.tag == "tuned"


@pytest.mark.parametrize("settings, match", [
    ({"head.lr": "abc"}, r"set head.lr='abc', which the schema refuses"),
    ({"head.lrr": 0.1}, r"set head.lrr, which is not a key of the config"),
    ({"head.lr": -1.0}, r"head.lr"),
    ({"dataset.path": "/x"}, r"would change the run's group"),
])
def test_tuned_files_are_checked_against_the_schema_naming_the_file(tmp_path, settings, match):
    path = _write_tuned(tmp_path / "tuned", "mlp", settings)
    with pytest.raises(ConfigError, match=rf"tuned settings {path}.*" + match):
        run(compose_config(["tuning=best", "head=mlp", f"tuned_dir={tmp_path}/tuned", f"results_dir={tmp_path}/r",
                            "tuning.shipped=false"]))
    assert not (tmp_path / "r").exists()


def test_old_tuned_files_and_auto_reduced_phases_are_refused(tmp_path):
    """Format 1 files could run another reduced phase than their search scored; a GLAI file must fix its count."""
    import yaml

    path = _write_tuned(tmp_path / "tuned", "mlp", {"head.optimizer": "adam"})
    body = yaml.safe_load(path.read_text())
    body.pop("format")
    path.write_text(yaml.safe_dump(body))
    common = [f"tuned_dir={tmp_path}/tuned", f"results_dir={tmp_path}/r", "tuning.shipped=false"]
    with pytest.raises(ConfigError, match=r"format 1, written before .*Fix: search again"):
        run(compose_config(["tuning=best", "head=mlp", *common]))
    # tune.sh's skip check: a stale file is searched again (exit 1), never a stop of the suite
    from tests.conftest import load_script

    find = ["--out", str(tmp_path / "tuned"), "--find", "head=mlp", "tuning.shipped=false"]
    assert load_script("save_tuned").main(find) == 1
    _write_tuned(tmp_path / "tuned", "glai", {"head.optimizer": "adam", "experiment.reduced_epochs_mode": "auto"})
    with pytest.raises(ConfigError, match="leave GLAI's reduced phase to the auto rule"):
        run(compose_config(["tuning=best", "head=glai", *common]))
    assert not (tmp_path / "r").exists()


def test_tuned_partner_of_auto_glai_is_the_protocol_mlp(tmp_path):
    """A tagged GLAI run in auto mode (tag=tuned, tag=sgd) reads its epochs from the untagged MLP run."""
    common = [f"results_dir={tmp_path}", "experiment.max_epochs=4", "structure_samples=0", "verbose=false"]
    mlp = run(compose_config(["head=mlp", *common]))
    rec = run(compose_config(["head=glai", "head.optimizer=sgd", "tag=sgd", *common]))
    rule = rec["metrics"]["reduced_epochs_rule"]
    assert rule["mode"] == "auto" and rule["mlp_fingerprint"] == mlp["fingerprint"]
    assert len(list(tmp_path.rglob("*.json"))) == 2  # no second MLP trained under the tag
    assert np.isclose(rule["mlp_epochs"], mlp["metrics"]["epochs"])


def test_a_tuned_glai_runs_its_files_reduced_epochs_without_a_partner(tmp_path):
    """A tuned GLAI's reduced phase is the epoch count its search trial ran (issue 27): no MLP partner is read or
    trained (before, the tuned MLP of its group set it, another length than the search had scored)."""
    common = [f"results_dir={tmp_path}/runs", "experiment.max_epochs=6", "structure_samples=0", "verbose=false",
              f"tuned_dir={tmp_path}/tuned", "tuning.shipped=false"]
    _write_tuned(tmp_path / "tuned", "glai", {"head.optimizer": "adam", "head.lr": 0.005,
                                              "experiment.reduced_epochs_mode": "fixed", "experiment.reduced_epochs": 3,
                                              "experiment.reduced_fraction": None}, common)
    rec = run(compose_config(["head=glai", "tuning=best", *common]))
    assert rec["tag"] == "tuned" and rec["metrics"]["reduced_epochs"] == 3
    assert rec["metrics"]["reduced_epochs_rule"] == {"mode": "fixed", "reduced_epochs": 3}
    assert [p.parent.name for p in (tmp_path / "runs").rglob("*.json")] == ["glai-tuned"]


def test_the_structural_stop_is_chosen_on_the_tuning_split(tmp_path):
    from tests.conftest import load_script

    st = load_script("structure_threshold")
    assert st.candidate_thresholds([None, 0.4, 0.2, 0.1, 0.05], 2) == [0.40004, 0.050005]
    with pytest.raises(ValueError, match="structure_samples"):
        st.candidate_thresholds([None, None], 3)
    # structure_samples=0 crashed with a TypeError after the curve run (issue 30): now one line, before any work
    assert st.main(["structure_samples=0", f"results_dir={tmp_path}/none", "--out", str(tmp_path / "t")]) == 2
    assert not (tmp_path / "none").exists()
    result = st.choose(["experiment.reduced_epochs=3", f"results_dir={tmp_path}/runs", "experiment.max_epochs=3"],
                       k=2, out=tmp_path / "tuned")
    assert result["threshold"] in [s["threshold"] for s in result["scores"]] and Path(result["file"]).is_file()
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")]
    assert records and all(r["config"]["tuning"]["role"] == "search" for r in records)  # never the validation split


def test_folds_partition_train_stratified_and_seeded():
    from glai.data.loading import search_folds, tuning_folds

    y = torch.arange(4).repeat_interleave(10)  # 4 classes x 10 rows
    x = torch.randn(40, 3)
    folds = tuning_folds(EmbeddingSplit(x, y), 5, seed=2)
    vals = [_rows(f["val"]) for f in folds]
    assert all(not (a & b) for i, a in enumerate(vals) for b in vals[i + 1:]) and set().union(*vals) == _rows(
        EmbeddingSplit(x, y))
    assert all(torch.bincount(f["val"].y, minlength=4).tolist() == [2] * 4 for f in folds)
    assert all(not (_rows(f["train"]) & _rows(f["val"])) and len(f["train"].x) == 32 for f in folds)
    assert [_rows(f["val"]) for f in tuning_folds(EmbeddingSplit(x, y), 5, seed=2)] == vals
    assert search_folds(1437, 0.2, 0) == 5 and search_folds(5000, 0.2, 0) == 1 and search_folds(5000, 0.2, 3) == 3
    # a large training split: repeated tuning splits (issue 27: every score with a standard error)
    assert search_folds(5000, 0.2, 0, repeats=3) == -3 and search_folds(5000, 0.2, 1, repeats=3) == 1
    with pytest.raises(ValueError, match="tuning.folds=50"):
        tuning_folds(EmbeddingSplit(x, y), 50, seed=0)
    # folds of a row or two score noise (issue 30: tuning.folds=1000 on digits): refused before any work
    with pytest.raises(ConfigError, match=r"tuning.folds=1000: folds of 1 of the 1437 .*at most 287 folds"):
        run(compose_config(["tuning=search", "tuning.folds=1000", "results_dir=/nonexistent/never"]))


def test_a_small_tuning_split_is_scored_by_k_fold(tmp_path):
    rec = run(compose_config(["tuning=search", "head=mlp", f"results_dir={tmp_path}", *FAST]))
    folds = rec["metrics"]["folds"]
    assert folds["k"] == 5 and sum(folds["rows"]) == 1437 and np.isclose(rec["metrics"]["bvs"], np.mean(folds["bvs"]))
    assert objective(rec) == rec["metrics"]["bvs"]
    # folds belong to a search only: a tuned run's fingerprint does not hold them
    base = run_identity(compose_config(["tuning.role=held_out", "experiment.family=C", "experiment.arch=[64,128,5]",
                                        "experiment.n_way=5"]))[0]
    assert fingerprint(base) == fingerprint({**base, "tuning": {**base["tuning"], "folds": 3}})


def test_a_family_c_search_scored_on_more_episodes_keeps_the_tuned_runs_group():
    """tune.sh scores family C trials on 5 episodes; the tuned runs draw one: the same group (episodes say how the
    search was scored, not which runs its settings are for)."""
    from glai.tuned import group_of

    c = ["experiment=offline/C1", "head=mlp"]
    assert group_of(compose_config([*c, "tuning=search", "episodes=5"])) == group_of(compose_config([*c])) == {}
    assert group_of(compose_config([*c, "episodes=5"])) == {"episodes": 5}  # a run of 5 episodes is another group


def test_a_large_tuning_split_is_scored_by_repeated_splits_with_a_standard_error(tmp_path):
    """Above 500 tuning rows a trial scores the mean of tuning.repeats stratified splits (seeds tuning.seed + j),
    so its score has a standard error (issue 27: a one-split score had none, and noise chose the tuned setting)."""
    from glai.runner import search_result, standard_error

    rec = run(compose_config(["tuning=search", "tuning.fraction=0.35", "tuning.repeats=2", "head=mlp",
                              f"results_dir={tmp_path}", *FAST]))
    folds = rec["metrics"]["folds"]
    assert folds["kind"] == "repeats" and folds["k"] == 2 and folds["rows"] == [504, 504]
    assert rec["metrics"]["bvs_se"] == pytest.approx(np.std(folds["bvs"], ddof=1) / np.sqrt(2))
    assert search_result(rec) == {"value": rec["metrics"]["bvs"], "se": rec["metrics"]["bvs_se"],
                                  "record": rec["_path"]}
    parts = load_data(compose_config(["tuning=search", "tuning.fraction=0.35", "tuning.repeats=2"]))
    assert _rows(parts["fold0/val"]) != _rows(parts["fold1/val"])  # two draws of the tuning rows
    assert standard_error([1.0]) is None and standard_error([1.0, 3.0]) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="tuning.repeats"):
        run(compose_config(["tuning=search", "tuning.repeats=1", f"results_dir={tmp_path}"]))


def test_more_outputs_than_classes_is_refused_before_any_work(tmp_path):
    """experiment.arch[-1]=12 on 10-class digits was accepted without a word (issue 30)."""
    with pytest.raises(ConfigError, match=r"experiment.arch\[-1\]=12 outputs but .* has 10 classes .*Fix: "
                                          r"experiment.arch\[-1\]=10"):
        run(compose_config(["head=mlp", "experiment.arch=[64,128,12]", f"results_dir={tmp_path}"]))
    assert not any(tmp_path.rglob("*.json"))


def test_a_tuned_file_of_another_group_and_a_broken_search_folder_are_named(tmp_path):
    """A tuned file storing another group was passed over silently; a corrupt search folder gave a traceback."""
    import yaml

    from tests.conftest import load_script

    path = _write_tuned(tmp_path / "tuned", "mlp", {"head.optimizer": "adam"})
    body = yaml.safe_load(path.read_text())
    body["group"] = {"experiment.arch": [64, 80, 10]}
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=rf"tuned settings {path} store the group .*not this run's"):
        run(compose_config(["tuning=best", "head=mlp", f"tuned_dir={tmp_path}/tuned", f"results_dir={tmp_path}/r"]))
    save = load_script("save_tuned")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    assert save.main([str(sweep), "--out", str(tmp_path / "t")]) == 2  # no search.yaml
    (sweep / "search.yaml").write_text("storage: [unclosed")
    assert save.main([str(sweep), "--out", str(tmp_path / "t")]) == 2
    (sweep / "search.yaml").write_text(yaml.safe_dump({"storage": str(sweep / "optuna.journal"), "study_name": "x"}))
    assert save.main([str(sweep), "--out", str(tmp_path / "t")]) == 2  # the journal is gone
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()


def test_tune_sh_with_a_misspelled_override_stops_before_any_search(tmp_path):
    """tune.sh with a misspelled override carried on and left an empty sweep folder (issue 30)."""
    import hashlib
    import os

    env = {**os.environ, "EXPERIMENTS": "digits", "HEADS": "mlp", "TUNED_OUT": str(tmp_path / "tuned"),
           "TUNING_RUNS": str(tmp_path / "runs"), "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(ROOT / "experiments" / "tune.sh"), "basic", "hed.lr=3"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "hed.lr" in out.stderr and "Traceback" not in out.stderr
    sweep = ROOT / "results" / "tuning" / "sweeps" / "digits" / f"mlp-{hashlib.sha1(b'hed.lr=3').hexdigest()[:8]}"
    assert not sweep.exists() and not (tmp_path / "runs").exists()
