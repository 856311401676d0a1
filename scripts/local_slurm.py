#!/usr/bin/env python3
"""A one-node Slurm cluster on this machine, to try the cluster recipe (docs/cluster.md).

    eval "$(python scripts/local_slurm.py start)"   # start prints `export SLURM_CONF=...`
    python scripts/local_slurm.py status     # sinfo and squeue of the local cluster
    python scripts/local_slurm.py stop       # stops the daemons it started (by their pids)

``start`` writes everything under one folder it owns (``--dir``, default ``$GLAI_SLURM_DIR`` or
``/tmp/glai-slurm``): a munge key (``munge.key``, 0400), a ``slurm.conf`` for this node (its CPUs and memory as
``slurmd -C`` reports them, or ``--cpus`` / ``--mem-mb``), the daemons' logs (``log/``), state and spool, and
``pids.json``. It starts ``munged`` on its own socket, then ``slurmctld`` and ``slurmd`` in the foreground (so their
pids are the ones it stops), and waits until ``sinfo`` shows the node idle. Nothing under ``/etc`` is read or
written; the system's own munge and Slurm (if any) are left alone: the cluster listens on two free ports.

Client commands (``sbatch``, ``squeue``, ``scontrol``, submitit) find the cluster through ``SLURM_CONF``. Jobs run
as the user who started it; ``slurmd`` needs root (as on any Slurm node). Slurm accounting (``slurmdbd`` and a
database) is not set up: ``sacct`` fails, which submitit survives (``glai.cluster``).

Needs Debian's ``slurm-wlm`` and ``munge`` (``apt-get install slurm-wlm munge``; 22.05 on bookworm).

Raises (exit 2 with the reason): a daemon binary is missing, not root, the cluster is already running in
``--dir``, or the node is not idle within ``--wait`` seconds (the daemons' log tails are printed and they are stopped).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "sbatch", "squeue", "scontrol", "scancel")
INSTALL = "apt-get install -y slurm-wlm munge"


class ClusterError(RuntimeError):
    """The local cluster cannot be started or stopped; the message says why and what to do."""


def missing() -> list[str]:
    """Names of the daemons and client commands this machine lacks (``[]``: the cluster can start)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name, path=path) is None]


def _which(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin")
    if found is None:
        raise ClusterError(f"{name} is not installed. Fix: {INSTALL}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line(cpus: int | None = None, mem_mb: int | None = None) -> str:
    """``NodeName=...`` of this machine from ``slurmd -C`` (``CPUs`` and ``RealMemory`` replaced when given);
    ``NodeAddr=127.0.0.1`` so the node needs no DNS."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(part.split("=", 1) for part in out.splitlines()[0].split())
    if cpus is not None:
        fields = {"NodeName": fields["NodeName"], "CPUs": str(cpus), "RealMemory": fields["RealMemory"]}
    if mem_mb is not None:
        fields["RealMemory"] = str(mem_mb)
    fields["NodeAddr"] = "127.0.0.1"
    return " ".join(f"{k}={v}" for k, v in fields.items())


def slurm_conf(root: Path, node: str, ports: tuple[int, int]) -> str:
    """The ``slurm.conf`` of the local cluster: one node, one partition ``local``, no accounting, no cgroups."""
    host = node.split()[0].split("=", 1)[1]
    user = getpass.getuser()
    return "\n".join([
        "# written by scripts/local_slurm.py: a one-node cluster on this machine",
        "ClusterName=glai-local",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        f"SlurmUser={user}",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket.2'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        "MailProg=/bin/true",
        # a requeued or cancelled job is killed 5 s after its SIGTERM (default 30 s)
        "KillWait=5",
        # finished jobs stay visible to squeue / scontrol for 5 minutes
        "MinJobAge=300",
        node,
        "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _pids(root: Path) -> dict[str, int]:
    try:
        return json.loads((root / "pids.json").read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(pid: int, name: str, root: Path) -> bool:
    """Whether ``pid`` is still the daemon ``name`` this cluster started: its command line names the binary and a
    file of ``root`` (a pid of ``pids.json`` may have been reused by any process since; this script runs as root)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [a.decode(errors="replace") for a in argv if a]
    return bool(words) and Path(words[0]).name == name and any(str(root) in w for w in words[1:])


def client_env(root: Path) -> dict[str, str]:
    """The environment client commands need: ``os.environ`` with ``SLURM_CONF`` of the cluster in ``root``."""
    return {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}


def node_state(root: Path) -> str:
    """The node's state as ``sinfo`` prints it (``idle``, ``alloc``, ``down``...), ``""`` when unreachable."""
    proc = subprocess.run([_which("sinfo"), "-h", "-N", "-o", "%t"], env=client_env(root), capture_output=True,
                          text=True, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def start(root: Path, cpus: int | None = None, mem_mb: int | None = None, wait_s: float = 60.0) -> Path:
    """Start the cluster in ``root``; returns the path of its ``slurm.conf``.

    Raises:
        ClusterError: see the module docstring.
    """
    if os.geteuid() != 0:
        raise ClusterError("slurmd runs jobs as their user and must be started as root. Fix: run this as root "
                           "(sudo python scripts/local_slurm.py start)")
    running = {name: pid for name, pid in _pids(root).items() if _alive(pid)}
    if running:
        raise ClusterError(f"a local cluster is already running in {root} ({running}). Fix: "
                           f"python scripts/local_slurm.py stop --dir {root}")
    binaries = {name: _which(name) for name in DAEMONS}
    for name in CLIENTS:
        _which(name)
    for sub in ("munge", "state", "spool", "log", "run"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    conf = root / "slurm.conf"
    tmp = conf.with_suffix(".tmp")
    tmp.write_text(slurm_conf(root, node_line(cpus, mem_mb), (_free_port(), _free_port())))
    os.replace(tmp, conf)
    env = client_env(root)
    pids: dict[str, int] = {}
    logs = {name: open(root / "log" / f"{name}.out", "ab") for name in DAEMONS}
    commands = {
        "munged": [binaries["munged"], "--foreground", "--force", f"--key-file={key}",
                   f"--socket={root / 'munge' / 'munge.socket.2'}", f"--pid-file={root / 'run' / 'munged.pid'}",
                   f"--log-file={root / 'log' / 'munged.log'}", f"--seed-file={root / 'munge' / 'munged.seed'}"],
        # -c: a clean start (no jobs of an earlier cluster in this folder); -i: ignore a stale state
        "slurmctld": [binaries["slurmctld"], "-D", "-c", "-i", "-f", str(conf)],
        "slurmd": [binaries["slurmd"], "-D", "-f", str(conf)],
    }
    try:
        for name in DAEMONS:
            proc = subprocess.Popen(commands[name], stdout=logs[name], stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            pids[name] = proc.pid
            (root / "pids.json").write_text(json.dumps(pids))
            if name == "munged":
                _wait(lambda: (root / "munge" / "munge.socket.2").exists(), 15, "munged's socket")
            time.sleep(0.5)
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited at once (code {proc.returncode})")
        _wait(lambda: node_state(root).rstrip("*") == "idle", wait_s, "the node to be idle in sinfo")
    except (ClusterError, subprocess.SubprocessError) as err:
        tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                          for p in sorted((root / "log").glob("*")) if p.is_file())
        stop(root)
        raise ClusterError(f"{err}; the daemons were stopped. Their logs ({root / 'log'}):\n{tails}") from err
    finally:
        for f in logs.values():
            f.close()
    return conf


def _wait(ready, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if ready():
            return
        time.sleep(0.5)
    raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def stop(root: Path, grace_s: float = 10.0) -> list[str]:
    """Cancel the cluster's jobs (``scancel --me``, waiting up to ``grace_s`` for squeue to empty), then stop the
    daemons started in ``root`` (SIGTERM, then SIGKILL after ``grace_s``), slurmd first; returns the names of
    those that were running."""
    pids = _pids(root)
    stopped = []
    if all(pids.get(n) and _alive(pids[n]) and _ours(pids[n], n, root) for n in ("slurmctld", "slurmd")):
        # cancel the cluster's jobs first: their slurmstepd processes outlive slurmd otherwise
        env = client_env(root)
        subprocess.run([_which("scancel"), "--me"], env=env, capture_output=True, timeout=30)
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            out = subprocess.run([_which("squeue"), "-h", "--me"], env=env, capture_output=True, text=True,
                                 timeout=30)
            if out.returncode != 0 or not out.stdout.strip():
                break
            time.sleep(0.5)
    for name in reversed(DAEMONS):
        pid = pids.get(name)
        if pid is None or not _alive(pid):
            continue
        if not _ours(pid, name, root):
            print(f"[local_slurm] pid {pid} of pids.json is no longer {name} of {root}: left alone", file=sys.stderr)
            continue
        stopped.append(name)
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        end = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < end:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    (root / "pids.json").unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("GLAI_SLURM_DIR", "/tmp/glai-slurm")),
                        help="folder the cluster owns (default $GLAI_SLURM_DIR or /tmp/glai-slurm)")
    parser.add_argument("--cpus", type=int, help="CPUs of the node (default: slurmd -C)")
    parser.add_argument("--mem-mb", type=int, help="memory of the node in MB (default: slurmd -C)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the node to be idle")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    try:
        if args.action == "start":
            conf = start(root, args.cpus, args.mem_mb, args.wait)
            print(f"[local_slurm] node idle; logs in {root / 'log'}; stop with: python scripts/local_slurm.py "
                  f"stop --dir {root}", file=sys.stderr)
            print(f"export SLURM_CONF={conf}")
        elif args.action == "stop":
            print(f"[local_slurm] stopped: {', '.join(stop(root)) or 'nothing was running'}", file=sys.stderr)
        else:
            running = {n: pid for n, pid in _pids(root).items() if _alive(pid) and _ours(pid, n, root)}
            if set(running) != set(DAEMONS):
                # without its daemons sinfo spends about two minutes in Slurm's retries before it fails
                print(f"[local_slurm] no cluster runs in {root} (running: {running or 'none'}). Fix: "
                      f"eval \"$(python scripts/local_slurm.py start --dir {root})\"", file=sys.stderr)
                return 2
            env = client_env(root)
            for cmd in (["sinfo"], ["squeue"]):
                subprocess.run([_which(cmd[0]), *cmd[1:]], env=env, check=False)
    except ClusterError as err:
        print(f"[local_slurm] {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
