"""A tiny sweep through the submitit LOCAL launcher, run twice: the second run must skip finished jobs.

``python run.py -m hydra/launcher=local experiment=digits head=linear,mlp seed=0 ...`` in a subprocess, as a
user would on a cluster (``conf/hydra/launcher/local.yaml``); the runner keeps a record whose status is
"done" unless ``overwrite=true``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _runner_missing() -> str | None:
    if not (REPO / "run.py").exists():
        return "run.py is not there yet"
    try:
        import glai.runner  # noqa: F401
    except ImportError as err:
        return f"glai.runner is not importable yet ({err})"
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        return "hydra-submitit-launcher is not installed"
    return None


def _sweep(tmp: Path, sweep_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "run.py", "-m", "hydra/launcher=local", "experiment=digits", "head=linear,mlp",
           "seed=0", "experiment.max_epochs=2", f"results_dir={tmp / 'runs'}", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "GLAI_CACHE_DIR": str(tmp / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sweep failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_local_submitit_sweep_skips_finished_jobs(tmp_path):
    reason = _runner_missing()
    if reason:
        pytest.skip(reason)
    _sweep(tmp_path, tmp_path / "sweep1")
    records = {head: next((tmp_path / "runs" / "digits" / head).glob("seed0-*.json"))  # no rho: not read
               for head in ("linear", "mlp")}
    first = {}
    for head, path in records.items():
        found = sorted(str(p) for p in (tmp_path / "runs").rglob("*.json"))
        assert path.exists(), f"no record for {head}; records: {found}"
        rec = json.loads(path.read_text())
        assert rec["status"] == "done" and rec["head"] == head and rec["experiment"] == "digits"
        assert rec["metrics"]["epochs"] <= 2
        first[head] = (path.stat().st_mtime_ns, path.read_bytes())
    # submitit wrote its job folders (logs, pickles) under the sweep dir: the jobs ran as subprocesses
    assert list((tmp_path / "sweep1" / ".submitit").iterdir())

    _sweep(tmp_path, tmp_path / "sweep2")
    for head, path in records.items():
        again = (path.stat().st_mtime_ns, path.read_bytes())
        assert again == first[head], f"{head}: the finished run was redone"
    # the second sweep's jobs did run (and returned the kept records)
    assert list((tmp_path / "sweep2" / ".submitit").iterdir())
