"""The compiled estimator's per-CPU tuning (glai/kernels/estimator/tuning.py): every candidate blocking gives the same
numbers bitwise; a choice is timed once per (CPU, shape class, batch class, threads), saved in that CPU's file, reused
without timing, made anew for another CPU; ``auto`` on the CPU follows it; overrides for tests and users."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from glai.kernels.estimator import (
    PathLayout,
    backend_label,
    compiled,
    glai_estimator,
    resolve_backend,
    tuning,
)
from glai.kernels.estimator.compiled import Blocking
from glai.kernels.estimator.function import EstimatorFunction
from tests.kernels.test_estimator_kernels import make_problem, needs_cpp


def _layout(p) -> PathLayout:
    return PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], p["x_tilde"].shape[1], p["gates"].shape[1], p["n_out"])


MODES = {
    # 129 inputs x 2 tiles x 64 bytes < SEGMENT_BYTES, 6 rows per gate: output order
    "output": {},
    # input segments of 2 inputs each (4 x 64 bytes), every row kept in them
    "segments": {"SEGMENT_BYTES": 256, "MIN_SEGMENT_PATHS": 0},
    # gate by gate
    "gate": {"GATE_MAJOR_MIN_ROWS_PER_GATE": 1},
}


@needs_cpp
@pytest.mark.parametrize("batch", [1, 16, 40, 200])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_candidate_blocking_gives_the_same_numbers_bitwise(mode, batch, monkeypatch):
    """Forward outputs under every forward blocking (tiles 1, 2, 4 x chunks of 16 paths, 100 paths, everything x rows
    off for a whole tile group skipped or run masked) and
    value gradients under every backward blocking (chunks x the two ways of loading the gate masks), at 1 and 2
    threads: equal bit for bit, in each arithmetic mode (output order, input segments, gate by gate); a short last
    tile group at 40 (3 tiles) and 200 (13); gates off for whole tiles."""
    for name, value in MODES[mode].items():
        monkeypatch.setattr(compiled, name, value)
    p = make_problem(batch, 129, 33, 6, 0.1, seed=batch)
    p["gates"][:32, :8] = 0
    layout = _layout(p)
    if batch > 16:
        assert compiled.forward_mode(layout, batch).startswith(mode)
    values, bias = layout.to_layout(p["values"]), p["bias"]
    grad_y = torch.randn(batch, p["n_out"], generator=torch.Generator().manual_seed(1))
    default = compiled.default_blocking(layout, batch)
    y0, xt0, gm0 = compiled.estimator_fwd_cpp(p["x_tilde"], p["gates"], layout, values, bias, default)
    g0, b0 = compiled.estimator_bwd_cpp(grad_y, xt0, gm0, layout, default)
    chunks = (16, 100, 1 << 20)
    saved = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for tiles, chunk, skip in itertools.product((1, 2, 4), chunks, (True, False)):
                blocking = Blocking(fwd_tiles=tiles, fwd_chunk=chunk, bwd_chunk=default.bwd_chunk, fwd_skip=skip)
                y, xt, gm = compiled.estimator_fwd_cpp(p["x_tilde"], p["gates"], layout, values, bias, blocking)
                assert torch.equal(y, y0) and torch.equal(xt, xt0) and torch.equal(gm, gm0), (threads, blocking)
            for chunk, kmov in itertools.product(chunks, (True, False)):
                blocking = Blocking(default.fwd_tiles, default.fwd_chunk, bwd_chunk=chunk, bwd_kmov=kmov)
                g, b = compiled.estimator_bwd_cpp(grad_y, xt0, gm0, layout, blocking)
                assert torch.equal(g, g0) and torch.equal(b, b0), (threads, blocking)
    finally:
        torch.set_num_threads(saved)
    assert g0.abs().sum() > 0 and y0.abs().sum() > 0


@needs_cpp
def test_forced_choices_change_no_number_end_to_end():
    """glai_estimator with every forced blocking (GLAI_ESTIMATOR_TUNING's spec): the output and both gradients
    bitwise those of the default blocking."""
    p = make_problem(70, 200, 40, 9, 0.08, seed=3)
    layout = _layout(p)

    def run():
        values = layout.to_layout(p["values"]).requires_grad_()
        bias = p["bias"].clone().requires_grad_()
        y = glai_estimator(p["x_tilde"], p["gates"], layout, values, bias, "cpp")
        y.pow(2).sum().backward()
        return y.detach(), values.grad, bias.grad

    with tuning.forced("off"):
        want = run()
    for spec in ("fwd_tiles=1,fwd_chunk=16,bwd_chunk=32", "fwd_tiles=2,bwd_kmov=0,fwd_skip=0",
                 "fwd_chunk=65536,bwd_chunk=999"):
        with tuning.forced(spec):
            got = run()
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)), spec


@needs_cpp
def test_a_choice_is_timed_once_saved_per_cpu_and_reused(monkeypatch):
    p = make_problem(64, 129, 33, 6, 0.1, seed=5)
    layout = _layout(p)
    before = len(tuning.timed)
    first = tuning.choose(layout, 64, p["x_tilde"], p["gates"])
    assert first.source == "timed" and first.tune_ms > 0 and len(tuning.timed) == before + 1
    assert first.blocking.fwd_tiles in (1, 2, 4) and first.ms["chosen"] > 0
    path = tuning.tuning_file()
    saved = json.loads(path.read_text())
    key = f"{tuning.shape_class(layout, 64)}/b64/t{torch.get_num_threads()}"
    assert saved["format"] == tuning._FORMAT and saved["entries"][key]["fwd_tiles"] == first.blocking.fwd_tiles
    assert path.parent == tuning.tuning_dir() and path.name.startswith(tuning.cpu_key())
    # reused: the same process (any batch of the class), then a fresh process's memory reading the file
    assert tuning.choose(layout, 50).blocking == first.blocking and len(tuning.timed) == before + 1
    tuning.clear_memory()
    again = tuning.choose(_layout(p), 64)
    assert again.source == "cache" and again.blocking == first.blocking and len(tuning.timed) == before + 1
    # another batch class is another choice
    tuning.choose(layout, 16, p["x_tilde"][:16], p["gates"][:16])
    assert len(tuning.timed) == before + 2
    # another CPU (model name and flags): a file of its own, timed anew
    monkeypatch.setattr(compiled, "_cpu_signature", lambda: "model name : Another CPU 9000\nflags : sse2 avx2")
    tuning.cpu_key.cache_clear()
    try:
        other = tuning.choose(layout, 64, p["x_tilde"], p["gates"])
        assert other.source == "timed" and len(tuning.timed) == before + 3
        assert tuning.tuning_file() != path and tuning.tuning_file().name.startswith("Another-CPU-9000-")
        assert tuning.tuning_file().exists() and path.exists()
    finally:
        tuning.cpu_key.cache_clear()


@needs_cpp
def test_auto_asks_the_tuning_and_runs_torch_where_the_cache_says_it_is_faster():
    p = make_problem(40, 129, 33, 6, 0.1, seed=6)
    layout = _layout(p)
    before = len(tuning.timed)
    # before any batch: the backend is decided on random rows with the default blocking, and the blocking waits for
    # the first real batch (random gates would not show what a batch's gates do to the forward's skipping)
    assert resolve_backend("auto", "cpu", 40, layout) in ("cpp", "torch")
    first = tuning.choose(layout, 40)
    assert first.backend in ("cpp", "torch") and not first.blocking_timed and len(tuning.timed) == before + 1
    assert first.blocking == compiled.default_blocking(layout, 40)
    real = tuning.choose(layout, 40, p["x_tilde"], p["gates"])
    assert real.blocking_timed and real.backend == first.backend and len(tuning.timed) == before + 2
    resolve_backend("auto", "cpu", 40, layout)
    tuning.choose(layout, 40, p["x_tilde"], p["gates"])
    assert len(tuning.timed) == before + 2
    # the blocking timed by a cpp call, then auto: the torch backend timed once more for the same entry
    big = make_problem(300, 129, 33, 6, 0.1, seed=6)
    tuning.choose(layout, 300, big["x_tilde"], big["gates"])
    resolve_backend("auto", "cpu", 300, layout)
    assert len(tuning.timed) == before + 4
    resolve_backend("auto", "cpu", 300, layout)
    assert len(tuning.timed) == before + 4
    assert resolve_backend("auto", "cpu") == "cpp"  # no layout: the compiled kernels, as the record names them
    with tuning.forced("backend=torch"):
        assert resolve_backend("auto", "cpu", 40, layout) == "torch"
        assert resolve_backend("cpp", "cpu", 40, layout) == "cpp"  # a named backend is never overridden
        values = layout.to_layout(p["values"])
        y = glai_estimator(p["x_tilde"], p["gates"], layout, values, p["bias"], "auto")
        seen = []
        original = EstimatorFunction.apply
        try:
            EstimatorFunction.apply = lambda *a: seen.append(a[-1]) or original(*a)
            glai_estimator(p["x_tilde"], p["gates"], layout, values, p["bias"], "auto")
        finally:
            EstimatorFunction.apply = original
        assert seen == ["torch"]
    assert torch.allclose(y, glai_estimator(p["x_tilde"], p["gates"], layout, values, p["bias"], "cpp"),
                          rtol=1e-5, atol=1e-5)


@needs_cpp
def test_the_record_names_the_blocking_that_ran():
    p = make_problem(40, 129, 33, 6, 0.1, seed=7)
    layout = _layout(p)
    with tuning.forced("fwd_tiles=2,fwd_chunk=16384,bwd_chunk=32768,bwd_kmov=0"):
        assert backend_label("cpp", 40, layout) == "cpp fwd 2x16384/skip bwd 32768/gpr"
    with tuning.forced("off"):
        assert backend_label("cpp", 40, layout) == "cpp fwd 4x32768/skip bwd 65536/kmov"
        assert backend_label("torch", 40, layout) == "torch"


@needs_cpp
def test_off_times_nothing_and_writes_nothing(monkeypatch):
    p = make_problem(40, 129, 33, 6, 0.1, seed=8)
    layout = _layout(p)
    monkeypatch.setenv(tuning.ENV, "off")
    tuning.clear_memory()
    before = len(tuning.timed)
    choice = tuning.choose(layout, 40, need_backend=True)
    assert choice.source == "default" and choice.backend == "cpp"
    assert choice.blocking == compiled.default_blocking(layout, 40)
    assert resolve_backend("auto", "cpu", 40, layout) == "cpp"
    glai_estimator(p["x_tilde"], p["gates"], layout, layout.to_layout(p["values"]), p["bias"], "cpp")
    assert len(tuning.timed) == before and not tuning.tuning_dir().exists()


def test_a_bad_spec_says_what_to_write(monkeypatch):
    with pytest.raises(ValueError, match="GLAI_ESTIMATOR_TUNING=.*Fix: GLAI_ESTIMATOR_TUNING=off"):
        with tuning.forced("tiles=3"):
            pass
    with pytest.raises(ValueError, match="fwd_tiles is 1, 2 or 4"):
        with tuning.forced("fwd_tiles=3"):
            pass


@needs_cpp
def test_timing_leaves_the_random_stream_alone():
    p = make_problem(40, 129, 33, 6, 0.1, seed=9)
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    assert tuning.choose(_layout(p), 40, need_backend=True).source == "timed"
    assert torch.equal(torch.rand(3), want)


@needs_cpp
def test_an_unreadable_file_is_timed_again_and_an_unwritable_folder_still_chooses(tmp_path, monkeypatch):
    p = make_problem(40, 129, 33, 6, 0.1, seed=10)
    layout = _layout(p)
    path = tuning.tuning_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="does not read"):
        assert tuning.choose(layout, 40, p["x_tilde"], p["gates"]).source == "timed"
    assert json.loads(path.read_text())["entries"]  # rewritten whole
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("GLAI_CACHE_DIR", str(blocked))  # its tuning/ cannot be made under a file
    tuning.clear_memory()
    with pytest.warns(UserWarning, match="could not save the estimator's tuning"):
        assert tuning.choose(layout, 40, p["x_tilde"], p["gates"]).source == "timed"
    assert tuning.choose(layout, 40, p["x_tilde"], p["gates"]).source == "cache"


def test_a_challenger_replaces_the_default_only_when_clearly_faster(monkeypatch):
    # candidates that cost a known time on the tuner's clock (the real one is the process's CPU time on one thread,
    # which a sleep would not advance, and the wall clock is at the mercy of the machine's load)
    now = [0.0]
    monkeypatch.setattr(tuning, "_clock", lambda: (lambda: now[0]))

    def costs(seconds, noise=0.0):
        calls = [0]

        def fn():
            calls[0] += 1
            now[0] += seconds * (1 + noise * (-1) ** calls[0])
        return fn

    assert tuning._fastest({"d": costs(0.004), "c": costs(0.0005)}, "d")[0] == "c"
    assert tuning._fastest({"d": costs(0.002), "c": costs(0.002)}, "d")[0] == "d"
    # within the margin (5 %): the default stays
    assert tuning._fastest({"d": costs(0.002), "c": costs(0.00195)}, "d")[0] == "d"
    assert tuning._confirm(costs(0.0005), costs(0.004))[0]
    assert not tuning._confirm(costs(0.004), costs(0.0005))[0]
    assert not tuning._confirm(costs(0.00195, noise=0.1), costs(0.002))[0]


def test_classes():
    assert [tuning.batch_class(b) for b in (1, 16, 17, 64, 65, 256, 1000, 1024, 4096, 4097)] == [
        "b16", "b16", "b64", "b64", "b256", "b256", "b1024", "b1024", "b4096", "b4096+"]
    layout = PathLayout(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([0, 1]), 385, 2, 384)
    assert tuning.shape_class(layout, 64) == "output/in512/out512/paths2/rows2"
