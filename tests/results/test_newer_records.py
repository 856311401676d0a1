"""A record of a newer schema than this code's (written by a newer glai, read by an older checkout on shared
storage) is never averaged into a row: ``make tables`` skips it and says which, in its console line, in
failed_runs.md and in the partner's unpaired.md entry."""

from __future__ import annotations

import json

import pandas as pd

from glai.results.schema import SCHEMA_VERSION
from glai.results.tables import write_all
from tests.results.records import make_record, references, write_records


def test_make_tables_skips_a_record_of_a_newer_schema_and_says_which(tmp_path):
    runs = tmp_path / "runs"
    paths = write_records(runs, [make_record("A1", head, seed, bvs=80.0 + seed + (head == "glai"))
                                 for head in ("mlp", "glai") for seed in range(3)])
    newer = next(p for p in paths if p.parent.name == "glai" and "seed2" in p.name)
    rec = json.loads(newer.read_text())
    rec.update(schema_version=SCHEMA_VERSION + 1, metrics={**rec["metrics"], "bvs": 1e6})
    newer.write_text(json.dumps(rec))
    lines: list[str] = []
    # what scripts/make_tables.py runs (its references composed from conf/; here the records' own)
    write_all(runs, tmp_path / "tables", references=references(["A1"]), figures=False, echo=lines.append)
    why = f"record {newer} is of schema version {SCHEMA_VERSION + 1}, newer than this glai's {SCHEMA_VERSION}"
    console = lines[0]
    assert "1 invalid (skipped)" in console and f"skipped: {why}" in console, console
    assert why in (tmp_path / "tables" / "failed_runs.md").read_text()
    assert f"glai: status invalid ({why}" in (tmp_path / "tables" / "unpaired.md").read_text()
    t3 = pd.read_csv(tmp_path / "tables" / "table3.csv", keep_default_na=False)
    glai = t3[t3.Head == "GLAI"].iloc[0]
    assert glai["n"] == 2 and "1000000" not in glai["BVS"]  # its score is never averaged in
