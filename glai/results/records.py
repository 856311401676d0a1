"""Run records: one JSON file per run, named by its fingerprint, written atomically and readable by all
(docs/results.md, docs/INTERFACES.md; docs/method.md, Run identity), and the per-run lock that keeps two
processes from training the same run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from glai.names import path_part
from glai.results.cpu import cpu_info
from glai.results.identity import fingerprint, short
from glai.results.schema import SCHEMA_VERSION  # re-exported: the version of glai.results.schema

__all__ = [
    "RECORD_MODE",
    "SCHEMA_VERSION",
    "RunLock",
    "RunLockedError",
    "atomic_write_text",
    "environment",
    "process_info",
    "read_record",
    "record_config",
    "record_fingerprint",
    "record_path",
    "write_record",
]

#: Records and tables are readable by collaborators on shared storage.
RECORD_MODE = 0o644
REPO_ROOT = Path(__file__).resolve().parents[2]


def record_path(
    results_dir: str | os.PathLike, experiment: str, head: str, rho: float | None, seed: int, tag: str = "",
    fingerprint: str | None = None, dataset: str | None = None,
) -> Path:
    """``<results_dir>/<experiment>[/@<dataset>]/<head>[-<tag>]/[rho<rho>-]seed<seed>-<fingerprint[:10]>.json``;
    ``rho`` None (a head that does not read it: mlp, linear) leaves it out of the name, and ``dataset`` is given
    for data other than the experiment's own (a user's CSV through ``experiment=ffn/dbpedia``), whose runs then
    sit apart from the stand-in's.

    The readable part tells runs apart in a listing; the fingerprint
    (:func:`glai.results.identity.fingerprint`) keeps runs of different settings apart. Without
    ``fingerprint`` it is the schema-1 name (``rho<rho>-seed<seed>.json``).

    Raises:
        ConfigError: an experiment, head or tag that would leave ``results_dir`` (:func:`glai.names.path_part`).
    """
    head_dir = f"{head}-{tag}" if tag else head
    suffix = f"-{short(fingerprint)}" if fingerprint else ""
    prefix = "" if rho is None else f"rho{rho:g}-"
    folder = Path(results_dir) / path_part("experiment.name", experiment, exact=True, nested=True)
    if dataset:
        folder = folder / f"@{path_part('dataset.name', dataset)}"
    return folder / path_part("tag", head_dir, exact=True) / f"{prefix}seed{seed}{suffix}.json"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace`` (mode 0644).

    Raises:
        OSError: the folder cannot be created or written (nothing is left behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, RECORD_MODE)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write a run record atomically (a reader never sees a half-written file)."""
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=True, default=_jsonable) + "\n")


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record at ``path``; None when it does not exist.

    Raises:
        ValueError: when the file is not valid JSON (it says which file, to delete or repair).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"run record {path} is not valid JSON ({err}); delete it or pass overwrite=true") from err


def record_config(record: dict[str, Any]) -> dict[str, Any] | None:
    """A record's resolved config as its fingerprint sees it; None when the record has none.

    Schema-1 records stored ``device: auto``; the device that ran is in ``environment.device``.
    """
    config = record.get("config")
    if not isinstance(config, dict) or not config:
        return None
    if config.get("device") == "auto" and (record.get("environment") or {}).get("device"):
        config = {**config, "device": record["environment"]["device"]}
    return config


def record_fingerprint(record: dict[str, Any], *, seed: bool = True) -> str | None:
    """The fingerprint of a record, recomputed from its stored config (any schema); None without a config."""
    config = record_config(record)
    return None if config is None else fingerprint(config, seed=seed)


def _jsonable(obj: Any):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(device: str) -> dict[str, Any]:
    """Versions, device, the CPU (:func:`glai.results.cpu.cpu_info`: model, vector extensions, cache sizes; on every
    device, since the host's CPU runs the loop's Python), git SHA and dirty flag, host and time (UTC) of this run.
    ``device_name`` is the GPU's name on CUDA, else the CPU's (:func:`glai.results.cpu.cpu_name`)."""
    import numpy
    import scipy
    import sklearn
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                "scipy": scipy.__version__, "sklearn": sklearn.__version__}
    for name in ("hydra", "omegaconf", "timm", "transformers", "datasets", "triton"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # optional at run time
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    cpu = cpu_info()
    return {
        "versions": versions,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else cpu["name"],
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "host": platform.node(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def process_info() -> dict[str, Any]:
    """Who runs this: pid, host and start time (UTC), stored in a running record for :class:`RunLock`."""
    return {"pid": os.getpid(), "host": platform.node(),
            "start_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


class RunLockedError(RuntimeError):
    """Another process holds the run's lock: it is training the same run (same fingerprint) right now."""


class RunLock:
    """A file lock per run record (``.<record>.lock`` beside it), held while the run trains (filelock).

    Args:
        path: the record's path.

    Raises (``acquire``):
        RunLockedError: another process holds it; the message names its pid, host and start time when its
            running record says so.
        OSError: the lock file cannot be created (an unwritable results folder).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        # a hidden file beside the record: on shared storage every host sees the same lock
        self.lock = FileLock(str(self.path.with_name(f".{self.path.name}.lock")))

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            holder = {}
            try:
                holder = (read_record(self.path) or {}).get("process") or {}
            except ValueError:
                pass
            who = (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('start_utc')}"
                   if holder else "a process that has not written its record yet")
            raise RunLockedError(f"{self.path} is being trained by {who}; not starting it twice") from None
        return self

    def release(self) -> None:
        self.lock.release()

    def wait(self, timeout: float = -1) -> None:
        """Block until no process holds the lock (``timeout`` seconds, -1 = no limit), then return without
        holding it. Raises ``filelock.Timeout`` when the time runs out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock.acquire(timeout=timeout):
            pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
