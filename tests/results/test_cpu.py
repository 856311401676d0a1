"""The CPU in every measurement (glai/results/cpu.py): a run record's environment names this machine's CPU as the OS
does, and tables never pair or average the times of two CPUs (glai/results/groups.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glai.results import cpu as cpu_module
from glai.results.cpu import UNKNOWN, cpu_info, cpu_name
from glai.results.groups import assign_groups
from glai.results.records import environment
from glai.results.stats import paired_contrast
from tests.results.records import make_record, references

CPUINFO = Path("/proc/cpuinfo")


def _first(key: str) -> str | None:
    for line in CPUINFO.read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


@pytest.mark.skipif(not CPUINFO.exists(), reason="reads Linux's /proc/cpuinfo")
def test_a_run_records_this_machines_cpu_as_proc_cpuinfo_names_it():
    env = environment("cpu")
    cpu = env["cpu"]
    assert cpu["model"] == (_first("model name") or _first("Model name"))
    flags = set((_first("flags") or _first("Features") or "").split())
    assert cpu["vector"] == [f for f in cpu_module.VECTOR_FLAGS if f in flags]
    if "avx512f" in flags:
        assert "avx512f" in cpu["vector"] and cpu["torch_capability"] in ("AVX512", "AVX512_BF16", "AMX")
    if _first("cpu family") is not None:
        assert cpu["family"] == int(_first("cpu family")) and cpu["model_id"] == int(_first("model"))
        assert cpu["name"] == f"{cpu['model']} (family {cpu['family']} model {cpu['model_id']})"
    assert env["device_name"] == cpu["name"]
    # the cache sizes of one core (sysfs), in KiB
    sysfs = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sysfs.glob("index*"):
        level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
        size = (index / "size").read_text().strip()
        assert size.endswith("K") or size.endswith("M")
        kib = int(size[:-1]) * (1024 if size.endswith("M") else 1)
        if kind != "Instruction":
            assert cpu["l1d_kib" if level == "1" else f"l{level}_kib"] == kib


def test_the_cpu_is_read_once_and_handed_out_as_copies():
    first = cpu_info()
    first["vector"].append("not-a-flag")
    first["model"] = "changed"
    assert "not-a-flag" not in cpu_info()["vector"] and cpu_info()["model"] != "changed"
    assert cpu_module._read.cache_info().currsize == 1


def test_cache_sizes_read_from_sysfs_and_their_units(tmp_path):
    for k, (level, kind, size) in enumerate([("1", "Data", "48K"), ("1", "Instruction", "32K"),
                                             ("2", "Unified", "2048K"), ("3", "Unified", "480M")]):
        (tmp_path / f"index{k}").mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (tmp_path / f"index{k}" / name).write_text(value + "\n")
    assert cpu_module._caches_sysfs(tmp_path) == {"l1d": 48, "l2": 2048, "l3": 480 * 1024}
    assert cpu_module._size_kib("1 MiB") == 1024 and cpu_module._size_kib("65536") == 64


def test_an_old_record_without_a_cpu_is_of_an_unknown_cpu():
    assert cpu_name(None) == UNKNOWN and cpu_name({}) == UNKNOWN
    assert cpu_name({"model": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "family": 6, "model_id": 143}) == (
        "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (family 6 model 143)")
    assert cpu_name({"model": "Apple M2"}) == "Apple M2"


XEON = {"model": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "family": 6, "model_id": 143}
EPYC = {"model": "AMD EPYC", "family": 26, "model_id": 2}


def _with_cpu(rec, cpu):
    rec["environment"]["cpu"] = {**cpu, "name": cpu_name(cpu)} if cpu else None
    return rec


def test_records_of_two_cpus_are_never_paired():
    """Three seeds of the MLP and GLAI on the EPYC and one more GLAI seed on the Xeon, the same settings: the Xeon's
    record gets a label of its own (``X {cpu=...}``) and is paired with no EPYC MLP; the EPYC rows still pair."""
    recs = [_with_cpu(make_record("digits", head, seed, total_s=10.0 if head == "mlp" else 4.0), EPYC)
            for seed in range(3) for head in ("mlp", "glai")]
    recs.append(_with_cpu(make_record("digits", "glai", 3, total_s=7.0), XEON))
    assign_groups(recs, references(["digits"]))
    xeon = f"digits {{cpu={cpu_name(XEON)}}}"
    assert {(r["head"], r["_label"]) for r in recs} == {("mlp", "digits"), ("glai", "digits"), ("glai", xeon)}
    relabelled = [{**r, "experiment": r["_label"]} for r in recs]
    assert not paired_contrast(relabelled, "glai", "mlp", experiments=[xeon]).pairs
    assert len(paired_contrast(relabelled, "glai", "mlp", experiments=["digits"]).pairs) == 3


def test_records_differing_only_in_cpu_model_are_not_averaged():
    """Two runs of one group, one seed on each CPU (the same config, so the same group): neither CPU prevails over
    the other silently; the one outside the prevailing CPU is labelled, and old records (no CPU) are a CPU of their
    own."""
    recs = [_with_cpu(make_record("digits", "mlp", 0), EPYC), _with_cpu(make_record("digits", "mlp", 1), XEON),
            _with_cpu(make_record("digits", "mlp", 2), EPYC), _with_cpu(make_record("digits", "mlp", 3), None)]
    assert len({r["group_fingerprint"] for r in recs}) == 1
    assign_groups(recs, references(["digits"]))
    assert [r["_label"] for r in recs] == ["digits", f"digits {{cpu={cpu_name(XEON)}}}", "digits",
                                           "digits {cpu=unknown}"]
