"""The record's schema in code matches docs/INTERFACES.md and what the runner writes (issue 19)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from glai.config import compose_config
from glai.results.schema import COST_FIELDS, METRICS_FIELDS, RECORD_FIELDS, check_record, new_record
from glai.runner import run

DOC = Path(__file__).resolve().parents[2] / "docs" / "INTERFACES.md"


def _documented() -> tuple[set[str], set[str], set[str]]:
    """Top-level, metrics and cost keys of the record block of docs/INTERFACES.md (comments stripped): a
    ``metrics`` / ``cost`` key is one on their first line or at their keys' indentation."""
    text = DOC.read_text()
    block = text[text.index("## Run records"):]
    block = block[block.index("```") + 3:]
    lines = [re.sub(r"#.*", "", line) for line in block[: block.index("```")].splitlines()]
    top, found, part, indent = set(), {"metrics": set(), "cost": set()}, None, 0
    for line in lines:
        if re.match(r'^[{ ]"', line):  # a top-level line: '{"key"' or ' "key"'
            first = re.match(r'^[{ ]"(metrics|cost)": \{', line)
            if first:
                part, indent = first.group(1), first.end()
                top.add(part)
                inner = line[first.end():]
                while re.search(r"\{[^{}]*\}", inner):
                    inner = re.sub(r"\{[^{}]*\}", "", inner)
                found[part].update(re.findall(r'"([a-z_0-9]+)":', inner.split("{", 1)[0]))
            else:
                part = None
                flat = line[1:]
                while re.search(r"\{[^{}]*\}", flat):  # drop nested objects, then anything an open one holds
                    flat = re.sub(r"\{[^{}]*\}", "", flat)
                top.update(re.findall(r'"([a-z_0-9]+)":', flat.split("{", 1)[0]))
        elif part is not None and len(line) - len(line.lstrip(" ")) == indent:
            found[part].update(re.findall(r'^\s+"([a-z_0-9]+)":', line))
    return top, found["metrics"], found["cost"]


def test_interfaces_lists_exactly_the_schema_fields():
    top, metrics, cost = _documented()
    assert top == set(RECORD_FIELDS), top ^ set(RECORD_FIELDS)
    assert metrics == set(METRICS_FIELDS), (metrics ^ set(METRICS_FIELDS))
    assert cost == set(COST_FIELDS)


@pytest.mark.parametrize("head", ["mlp", "mlp_reduced", "linear", "glai"])
def test_the_runner_writes_records_of_the_schema(head, tmp_path):
    rec = run(compose_config([f"head={head}", f"results_dir={tmp_path}", "experiment.max_epochs=2",
                              "experiment.reduced_epochs_mode=fixed", "experiment.reduced_epochs=1", "verbose=false"]))
    # run() returns the record written, plus where it lies (``_path``: never written into the file)
    assert json.loads(Path(rec.pop("_path")).read_text()) == json.loads(json.dumps(rec))
    check_record(rec)
    assert rec["status"] == "done" and set(rec["metrics"]) <= METRICS_FIELDS


def test_new_record_refuses_unknown_and_missing_fields():
    with pytest.raises(TypeError, match="not fields of the run record"):
        new_record(statuss="done")
    with pytest.raises(TypeError, match="missing"):
        new_record(status="done")
    with pytest.raises(ValueError, match="is not in the schema"):
        check_record({"bogus": 1})
