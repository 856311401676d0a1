"""The compiled CPU estimator's build identity and fallbacks (glai/kernels/estimator/compiled.py); its numbers
are checked against the reference with the other backends in test_estimator_kernels.py."""

import pytest
import torch

from glai.kernels.estimator import PathLayout, compiled, glai_estimator


@pytest.fixture
def fresh_name(monkeypatch, tmp_path):
    """An empty extensions folder, and the name/availability caches cleared before and after."""
    monkeypatch.setenv("GLAI_EXTENSIONS_DIR", str(tmp_path))
    compiled.extension_name.cache_clear()
    compiled.cpp_available.cache_clear()
    yield tmp_path
    compiled.extension_name.cache_clear()
    compiled.cpp_available.cache_clear()


def test_the_library_name_follows_the_cpu_and_the_source(fresh_name, monkeypatch):
    """A library built for another CPU (a cluster's login node) or from older source is never loaded."""
    base = compiled.extension_name()
    assert base.startswith("glai_estimator_cpu_") and len(base) == len("glai_estimator_cpu_") + 12
    monkeypatch.setattr(compiled, "_cpu_signature", lambda: "model name : another CPU\\nflags : sse2")
    compiled.extension_name.cache_clear()
    other_cpu = compiled.extension_name()
    assert other_cpu != base
    monkeypatch.setattr(compiled, "CFLAGS", ("-O2",))
    compiled.extension_name.cache_clear()
    assert compiled.extension_name() not in (base, other_cpu)
    assert compiled.library_path().parent == fresh_name / compiled.extension_name()


def test_not_built_means_not_available_and_a_clear_error(fresh_name):
    assert not compiled.library_path().exists()
    assert compiled.cpp_available() is False
    layout = PathLayout(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), 3, 2, 1)
    with pytest.raises(RuntimeError, match="python -m glai.kernels.estimator"):
        compiled.estimator_fwd_cpp(torch.randn(2, 3), torch.ones(2, 2, dtype=torch.uint8), layout,
                                   torch.ones(1), torch.zeros(1))


def test_a_library_that_does_not_load_warns_and_falls_back(fresh_name):
    path = compiled.library_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a shared library")
    with pytest.warns(UserWarning, match="does not load"):
        assert compiled.cpp_available() is False


def test_cpp_refuses_cuda_inputs():
    layout = PathLayout(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), 3, 2, 1)
    x = torch.randn(2, 3, device="meta")
    with pytest.raises(RuntimeError, match="CPU only"):
        glai_estimator(x, torch.ones(2, 2, dtype=torch.uint8, device="meta"), layout,
                       torch.ones(1, device="meta"), torch.zeros(1, device="meta"), backend="cpp")


def test_path_row_is_derived_not_saved():
    layout = PathLayout(torch.tensor([1, 0, 1, 0]), torch.tensor([2, 1, 0, 1]), torch.tensor([0, 1, 0, 0]), 3, 2, 2)
    # rows (o, s) sorted: (0,0) (0,1) (1,0); row (1,0) holds two paths
    assert layout.path_row.tolist() == [0, 1, 2, 2]
    assert layout.path_row.dtype == torch.int32
    assert "path_row" not in layout.state_dict()


def test_loading_a_layout_rederives_path_row_and_the_kernel_caches(monkeypatch):
    """A layout's derived state (path_row, not in state_dict; the compiled kernels' cached gate order, gate count
    and segment pointers) follows buffers loaded into it: nothing stale survives load_state_dict."""
    monkeypatch.setattr(compiled, "MIN_SEGMENT_PATHS", 0)
    monkeypatch.setattr(compiled, "SEGMENT_BYTES", 256)  # 4 segments of 2 inputs
    a = PathLayout(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 5, 1, 2]), torch.tensor([0, 0, 1, 1]), 8, 2, 2)
    b = PathLayout(torch.tensor([0, 0, 1, 1]), torch.tensor([7, 3, 6, 0]), torch.tensor([1, 1, 0, 0]), 8, 2, 2)
    assert a.num_rows == b.num_rows and a.num_paths == b.num_paths
    stale, segments = compiled.forward_segments(a, 64)
    assert segments == 4
    compiled.gate_major(a, 64)
    assert any(k.startswith("_cpp_") for k in a.__dict__)
    a.load_state_dict(b.state_dict())
    assert not any(k.startswith("_cpp_") for k in a.__dict__)
    assert torch.equal(a.path_row, b.path_row) and a.path_row.dtype == torch.int32
    fresh = compiled.forward_segments(b, 64)[0]
    assert torch.equal(compiled.forward_segments(a, 64)[0], fresh) and not torch.equal(stale, fresh)


def test_gate_major_rule_counts_rows_per_gate_gates_and_outputs(monkeypatch):
    """compiled.gate_major: at batch > 16, when the rows average GATE_MAJOR_MIN_ROWS_PER_GATE per used gate or the
    layout uses GATE_MAJOR_MIN_GATES gates, and never above GATE_MAJOR_MAX_OUTPUTS outputs (issue 29)."""
    out = torch.tensor([0, 1, 2, 0, 1, 2])  # 3 outputs x 2 gates: 6 rows, 3 per gate
    layout = PathLayout(out, torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([0, 0, 0, 1, 1, 1]), 4, 2, 3)
    monkeypatch.setattr(compiled, "GATE_MAJOR_MIN_GATES", 1 << 20)
    monkeypatch.setattr(compiled, "GATE_MAJOR_MIN_ROWS_PER_GATE", 3)
    assert compiled.gate_major(layout, 64) and not compiled.gate_major(layout, 16)
    monkeypatch.setattr(compiled, "GATE_MAJOR_MAX_OUTPUTS", 2)
    assert not compiled.gate_major(layout, 64)
    monkeypatch.setattr(compiled, "GATE_MAJOR_MAX_OUTPUTS", 3)
    monkeypatch.setattr(compiled, "GATE_MAJOR_MIN_ROWS_PER_GATE", 4)
    assert not compiled.gate_major(layout, 64)
    monkeypatch.setattr(compiled, "GATE_MAJOR_MIN_GATES", 2)
    assert compiled.gate_major(layout, 64)


@pytest.mark.skipif(not compiled.cpp_available(), reason="the compiled CPU estimator is not built (make install)")
@pytest.mark.parametrize("batch", [1, 16, 37, 70])
def test_the_forward_hands_the_backward_its_gates_as_bit_masks(batch):
    """The forward's third output (issue 29): int16 [ceil(T / 4), n_gates, 4], bit l of [u, s, q] set exactly when
    gate s of sample 16 (4 u + q) + l is on; the padded samples of a partial last tile and the padded tiles of a
    partial last group of 4 are 0. And a gate that is off contributes nothing:
    with every gate off the output is the bias, bitwise."""
    n_in, n_gates, n_out = 5, 19, 3
    g = torch.Generator().manual_seed(batch)
    layout = PathLayout(torch.randint(0, n_out, (40,), generator=g), torch.randint(0, n_in, (40,), generator=g),
                        torch.randint(0, n_gates, (40,), generator=g), n_in, n_gates, n_out)
    x = torch.randn(batch, n_in, generator=g)
    gates = torch.rand(batch, n_gates, generator=g) < 0.3
    values, bias = torch.randn(layout.num_paths, generator=g), torch.randn(n_out, generator=g)
    _, xt, gm = compiled.estimator_fwd_cpp(x, gates, layout, values, bias)
    tiles = -(-batch // 16)
    units = -(-tiles // 4)
    assert gm.dtype == torch.int16 and gm.shape == (units, n_gates, 4) and xt.shape == (tiles, n_in, 16)
    bits = (gm.long().unsqueeze(-1) >> torch.arange(16)) & 1  # [U, n_gates, 4, 16]
    want = torch.zeros(units * 64, n_gates, dtype=torch.long)
    want[:batch] = gates.long()
    assert torch.equal(bits.permute(0, 2, 3, 1).reshape(-1, n_gates), want)
    y, _, gm = compiled.estimator_fwd_cpp(x * 1e30, torch.zeros_like(gates), layout, values, bias)
    assert torch.equal(y, bias.expand(batch, n_out)) and not gm.any()
