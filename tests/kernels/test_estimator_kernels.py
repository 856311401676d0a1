"""The pruned GLAI estimator: every backend's forward and gradients against the reference (SPEC 2-3).

Run: ``.venv/bin/python -m pytest -q tests/kernels``; ``-m "not interpreter"`` skips the Triton cases.
"""

import functools
import os
import shutil

import pytest
import torch

from glai.kernels.estimator import (
    PathLayout,
    compiled,
    estimator_reference,
    glai_estimator,
    resolve_backend,
    triton_available,
)
from glai.kernels.estimator import function as function_module
from glai.kernels.estimator.function import AUTO_TRITON_MAX_BATCH, AUTO_TRITON_MAX_PATHS_PER_PROGRAM
from glai.method.sparse_estimator import SparseEstimator

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _triton_skip_reason() -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return f"triton is not installed ({e})"
    if not triton_available(DEVICE):
        return f"no CUDA device and TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r} (needs '1')"
    return None


@functools.cache
def _cpp_skip_reason() -> str | None:
    """None when the compiled CPU estimator is built (built here when a C++ compiler is on the PATH: make
    install builds it first, so this only runs on a machine where it did not)."""
    if compiled.cpp_available():
        return None
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        return "no C++ compiler on the PATH: the compiled CPU estimator cannot be built here"
    compiled.build()  # raises (the test fails) when a compiler is there but the build breaks
    return None


needs_cpp = pytest.mark.skipif(_cpp_skip_reason() is not None, reason=str(_cpp_skip_reason()))

needs_triton = [
    pytest.mark.interpreter,
    pytest.mark.skipif(_triton_skip_reason() is not None, reason=str(_triton_skip_reason())),
]


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """||got - ref|| / ||ref||; refuses an all-zero reference so no assert is vacuous."""
    scale = ref.double().norm()
    assert scale > 0, "reference is all zeros: the comparison would be vacuous"
    return float((got.double() - ref.double()).norm() / scale)


def make_problem(batch, n_in, n_gates, n_out, density, seed=0, gate_p=0.5):
    """Random kept paths at ``density`` of all n_out*n_in*n_gates, inputs with the constant last column."""
    g = torch.Generator().manual_seed(seed)
    total = n_out * n_in * n_gates
    num_paths = max(1, round(density * total))
    flat = torch.randperm(total, generator=g)[:num_paths]
    out_idx, in_idx, gate_idx = flat // (n_in * n_gates), (flat // n_gates) % n_in, flat % n_gates
    values = torch.randn(num_paths, generator=g)
    bias = torch.randn(n_out, generator=g)
    x_tilde = torch.randn(batch, n_in, generator=g)
    x_tilde[:, -1] = 1.0
    gates = (torch.rand(batch, n_gates, generator=g) < gate_p).to(torch.uint8)
    return dict(out_idx=out_idx, in_idx=in_idx, gate_idx=gate_idx, values=values, bias=bias,
                x_tilde=x_tilde, gates=gates, n_out=n_out)


def reference_and_grads(p, grad_y):
    values = p["values"].clone().requires_grad_()
    bias = p["bias"].clone().requires_grad_()
    y = estimator_reference(p["x_tilde"], p["gates"], p["out_idx"], p["in_idx"], p["gate_idx"], values, bias,
                            p["n_out"])
    y.backward(grad_y)
    return y.detach(), values.grad, bias.grad


def device_for(backend: str) -> str:
    """The compiled backend runs on the CPU; the others on the GPU when there is one."""
    return "cpu" if backend == "cpp" else DEVICE


def backend_and_grads(p, grad_y, backend):
    device = device_for(backend)
    n_in, n_gates = p["x_tilde"].shape[1], p["gates"].shape[1]
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], n_in, n_gates, p["n_out"]).to(device)
    values = layout.to_layout(p["values"]).to(device).requires_grad_()
    bias = p["bias"].to(device).clone().requires_grad_()
    y = glai_estimator(p["x_tilde"].to(device), p["gates"].to(device), layout, values, bias, backend)
    y.backward(grad_y.to(device))
    return y.detach().cpu(), layout.from_layout(values.grad).cpu(), bias.grad.cpu()


def _id(case):
    b, i, h, o, d = case
    return f"B{b}-in{i}-h{h}-o{o}-d{d * 100:g}%"


# (batch, n_in, n_gates, n_out, density): odd shapes, densities 1-100%.
TORCH_CASES = [
    (1, 33, 7, 4, 1.0),
    (17, 33, 7, 4, 0.05),
    (63, 33, 7, 37, 0.3),
    (17, 33, 128, 4, 0.5),
    (1, 384, 128, 37, 0.01),
    (17, 384, 128, 37, 0.03),
    (63, 384, 7, 37, 0.1),
    (63, 384, 128, 4, 0.02),
    (17, 384, 7, 4, 1.0),
]
# The compiled kernels vectorise over 16 samples and reduce 16 paths at a time: batches of 1-16 (one padded
# tile, the straight-line path), 17 and 63 (several tiles), and P large enough for full blocks and the
# prefetch branch (16 x 384 x 128 x 37 x 3% = 54,559 paths), and P not a multiple of 16.
CPP_CASES = TORCH_CASES + [
    (16, 384, 128, 37, 0.03),
    (16, 33, 7, 4, 0.3),
    (5, 129, 64, 10, 0.2),
    (32, 384, 128, 4, 0.05),
]
# Large batches (issue 21): batch 1024 and a full-batch pass (one L-BFGS evaluation over all training rows; an odd
# count, so the last tile is padded and the last tile group is short).
LARGE_CASES = [
    (1024, 129, 64, 10, 0.05),
    (1999, 97, 33, 5, 0.1),
]
TORCH_CASES += LARGE_CASES
CPP_CASES += LARGE_CASES
# Under the interpreter every program runs as numpy on CPU: keep P and the grid small.
TRITON_CASES = [
    (1, 33, 7, 4, 1.0),
    (17, 33, 7, 4, 0.05),
    (63, 33, 7, 37, 0.2),
    (17, 384, 7, 4, 0.02),
    (63, 33, 128, 4, 0.03),
    (17, 384, 128, 37, 0.01),
    (1024, 33, 7, 4, 0.05),
    (1999, 33, 7, 3, 0.05),
]
if DEVICE == "cuda":
    TRITON_CASES = TORCH_CASES

# Float32 sums of up to ~n_in*n_gates terms in different orders: 1e-5 relative is ~100 ulp of headroom.
TOL = 2e-5


def _check_backend(case, backend):
    p = make_problem(*case, seed=sum(case[:4]))
    grad_y = torch.randn(case[0], case[3], generator=torch.Generator().manual_seed(1))
    y_ref, gv_ref, gb_ref = reference_and_grads(p, grad_y)
    y, gv, gb = backend_and_grads(p, grad_y, backend)
    assert rel_err(y, y_ref) < TOL
    assert rel_err(gv, gv_ref) < TOL
    assert rel_err(gb, gb_ref) < TOL


@pytest.mark.parametrize("case", TORCH_CASES, ids=_id)
def test_torch_backend_matches_reference(case):
    _check_backend(case, "torch")


@pytest.mark.parametrize("case", TRITON_CASES, ids=_id)
@pytest.mark.interpreter
@pytest.mark.skipif(_triton_skip_reason() is not None, reason=str(_triton_skip_reason()))
def test_triton_backend_matches_reference(case):
    _check_backend(case, "triton")


@pytest.mark.parametrize("case", TRITON_CASES[:4], ids=_id)
@pytest.mark.interpreter
@pytest.mark.skipif(_triton_skip_reason() is not None, reason=str(_triton_skip_reason()))
def test_triton_batch_major_kernels_match_reference(case, monkeypatch):
    """The large-batch kernels (batch-major operands), forced on at every batch size."""
    from glai.kernels.estimator import triton as triton_module

    monkeypatch.setattr(triton_module, "BATCH_MAJOR_MIN_BATCH", 1)
    _check_backend(case, "triton")


@pytest.mark.parametrize("case", CPP_CASES, ids=_id)
@needs_cpp
def test_cpp_backend_matches_reference(case):
    _check_backend(case, "cpp")


@needs_cpp
def test_cpp_backend_is_the_same_on_any_number_of_threads():
    """Bitwise: each output and each path is summed by one thread in a fixed order (at::parallel_for)."""
    p = make_problem(63, 384, 128, 37, 0.05, seed=13)
    grad_y = torch.randn(63, 37, generator=torch.Generator().manual_seed(14))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = backend_and_grads(p, grad_y, "cpp")
        torch.set_num_threads(2)
        two = backend_and_grads(p, grad_y, "cpp")
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


@needs_cpp
@pytest.mark.parametrize("tiles", [1, 2, 4])
@pytest.mark.parametrize("batch", [1, 40, 63, 200])
def test_cpp_blocking_matches_reference_and_keeps_the_forward_bitwise(tiles, batch, monkeypatch):
    """Every tile grouping (a short last group at 40 = 3 tiles and 200 = 13) and chunking (16 paths: many chunks,
    chunks of whole outputs in the forward) against the reference, with gates off for whole tiles (the forward
    skips those rows); the forward is bitwise the same under every blocking."""
    p = make_problem(batch, 129, 33, 6, 0.1, seed=batch + tiles)
    p["gates"][:32, :8] = 0  # gates 0-7 off for whole tiles (the first two)
    p["gates"][:, 8] = 0  # gate 8 off everywhere
    grad_y = torch.randn(batch, 6, generator=torch.Generator().manual_seed(3))
    y_ref, gv_ref, gb_ref = reference_and_grads(p, grad_y)
    forwards = []
    for chunk in (16, 100, 1 << 20):
        monkeypatch.setattr(compiled, "TILES_PER_GROUP", tiles)
        monkeypatch.setattr(compiled, "FORWARD_TILES", tiles)
        monkeypatch.setattr(compiled, "BACKWARD_TILES", tiles)
        monkeypatch.setattr(compiled, "CHUNK_PATHS", chunk)
        monkeypatch.setattr(compiled, "FORWARD_CHUNK_PATHS", chunk)
        y, gv, gb = backend_and_grads(p, grad_y, "cpp")
        assert rel_err(y, y_ref) < TOL and rel_err(gv, gv_ref) < TOL and rel_err(gb, gb_ref) < TOL
        forwards.append(y)
    monkeypatch.setattr(compiled, "TILES_PER_GROUP", 1)
    monkeypatch.setattr(compiled, "FORWARD_TILES", 1)
    forwards.append(backend_and_grads(p, grad_y, "cpp")[0])
    assert all(torch.equal(forwards[0], y) for y in forwards[1:])


@needs_cpp
@pytest.mark.parametrize("tiles", [1, 2, 4])
@pytest.mark.parametrize("density, batch", [(0.02, 1), (0.02, 63), (0.02, 200), (0.5, 40), (0.5, 200)])
def test_cpp_backward_on_short_and_long_rows_matches_reference(tiles, density, batch, monkeypatch):
    """The backward's two kinds of block (issue 29): one row (its gate's masks read once: long rows, density 0.5 of
    201 inputs) and several rows of one output or more (each path's masks: rows of about 4 paths at density 0.02), each
    product dy * x masked by the gate's bits; gates off for whole tiles and one gate off everywhere; a short last
    group of tiles; and every tile grouping gives the same gradients to rounding."""
    p = make_problem(batch, 201, 37, 5, density, seed=7 * batch + tiles)
    p["gates"][:16, :9] = 0
    p["gates"][:, 9] = 0
    grad_y = torch.randn(batch, 5, generator=torch.Generator().manual_seed(batch))
    y_ref, gv_ref, gb_ref = reference_and_grads(p, grad_y)
    monkeypatch.setattr(compiled, "BACKWARD_TILES", tiles)
    y, gv, gb = backend_and_grads(p, grad_y, "cpp")
    assert rel_err(y, y_ref) < TOL and rel_err(gv, gv_ref) < TOL and rel_err(gb, gb_ref) < TOL
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], 201, 37, 5)
    paths_per_row = layout.num_paths / layout.num_rows
    assert (paths_per_row < 16) == (density < 0.1)  # the two regimes the test means to cover (16 paths a block)


@needs_cpp
@pytest.mark.parametrize("segment_bytes, segments", [(8192, 3), (4096, 5), (1024, 17)])
@pytest.mark.parametrize("batch", [17, 40, 200])
def test_cpp_forward_input_segments_match_reference(segment_bytes, segments, batch, monkeypatch):
    """The forward summing each row one segment of inputs at a time (compiled.forward_segments), with rows of every
    length (empty segments included) and the gate skip, against the reference; the segment pointers against a
    direct count."""
    monkeypatch.setattr(compiled, "SEGMENT_BYTES", segment_bytes)
    monkeypatch.setattr(compiled, "MIN_SEGMENT_PATHS", 0)
    p = make_problem(batch, 129, 33, 6, 0.1, seed=batch)
    p["gates"][:16, :4] = 0
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], 129, 33, 6)
    seg_ptr, found = compiled.forward_segments(layout, batch)
    assert found == segments and seg_ptr.numel() == layout.num_rows * segments + 1
    width = -(-129 // segments)
    for r in range(0, layout.num_rows, 7):
        cols = layout.col[layout.row_ptr[r]:layout.row_ptr[r + 1]]
        for k in range(segments):
            lo, hi = seg_ptr[r * segments + k], seg_ptr[r * segments + k + 1]
            assert hi - lo == int(((cols >= k * width) & (cols < (k + 1) * width)).sum())
    assert compiled.forward_segments(layout, 16)[1] == 1  # one tile: never segmented
    grad_y = torch.randn(batch, 6, generator=torch.Generator().manual_seed(4))
    y_ref, gv_ref, gb_ref = reference_and_grads(p, grad_y)
    y, gv, gb = backend_and_grads(p, grad_y, "cpp")
    assert rel_err(y, y_ref) < TOL and rel_err(gv, gv_ref) < TOL and rel_err(gb, gb_ref) < TOL


@needs_cpp
@pytest.mark.parametrize("batch", [17, 40, 200])
def test_cpp_gate_major_forward_matches_reference(batch, monkeypatch):
    """The gate-major forward (compiled.gate_major; forced here) with every tile grouping and with many chunks
    (partial outputs summed in chunk order): the reference's numbers; bitwise the same for every tile grouping and
    thread count at a given chunking."""
    monkeypatch.setattr(compiled, "GATE_MAJOR_MIN_ROWS_PER_GATE", 0)
    p = make_problem(batch, 65, 9, 40, 0.1, seed=batch + 1)
    p["gates"][:16, :3] = 0
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], 65, 9, 40)
    assert compiled.gate_major(layout, batch) and not compiled.gate_major(layout, 16)
    grad_y = torch.randn(batch, 40, generator=torch.Generator().manual_seed(5))
    y_ref, gv_ref, gb_ref = reference_and_grads(p, grad_y)
    threads = torch.get_num_threads()
    for chunk in (16, 1 << 20):
        monkeypatch.setattr(compiled, "CHUNK_PATHS", chunk)
        forwards = []
        for tiles, n_threads in ((1, 1), (2, 2), (4, 1), (4, 2)):
            monkeypatch.setattr(compiled, "GATE_MAJOR_TILES", tiles)
            try:
                torch.set_num_threads(n_threads)
                y, gv, gb = backend_and_grads(p, grad_y, "cpp")
            finally:
                torch.set_num_threads(threads)
            assert rel_err(y, y_ref) < TOL and rel_err(gv, gv_ref) < TOL and rel_err(gb, gb_ref) < TOL
            forwards.append(y)
        assert all(torch.equal(forwards[0], y) for y in forwards[1:])


@needs_cpp
def test_cpp_refuses_a_bad_blocking(monkeypatch):
    p = make_problem(17, 33, 7, 4, 0.3, seed=1)
    monkeypatch.setattr(compiled, "BACKWARD_TILES", 3)
    with pytest.raises(RuntimeError, match="tiles must be 1, 2 or 4"):
        backend_and_grads(p, torch.randn(17, 4), "cpp")
    monkeypatch.setattr(compiled, "BACKWARD_TILES", 4)
    monkeypatch.setattr(compiled, "FORWARD_TILES", 3)
    with pytest.raises(RuntimeError, match="tiles must be 1, 2 or 4"):
        backend_and_grads(p, torch.randn(17, 4), "cpp")


BACKENDS = ["torch", pytest.param("cpp", marks=needs_cpp), pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_rows_output_their_bias(backend):
    """Outputs without a kept path output their bias; outputs 1 and 3 here have none."""
    p = make_problem(17, 33, 7, 5, 0.2, seed=3)
    keep = (p["out_idx"] == 0) | (p["out_idx"] == 2) | (p["out_idx"] == 4)
    for k in ("out_idx", "in_idx", "gate_idx", "values"):
        p[k] = p[k][keep]
    grad_y = torch.randn(17, 5, generator=torch.Generator().manual_seed(2))
    y_ref, gv_ref, gb_ref = reference_and_grads(p, grad_y)
    y, gv, gb = backend_and_grads(p, grad_y, backend)
    assert torch.equal(y[:, [1, 3]], p["bias"][[1, 3]].expand(17, 2))
    assert rel_err(y, y_ref) < TOL and rel_err(gv, gv_ref) < TOL and rel_err(gb, gb_ref) < TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_kept_path_at_all(backend):
    device = device_for(backend)
    layout = PathLayout(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                        torch.empty(0, dtype=torch.long), 33, 7, 4).to(device)
    values = torch.empty(0, device=device, requires_grad=True)
    bias = torch.randn(4, device=device, requires_grad=True)
    x = torch.randn(3, 33, device=device)
    gates = torch.ones(3, 7, dtype=torch.uint8, device=device)
    y = glai_estimator(x, gates, layout, values, bias, backend)
    assert torch.equal(y, bias.detach().expand(3, 4))
    y.sum().backward()
    assert values.grad.shape == (0,)
    assert torch.equal(bias.grad, torch.full((4,), 3.0, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic(backend):
    if backend == "torch" and DEVICE == "cuda":
        # index_add on CUDA accumulates with atomics: the order (and the last bits) vary between runs.
        pytest.skip("the torch backend is deterministic on CPU only (CUDA index_add uses atomics)")
    p = make_problem(63, 33, 7, 4, 0.5, seed=4)
    grad_y = torch.randn(63, 4, generator=torch.Generator().manual_seed(5))
    first = backend_and_grads(p, grad_y, backend)
    second = backend_and_grads(p, grad_y, backend)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    p = make_problem(17, 33, 7, 4, 0.3, seed=11)
    grad_y = torch.randn(17, 4, generator=torch.Generator().manual_seed(12))
    y_ref, gv_ref, gb_ref = reference_and_grads(p, grad_y)
    p["x_tilde"] = p["x_tilde"].t().contiguous().t()  # same values, column-major
    p["gates"] = torch.stack([p["gates"], 1 - p["gates"]], 2).flatten(1)[:, ::2]  # same values, column stride 2
    y, gv, gb = backend_and_grads(p, grad_y, backend)
    assert not p["x_tilde"].is_contiguous() and not p["gates"].is_contiguous()
    assert rel_err(y, y_ref) < TOL and rel_err(gv, gv_ref) < TOL and rel_err(gb, gb_ref) < TOL


def test_gates_may_be_bool_or_float():
    p = make_problem(17, 33, 7, 4, 0.3, seed=6)
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], 33, 7, 4)
    values = layout.to_layout(p["values"])
    ys = [glai_estimator(p["x_tilde"], p["gates"].to(dt), layout, values, p["bias"], "torch")
          for dt in (torch.uint8, torch.bool, torch.float32)]
    assert torch.equal(ys[0], ys[1]) and torch.equal(ys[0], ys[2])


def test_layout_order_and_round_trip():
    p = make_problem(1, 33, 7, 4, 0.4, seed=7)
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], 33, 7, 4)
    key = (layout.out_idx * 7 + layout.gate_idx) * 33 + layout.in_idx
    assert torch.all(key[1:] > key[:-1]), "paths must be sorted by (o, s, i)"
    assert torch.equal(layout.from_layout(layout.to_layout(p["values"])), p["values"])
    assert torch.equal(layout.out_ptr[1:] - layout.out_ptr[:-1], torch.bincount(p["out_idx"], minlength=4))
    assert layout.row_ptr[-1] == layout.num_paths and layout.num_rows == torch.unique(key // 33).numel()


def test_errors_say_what_is_wrong():
    p = make_problem(4, 33, 7, 4, 0.3, seed=8)
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], 33, 7, 4)
    values = layout.to_layout(p["values"])
    x, gates, bias = p["x_tilde"], p["gates"], p["bias"]
    with pytest.raises(ValueError, match="x_tilde must be"):
        glai_estimator(x[:, :-1], gates, layout, values, bias)
    with pytest.raises(ValueError, match="gates must be"):
        glai_estimator(x, gates[:, :-1], layout, values, bias)
    with pytest.raises(ValueError, match="values must be"):
        glai_estimator(x, gates, layout, values[:-1], bias)
    with pytest.raises(ValueError, match="float32"):
        glai_estimator(x.double(), gates, layout, values, bias)
    with pytest.raises(ValueError, match="detach"):
        glai_estimator(x.clone().requires_grad_(), gates, layout, values, bias)
    with pytest.raises(ValueError, match="backend"):
        glai_estimator(x, gates, layout, values, bias, backend="cuda")
    with pytest.raises(ValueError, match="in_idx must lie"):
        PathLayout(p["out_idx"], p["in_idx"] + 33, p["gate_idx"], 33, 7, 4)
    with pytest.raises(ValueError, match="equal length"):
        PathLayout(p["out_idx"][:-1], p["in_idx"], p["gate_idx"], 33, 7, 4)


def test_auto_backend_resolution(monkeypatch):
    # On the CPU, "auto" is the compiled estimator once it is built for this machine, else the torch backend.
    monkeypatch.setattr(function_module, "cpp_available", lambda: True)
    assert resolve_backend("auto", "cpu") == "cpp"
    # measured per batch size: the compiled kernels won at every batch from 1 to a full batch (issue 21)
    assert {resolve_backend("auto", "cpu", batch) for batch in (1, 16, 17, 63, 1024, 5000)} == {"cpp"}
    monkeypatch.setattr(function_module, "cpp_available", lambda: False)
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("cpp", "cpu") == "cpp"
    # On CUDA, "auto" is Triton at small batches; at large batches Triton's batch-major kernels unless each
    # program (one output, 64 samples) would walk too many paths; the torch backend in between.
    monkeypatch.setattr(function_module, "triton_available", lambda device=None: True)
    assert resolve_backend("auto", "cuda", AUTO_TRITON_MAX_BATCH) == "triton"
    assert resolve_backend("auto", "cuda", None) == "triton"
    assert resolve_backend("auto", "cuda", AUTO_TRITON_MAX_BATCH + 1) == "torch"
    assert resolve_backend("triton", "cuda", 4096) == "triton"

    def layout_of(num_paths, n_out):
        out_idx = torch.arange(num_paths) % n_out
        return PathLayout(out_idx, torch.zeros(num_paths, dtype=torch.long), torch.zeros(num_paths, dtype=torch.long),
                          1, 1, n_out)

    limit = AUTO_TRITON_MAX_PATHS_PER_PROGRAM
    many_outputs, few_outputs = layout_of(16 * limit, 16), layout_of(16 * limit + 16, 16)  # per program at B64
    assert resolve_backend("auto", "cuda", 64, many_outputs) == "triton"  # exactly `limit` paths per program
    assert resolve_backend("auto", "cuda", 64, few_outputs) == "torch"
    assert resolve_backend("auto", "cuda", 128, few_outputs) == "triton"  # two batch blocks halve the walk
    assert resolve_backend("auto", "cuda", 63, many_outputs) == "torch"  # below the batch-major kernels
    assert resolve_backend("auto", "cuda", 1024, None) == "torch"
    monkeypatch.setattr(function_module, "triton_available", lambda device=None: False)
    assert resolve_backend("auto", "cuda", 1) == "torch"


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_estimator_adam_step_equals_reference(backend):
    """One Adam step of SparseEstimator lands where the reference's does (paper 4.1: GLAI uses Adam)."""
    device = device_for(backend)
    p = make_problem(17, 33, 7, 4, 0.3, seed=9)
    target = torch.randn(17, 4, generator=torch.Generator().manual_seed(10))
    model = SparseEstimator.from_paths(p["out_idx"], p["in_idx"], p["gate_idx"], p["values"], p["bias"],
                                       33, 7, 4, backend=backend).to(device)
    assert [n for n, _ in model.named_parameters()] == ["values", "bias"]
    assert model.num_kept == p["values"].numel()
    dense = torch.zeros(4, 33, 7).index_put_((p["out_idx"], p["in_idx"], p["gate_idx"]), p["values"])
    assert torch.equal(model.to_dense().cpu(), dense)

    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.1)
    loss = (model(p["x_tilde"].to(device), p["gates"].to(device)) - target.to(device)).pow(2).mean()
    loss.backward()
    opt.step()

    values = p["values"].clone().requires_grad_()
    bias = p["bias"].clone().requires_grad_()
    ref_opt = torch.optim.Adam([values, bias], lr=1e-2, weight_decay=0.1)
    paths = (p["out_idx"], p["in_idx"], p["gate_idx"])
    y = estimator_reference(p["x_tilde"], p["gates"], *paths, values, bias, 4)
    (y - target).pow(2).mean().backward()
    ref_opt.step()

    new_values = model.layout.from_layout(model.values.detach()).cpu()
    assert rel_err(new_values - p["values"], values.detach() - p["values"]) < 1e-4
    assert rel_err(model.bias.detach().cpu() - p["bias"], bias.detach() - p["bias"]) < 1e-4


@needs_cpp
def test_cpp_backward_refuses_masks_of_another_batch():
    """The backward checks that xt and the grouped gate masks are its batch's (80 samples: 5 tiles, 2 mask groups;
    17 samples: 2 tiles, 1 group), rather than reading past them."""
    p = make_problem(80, 33, 7, 4, 0.3, seed=2)
    layout = PathLayout(p["out_idx"], p["in_idx"], p["gate_idx"], 33, 7, 4)
    values, bias = torch.randn(layout.num_paths), torch.zeros(4)
    _, xt, gm = compiled.estimator_fwd_cpp(p["x_tilde"], p["gates"], layout, values, bias)
    _, _, gm17 = compiled.estimator_fwd_cpp(p["x_tilde"][:17], p["gates"][:17], layout, values, bias)
    assert gm.shape[0] == 2 and gm17.shape[0] == 1
    with pytest.raises(RuntimeError, match="must come from the forward of this batch"):
        compiled.estimator_bwd_cpp(torch.randn(80, 4), xt, gm17, layout)
