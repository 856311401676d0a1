"""`make bench` (scripts/bench_estimator.py): every method at every thread count, side by side, into its CSV."""

import csv
import importlib.util
import os
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
        # the optimiser phase (issue 29) is timed inside each step: a positive part of it, its share consistent
        assert 0 < float(r["optimizer_ms"]) <= float(r["step_ms"])
        assert float(r["optimizer_share"]) == pytest.approx(float(r["optimizer_ms"]) / float(r["step_ms"]), abs=1e-3)
    printed = capsys.readouterr().out
    assert "| 1t" in printed and "| 2t" in printed and "<- auto" in printed and "(optimiser " in printed


def test_every_row_names_its_cpu_and_the_cpp_rows_their_blocking(tmp_path, monkeypatch):
    """Times of two CPUs are never one table's: every row carries the CPU (glai.results.cpu); the compiled kernels'
    rows name the blocking chosen on it in the warm-up (glai.kernels.estimator.tuning) and the timing's cost, at each
    thread count; ``auto`` marks the backend head.backend=auto picks; ``--tuning fresh`` leaves the user's cache
    alone."""
    from glai.kernels.estimator import cpp_available, tuning
    from glai.results.cpu import cpu_info

    bench = _bench_module()
    monkeypatch.setenv("GLAI_CACHE_DIR", str(tmp_path / "user-cache"))
    out = tmp_path / "bench.csv"
    bench.main(["--shapes", "A2", "--batches", "40", "--repeats", "1", "--warmup", "1", "--threads", "1,2",
                "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    cpu = cpu_info()
    assert {(r["cpu"], r["cpu_vector"], r["l2_kib"], r["torch_capability"]) for r in rows} == {
        (cpu["name"], " ".join(cpu["vector"]), str(cpu["l2_kib"] or ""), str(cpu["torch_capability"]))}
    assert sum(r["auto"] == "True" for r in rows) == 2  # one backend per thread count
    assert all(r["blocking"] == "" for r in rows if r["backend"] != "cpp")
    if cpp_available():
        cpp = [r for r in rows if r["backend"] == "cpp"]
        assert len(cpp) == 2 and all(r["blocking"].startswith("fwd ") and float(r["tune_ms"]) > 0 for r in cpp)
    assert not (tmp_path / "user-cache").exists() and os.environ.get("GLAI_CACHE_DIR") == str(tmp_path / "user-cache")
    assert tuning._environment(tuning._generation)[0] == str(tmp_path / "user-cache")


def test_the_benchmark_refuses_bad_thread_counts(tmp_path):
    bench = _bench_module()
    with pytest.raises(SystemExit):
        bench.main(["--shapes", "A2", "--threads", "0", "--out", str(tmp_path / "x.csv")])


def test_the_block_shape_runs_at_token_batches_with_its_arithmetic_limit(tmp_path, monkeypatch):
    """Issue 29: family T's block (384, 1536, 384) at token batches, the GELU block on Adam as the reference, and
    every sparse row with macs_ratio = active multiply-adds per sample over the MLP's (here measured on the gates
    of a random selector: about half the gates on)."""
    bench = _bench_module()
    monkeypatch.setattr(bench, "TOKEN_BATCHES", (64, 200))  # odd, small token batches: a test, not the bench
    out = tmp_path / "bench.csv"
    bench.main(["--shapes", "FFN384", "--repeats", "1", "--warmup", "1", "--threads", "1", "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert {int(r["batch"]) for r in rows} == {64, 200}
    sparse = [r for r in rows if r["method"] == "sparse"]
    assert sparse and all(0.1 < float(r["macs_ratio"]) < 1.0 for r in sparse)
    assert all(r["macs_ratio"] == "" for r in rows if r["method"] != "sparse")
    assert {int(r["kept_paths"]) for r in rows} == {2 * 384 * 1536 + 1536}  # the block's budget minus d biases


def test_the_pretrained_block_is_skipped_with_its_reason_without_the_data(tmp_path, monkeypatch, capsys):
    """The MiniLM row (the pretrained block on its own tokens) needs GLAI_DATA_ROOT's weights and texts: without them
    the bench says so and goes on, and pretrained_block names the variable."""
    bench = _bench_module()
    monkeypatch.setenv("GLAI_DATA_ROOT", str(tmp_path / "nowhere"))
    out = tmp_path / "bench.csv"
    bench.main(["--shapes", "MiniLM,A2", "--batches", "16", "--repeats", "1", "--warmup", "1", "--threads", "1",
                "--out", str(out)])
    assert "MiniLM: skipped (no weights/all-MiniLM-L6-v2 or data/dbpedia14/train.csv under GLAI_DATA_ROOT=" in (
        capsys.readouterr().out)
    assert {r["shape"] for r in csv.DictReader(out.open())} == {"A2"}
    with pytest.raises(FileNotFoundError, match="GLAI_DATA_ROOT"):
        bench.pretrained_block("MiniLM")


def test_the_pretrained_block_reads_its_own_tokens(tmp_path, monkeypatch):
    """pretrained_block on the tests' tiny BERT (the hub's format) and a CSV of texts in DBPedia's columns: the ReLU
    switch of the last block, and one d-wide token per valid (attention-masked) token of the texts at its input."""
    import shutil

    import torch
    from transformers import AutoTokenizer

    from tests.data.tiny_fixtures import TEXT_DIM, _make_text_models

    bench = _bench_module()
    root = tmp_path / "root"
    bert, _ = _make_text_models(tmp_path / "models")
    shutil.copytree(bert, root / "weights" / "all-MiniLM-L6-v2")
    (root / "data" / "dbpedia14").mkdir(parents=True)
    texts = ["red apple", "blue ocean sky whale river", "moss"]
    (root / "data" / "dbpedia14" / "train.csv").write_text("label,text\n" + "".join(f"0,{t}\n" for t in texts))
    monkeypatch.setenv("GLAI_DATA_ROOT", str(root))
    mlp, tokens = bench.pretrained_block("MiniLM")
    assert tuple(mlp[0].weight.shape) == (64, TEXT_DIM) and isinstance(mlp[1], torch.nn.ReLU)
    tokenizer = AutoTokenizer.from_pretrained(str(bert))
    assert tokens.dtype == torch.float32
    assert tokens.shape == (sum(len(tokenizer(t)["input_ids"]) for t in texts), TEXT_DIM)
