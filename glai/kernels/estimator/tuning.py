"""The compiled estimator's blocking chosen on the machine it runs on, and ``backend="auto"``'s choice between the
compiled kernels and the torch backend on the CPU.

The first time a (CPU, shape class, batch class, thread count) is seen, the candidates (:func:`candidates`: tiles per
group and chunk lengths of the forward and whether it skips rows whose gate is off for a whole tile group, the
backward's chunk length and its way of loading the gate masks) are timed on
the layout at hand, on up to :data:`SAMPLE_ROWS` rows of the batch, and the fastest is kept: in this process, and on
disk in one JSON file per CPU (the model and the instruction-set flags; Triton's autotuner and FFTW's wisdom work the
same way), so later processes on that CPU time nothing. A candidate replaces the measured default
(:func:`glai.kernels.estimator.compiled.default_blocking`, this project's AMD EPYC) only when it is at least
:data:`MARGIN` faster, so noise alone never moves a choice.

Every candidate computes the same numbers, bitwise: a blocking only changes the order in which the kernels visit
memory (:class:`glai.kernels.estimator.compiled.Blocking`). What changes the rounding (the forward's gate-major or
output order and its input segments, the backward's tiles per group, the short rows) is a rule of the layout and the
batch, never timed here, so a run's numbers never depend on what a timing saw.

Tuning costs a few milliseconds at batch 16 and 0.1-0.5 s on the largest layouts; it is GLAI's work, done on the
first forward of a new class, so inside a run it lands on GLAI's clock (the estimator phase it happens in); the
benchmark does it in the warm-up steps and reports it apart (``tune_ms``).

Where: ``$GLAI_CACHE_DIR/tuning``, else ``~/.cache/glai/tuning``. ``GLAI_ESTIMATOR_TUNING`` overrides the timing:
``off`` (the default blocking, ``auto`` -> ``cpp``; nothing timed or written) or a fixed choice such as
``fwd_tiles=2,fwd_chunk=65536,bwd_chunk=16384,bwd_kmov=0,backend=torch`` (unnamed fields keep their default);
:func:`forced` does the same from Python. Both variables are read once per process (:func:`clear_memory` reads them
again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from glai.kernels.estimator import compiled
from glai.kernels.estimator.compiled import Blocking, default_blocking, forward_mode
from glai.kernels.estimator.cpu import estimator_bwd_torch, estimator_fwd_torch
from glai.kernels.estimator.layout import PathLayout

__all__ = ["ENV", "MARGIN", "SAMPLE_ROWS", "Choice", "batch_class", "candidates", "choose", "clear_memory", "cpu_key",
           "forced", "shape_class", "tuning_dir", "tuning_file"]

#: The environment variable that turns the timing off or fixes a choice (see the module docstring).
ENV = "GLAI_ESTIMATOR_TUNING"
#: Rows of the batch the candidates are timed on (16 tiles: 4 groups of 4): the tile groups' walk over a chunk is the
#: same at any batch, and a larger sample would cost the first step of a token batch more than it could save.
SAMPLE_ROWS = 256
#: A candidate replaces the default only when at least this much faster (a fraction of the default's time); torch
#: replaces cpp under ``auto`` likewise.
MARGIN = 0.05
#: Timed rounds per candidate (the minimum counts), the seconds a stage may spend before it stops at 2 rounds, and the
#: rounds that confirm a challenger against the default (:func:`_race`).
ROUNDS = 3
STAGE_BUDGET_S = 0.08
CONFIRM_ROUNDS = 5
#: Forward tiles per group, and chunk lengths (paths) of the forward and the backward, that are timed.
TILE_CANDIDATES = (1, 2, 4)
CHUNK_CANDIDATES = (16384, 32768, 65536, 131072)
#: The torch backend is not timed where its [R, sample] temporaries would exceed this many floats (it is then slower
#: by far: docs/FINDINGS.md, "auto on CPU").
TORCH_MAX_ELEMENTS = 5e7
#: Rows of the torch backend's first, probing forward (:func:`_time_torch`).
TORCH_PROBE_ROWS = 16
_FORMAT = 2


@dataclasses.dataclass(frozen=True)
class Choice:
    """What runs for one (CPU, shape class, batch class, threads).

    Attributes:
        blocking: the compiled kernels' loop blocking (:class:`glai.kernels.estimator.compiled.Blocking`).
        backend: ``"cpp"`` or ``"torch"``: ``backend="auto"``'s pick on the CPU; None until ``auto`` asked (the torch
            backend is timed only then).
        mode: the forward's arithmetic (:func:`glai.kernels.estimator.compiled.forward_mode`).
        source: ``"timed"`` (this call timed it), ``"cache"`` (read from disk or memory), ``"default"`` (tuning off)
            or ``"forced"``.
        tune_ms: milliseconds the timing took when it ran (0 otherwise).
        ms: the timed milliseconds on the sample: ``default``, ``chosen`` (the compiled kernels' forward + backward
            under each blocking; ``fwd_*``, ``bwd_*`` each part), ``torch`` (its forward + backward, or its probe's
            forward scaled to the sample when that already lost).
        blocking_timed: whether the blocking was timed (on a batch's own rows); False: the default, where ``auto``
            decided the backend before any batch came (``resolve_backend`` has none: random rows would not show
            what a batch's gates do to the forward's skipping, so the blocking waits for the first real batch).
    """

    blocking: Blocking
    backend: str | None
    mode: str
    source: str = "cache"
    tune_ms: float = 0.0
    ms: dict[str, float] = dataclasses.field(default_factory=dict, compare=False, hash=False)
    blocking_timed: bool = True

    @functools.cached_property
    def label(self) -> str:
        """``"fwd 4x32768/skip bwd 65536/kmov"``: the choice as the bench CSV and the run record name it."""
        return self.blocking.label(self.mode)


def tuning_dir() -> Path:
    """``$GLAI_CACHE_DIR/tuning``, else ``~/.cache/glai/tuning`` (the variable as read once per process, or since
    :func:`clear_memory`)."""
    root = _environment(_generation)[0]
    return Path(root) / "tuning" if root else Path.home() / ".cache" / "glai" / "tuning"


def _cpu_model() -> str:
    """The model name in this CPU's signature (``"cpu"`` where it has none)."""
    signature = compiled._cpu_signature()
    return next((ln.split(":", 1)[1].strip() for ln in signature.splitlines() if ln.startswith("model name")), "cpu")


@functools.cache
def cpu_key() -> str:
    """``<model>-<hash12>``: this CPU's model (letters and digits) and a hash of its model name and instruction-set
    flags (:func:`glai.kernels.estimator.compiled._cpu_signature`, the extension's own key) and of the kernels'
    source, whose changes void every choice. Read once per process."""
    signature = compiled._cpu_signature()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", _cpu_model()).strip("-")[:40] or "cpu"
    digest = hashlib.sha256(signature.encode() + b"\0" + compiled.SOURCE.read_bytes()).hexdigest()[:12]
    return f"{slug}-{digest}"


def tuning_file() -> Path:
    """This CPU's file of choices: ``tuning_dir() / f"{cpu_key()}.json"``."""
    return tuning_dir() / f"{cpu_key()}.json"


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def batch_class(batch: int) -> str:
    """``b16`` (one tile of 16 samples), ``b64``, ``b256``, ``b1024``, ``b4096`` (up to that many rows), ``b4096+``."""
    tiles = -(-int(batch) // 16)
    for limit in (1, 4, 16, 64, 256):
        if tiles <= limit:
            return f"b{16 * limit}"
    return "b4096+"


def shape_class(layout: PathLayout, batch: int) -> str:
    """The forward's arithmetic and the layout's sizes, each rounded up to a power of two:
    ``"output/in512/out512/paths2M/rows256K"``-like (exact numbers: ``in``, ``out``, ``paths``, ``rows``)."""
    return (f"{forward_mode(layout, batch)}/in{_pow2(layout.n_in)}/out{_pow2(layout.n_out)}"
            f"/paths{_pow2(layout.num_paths)}/rows{_pow2(layout.num_rows)}")


def _entry_key(layout: PathLayout, batch: int, threads: int) -> str:
    return f"{shape_class(layout, batch)}/{batch_class(batch)}/t{threads}"


# -- overrides -------------------------------------------------------------------------------------------------------

_FIELDS = {"fwd_tiles": int, "fwd_chunk": int, "bwd_chunk": int, "bwd_kmov": lambda v: bool(int(v)),
           "fwd_skip": lambda v: bool(int(v)), "backend": str}
_forced: str | None = None


def _parse(spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in _FIELDS:
            raise ValueError(f"{ENV}={spec!r}: {part!r} is not one of {sorted(_FIELDS)} as key=value. Fix: {ENV}=off, "
                             f"{ENV}=auto, or e.g. {ENV}=fwd_tiles=2,bwd_chunk=32768")
        try:
            out[key.strip()] = _FIELDS[key.strip()](value.strip())
        except ValueError as err:
            raise ValueError(f"{ENV}={spec!r}: {part!r} ({err})") from err
    if out.get("fwd_tiles", 1) not in (1, 2, 4) or out.get("backend", "cpp") not in ("cpp", "torch") or min(
            out.get("fwd_chunk", 1), out.get("bwd_chunk", 1)) < 1:
        raise ValueError(f"{ENV}={spec!r}: fwd_tiles is 1, 2 or 4, the chunks positive, backend cpp or torch")
    return out


@functools.cache
def _environment(generation: int) -> tuple[str | None, str | None]:
    """``(GLAI_CACHE_DIR, GLAI_ESTIMATOR_TUNING)`` as this process found them: read once per :func:`clear_memory`
    (every forward asks, and a lookup in ``os.environ`` costs about a microsecond)."""
    return os.environ.get("GLAI_CACHE_DIR"), os.environ.get(ENV)


def _override() -> str | None:
    """``"off"``, a fixed choice's spec, or None (time and cache): :func:`forced`'s, else the environment's."""
    spec = _forced if _forced is not None else (_environment(_generation)[1] or "").strip()
    return None if spec in ("", "auto") else spec


@contextlib.contextmanager
def forced(spec: str | None) -> Iterator[None]:
    """Within the block, choices are ``spec``: ``"off"`` (the defaults), ``"auto"`` (time and cache, whatever the
    environment says) or ``key=value`` pairs as in :data:`ENV`. Tests use it to make a choice without timing.

    Raises:
        ValueError: a spec that names an unknown field or value.
    """
    global _forced
    if spec not in (None, "off", "auto"):
        _parse(spec)
    saved, _forced = _forced, spec if spec is not None else "auto"
    try:
        yield
    finally:
        _forced = saved


# -- the cache -------------------------------------------------------------------------------------------------------

#: {(file, entry key): Choice} of this process.
_memo: dict[tuple[str, str], Choice] = {}
#: Every timing this process ran, as (file, entry key): what the tests count.
timed: list[tuple[str, str]] = []
#: Bumped by :func:`clear_memory`: the layouts' own records of their choices (``_cpp_tuned``) made before are void.
_generation = 0
_warned: set[str] = set()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, ValueError) as err:
        if str(path) not in _warned:
            _warned.add(str(path))
            warnings.warn(f"the estimator's tuning file {path} does not read ({err}); timing again", stacklevel=3)
        return {}
    return data.get("entries", {}) if isinstance(data, dict) and data.get("format") == _FORMAT else {}


def _write(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Merge one entry into the CPU's file: read, update, replace atomically, under a file lock (two processes on one
    machine may tune different classes at once). A folder that cannot be written keeps the choice in this process."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_name(f".{path.name}.lock"))):
            entries = _read(path)
            entries[key] = entry
            data = {"format": _FORMAT, "cpu": _cpu_model(), "entries": entries}
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
    except OSError as err:
        if str(path.parent) not in _warned:
            _warned.add(str(path.parent))
            warnings.warn(f"could not save the estimator's tuning in {path.parent} ({err}); the choice holds for this "
                          "process only. Fix: GLAI_CACHE_DIR=<a writable folder>", stacklevel=3)


def _to_entry(choice: Choice) -> dict[str, Any]:
    return {**dataclasses.asdict(choice.blocking), "backend": choice.backend, "mode": choice.mode,
            "blocking_timed": choice.blocking_timed, "tune_ms": round(choice.tune_ms, 3),
            "ms": {k: round(v, 4) for k, v in choice.ms.items()},
            "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _from_entry(entry: dict[str, Any]) -> Choice | None:
    try:
        blocking = Blocking(int(entry["fwd_tiles"]), int(entry["fwd_chunk"]), int(entry["bwd_chunk"]),
                            bool(entry["bwd_kmov"]), bool(entry["fwd_skip"]))
        return Choice(blocking, entry.get("backend"), str(entry["mode"]), "cache", float(entry.get("tune_ms", 0)),
                      dict(entry.get("ms", {})), bool(entry["blocking_timed"]))
    except (KeyError, TypeError, ValueError):
        return None


# -- timing ----------------------------------------------------------------------------------------------------------


def candidates(layout: PathLayout, batch: int) -> tuple[list[int], list[int], list[int]]:
    """The forward tiles, forward chunks and backward chunks worth timing at this batch: no tile choice for a single
    tile (1, 2 and 4 then run the same loop), none of the forward's chunks in the gate-major mode (they set its sums),
    and no chunk longer than twice the layout's paths (it would be the whole layout, like the next shorter one)."""
    tiles = -(-int(batch) // 16)
    fwd_tiles = [t for t in TILE_CANDIDATES if t <= max(tiles, 1)] if tiles > 1 else []
    chunks = [c for c in CHUNK_CANDIDATES if c < 2 * max(layout.num_paths, 1)] or [CHUNK_CANDIDATES[0]]
    fwd_chunks = [] if forward_mode(layout, batch) == "gate" else chunks
    return fwd_tiles, fwd_chunks, chunks


def _clock() -> Callable[[], float]:
    """The clock candidates are timed with: on one thread this process's CPU time (a call preempted by another
    process on a shared machine is not charged the time it waited), else the wall clock (CPU time would charge a
    candidate for every thread it keeps busy, and favour one that leaves the others idle)."""
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def _rounds(fns: dict[Any, Callable[[], None]], rounds: int, budget_s: float | None) -> dict[Any, list[float]]:
    """Seconds of each call, over interleaved rounds (load drifts hit every candidate alike); with ``budget_s``,
    stops after 2 rounds once the rounds have taken that long (wall clock)."""
    times: dict[Any, list[float]] = {k: [] for k in fns}
    clock = _clock()
    start = time.perf_counter()
    for r in range(rounds):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
        if budget_s is not None and r >= 1 and time.perf_counter() - start > budget_s:
            break
    return times


def _fastest(fns: dict[Any, Callable[[], None]], current: Any) -> tuple[Any, dict[Any, float]]:
    """The candidate at least :data:`MARGIN` faster than ``current`` in its best of up to :data:`ROUNDS` interleaved
    rounds (within :data:`STAGE_BUDGET_S`), else ``current``; and every candidate's best seconds."""
    times = {k: min(v) for k, v in _rounds(fns, ROUNDS, STAGE_BUDGET_S).items()}
    fastest = min(times, key=times.get)
    return (fastest if times[fastest] < (1 - MARGIN) * times[current] else current), times


def _confirm(challenger: Callable[[], None], default: Callable[[], None]) -> tuple[bool, float, float]:
    """Whether ``challenger`` beats ``default`` by :data:`MARGIN` over :data:`CONFIRM_ROUNDS` interleaved rounds: in
    its best time, its median and in all but one of the rounds pair by pair (a call slowed by another process, or a
    lucky one, moves nothing on a shared machine). Also the two best times, ms."""
    times = _rounds({"d": default, "c": challenger}, CONFIRM_ROUNDS, None)
    d, c = times["d"], times["c"]
    paired = sum(ci < (1 - MARGIN) * di for ci, di in zip(c, d, strict=True))
    wins = (min(c) < (1 - MARGIN) * min(d) and statistics.median(c) < (1 - MARGIN) * statistics.median(d)
            and paired >= len(c) - 1)
    return wins, min(c) * 1e3, min(d) * 1e3


def _sample(layout: PathLayout, batch: int, x_tilde: torch.Tensor | None, gates: torch.Tensor | None):
    """The rows the candidates run on: the batch's own first rows, or random ones (half the gates on) when the call
    has none (``resolve_backend``). A generator of its own: the run's random stream is not touched."""
    rows = min(int(batch), SAMPLE_ROWS, *([] if x_tilde is None else [x_tilde.shape[0]]))
    gen = torch.Generator().manual_seed(0)
    if x_tilde is None or gates is None:
        x_tilde = torch.randn(rows, layout.n_in, generator=gen)
        gates = torch.rand(rows, layout.n_gates, generator=gen) < 0.5
    values = torch.randn(layout.num_paths, generator=gen) * 0.01
    grad_y = torch.randn(rows, layout.n_out, generator=gen)
    return x_tilde[:rows].detach().contiguous(), gates[:rows].contiguous(), values, torch.zeros(layout.n_out), grad_y


def _steps(layout: PathLayout, sample) -> tuple[Callable[[Blocking], Callable[[], None]], ...]:
    """Callables over the sample: the forward, the backward and forward + backward of the compiled kernels under a
    blocking."""
    x, gates, values, bias, grad_y = sample
    _, xt, gm = compiled.estimator_fwd_cpp(x, gates, layout, values, bias)  # also warms pages and caches

    def forward(b: Blocking) -> Callable[[], None]:
        return lambda: compiled.estimator_fwd_cpp(x, gates, layout, values, bias, b)

    def backward(b: Blocking) -> Callable[[], None]:
        return lambda: compiled.estimator_bwd_cpp(grad_y, xt, gm, layout, b)

    def step(b: Blocking) -> Callable[[], None]:
        def run() -> None:
            _, xt_, gm_ = compiled.estimator_fwd_cpp(x, gates, layout, values, bias, b)
            compiled.estimator_bwd_cpp(grad_y, xt_, gm_, layout, b)
        return run

    return forward, backward, step


_FWD_FIELDS = ("fwd_tiles", "fwd_chunk", "fwd_skip")
_BWD_FIELDS = ("bwd_chunk", "bwd_kmov")


@torch.no_grad()
def _time_blocking(layout: PathLayout, batch: int, sample) -> tuple[Blocking, dict[str, float]]:
    """Coordinate search from the default, one field at a time: the forward's tiles, its chunks, its skipping of rows
    off for a whole tile group, the backward's chunks, its mask loads (each stage keeps its value unless a candidate
    is :data:`MARGIN` faster); then the forward's fields found against the default's, on the forward, and the
    backward's on the backward (:func:`_confirm`; the default's where they do not win).

    Returns:
        The blocking, and the milliseconds of the forward and the backward under the default and the choice
        (``fwd_default``, ``fwd_chosen``, ``bwd_default``, ``bwd_chosen``) and of both (``default``, ``chosen``).
    """
    default = default_blocking(layout, batch)
    forward, backward, _ = _steps(layout, sample)
    fwd_tiles, fwd_chunks, bwd_chunks = candidates(layout, batch)
    best, seen = default, {"fwd": {}, "bwd": {}}  # best seconds of every blocking timed, per part
    stages = (("fwd_tiles", fwd_tiles, "fwd", forward), ("fwd_chunk", fwd_chunks, "fwd", forward),
              ("fwd_skip", (True, False), "fwd", forward), ("bwd_chunk", bwd_chunks, "bwd", backward),
              ("bwd_kmov", (True, False), "bwd", backward))
    for field, values, part, run in stages:
        if len(values) > 1:
            cands = {v: dataclasses.replace(best, **{field: v}) for v in {*values, getattr(best, field)}}
            winner, times = _fastest({v: run(b) for v, b in cands.items()}, getattr(best, field))
            seen[part].update({cands[v]: t * 1e3 for v, t in times.items()})
            best = cands[winner]
    ms: dict[str, float] = {}
    for part, fields, run in (("fwd", _FWD_FIELDS, forward), ("bwd", _BWD_FIELDS, backward)):
        challenger = dataclasses.replace(default, **{f: getattr(best, f) for f in fields})
        if challenger == default:
            base = seen[part].get(default)
            ms[f"{part}_default"] = ms[f"{part}_chosen"] = base if base is not None else min(
                _rounds({0: run(default)}, ROUNDS, None)[0]) * 1e3
            continue
        wins, chosen_ms, default_ms = _confirm(run(challenger), run(default))
        ms[f"{part}_default"], ms[f"{part}_chosen"] = default_ms, chosen_ms if wins else default_ms
        if not wins:
            best = dataclasses.replace(best, **{f: getattr(default, f) for f in fields})
    ms["default"], ms["chosen"] = ms["fwd_default"] + ms["bwd_default"], ms["fwd_chosen"] + ms["bwd_chosen"]
    return best, ms


@torch.no_grad()
def _time_torch(layout: PathLayout, blocking: Blocking, cpp_ms: float, sample) -> tuple[str, float | None]:
    """``auto``'s backend and the torch backend's forward + backward on the sample, ms (None where its temporaries
    are too large to try); torch only where it wins :func:`_confirm`.

    Its forward on :data:`TORCH_PROBE_ROWS` rows first, scaled to the sample: where that already exceeds 3x the
    compiled kernels' forward + backward, the torch backend loses and the scaled forward is returned (its per-row
    cost falls with more rows, so the factor leaves room). On the real all-MiniLM-L6-v2 block its forward on 256 rows
    took 0.2 s against the compiled step's 16 ms: the probe keeps that off the first step."""
    x, gates, values, bias, grad_y = sample
    if layout.num_rows * x.shape[0] > TORCH_MAX_ELEMENTS:
        return "cpp", None
    probe = min(TORCH_PROBE_ROWS, x.shape[0])
    clock = _clock()
    t0 = clock()
    estimator_fwd_torch(x[:probe], gates[:probe], layout, values, bias)
    scaled = (clock() - t0) * 1e3 * x.shape[0] / probe
    if scaled > 3 * cpp_ms:
        return "cpp", scaled

    def torch_step() -> None:
        _, gate_rows, rows = estimator_fwd_torch(x, gates, layout, values, bias)
        estimator_bwd_torch(grad_y, x, gate_rows, layout, rows)

    wins, torch_ms, _ = _confirm(torch_step, _steps(layout, sample)[2](blocking))
    return ("torch" if wins else "cpp"), torch_ms


def _time_choice(layout: PathLayout, batch: int, sample, real: bool, need_backend: bool,
                 known: Choice | None) -> Choice:
    """``known`` completed: its blocking timed on ``sample`` where it was not and the sample is a batch's own rows
    (``real``), its backend where ``need_backend`` asks and it has none."""
    start = time.perf_counter()
    if known is not None and (known.blocking_timed or not real):
        blocking, ms, blocking_timed = known.blocking, dict(known.ms), known.blocking_timed
    elif real:
        blocking, ms = _time_blocking(layout, batch, sample)
        blocking_timed = True
    else:
        blocking, ms, blocking_timed = default_blocking(layout, batch), {}, False
    backend = known.backend if known is not None else None
    if need_backend and backend is None:
        if "chosen" not in ms:
            step = _steps(layout, sample)[2](blocking)
            ms["chosen"] = min(_rounds({0: step}, ROUNDS, STAGE_BUDGET_S)[0]) * 1e3
        backend, torch_ms = _time_torch(layout, blocking, ms["chosen"], sample)
        if torch_ms is not None:
            ms["torch"] = torch_ms
    tune_ms = (time.perf_counter() - start) * 1e3 + (known.tune_ms if known is not None else 0.0)
    return Choice(blocking, backend, forward_mode(layout, batch), "timed", tune_ms, ms, blocking_timed)


def choose(layout: PathLayout, batch: int, x_tilde: torch.Tensor | None = None, gates: torch.Tensor | None = None,
           *, need_backend: bool = False) -> Choice:
    """The choice for this layout and batch on this CPU at ``torch.get_num_threads()``: from this process's memory,
    else this CPU's file, else timed now (and saved).

    The blocking is timed on a batch's own rows only (``x_tilde`` and ``gates`` given: the compiled kernels' forward
    asks with them); ``auto``'s backend (``need_backend``) on them or, before any batch, on random rows with the
    default blocking. A call with neither gets what is known (the default blocking where nothing is).

    Args:
        layout: the kept paths (on the CPU).
        batch: rows of the batch, B.
        x_tilde, gates: the batch (float32 [B, n_in], {0, 1} [B, n_gates]), to time on its first rows.
        need_backend: also decide ``auto``'s backend (times the torch backend once per class if not done yet).

    Raises:
        ValueError: a :data:`ENV` (or :func:`forced`) spec that does not parse.
    """
    spec = _override()
    threads = torch.get_num_threads()
    real = x_tilde is not None and gates is not None
    # the per-call path (every forward): this layout's own record of the choice, valid while the CPU key and this
    # process's memory are those it was made under (about a microsecond, against ~25 for the full lookup)
    token = (cpu_key(), _generation)
    fast = layout.__dict__.setdefault("_cpp_tuned", {})
    hit = fast.get((batch, threads, spec))
    if (hit is not None and hit[0] == token and (hit[1].backend is not None or not need_backend)
            and (hit[1].blocking_timed or not real)):
        return hit[1]
    mode = forward_mode(layout, batch)
    if spec is not None:
        fixed = {} if spec == "off" else _parse(spec)
        backend = fixed.pop("backend", "cpp")
        blocking = dataclasses.replace(default_blocking(layout, batch), **fixed)
        choice = Choice(blocking, backend, mode, "default" if spec == "off" else "forced")
        fast[(batch, threads, spec)] = (token, choice)
        return choice
    path = tuning_file()
    key = (str(path), _entry_key(layout, batch, threads))
    choice = _memo.get(key)
    if choice is None:
        choice = _from_entry(_read(path).get(key[1], {}))
    if (real and (choice is None or not choice.blocking_timed)) or (
            need_backend and (choice is None or choice.backend is None)):
        timed.append(key)
        sample = _sample(layout, batch, x_tilde, gates)
        choice = _time_choice(layout, batch, sample, real, need_backend, choice)
        _write(path, key[1], _to_entry(choice))
        _memo[key] = dataclasses.replace(choice, source="cache")
        fast[(batch, threads, None)] = (token, _memo[key])
        return choice
    if choice is None:  # asked for what is known before anything was timed: the default, remembered nowhere
        return Choice(default_blocking(layout, batch), None, mode, "default", blocking_timed=False)
    _memo[key] = choice
    fast[(batch, threads, None)] = (token, choice)
    return choice


def clear_memory() -> None:
    """Forget this process's choices (the files stay) and read ``GLAI_CACHE_DIR`` and :data:`ENV` again: the next
    call per class reads its CPU's file again."""
    global _generation
    _memo.clear()
    _generation += 1
