"""A search persisted in SQLite (experiments/tune.sh's storage) survives being cut off (issue 22)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAVE = [sys.executable, str(ROOT / "scripts" / "save_tuned.py")]

pytestmark = pytest.mark.slow


def _search(tmp: Path, storage: str, n_trials: int, **popen):
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "tuning=search", "head=linear", "experiment.max_epochs=2",
           "structure_samples=0", "verbose=false", f"results_dir={tmp}/runs", f"hydra.sweep.dir={tmp}/sweep",
           "hydra.sweeper.n_jobs=1", f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={storage}",
           "hydra.sweeper.study_name=search-test"]
    if popen:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _finished(storage: str) -> int:
    out = subprocess.run([*SAVE, "--finished", storage, "search-test"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_a_search_cut_off_keeps_its_finished_trials_and_runs_the_rest(tmp_path):
    db = tmp_path / "optuna.db"
    storage = f"sqlite:///{db}"
    assert _finished(storage) == 0  # no study yet
    proc = _search(tmp_path, storage, 10, popen=True)
    try:  # cut it off once two trials have finished (as a time limit or a lost login node would)
        end = time.monotonic() + 300
        while time.monotonic() < end and proc.poll() is None:
            if db.exists():
                try:
                    study = optuna.load_study(study_name="search-test", storage=storage)
                    if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 2:
                        break
                except Exception:  # the sweeper is creating the database
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, f"the search ended before it was cut off: {proc.stderr.read()[-3000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = _finished(storage)
    assert 2 <= kept < 10
    first = {t.number: t.params for t in optuna.load_study(study_name="search-test", storage=storage).trials
             if t.state == optuna.trial.TrialState.COMPLETE}
    out = _search(tmp_path, storage, 10 - kept)  # what tune.sh schedules: the rest of the budget
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="search-test", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 10 and {t.number: t.params for t in complete if t.number in first} == first
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(t.value for t in complete)  # the best over both attempts
    # a search whose budget is spent schedules nothing and still writes its result
    out = _search(tmp_path, storage, 0)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _finished(storage) == 10 and len(optuna.load_study(study_name="search-test", storage=storage).trials) \
        == len(study.trials)
    saved = subprocess.run([*SAVE, str(tmp_path / "sweep"), "--out", str(tmp_path / "tuned")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    (path,) = (tmp_path / "tuned").rglob("*.yaml")
    assert yaml.safe_load(path.read_text())["search"]["n_trials"] == 10  # every attempt's trials, not the last's
