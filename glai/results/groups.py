"""Which table row a run belongs to (docs/method.md, Run identity): runs are averaged only with runs of the same
setting.

A record's *group* is its seedless fingerprint (:func:`glai.results.identity.fingerprint` with
``seed=False``), recomputed from its stored config. A group is "the paper's X" (or "the stand-in X", or
"the user's experiment X") only when its settings equal those of the unmodified experiment config X for the
same head (``references``: the configs ``python run.py experiment=X head=H`` composes), seed and environment
aside. Every other group gets a label of its own, ``X [key=value, ...]`` with the settings that differ, so
it is never averaged with, or printed beside, the protocol runs. Runs of one label, head and tag that still
differ (in the environment: ``X {device=cuda}``; otherwise ``X #1a2b3c``) are told apart too.

The assignment adds to each record: ``_base`` (the experiment), ``_label``, ``_protocol`` (bool), ``_group``
(seedless fingerprint or None) and ``_diff`` (the differing settings).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from glai.results.identity import differences, flatten, identity_items, is_variant_key
from glai.results.records import record_config, record_fingerprint

__all__ = ["GroupCounts", "assign_groups", "format_value", "group_label", "is_variant_key"]

# Group-level keys: when the name differs, the other keys of the group are implied by it.
_NAMED_GROUPS = ("backbone", "dataset", "experiment")


@dataclass
class GroupCounts:
    """What :func:`assign_groups` saw: records read, unreadable, not done, and done but not protocol."""

    read: int = 0
    invalid: int = 0
    failed: int = 0
    running: int = 0
    protocol: int = 0
    non_protocol: int = 0
    non_protocol_labels: tuple[str, ...] = ()

    def line(self) -> str:
        """One console line (``make tables``)."""
        labels = f" ({', '.join(self.non_protocol_labels)})" if self.non_protocol_labels else ""
        return (f"{self.read} records read: {self.invalid} invalid (skipped), {self.failed} failed, "
                f"{self.running} running or interrupted, {self.protocol} done protocol runs, "
                f"{self.non_protocol} done runs grouped as non-protocol{labels}")


def format_value(value) -> str:
    """A config value as labels and tables print it: ``0.001``, ``1e-05``, ``[432,256,3]``."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def group_label(experiment: str, diff: Mapping[str, object]) -> str:
    """``experiment [key=value, ...]`` for the differing settings (``tag`` left out: tables select by tag;
    ``head.width_factor`` left out when it follows ``rho``; ``backbone=name`` stands for its other keys)."""
    shown = {}
    for key, value in diff.items():
        group, _, field = key.partition(".")
        if key == "tag" or (key == "head.width_factor" and diff.get("rho") == value):
            continue
        if group in _NAMED_GROUPS and field != "name" and f"{group}.name" in diff:
            continue
        shown[group if (group in ("backbone", "dataset") and field == "name") else key] = value
    return f"{experiment} [{', '.join(f'{k}={format_value(v)}' for k, v in shown.items())}]" if shown else experiment


def assign_groups(records: Sequence[MutableMapping],
                  references: Mapping[tuple[str, str], Mapping] | None) -> GroupCounts:
    """Label every record's group in place (see the module docstring) and count what was read.

    Args:
        records: loaded records (:func:`glai.results.stats.load_records`), modified in place.
        references: ``(experiment, head) -> resolved config`` of the unmodified experiment; a record whose
            pair has no reference is labelled ``X [no reference config]`` and never counted as protocol.

    Returns:
        The :class:`GroupCounts`.
    """
    references = references or {}
    counts = GroupCounts(read=len(records))
    for rec in records:
        exp, head = str(rec.get("experiment")), str(rec.get("head"))
        rec["_base"], rec["_protocol"], rec["_diff"] = exp, False, {}
        config = record_config(rec) if rec.get("status") != "invalid" else None
        rec["_group"] = record_fingerprint(rec, seed=False) if config is not None else None
        reference = references.get((exp, head))
        if config is None:
            rec["_label"] = exp if rec.get("status") == "invalid" else f"{exp} [no config]"
            continue
        if reference is None:
            rec["_label"] = f"{exp} [no reference config]"
            continue
        diff = differences(config, reference)
        rec["_diff"] = diff
        rec["_protocol"] = not diff
        # a tag names its own variant of the head's settings (tables select it by tag): its label names the
        # group (data, backbone, arch, protocol settings) like every other run of that group, so a view pairs
        # a tagged run with the MLP of the same data on any data set
        shown = {k: v for k, v in diff.items() if not rec.get("tag") or not is_variant_key(k)}
        rec["_label"] = group_label(exp, shown)
    _split_collisions(records)
    labels = set()
    for rec in records:
        status = rec.get("status")
        if status == "invalid":
            counts.invalid += 1
        elif status == "failed":
            counts.failed += 1
        elif status != "done":
            counts.running += 1
        elif rec["_protocol"]:
            counts.protocol += 1
        else:
            counts.non_protocol += 1
            if not rec.get("tag"):
                labels.add(rec["_label"])
    counts.non_protocol_labels = tuple(sorted(labels))
    return counts


def _prevailing(values: list[str]) -> str:
    """The most common value (ties: the smallest, so the choice never depends on the order of files)."""
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def _split_collisions(records: Sequence[MutableMapping]) -> None:
    """Environment variants get labels of their own without orphaning the protocol rows (documented rule):

    1. Per label, each environment key (device, threads, the estimator backend, the CPU, ...) has a prevailing
       value: the one most of the label's records ran with (over every head and tag; ties: the smallest). A record
       whose environment differs from it is labelled ``X {key=value}`` with the keys that differ, every other
       record keeps ``X``. So an MLP at ``num_threads=2`` beside the 1-thread runs becomes
       ``X {num_threads=2}`` while the 1-thread MLP and GLAI runs still pair; a GLAI-only key (``head.backend``)
       is compared among the records that have it. The CPU (``cpu``: :func:`glai.results.cpu.cpu_name` of the
       record's ``environment.cpu``; ``unknown`` for records written before it was stored) is such a key: times
       of two CPUs are never paired or averaged in one row.
    2. Groups that still share a (label, head, tag) differ in their settings: each gets ``#<fingerprint[:6]>``.
    """
    from glai.results.cpu import cpu_name

    by_label: dict[str, list] = defaultdict(list)
    for rec in records:
        if rec.get("_group") is not None:
            by_label[rec["_label"]].append(rec)
    for recs in by_label.values():
        envs = [{k: format_value(v) for k, v in flatten(identity_items(record_config(r), ("environment",))).items()}
                for r in recs]
        for rec, env in zip(recs, envs):
            env["cpu"] = cpu_name((rec.get("environment") or {}).get("cpu"))
        prevailing = {k: _prevailing([e[k] for e in envs if k in e]) for k in sorted({k for e in envs for k in e})}
        for rec, env in zip(recs, envs):
            odd = [k for k in sorted(env) if env[k] != prevailing[k]]
            if odd:
                rec["_label"] += " {" + ", ".join(f"{k}={env[k]}" for k in odd) + "}"
    by_cell: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        if rec.get("_group") is not None:
            by_cell[(rec["_label"], rec.get("head"), rec.get("tag") or "")][rec["_group"]].append(rec)
    for groups in by_cell.values():
        if len(groups) < 2:
            continue
        for group, recs in groups.items():
            for rec in recs:
                rec["_label"] += f" #{group[:6]}"
