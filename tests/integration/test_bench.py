"""`make bench` (scripts/bench_estimator.py): every method at every thread count, side by side, into its CSV."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_estimator", ROOT / "scripts" / "bench_estimator.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_estimator"] = module
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_writes_a_row_per_method_and_thread_count(tmp_path, capsys):
    bench = _bench_module()
    out = tmp_path / "bench.csv"
    bench.main(["--shapes", "A2", "--batches", "16", "--repeats", "2", "--warmup", "1", "--threads", "1,2",
                "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert rows and set(rows[0]) == set(bench.COLUMNS)
    cells = {(r["threads"], r["method"], r["backend"]) for r in rows}
    methods = {(r["method"], r["backend"]) for r in rows}
    assert {("mlp", "-"), ("sparse", "torch"), ("dense", "einsum")} <= methods
    assert cells == {(t, m, b) for t in ("1", "2") for m, b in methods}  # every method at both thread counts
    for r in rows:
        mlp = next(q for q in rows if q["threads"] == r["threads"] and q["method"] == "mlp")
        assert float(r["ratio_to_mlp"]) == pytest.approx(float(r["step_ms"]) / float(mlp["step_ms"]), rel=1e-3)
    printed = capsys.readouterr().out
    assert "| 1t" in printed and "| 2t" in printed and "<- auto" in printed


def test_the_benchmark_refuses_bad_thread_counts(tmp_path):
    bench = _bench_module()
    with pytest.raises(SystemExit):
        bench.main(["--shapes", "A2", "--threads", "0", "--out", str(tmp_path / "x.csv")])
