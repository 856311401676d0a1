"""A search through Hydra (hydra/sweeper=glai_optuna) cut off by SIGKILL and started again with the same command:
its study keeps every trial, adopts the one in flight, never runs a parameter set twice and ends with the full
budget of distinct trials (issues 22 and 27)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from glai.search import open_storage, params_key

ROOT = Path(__file__).resolve().parents[2]
SAVE = [sys.executable, str(ROOT / "scripts" / "save_tuned.py")]

pytestmark = pytest.mark.slow
#: The resumed search's budget: room enough past the cut-off at 3 complete trials for a slow poll on a busy machine.
BUDGET = 12


def _search(tmp: Path, n_trials: int, **popen):
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "tuning=search", "head=linear", "experiment.max_epochs=2",
           "structure_samples=0", "verbose=false", f"results_dir={tmp}/runs", f"hydra.sweep.dir={tmp}/sweep",
           "hydra.sweeper.n_jobs=1", f"hydra.sweeper.n_trials={n_trials}"]
    if popen:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _study(tmp: Path) -> optuna.Study:
    info = yaml.safe_load((tmp / "sweep" / "search.yaml").read_text())
    return optuna.load_study(study_name=info["study_name"], storage=open_storage(info["storage"]))


def _keys(study) -> list[str]:
    return [params_key(t.params, t.user_attrs.get("implied"), t.user_attrs.get("default")) for t in study.trials]


def test_a_search_cut_off_resumes_without_repeats_and_runs_the_full_budget(tmp_path):
    journal = tmp_path / "sweep" / "optuna.journal"
    # a budget of BUDGET trials of about 0.2 s each, cut off after 3: the poll below has the rest to see it
    proc = _search(tmp_path, BUDGET, popen=True)
    try:  # cut it off once three trials have finished (as a time limit or a lost login node would)
        end = time.monotonic() + 300
        while time.monotonic() < end and proc.poll() is None:
            if journal.exists() and (tmp_path / "sweep" / "search.yaml").exists():
                try:
                    if sum(t.state == optuna.trial.TrialState.COMPLETE for t in _study(tmp_path).trials) >= 3:
                        break
                except Exception:  # the sweeper is writing the study
                    pass
            time.sleep(0.1)
        assert proc.poll() is None, f"the search ended before it was cut off: {proc.stderr.read()[-3000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    first = {t.number: (t.params, t.state) for t in _study(tmp_path).trials if t.state in ended}
    assert 3 <= len(first) < BUDGET
    out = _search(tmp_path, BUDGET)  # the same command again
    assert out.returncode == 0, out.stderr[-3000:]
    study = _study(tmp_path)
    states = [(t.number, t.state.name, t.user_attrs.get("error"), t.user_attrs.get("adopted")) for t in study.trials]
    # every trial ran to its end or was pruned (the search prunes by default): none left running or failed
    assert len(study.trials) == BUDGET and all(t.state in ended for t in study.trials), \
        f"{states}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert len(set(_keys(study))) == BUDGET  # no parameter set twice: the full budget of distinct trials
    # what the cut-off search had finished or pruned is kept as it was, never run again
    assert {t.number: (t.params, t.state) for t in study.trials if t.number in first} == first
    # pruned trials (the fold rule after each of the 5 folds: a dozen random learning rates, some far below the
    # best) are stored as pruned, and so are their run records
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.user_attrs.get("default") is None for t in pruned)
    for t in pruned:
        record = json.loads(Path(t.user_attrs["record"]).read_text())
        assert record["status"] == "pruned" and record["metrics"]["pruned"]["epochs"] >= 1
        assert record["metrics"]["pruned"]["at"] in (
            "epoch 2 of fold 1", "fold 1 of 5", "fold 2 of 5", "fold 3 of 5", "fold 4 of 5")
    assert [t.user_attrs.get("default") for t in study.trials[:2]] == ["protocol", "adam"]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    # the best over both attempts (a pruned trial's value is the last score it reported: never the best)
    assert best["best_value"] == max(t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    # a search whose budget is spent runs nothing and still writes its result
    out = _search(tmp_path, BUDGET)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(_study(tmp_path).trials) == BUDGET
    saved = subprocess.run([*SAVE, str(tmp_path / "sweep"), "--out", str(tmp_path / "tuned")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    (path,) = (tmp_path / "tuned").rglob("*.yaml")
    data = yaml.safe_load(path.read_text())
    # every attempt's trials, not the last's
    assert data["search"]["n_trials"] + data["search"]["pruned"] == BUDGET and data["format"] == 2


def test_a_budget_of_the_defaults_alone_saves_the_best_default(tmp_path):
    """HYDRA_TRIALS=2 failed after the two default trials (a sweep of 0 trials: optuna "Record does not exist")."""
    out = _search(tmp_path, 2)
    assert out.returncode == 0, out.stderr[-3000:]
    study = _study(tmp_path)
    assert [t.user_attrs.get("default") for t in study.trials] == ["protocol", "adam"]
    saved = subprocess.run([*SAVE, str(tmp_path / "sweep"), "--out", str(tmp_path / "tuned")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    (path,) = (tmp_path / "tuned").rglob("*.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["search"]["chosen"] in ("default: protocol", "default: adam")
    assert data["search"]["default_score"]["se"] > 0  # digits' small tuning split: 5 folds, a standard error


def test_the_pruner_is_part_of_the_searchs_identity(tmp_path):
    """The same search pruned otherwise is another study (its journal holds both, apart); search.yaml names the
    pruner the study ran with."""
    names = []
    for fold_se in (None, 3.0):
        extra = [] if fold_se is None else [f"tuning.pruner.fold_se={fold_se}"]
        cmd = [sys.executable, str(ROOT / "run.py"), "-m", "tuning=search", "head=linear", "experiment.max_epochs=1",
               "structure_samples=0", "verbose=false", f"results_dir={tmp_path}/runs",
               f"hydra.sweep.dir={tmp_path}/sweep", "hydra.sweeper.n_jobs=1", "hydra.sweeper.n_trials=1", *extra]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        info = yaml.safe_load((tmp_path / "sweep" / "search.yaml").read_text())
        assert info["pruner"]["fold_se"] == (2.0 if fold_se is None else fold_se)
        names.append(info["study_name"])
    assert names[0] != names[1]
    assert set(optuna.get_all_study_names(open_storage(info["storage"]))) == set(names)
