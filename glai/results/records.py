"""Run records: one JSON file per run, written atomically (STYLE "Results", docs/INTERFACES.md)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "record_path", "read_record", "write_record", "environment", "atomic_write_text"]

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]


def record_path(
    results_dir: str | os.PathLike, experiment: str, head: str, rho: float, seed: int, tag: str = ""
) -> Path:
    """``<results_dir>/<experiment>/<head>[-<tag>]/rho<rho>-seed<seed>.json``."""
    head_dir = f"{head}-{tag}" if tag else head
    return Path(results_dir) / experiment / head_dir / f"rho{rho:g}-seed{seed}.json"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
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
    """Versions, device, git SHA and dirty flag, host and time (UTC) of this run."""
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
    return {
        "versions": versions,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "host": platform.node(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
