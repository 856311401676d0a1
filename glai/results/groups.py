"""Which table row a run belongs to (SPEC 12): runs are averaged only with runs of the same setting.

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

from collections import defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from glai.results.identity import differences, flatten, identity_items
from glai.results.records import record_config, record_fingerprint

__all__ = ["GroupCounts", "assign_groups", "format_value", "group_label"]

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
        # a tag names its own variant (tables select it by tag): its runs keep the experiment's name
        rec["_label"] = exp if (set(diff) <= {"tag"} or rec.get("tag")) else group_label(exp, diff)
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


def _split_collisions(records: Sequence[MutableMapping]) -> None:
    """Tell apart groups that share a (label, head, tag): by their environment, else by fingerprint."""
    by_cell: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        if rec.get("_group") is not None:
            by_cell[(rec["_label"], rec.get("head"), rec.get("tag") or "")][rec["_group"]].append(rec)
    for groups in by_cell.values():
        if len(groups) < 2:
            continue
        envs = {g: flatten(identity_items(record_config(recs[0]), ("environment",))) for g, recs in groups.items()}
        keys = sorted({k for env in envs.values() for k in env if len({str(e.get(k)) for e in envs.values()}) > 1})
        settings = {g: identity_items(record_config(recs[0]), ("setting", "label")) for g, recs in groups.items()}
        same_settings = len({repr(sorted(s.items())) for s in settings.values()}) == 1
        for group, recs in groups.items():
            if same_settings and keys:
                suffix = " {" + ", ".join(f"{k}={format_value(envs[group].get(k))}" for k in keys) + "}"
            else:
                suffix = f" #{group[:6]}"
            for rec in recs:
                rec["_label"] += suffix
