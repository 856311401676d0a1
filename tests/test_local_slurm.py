"""scripts/local_slurm.py's failure paths, without Slurm (issue 30): stop never signals a process that is no longer
its daemon (it runs as root), and status without a cluster answers at once."""

import json
import subprocess
import sys
import time

from tests.conftest import load_script


def test_stop_leaves_a_reused_pid_alone(tmp_path):
    slurm = load_script("local_slurm")
    # a process that took over the pid pids.json names: not slurmd, not of this folder
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (tmp_path / "pids.json").write_text(json.dumps({"munged": other.pid, "slurmctld": other.pid,
                                                        "slurmd": other.pid}))
        assert slurm.stop(tmp_path, grace_s=0.5) == []
        time.sleep(0.2)
        assert other.poll() is None  # still running: never signalled
    finally:
        other.kill()
        other.wait()


def test_status_without_a_cluster_answers_at_once(tmp_path, capsys):
    slurm = load_script("local_slurm")
    start = time.monotonic()
    assert slurm.main(["status", "--dir", str(tmp_path)]) == 2
    assert time.monotonic() - start < 5
    assert "no cluster runs in" in capsys.readouterr().err
