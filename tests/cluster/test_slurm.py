"""Sweeps through ``hydra/launcher=slurm`` on a one-node Slurm cluster (``scripts/local_slurm.py``; issue 22).

Skipped with the reason when Slurm's daemons are missing or the tests do not run as root (``.ci/run`` installs
``slurm-wlm`` and ``munge`` when it runs as root). The cluster is started once for the module in a temporary folder
and stopped by its pids at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import local_slurm  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=20"]
# a digits run of ~15-30 s on this machine: long enough to be interrupted mid-training
SLOW = ["experiment=digits", "experiment.batch_size=1", "experiment.max_epochs=40",
        "experiment.patience=1000", "structure_samples=0"]


def _skip_reason() -> str | None:
    lacking = local_slurm.missing()
    if lacking:
        return f"Slurm is not installed ({', '.join(lacking)} missing; {local_slurm.INSTALL})"
    if os.geteuid() != 0:
        return "the local Slurm cluster needs root (slurmd)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    conf = local_slurm.start(root, wait_s=90)
    env = {**os.environ, "SLURM_CONF": str(conf), "GLAI_VENV": sys.prefix, "PYTHONUNBUFFERED": "1",
           "GLAI_CACHE_DIR": str(root / "cache")}
    yield env
    local_slurm.stop(root)


def _sweep(env: dict, tmp: Path, name: str, *overrides: str, background: bool = False):
    cmd = [sys.executable, "run.py", "-m", *SLURM, f"results_dir={tmp / 'runs'}", f"hydra.sweep.dir={tmp / name}",
           "verbose=false", *overrides]
    if background:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _squeue(env: dict) -> list[tuple[str, str, str]]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], env=env, capture_output=True, text=True, check=True)
    return [tuple(line.split(maxsplit=2)) for line in out.stdout.splitlines() if line.strip()]


def _wait_for(what: str, ready, timeout_s: float = 300.0, proc: subprocess.Popen | None = None):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = ready()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended while waiting for {what}:\n{out[-3000:]}\n{err[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _records(tmp: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp / "runs").rglob("*.json"))]


def _running_record(tmp: Path):
    return any(r["status"] == "running" for r in _records(tmp)) if (tmp / "runs").exists() else False


def _release(env: dict, job: str) -> bool:
    """Slurm holds a requeued job for ~2 minutes (BeginTime): let it start now."""
    for jid, state, _ in _squeue(env):
        if jid == job and state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True)
            return True
    return False


def _job_logs(sweep: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((sweep / ".submitit").rglob("*_log.*")))


def test_an_array_of_four_runs_comes_back_and_make_tables_reads_it(cluster, tmp_path):
    """4 digits runs as one array job, 2 at a time; submitit's per-poll sacct warning is explained once."""
    out = _sweep(cluster, tmp_path, "sweep", "hydra.launcher.array_parallelism=2", "experiment=digits",
                 "head=linear,mlp", "seed=0,1", "experiment.max_epochs=2")
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    records = _records(tmp_path)
    assert sorted((r["head"], r["seed"], r["status"]) for r in records) == [
        ("linear", 0, "done"), ("linear", 1, "done"), ("mlp", 0, "done"), ("mlp", 1, "done")]
    # one array job: its tasks' folders are <array id>_<0..3>
    tasks = {p.name for p in (tmp_path / "sweep" / ".submitit").iterdir() if "_" in p.name and p.is_dir()}
    assert len(tasks) == 4 and len({t.split("_")[0] for t in tasks}) == 1, tasks
    # no accounting here: sacct is asked once, then squeue gives the states, without a warning per poll
    shown = out.stdout + out.stderr
    assert "Bypassing sacct error" not in shown, shown[-3000:]
    assert shown.count("sacct does not work on this cluster (Slurm accounting storage is disabled)") == 1
    assert shown.count("accounting storage is disabled") == 1  # sacct's own line is not printed per poll
    tables = subprocess.run([sys.executable, "scripts/make_tables.py", "--runs", str(tmp_path / "runs"),
                             "--out", str(tmp_path / "tables"), "--no-figures"], cwd=REPO, env=cluster,
                            capture_output=True, text=True, timeout=300)
    assert tables.returncode == 0, tables.stderr[-3000:]
    assert "digits" in (tmp_path / "tables" / "table2.md").read_text()


@pytest.mark.parametrize("interrupt", ["scontrol requeue", "USR2 (time limit or preemption)"])
def test_a_job_interrupted_mid_training_trains_again_once(cluster, tmp_path, interrupt):
    """scontrol requeue (Slurm kills and requeues the job), or USR2 as Slurm sends it before a time limit or a
    preemption (submitit's checkpoint requeues the same run): the run trains again from the start on the next
    attempt and ends with one done record; a finished run of the same array is not run again."""
    done = _sweep(cluster, tmp_path, "first", *SLOW, "head=linear")
    assert done.returncode == 0, done.stderr[-3000:]
    (finished,) = _records(tmp_path)
    proc = _sweep(cluster, tmp_path, "sweep", "hydra.launcher.array_parallelism=2", *SLOW, "head=linear,mlp",
                  background=True)
    try:
        _wait_for("the MLP's record to say running", lambda: _running_record(tmp_path), proc=proc)
        # the sweep's second task (head=linear,mlp) is the MLP
        (job,) = [jid for jid, state, _ in _squeue(cluster) if state == "RUNNING" and jid.endswith("_1")]
        if interrupt == "scontrol requeue":
            subprocess.run(["scontrol", "requeue", job], env=cluster, check=True)
        else:
            subprocess.run(["scancel", "--signal=USR2", job], env=cluster, check=True)
        _wait_for("the requeued job", lambda: _release(cluster, job), proc=proc)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
    records = _records(tmp_path)
    assert sorted((r["head"], r["status"]) for r in records) == [("linear", "done"), ("mlp", "done")]
    assert [r for r in records if r["head"] == "linear"] == [finished]  # skipped, not trained again
    logs = _job_logs(tmp_path / "sweep")
    if interrupt == "scontrol requeue":
        # killed: its record still said running, with no lock holder
        assert logs.count("a stale run; running it again") == 1, logs[-4000:]
    else:
        # submitit's checkpoint requeued the same run and exited (the record said failed: SystemExit)
        assert "Calling checkpoint method" in logs and f"Requeued job {job}" in logs, logs[-4000:]
    completed = [line for line in logs.splitlines() if line.startswith("submitit INFO")
                 and line.endswith("Job completed successfully")]
    assert len(completed) == 2  # the linear task once, the MLP's second attempt


def test_the_same_run_submitted_twice_trains_once(cluster, tmp_path):
    """Two sweeps of one run at once: the second job finds the lock (or the done record) and trains nothing."""
    first = _sweep(cluster, tmp_path, "a", *SLOW, "head=mlp", "experiment.max_epochs=15", background=True)
    try:
        _wait_for("the first job to train", lambda: _running_record(tmp_path), proc=first)
        second = _sweep(cluster, tmp_path, "b", *SLOW, "head=mlp", "experiment.max_epochs=15")
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0 and second.returncode == 0, err[-3000:] + second.stderr[-3000:]
    (record,) = _records(tmp_path)
    assert record["status"] == "done"
    logs = _job_logs(tmp_path / "b")
    assert "not starting it twice" in logs or "is done (same fingerprint" in logs, logs[-3000:]
