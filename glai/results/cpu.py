"""The CPU a measurement ran on: model, vector extensions and cache sizes, for every record and benchmark row.

Times depend on the CPU as much as on the code (the compiled estimator's step on one 2-core Intel Xeon and one 2-core
AMD EPYC, both with AVX-512 and 48 KiB of L1d, differed by 1.75x at the same MLP step), so a run record's
``environment.cpu`` and every row of ``scripts/bench_estimator.py`` carry :func:`cpu_info`, and tables never put
times of two CPUs in one row (:func:`cpu_name` is one of the environment keys of :mod:`glai.results.groups`).

Read from the OS (Linux: ``/proc/cpuinfo`` and ``/sys/devices/system/cpu/cpu0/cache``; ``lscpu`` where those say
nothing) and from torch (``torch.backends.cpu.get_cpu_capability()``, the widest kernels ATen dispatches to), once per
process: about a millisecond.
"""

from __future__ import annotations

import copy
import functools
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["UNKNOWN", "VECTOR_FLAGS", "cpu_info", "cpu_name"]

#: The label of a record that carries no CPU (written before records stored it): a CPU of its own in tables.
UNKNOWN = "unknown"
#: Instruction-set flags worth a row's attention (``/proc/cpuinfo`` spelling), in this order when present:
#: the vector widths and the matrix units the kernels of torch and of this project can use.
VECTOR_FLAGS = (
    "sse4_2", "avx", "fma", "avx2", "avx_vnni",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx512ifma", "avx512vbmi", "avx512_vbmi2", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    # Arm (the "Features" line)
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm", "sme",
)
_CPUINFO = Path("/proc/cpuinfo")
_CACHE_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")


def _first_block(text: str) -> dict[str, str]:
    """The ``key: value`` lines of the first processor block of ``/proc/cpuinfo`` (x86 and Arm alike)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def _int(value: str | None) -> int | None:
    try:
        return int(value, 0) if value is not None else None
    except ValueError:
        return None


def _size_kib(text: str) -> int | None:
    """``48K``, ``1024K``, ``32M``, ``1 MiB`` or a plain byte count -> KiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2).upper()
    scale = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[unit]
    return int(round(number * scale))


def _caches_sysfs(root: Path = _CACHE_SYSFS) -> dict[str, int]:
    """Per-core (one instance's) cache sizes of cpu0 in KiB: ``{"l1d": 48, "l2": 1024, "l3": 32768}``."""
    out: dict[str, int] = {}
    for index in sorted(root.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _size_kib((index / "size").read_text())
        except OSError:
            continue
        if size is None or kind == "Instruction":
            continue
        out.setdefault("l1d" if level == "1" else f"l{level}", size)
    return out


def _caches_lscpu() -> dict[str, int]:
    """The same from ``lscpu -C`` (one instance's size, in bytes), where sysfs has none (some containers)."""
    if shutil.which("lscpu") is None:
        return {}
    try:
        text = subprocess.run(["lscpu", "-C=NAME,ONE-SIZE", "-B"], capture_output=True, text=True, timeout=5,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 2 and parts[0].lower() in ("l1d", "l2", "l3") and parts[1].isdigit():
            out[parts[0].lower()] = int(parts[1]) // 1024
    return out


def _torch_capability() -> str | None:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # an old torch without the call, or none at all
        return None


@functools.cache
def _read() -> dict[str, Any]:
    try:
        block = _first_block(_CPUINFO.read_text())
    except OSError:
        block = {}
    flags = set((block.get("flags") or block.get("Features") or "").split())
    model = block.get("model name") or block.get("Model name") or platform.processor() or platform.machine()
    caches = _caches_sysfs() or _caches_lscpu()
    return {
        "model": model or UNKNOWN,
        "vendor": block.get("vendor_id") or block.get("CPU implementer"),
        "family": _int(block.get("cpu family")),
        "model_id": _int(block.get("model")) if "model name" in block else None,
        "stepping": _int(block.get("stepping")),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "vector": [f for f in VECTOR_FLAGS if f in flags],
        "torch_capability": _torch_capability(),
        "l1d_kib": caches.get("l1d"),
        "l2_kib": caches.get("l2"),
        "l3_kib": caches.get("l3"),
    }


def cpu_info() -> dict[str, Any]:
    """This machine's CPU, read once per process (a fresh copy each call).

    Returns:
        ``{"name", "model", "vendor", "family", "model_id", "stepping", "arch", "logical_cpus", "vector",
        "torch_capability", "l1d_kib", "l2_kib", "l3_kib"}``: ``model`` as the OS names it (``"AMD EPYC"``,
        ``"Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"``); ``family`` / ``model_id`` / ``stepping`` the x86
        identification numbers (None elsewhere); ``vector`` the :data:`VECTOR_FLAGS` the CPU has; ``torch_capability``
        the widest ATen kernels (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``); the cache sizes of one core's L1 data and L2
        and of one L3 instance, in KiB (None when the OS does not say); ``name``: :func:`cpu_name`.
    """
    info = copy.deepcopy(_read())
    return {"name": cpu_name(info), **info}


def cpu_name(info: dict[str, Any] | None) -> str:
    """The CPU as tables tell records apart: the model with its x86 family and model numbers (a hypervisor may
    show every EPYC generation as ``"AMD EPYC"``), e.g. ``"AMD EPYC (family 26 model 2)"``; :data:`UNKNOWN` for
    a record without one.
    """
    if not info or not info.get("model"):
        return UNKNOWN
    if info.get("name"):
        return str(info["name"])
    ids = [f"{k} {info[f]}" for k, f in (("family", "family"), ("model", "model_id")) if info.get(f) is not None]
    return f"{info['model']} ({' '.join(ids)})" if ids else str(info["model"])
