"""The compiled CPU estimator (backend ``"cpp"``; ``"auto"`` on CPU once it is built).

A PyTorch C++ extension (``csrc/estimator_cpu.cpp``, built with :func:`torch.utils.cpp_extension.load`) that
runs the estimator's forward and value gradient over the same (output, gate) rows as the pure-PyTorch path,
with the batch as the vector dimension in tiles of 16 samples, stored tile-major so that a tile's inputs stay in
cache while every path reads them (see the source for the kernels and :data:`BACKWARD_TILES`,
:data:`CHUNK_PATHS` for the measured blocking). Built ahead of time by ``make
install`` (``python -m glai.kernels.estimator``), never inside a run: a build takes ~10-60 s and
would otherwise land on GLAI's clock. A run whose extension is not built for this machine falls back to the
``"torch"`` backend and its record says so (``head.backend`` resolved, :func:`glai.runner.run_identity`).

The library is compiled with ``-O3 -march=native``, so its name carries a hash of the source, the compiler
flags, the torch and Python versions and this CPU's model and flags: a cluster node with another CPU never
loads a library built for the login node (it falls back, or builds its own).

Where: ``$GLAI_EXTENSIONS_DIR``, else ``~/.cache/glai/extensions``.

The tile and chunk constants below are defaults, measured on this project's AMD EPYC: the loops' blocking
(:class:`Blocking`) is chosen on the CPU that runs them (:mod:`glai.kernels.estimator.tuning`). The rules that fix the
arithmetic (:func:`forward_mode`: the input segments and the gate-major order; :data:`BACKWARD_TILES`) are never
timed at run time, so every choice gives the same numbers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from glai.kernels.estimator.layout import PathLayout

__all__ = ["Blocking", "build", "cpp_available", "default_blocking", "estimator_fwd_cpp", "estimator_bwd_cpp",
           "forward_mode", "library_path"]

SOURCE = Path(__file__).with_name("csrc") / "estimator_cpu.cpp"
# The constants below are measured choices on the development machine; the measurements (each constant against
# its alternatives, at batch 1024 on the paper's shapes and family T's blocks) are in docs/FINDINGS.md's CPU
# sections and the CSVs of docs/bench/. None of them changes a number the kernels compute, only their speed.
#: Tiles of 16 samples each pass over the paths handles (1, 2 or 4) in the forward with input segments (and the
#: tiles :func:`forward_segments` sizes its segments for): 2 were the fastest of 1, 2 and 4 on the paper's shapes
#: (1 walks the paths twice as often; 4 hold more inputs in use at once). The forward without segments and the
#: backward have their own (:data:`FORWARD_TILES`, :data:`BACKWARD_TILES`).
TILES_PER_GROUP = 2
#: Tiles per group of the backward: 4, since its gate masks load straight into mask registers and sit 4 tiles to a
#: group (a 16-path block's transpose-reduction, most of the backward's time, then serves 4 tiles instead of 2).
BACKWARD_TILES = 4
#: Tiles per group of the output-major forward without input segments: 4 (the x of 4 tiles is read once per row's
#: path indices and values). The forward is bitwise the same under every tile grouping.
FORWARD_TILES = 4
#: Paths per chunk: a chunk's values, indices and gradients stay in the L2 cache while every tile group walks
#: them. The backward's default (its chunks split no sum) and the gate-major forward's chunks (whose partial sums
#: they set).
CHUNK_PATHS = 65536
#: Paths per chunk of the output-major forward (chunks of whole outputs: the forward is bitwise the same under any):
#: half of :data:`CHUNK_PATHS` keeps a chunk's values and indices (256 KiB) in a 1 MiB L2 beside a tile group's x at
#: n_out 384, and costs the paper's shapes nothing.
FORWARD_CHUNK_PATHS = 32768
#: Input segments of the forward (batch > 16): when a tile group's inputs (tiles x n_in x 64 bytes) exceed this
#: many bytes, each row is summed one segment of inputs at a time, so that less of x is in use at once, with the
#: partial sums of the rows in a scratch buffer ...
SEGMENT_BYTES = 65536
#: ... provided the rows keep at least this many paths per segment on average: a segment costs each row a partial
#: sum written and read, which short rows do not repay (see :func:`forward_segments`).
MIN_SEGMENT_PATHS = 50
#: The gate-major forward (:func:`gate_major`): rows per used gate from which it runs, and its tiles per group ...
GATE_MAJOR_MIN_ROWS_PER_GATE = 16
GATE_MAJOR_TILES = 4
#: ... or used gates from which it runs whatever the rows per gate (output-major then reads a tile's gates, 64 bytes
#: each, at random: many used gates with few rows each, as D768's 3,390 gates at 2.7 rows per gate) ...
GATE_MAJOR_MIN_GATES = 2048
#: ... provided the outputs' buffer of a tile group (n_out x GATE_MAJOR_TILES x 64 bytes, read and written once per
#: row) stays within 32 KiB: at n_out 384 or 768 with short rows that read-modify-write dominates.
GATE_MAJOR_MAX_OUTPUTS = 128
# -fopenmp: ATen's parallel_for is inline code whose OpenMP pragmas a build without it ignores; without the flag
# the kernels would run on one thread at any torch.set_num_threads.
CFLAGS = ("-O3", "-march=native", "-fopenmp")
LDFLAGS = ("-fopenmp",)
_NAMESPACE = "glai_estimator_cpu"


def _cpu_signature() -> str:
    """This CPU's model name and instruction-set flags (Linux /proc/cpuinfo), else ``platform`` strings."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags", "Features")]
        return "\n".join(sorted(set(keep)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def extensions_dir() -> Path:
    """``$GLAI_EXTENSIONS_DIR`` or ``~/.cache/glai/extensions``."""
    return Path(os.environ.get("GLAI_EXTENSIONS_DIR", Path.home() / ".cache" / "glai" / "extensions"))


@functools.cache
def extension_name() -> str:
    """``glai_estimator_cpu_<hash12>``: the hash of the source, flags, torch and Python versions and the CPU."""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(CFLAGS + LDFLAGS).encode(), torch.__version__.encode(),
                 sys.version.encode(), _cpu_signature().encode()):
        digest.update(part)
        digest.update(b"\0")
    return f"{_NAMESPACE}_{digest.hexdigest()[:12]}"


def library_path() -> Path:
    """Where the built shared library of this machine's :func:`extension_name` lives (it may not exist)."""
    name = extension_name()
    return extensions_dir() / name / f"{name}.so"


def _ops():
    return getattr(torch.ops, _NAMESPACE)


@functools.cache
def cpp_available() -> bool:
    """True when the extension is built for this machine (:func:`library_path` exists) and loads. Never builds."""
    path = library_path()
    if not path.exists():
        return False
    try:
        torch.ops.load_library(str(path))
        _ops().fwd  # noqa: B018  (resolves the op: raises when the library registered nothing)
    except (OSError, RuntimeError, AttributeError) as err:
        warnings.warn(f"the compiled CPU estimator at {path} does not load ({err}); using the torch backend. "
                      "Rebuild it: python -m glai.kernels.estimator", stacklevel=2)
        return False
    return True


def build(verbose: bool = False) -> Path:
    """Compile the extension for this machine if it is not built yet, load it, and return its path.

    Raises:
        RuntimeError: when the build fails (no C++ compiler or ninja, unsupported compiler); the message says
            that the ``"torch"`` backend still works.
    """
    # its import warns "No CUDA runtime is found" on CPU-only machines: irrelevant to a CPU extension
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    path = library_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            cpp_extension.load(name=extension_name(), sources=[str(SOURCE)], extra_cflags=list(CFLAGS),
                               extra_ldflags=list(LDFLAGS),
                               build_directory=str(path.parent), is_python_module=False, verbose=verbose)
        except Exception as err:  # compiler errors arrive as RuntimeError, subprocess or OS errors
            raise RuntimeError(f"could not build the compiled CPU estimator ({type(err).__name__}: {err}); the "
                               "'torch' backend still works (head.backend=torch, or auto falls back to it)") from err
    cpp_available.cache_clear()
    if not cpp_available():
        raise RuntimeError(f"the compiled CPU estimator was built at {path} but does not load")
    return path


def forward_segments(layout: PathLayout, batch: int) -> tuple[torch.Tensor, int]:
    """``(seg_ptr int32 [R * S + 1], S)``: the forward's input segments at this batch (S = 1: none, an empty
    seg_ptr). Row r's paths with inputs in segment k are ``seg_ptr[r*S + k] : seg_ptr[r*S + k + 1]`` (inputs are
    sorted within a row, :class:`PathLayout`); segments split the inputs evenly. Cached on the layout per S.

    S = ceil(TILES_PER_GROUP * n_in * 64 / SEGMENT_BYTES) when batch > 16 and the rows average at least
    ``MIN_SEGMENT_PATHS`` paths per segment, else 1. Measured (one thread, forward at batch 1024, ms, S = 1 / 2 /
    4 segments): C2 (305 paths per row, n_in 769) 6.52 / 5.42 / 5.64, C1 (194) 2.28 / 2.14 / 2.20, A2 (145) 2.11 /
    2.00 / 2.06; but B2 (41) 11.3 / 13.4 / 21.4 and B1 (65, 3 and 6 segments) 15.7 / 18.1 / 28.2: so 2 segments
    (64 KiB) where rows keep 50 paths per segment, none elsewhere (A1, B1, B2 run unsegmented).
    """
    rows = max(layout.num_rows, 1)
    segments = -(-TILES_PER_GROUP * layout.n_in * 64 // SEGMENT_BYTES)
    if batch <= 16 or segments <= 1 or layout.num_paths / rows / segments < MIN_SEGMENT_PATHS:
        return _NONE, 1

    def pointers() -> torch.Tensor:
        width = -(-layout.n_in // segments)  # inputs per segment
        key = layout.path_row.long() * segments + layout.col.long() // width  # nondecreasing in layout order
        ptr = torch.zeros(layout.num_rows * segments + 1, dtype=torch.int64)
        ptr[1:] = torch.cumsum(torch.bincount(key, minlength=layout.num_rows * segments), 0)
        return ptr.to(torch.int32)

    return _cached(layout, ("segments", segments), pointers), segments


#: An empty int32 tensor: no input segments, or no row order (output-major), in the ops' arguments.
_NONE = torch.zeros(0, dtype=torch.int32)


def _cached(layout: PathLayout, key, make):
    """``make()`` computed once per layout and key, kept in ``layout._cpp_cache`` (not in ``state_dict``;
    :class:`PathLayout` drops it when buffers are loaded)."""
    cache = layout.__dict__.setdefault("_cpp_cache", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def gate_major(layout: PathLayout, batch: int) -> bool:
    """Whether the forward walks the rows gate by gate (:data:`GATE_MAJOR_TILES` tiles per group) rather than output
    by output: at batch > 16 when the rows average at least :data:`GATE_MAJOR_MIN_ROWS_PER_GATE` per used gate.

    Pruning ranks a gate's inputs by the same (gate, input) factor for every output, so the rows of one gate share
    most inputs (B2: 89% of a row's inputs are in the 8 rows before it in gate order, 37% in output order), and
    their x rows are still cached. Measured (one thread, forward at batch 1024, ms, output-major 2 tiles /
    gate-major 4 tiles): B1 (22 rows per gate) 14.6 / 12.7, B2 (22) 10.8 / 9.7, A1 (9.8) 1.49 / 1.46, A2 (5.4)
    1.60 / 1.66, C1 (3.0) 1.92 / 2.42, C2 (2.6, with input segments) 4.86 / 6.28. Not above
    :data:`GATE_MAJOR_MAX_OUTPUTS` outputs; from :data:`GATE_MAJOR_MIN_GATES` used gates at any rows per gate.
    """
    if batch <= 16 or layout.num_rows == 0 or layout.n_out > GATE_MAJOR_MAX_OUTPUTS:
        return False
    gates_used = _cached(layout, "gates_used", lambda: int(torch.unique(layout.row_gate).numel()))
    return layout.num_rows / gates_used >= GATE_MAJOR_MIN_ROWS_PER_GATE or gates_used >= GATE_MAJOR_MIN_GATES


def _gate_order(layout: PathLayout) -> torch.Tensor:
    """int32 [R]: the rows sorted by (gate, output), cached on the layout."""
    return _cached(layout, "gate_order",
                   lambda: torch.argsort(layout.row_gate * layout.n_out + layout.row_out, stable=True).to(torch.int32))


def _gates_u8(gates: torch.Tensor) -> torch.Tensor:
    if gates.dtype == torch.uint8:
        return gates.contiguous()
    if gates.dtype == torch.bool:
        return gates.contiguous().view(torch.uint8)
    return gates.to(torch.uint8).contiguous()


def forward_mode(layout: PathLayout, batch: int) -> str:
    """The forward's order of sums at this batch: ``"gate"`` (:func:`gate_major`), ``"segments<S>"`` (output order,
    rows summed in S input segments: :func:`forward_segments`) or ``"output"``. It fixes the arithmetic: two modes
    round differently, so it is a rule of the layout and the batch (measured, above), never timed at run time."""
    if gate_major(layout, batch):
        return "gate"
    segments = forward_segments(layout, batch)[1]
    return f"segments{segments}" if segments > 1 else "output"


@dataclass(frozen=True)
class Blocking:
    """How the compiled kernels walk the paths, within one arithmetic: every field changes the order of the memory
    visits, none a sum, so the outputs and gradients are bitwise the same under every ``Blocking`` (tested). What
    does change the rounding stays a rule of the layout and batch (:func:`forward_mode`, :data:`BACKWARD_TILES`,
    the short rows of the source's ``kShortRow``). :mod:`glai.kernels.estimator.tuning` times the candidates per CPU.

    Attributes:
        fwd_tiles: tiles of 16 samples per group in the forward (1, 2 or 4).
        fwd_chunk: paths per chunk of the output-order forward (chunks of whole outputs); the gate-major forward's
            chunks set its partial sums, so it keeps :data:`CHUNK_PATHS` whatever this says.
        bwd_chunk: paths per chunk of the backward (a chunk splits no sum).
        bwd_kmov: the backward loads its gate masks with ``kmovw`` from memory (True) or through a general register.
        fwd_skip: the forward skips a row whose gate is off for a whole tile group (True), or runs every row with its
            terms masked to nothing (no data-dependent branch; the same sums).
    """

    fwd_tiles: int
    fwd_chunk: int
    bwd_chunk: int
    bwd_kmov: bool = True
    fwd_skip: bool = True

    def label(self, mode: str | None = None) -> str:
        """``"fwd 4x32768/skip bwd 65536/kmov"`` (``"fwd 4 gate-major/skip ..."`` in the gate-major mode; ``all``
        where every row runs, ``gpr`` where the masks go through a general register): the bench CSV's and the
        record's name of the choice."""
        fwd = f"{self.fwd_tiles} gate-major" if mode == "gate" else f"{self.fwd_tiles}x{self.fwd_chunk}"
        return (f"fwd {fwd}/{'skip' if self.fwd_skip else 'all'} "
                f"bwd {self.bwd_chunk}/{'kmov' if self.bwd_kmov else 'gpr'}")


def default_blocking(layout: PathLayout, batch: int) -> Blocking:
    """The blocking measured on this project's AMD EPYC (the module's constants, read at call time): 4 tiles in the
    output-order forward (2 with input segments), chunks of 32,768 paths there and 65,536 in the backward, the masks
    loaded with ``kmovw``, rows off for a whole tile group skipped."""
    mode = forward_mode(layout, batch)
    tiles = GATE_MAJOR_TILES if mode == "gate" else TILES_PER_GROUP if mode.startswith("segments") else FORWARD_TILES
    return Blocking(fwd_tiles=tiles, fwd_chunk=CHUNK_PATHS if mode == "gate" else FORWARD_CHUNK_PATHS,
                    bwd_chunk=CHUNK_PATHS, bwd_kmov=True, fwd_skip=True)


def estimator_fwd_cpp(
    x_tilde: torch.Tensor,
    gates: torch.Tensor,
    layout: PathLayout,
    values: torch.Tensor,
    bias: torch.Tensor,
    blocking: Blocking | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward of the estimator (docs/method.md, Conversion) with the compiled kernels.

    Args:
        x_tilde: float32 [B, n_in] on the CPU.
        gates: uint8 / bool / float {0, 1} [B, n_gates].
        layout: the :class:`PathLayout` of the kept paths (on the CPU).
        values: float32 [P] in layout order. bias: float32 [n_out].
        blocking: the loops' blocking (:class:`Blocking`; the numbers do not depend on it); None: the default.

    Returns:
        ``(y float32 [B, n_out], xt float32 [T, n_in, 16], gm int16 [ceil(T / 4), n_gates, 4])``: the output and,
        for the backward, the inputs tile-major (T = ceil(B / 16) tiles of 16 samples, zero-padded) and the gates as
        bit masks grouped 4 tiles at a time (bit l of ``gm[u, s, q]``: gate s of sample 16 (4 u + q) + l, 0 for
        padding; 2 bytes per gate and tile).

    Raises:
        RuntimeError: when the extension is not built (:func:`build`) or an input is not on the CPU.
    """
    if not cpp_available():
        raise RuntimeError("backend='cpp' needs the compiled CPU estimator: build it with "
                           "`python -m glai.kernels.estimator` (make install does), or use backend='torch'")
    batch = x_tilde.shape[0]
    blocking = blocking or default_blocking(layout, batch)
    if gate_major(layout, batch):  # its chunks set the order of the partial sums: CHUNK_PATHS, fixed
        order, (seg_ptr, segments), chunk = _gate_order(layout), (_NONE, 1), CHUNK_PATHS
    else:
        order, (seg_ptr, segments), chunk = _NONE, forward_segments(layout, batch), blocking.fwd_chunk
    return _ops().fwd(x_tilde.contiguous(), _gates_u8(gates), layout.row_ptr, layout.col, layout.row_out,
                      layout.row_gate, values.detach().contiguous(), bias.detach().contiguous(), order, seg_ptr,
                      segments, blocking.fwd_tiles, chunk, int(blocking.fwd_skip))


def estimator_bwd_cpp(
    grad_y: torch.Tensor,
    xt: torch.Tensor,
    gm: torch.Tensor,
    layout: PathLayout,
    blocking: Blocking | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the values (an SDDMM over the kept paths, paper Listing 3) and of the bias.

    Args:
        grad_y: float32 [B, n_out]. xt, gm: from :func:`estimator_fwd_cpp` of the same batch.
        layout: the :class:`PathLayout`.
        blocking: as in :func:`estimator_fwd_cpp` (its ``bwd_chunk`` and ``bwd_kmov``).

    Returns:
        ``(grad_values float32 [P] in layout order, grad_bias float32 [n_out])``.
    """
    chunk, kmov = (blocking.bwd_chunk, blocking.bwd_kmov) if blocking is not None else (CHUNK_PATHS, True)
    return _ops().bwd(grad_y.contiguous(), xt, gm, layout.row_ptr, layout.col, layout.row_out, layout.row_gate,
                      layout.path_row, _path_gate(layout), BACKWARD_TILES, chunk, int(kmov))


def _path_gate(layout: PathLayout) -> torch.Tensor:
    """int32 [P]: each path's gate column (``row_gate[path_row]``), cached on the layout."""
    return _cached(layout, "path_gate", lambda: layout.row_gate[layout.path_row.long()].to(torch.int32).contiguous())


def main(argv: list[str] | None = None) -> int:
    """``python -m glai.kernels.estimator [--verbose]``: build for this machine; 0 on success, 1 if the build
    fails (the torch backend still works)."""
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    if library_path().exists() and cpp_available():
        print(f"[glai] compiled CPU estimator: built ({library_path()})")
        return 0
    print(f"[glai] building the compiled CPU estimator into {library_path().parent} (once per machine) ...",
          flush=True)
    try:
        path = build(verbose=verbose)
    except RuntimeError as err:
        print(f"[glai] warning: {err}", file=sys.stderr)
        return 1
    print(f"[glai] compiled CPU estimator: built ({path})")
    return 0

