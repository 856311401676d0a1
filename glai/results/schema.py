"""The run record's schema in code (``docs/INTERFACES.md`` lists exactly these fields; a test compares them).

The runner builds every record with :func:`new_record` and checks it with :func:`check_record` before each write;
the test fixtures build theirs the same way. :data:`SCHEMA_VERSION` 2: file names carry the fingerprint and
records store it. Readers accept older records (schema 1) through :func:`glai.results.records.record_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["COST_FIELDS", "METRICS_FIELDS", "RECORD_FIELDS", "SCHEMA_VERSION", "check_record", "new_record"]

SCHEMA_VERSION = 2

#: Top-level fields: name -> (the JSON types it may hold, whether every record has it from its first write).
RECORD_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema_version": ((int,), True),
    "status": ((str,), True),            # running | done | failed | pruned (a search trial its pruner stopped)
    "error": ((str, type(None)), True),
    "experiment": ((str,), True),
    "head": ((str,), True),
    "tag": ((str,), True),
    "seed": ((int,), True),
    "rho": ((float, int), True),
    "family": ((str,), True),
    "fingerprint": ((str,), True),
    "group_fingerprint": ((str,), True),
    "overrides": ((list,), True),
    "config": ((dict,), True),
    "deviations": ((list,), True),
    "environment": ((dict,), True),
    "process": ((dict,), True),
    "data_s": ((float, int), True),      # seconds to load (and, on a cache miss, embed) the data
    "metrics": ((dict,), False),         # a finished run's (done; absent on running and on most failures)
    "cost": ((dict,), False),
}

#: Keys of ``metrics`` (which ones a record has depends on the head, family and study; docs/INTERFACES.md).
METRICS_FIELDS = frozenset({
    "monitor", "mode", "bvs", "best_epoch", "epochs", "curves", "stopped_by", "step_ms", "structure",
    "firing_ratio", "episodes", "folds",
    # the standard error of bvs over folds, repeated splits or episodes (a search trial's)
    "bvs_se",
    # a pruned search trial: where its pruner stopped it, the score it had reported there, and why
    "pruned",
    # the early stop's smallest improvement as it ran (experiment.min_delta_rows resolved on the validation rows)
    "min_delta",
    # GLAI
    "reduced_epochs", "total_epochs", "reduced_curves", "reduced_bvs", "reduced_stopped_by", "reduced_step_ms",
    "theorem2_bound", "active_paths_per_sample", "reduced_epochs_rule",
    # retrain / combine studies
    "study",
    # family T: training tokens per second of a step; ffn_glai: the converted block's score before any
    # estimator step and its output error against the ReLU block it converts, its selector phase, kept paths and
    # active paths per validation token
    "tokens_per_s", "converted_bvs", "conversion_error", "selector_epochs", "selector_bvs", "kept_paths",
    "active_paths_per_token",
})

#: Keys of ``cost``.
COST_FIELDS = frozenset({"time_s", "total_s", "params", "estimator_backends",
                         # family T's ffn_glai: the conversion's seconds and peak resident memory (MiB)
                         "conversion"})


def new_record(**fields: Any) -> dict[str, Any]:
    """A record with every field of :data:`RECORD_FIELDS` that is set from the first write, in schema order.

    Raises:
        TypeError: a field the schema does not have, or a required one missing.
    """
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise TypeError(f"not fields of the run record (glai.results.schema.RECORD_FIELDS): {sorted(unknown)}")
    fields.setdefault("schema_version", SCHEMA_VERSION)
    missing = [k for k, (_, required) in RECORD_FIELDS.items() if required and k not in fields]
    if missing:
        raise TypeError(f"run record fields missing: {missing}")
    return {k: fields[k] for k in RECORD_FIELDS if k in fields}


def check_record(record: Mapping[str, Any]) -> None:
    """The record holds the schema's fields with their types, and no others; ``metrics`` and ``cost`` only
    known keys.

    Raises:
        ValueError: naming the first field that is unknown, missing or of the wrong type.
    """
    for key in record:
        if key not in RECORD_FIELDS:
            raise ValueError(f"run record field {key!r} is not in the schema (glai.results.schema.RECORD_FIELDS)")
    for key, (types, required) in RECORD_FIELDS.items():
        if key not in record:
            if required:
                raise ValueError(f"run record field {key!r} is missing")
            continue
        if not isinstance(record[key], types) or (isinstance(record[key], bool) and bool not in types):
            raise ValueError(f"run record field {key!r} is {type(record[key]).__name__}, expected "
                             f"{' or '.join(t.__name__ for t in types)}")
    for part, known in (("metrics", METRICS_FIELDS), ("cost", COST_FIELDS)):
        extra = set(record.get(part) or {}) - known
        if extra:
            raise ValueError(f"run record {part} has keys outside the schema: {sorted(extra)}")
    if record["status"] == "done" and not ("metrics" in record and "cost" in record):
        raise ValueError("a done run record needs its metrics and cost")
