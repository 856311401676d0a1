"""Time the conversion and one training step of the MLP, the dense GLAI estimator and the sparse one.

Shapes: the paper's six (docs/method.md, Families) and two large ones: a Transformer-sized MLP block
(768, 3072, 768) and a two-hidden-layer head (768, 512, 512, 10), all at rho = 0.5; and family T's block
(docs/method.md, Family T): ``FFN384`` = (384, 1536, 384), all-MiniLM-L6-v2's feed-forward block as ``ffn_glai``
trains it (the block's own first layer as the selector, the estimator pruned to the block's parameter count, at
token batches 1024, 4096 and 16384, against the block's GELU MLP on Adam), with random weights and inputs, and
``MiniLM``: the pretrained block itself, converted and timed on the tokens that reach it from DBPedia-14 training
texts (under ``GLAI_DATA_ROOT``, as ``make prefetch EXP=ffn/dbpedia`` builds them; skipped without them), whose
gates fire as in the family T study (about 23 % of them per token, against about 50 % for random weights).

Every sparse row carries its arithmetic limit (``macs_ratio``): the estimator's active multiply-adds per
sample, measured from the batch's gates, over the MLP's; the step ratio beside it says how far the kernels are from
doing that work at the MLP's rate.

Conversion: for each shape a random reduced MLP is converted and pruned for real, streaming
(``glai.method.pruning.prune_streaming``: the dense path tensor is never built) on random inputs, down to
``O - R - n_out`` kept paths (glai.method.budget.parameter_budget), in a child process of its own so
that its peak resident memory (``VmHWM``, the process high-water mark) is the conversion's. Reported:
conversion seconds (gates, path norms, scoring and top-k) and the peak RSS above the child's baseline after
importing torch. Then, interleaved and after a warm-up (the slow dense reference on its own, afterwards), it
times one full step (forward, cross-entropy,
backward, optimiser step, zero_grad) of:

- ``mlp``: the original MLP (nn.Linear-ReLU-nn.Linear), SGD;
  every optimiser comes from ``glai.training.loop.build_optimizer``, as in the runner (fused where available);
- ``dense``: the dense reference estimator (paper Listing 1 einsum on [n_out, n_in, n_gates] with a mask), Adam;
- ``sparse``: :class:`glai.method.sparse_estimator.SparseEstimator` on every backend available, Adam (fused when the
  device supports it).

Each (shape, batch) is timed at every ``--threads`` count (default 1 and 2: a column each, every method alike,
its own warm-up). Prints each median step time and its ratio to the MLP's at the same thread count, marks the
backend ``head.backend=auto`` resolves to at that batch (``<- auto``), and writes one CSV row per
(shape, batch, device, threads, method, backend) to ``results/bench/estimator-<device>.csv`` (atomically), with
the shape's conversion seconds and peak memory on every row, and the step's optimiser phase (``optimizer_ms``:
``opt.step()`` and ``zero_grad``, median over the same timed steps; ``optimizer_share`` = its part of the step).

Every row names the CPU that measured it (``cpu``, its vector extensions, L1d / L2 / L3 per core, torch's
capability: :func:`glai.results.cpu.cpu_info`): times of two CPUs are never one table's. The compiled kernels'
blocking is chosen on this CPU (:mod:`glai.kernels.estimator.tuning`) in the warm-up steps, off the clock; the
``cpp`` rows name it (``blocking``) and the milliseconds its timing took (``tune_ms``), and ``auto`` marks the backend
``head.backend=auto`` picks. ``--tuning fresh`` (the default) times every choice again in this run (a private
tuning folder), ``cached`` uses this CPU's saved choices as a run does, ``off`` the built-in defaults.

A full-batch row (``--batches ...,full``, ``full_batch`` in the CSV) times the same step at the stand-in's training
rows (A1 5,000, A2 3,500, B1 5,000, B2 1,841; C1 / C2 one episode's 20 support rows): the cost of one pass of
full-batch L-BFGS (``head.optimizer=lbfgs``) beside the MLP's.

Usage:
    python scripts/bench_estimator.py [--shapes A1,B1] [--batches 16,1024,full] [--repeats 30] [--device cpu|cuda]
                                      [--threads 1,2] [--quick] [--tuning fresh|cached|off]
                                      [--out results/bench/estimator-cpu.csv]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glai.kernels.estimator import cpp_available, resolve_backend, triton_available, tuning  # noqa: E402
from glai.kernels.estimator import triton as triton_kernels  # noqa: E402
from glai.method.budget import ParamBudget, parameter_budget  # noqa: E402
from glai.method.conversion import path_structure  # noqa: E402
from glai.method.dense_estimator import DenseEstimator  # noqa: E402
from glai.method.heads import MLPHead, reduced_arch  # noqa: E402
from glai.method.pruning import prune_streaming  # noqa: E402
from glai.method.sparse_estimator import SparseEstimator  # noqa: E402
from glai.results.cpu import cpu_info  # noqa: E402
from glai.training.optimizers import build_optimizer  # noqa: E402

# The paper's six (docs/method.md, Families; A2 with 14 outputs, its erratum).
SHAPES = {
    "A1": (384, 256, 37),
    "A2": (768, 128, 14),
    "B1": (1280, 640, 128),
    "B2": (768, 768, 128),
    "C1": (576, 256, 5),
    "C2": (768, 512, 4),
    # a Transformer MLP block and a two-hidden-layer head
    "T768": (768, 3072, 768),
    "D768": (768, 512, 512, 10),
    # family T's block (all-MiniLM-L6-v2's feed-forward block) as ffn_glai trains it: random
    # weights and inputs (FFN384), and the pretrained block itself on its own input tokens (MiniLM)
    "FFN384": (384, 1536, 384),
    "MiniLM": (384, 1536, 384),
}
#: The pretrained blocks under GLAI_DATA_ROOT (make prefetch EXP=ffn/dbpedia): all-MiniLM-L6-v2's last feed-forward
#: block, converted as ``ffn_glai`` converts it (its ReLU switch, pruned by path norm on the tokens), timed on the
#: tokens that reach it from DBPedia-14 training texts (the family T stand-in's). Skipped, with a message, when the
#: weights or the texts are not there.
PRETRAINED = {"MiniLM": ("weights/all-MiniLM-L6-v2", "data/dbpedia14/train.csv")}
#: Training texts run through the frozen layers for the pretrained block's tokens (about 50 tokens each): Omega for
#: the conversion and the timed batches (up to 16,384 tokens).
PRETRAINED_TEXTS = 600
#: Family T's blocks: the selector is the block's own first layer (full width, no rho), the estimator is
#: pruned to the block's parameter count (2 d d_ff + d_ff kept paths + d output biases), the reference is the block's
#: GELU MLP on Adam (ffn_mlp), and the batches are token batches (rows of ~62 tokens x 16-64 rows).
BLOCKS = {"FFN384", "MiniLM"}
TOKEN_BATCHES = (1024, 4096, 16384)
RHO = 0.5
#: ``--batches full``: one full-batch pass (what full-batch L-BFGS pays per evaluation) at the training
#: rows of each shape's offline stand-in (family C: one episode's support set); the large shapes have none.
FULL_ROWS = {"A1": 5000, "A2": 3500, "B1": 5000, "B2": 1841, "C1": 20, "C2": 20}
# Dense steps whose [B, n_in, n_gates] einsum intermediate or [n_out, n_in, n_gates] weight exceeds this many
# floats are skipped (memory: the weight and its two Adam moments).
DENSE_MAX_ELEMENTS = 2e8
# The torch backend's [R, B] float temporaries (four of them in a step) above this many floats are skipped: the
# family T blocks at batch 16,384 (131,101 rows x 16,384 = 2.1e9 floats, 8.6 GB each) ran the machine out of memory.
TORCH_MAX_ELEMENTS = 5e8
# Inputs used to score paths for pruning (the role of the training embeddings Omega).
NUM_SCORE_SAMPLES = 2048
COLUMNS = ["shape", "batch", "full_batch", "device", "threads", "method", "backend", "step_ms", "ratio_to_mlp",
           "optimizer_ms", "optimizer_share", "macs_ratio", "kept_paths", "conversion_s", "conversion_peak_mib",
           "auto", "blocking", "tune_ms", "cpu", "cpu_vector", "l1d_kib", "l2_kib", "l3_kib", "torch_capability"]


def cpu_columns() -> dict:
    """The CPU columns of every row (:func:`glai.results.cpu.cpu_info`): its name, vector extensions (space-separated),
    per-core L1d and L2 and one L3, in KiB, and torch's kernel capability."""
    cpu = cpu_info()
    return dict(cpu=cpu["name"], cpu_vector=" ".join(cpu["vector"]), l1d_kib=cpu["l1d_kib"], l2_kib=cpu["l2_kib"],
                l3_kib=cpu["l3_kib"], torch_capability=cpu["torch_capability"])


def data_root() -> Path:
    """``$GLAI_DATA_ROOT``, else ``data/`` in the repository (the config's ``data_root``, which ``make prefetch``
    fills)."""
    return Path(os.environ.get("GLAI_DATA_ROOT", ROOT / "data"))


def pretrained_block(name: str, n_texts: int = PRETRAINED_TEXTS) -> tuple[nn.Module, torch.Tensor]:
    """The pretrained block of ``name`` (:data:`PRETRAINED`) as ``ffn_glai`` reads it: its ReLU-switched
    ``Linear-ReLU-Linear`` (fp32 copies) and float32 [T, d] tokens at its input (the valid tokens of the first
    ``n_texts`` training texts, in text order).

    Raises:
        FileNotFoundError: the weights or texts are not under :func:`data_root` (the message names GLAI_DATA_ROOT).
    """
    import pandas as pd
    from transformers import AutoModel, AutoTokenizer

    from glai.transformer.blocks import read_ffn_blocks, relu_mlp

    weights, texts = (data_root() / part for part in PRETRAINED[name])
    for path in (weights, texts):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: the {name} block needs GLAI_DATA_ROOT (now {data_root()}) "
                                    "holding weights/all-MiniLM-L6-v2 and data/dbpedia14")
    model = AutoModel.from_pretrained(str(weights)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(weights))
    block = read_ffn_blocks(model, 1)[0]
    seen = []
    hook = block.fc1.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    rows = pd.read_csv(texts)["text"].astype(str).tolist()[:n_texts]
    tokens = []
    with torch.no_grad():
        for start in range(0, len(rows), 64):
            batch = tokenizer(rows[start:start + 64], padding=True, truncation=True, max_length=128,
                              return_tensors="pt")
            seen.clear()
            model(**batch)
            tokens.append(seen[0][batch["attention_mask"].bool()])
    hook.remove()
    return relu_mlp(block), torch.cat(tokens).float()


def convert_shape(name: str, seed: int = 0) -> dict:
    """Streaming conversion of the selector of shape ``name`` (this process): a random reduced MLP of its arch, or
    a family T block, random or pretrained (:data:`PRETRAINED`): selector, kept paths (gate columns
    renumbered to the used ones, as the GLAI head keeps them), counts, seconds; a pretrained block's tokens too."""
    arch = SHAPES[name]
    torch.manual_seed(seed)
    budget = parameter_budget(arch, RHO)  # O, R counted from the modules, E from the paths
    selector = MLPHead(_selector_arch(arch))
    tokens = None
    if name in PRETRAINED:
        mlp, tokens = pretrained_block(name)
        with torch.no_grad():
            for layer, linear in zip(selector.layers, (mlp[0], mlp[2]), strict=True):
                layer.weight.copy_(linear.weight)
                layer.bias.copy_(linear.bias)
    if name in BLOCKS:
        # family T: the selector is the block's pretrained first layer (d d_ff + d_ff), the estimator keeps the block's
        # own parameter count O = 2 d d_ff + d_ff + d (kept paths + the d output biases)
        d, d_ff = arch[0], arch[1]
        o, e = 2 * d * d_ff + d_ff + d, (d + 1) * d_ff * d + d
        budget = ParamBudget(O=o, R=d * d_ff + d_ff, E=e, mu=o / e, kept=o, kept_paths=o - d, mu_clipped=False)
    # Omega: random inputs, or a pretrained block's own tokens (every one, as ffn_glai converts on them)
    x = torch.randn(NUM_SCORE_SAMPLES, arch[0]) if tokens is None else tokens
    t0 = time.perf_counter()
    structure = path_structure(selector)
    gates = structure.gates(selector, x)
    x_tilde = torch.cat([x, torch.ones(len(x), 1)], 1)
    kept = prune_streaming(selector, x_tilde, gates, budget.kept_paths)
    used, gate_idx = torch.unique(kept.gate_idx, return_inverse=True)
    seconds = time.perf_counter() - t0
    return dict(selector=selector.state_dict(), arch=arch, tokens=tokens, out_idx=kept.out_idx, in_idx=kept.in_idx,
                gate_idx=gate_idx, used=used, values=kept.values, n_in=structure.n_in, seconds=seconds,
                counts=dict(O=budget.O, R=budget.R, E=budget.E, mu=budget.mu, P=budget.kept_paths,
                            gate_columns=structure.n_gates, gate_columns_used=used.numel()))


def _selector_arch(arch: tuple[int, ...]) -> tuple[int, ...]:
    """The path selector's widths: the block itself for family T's blocks, else the rho-reduced MLP."""
    return tuple(arch) if tuple(arch) in {SHAPES[b] for b in BLOCKS} else tuple(reduced_arch(arch, RHO))


def macs_ratio(gates: torch.Tensor, gate_idx: torch.Tensor, arch: tuple[int, ...]) -> float:
    """The arithmetic limit of a row: the estimator's multiply-adds per sample -- its kept paths with an
    active gate, measured on the batch's gates -- over the MLP's forward multiply-adds per sample
    (``sum n_l n_{l+1}``). A step ratio at this value would be the estimator doing its work at the MLP's rate."""
    from glai.method.sparsity import active_paths_per_sample

    mlp = sum(a * b for a, b in zip(arch[:-1], arch[1:], strict=True))
    return active_paths_per_sample(gates.cpu(), gate_idx.cpu()) / mlp


def _maxrss_bytes() -> int:
    """This process's resident-memory high-water mark in bytes: ``VmHWM`` (reset by exec, unlike
    ``ru_maxrss``, which a child inherits from a large parent), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def convert_in_child(name: str, threads: int = 1) -> dict:
    """Run :func:`convert_shape` in a fresh process; returns its result with ``peak_mib`` (RSS high-water
    mark above the child's baseline after imports)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kept.pt"
        proc = subprocess.run([sys.executable, __file__, "--convert-only", name, "--kept-out", str(out),
                               "--threads", str(threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"conversion of {name} failed:\n{proc.stderr[-3000:]}")
        result = torch.load(out, weights_only=False)
    result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return result


class Step:
    """One training step of ``model`` (forward, cross-entropy, backward, optimiser step, zero_grad), callable.

    Times its optimiser phase (``opt.step()`` and ``zero_grad``, with the Python around them) with ``clock``, in
    milliseconds, into ``optimizer_ms`` (the optimiser's share of each method's step); ``sync`` waits for
    the device on both sides of the phase, so on CUDA the phase holds its kernels, not their launch."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, inputs: tuple, target: torch.Tensor):
        self.model, self.opt, self.inputs, self.target = model, opt, inputs, target
        self.clock: Callable[[], float] = time.perf_counter
        self.sync: Callable[[], None] = lambda: None
        self.optimizer_ms: list[float] = []

    def __call__(self) -> None:
        loss = F.cross_entropy(self.model(*self.inputs), self.target)
        loss.backward()
        self.sync()
        t0 = self.clock()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sync()
        self.optimizer_ms.append((self.clock() - t0) * 1e3)


def make_step(model: nn.Module, opt: torch.optim.Optimizer, inputs: tuple, target: torch.Tensor) -> Step:
    return Step(model, opt, inputs, target)


class RowMajor(Step):
    """``step`` with the Triton kernels' batch-major switch off (row-major kernels at every batch)."""

    def __init__(self, step: Step):
        super().__init__(step.model, step.opt, step.inputs, step.target)

    def __call__(self) -> None:
        saved = triton_kernels.BATCH_MAJOR_MIN_BATCH
        triton_kernels.BATCH_MAJOR_MIN_BATCH = 1 << 62
        try:
            super().__call__()
        finally:
            triton_kernels.BATCH_MAJOR_MIN_BATCH = saved



def time_interleaved(steps: dict[str, Callable], repeats: int, warmup: int, device: torch.device,
                     budget_s: float, clock: Callable[[], float] = time.perf_counter,
                     phases: dict[str, float] | None = None) -> dict[str, float]:
    """Median milliseconds per step of each callable, run round-robin so load drifts hit all alike.

    ``phases``, when given, receives the median optimiser phase (ms) of every :class:`Step` among them."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps.values():
        if isinstance(step, Step):
            step.clock, step.sync = clock, sync
        for _ in range(warmup):
            step()
        if isinstance(step, Step):
            step.optimizer_ms.clear()  # the timed steps' phases only
    sync()
    times: dict[str, list[float]] = {k: [] for k in steps}
    start = time.perf_counter()
    for r in range(repeats):
        for name, step in steps.items():
            # A slow method (the dense reference, large shapes) stops once it has 3 samples and the budget is spent.
            if r >= 3 and time.perf_counter() - start > budget_s and not name.startswith("mlp"):
                continue
            sync()
            t0 = clock()
            step()
            sync()
            times[name].append((clock() - t0) * 1e3)
    if phases is not None:
        phases.update({k: statistics.median(s.optimizer_ms) for k, s in steps.items() if isinstance(s, Step)})
    return {k: statistics.median(v) for k, v in times.items()}


def bench_shape(name: str, batches: list, device: torch.device, repeats: int, warmup: int,
                budget_s: float, clock: Callable[[], float], threads: list[int] = (1,)) -> list[dict]:
    """``batches``: sizes, or ``"full"`` for the stand-in's training rows (:data:`FULL_ROWS`; skipped without).
    ``threads``: intra-op thread counts (``torch.set_num_threads``), each timed for every method alike."""
    arch = SHAPES[name]
    full = {FULL_ROWS[name]} if "full" in batches and name in FULL_ROWS else set()
    batches = [b for b in batches if b != "full"] + sorted(full)
    if name in BLOCKS:
        batches = list(TOKEN_BATCHES)  # a block trains on token batches, whatever --batches says
    n0, n_out = arch[0], arch[-1]
    if name in PRETRAINED and not all((data_root() / part).exists() for part in PRETRAINED[name]):
        print(f"\n{name}: skipped (no {' or '.join(PRETRAINED[name])} under GLAI_DATA_ROOT={data_root()})")
        return []
    conv = convert_in_child(name, max(threads))
    counts = conv["counts"]
    selector = MLPHead(_selector_arch(arch))
    selector.load_state_dict(conv["selector"])
    selector.to(device)
    structure = path_structure(selector)
    used = conv["used"].to(device)
    print(f"\n{name} arch {arch}: O={counts['O']:,} R={counts['R']:,} E={counts['E']:,} mu={counts['mu']:.4f} "
          f"kept paths P={counts['P']:,}, gate columns {counts['gate_columns_used']:,} of "
          f"{counts['gate_columns']:,}; conversion {conv['seconds']:.2f} s, peak {conv['peak_mib']:,.0f} MiB "
          f"above a {conv['baseline_mib']:,.0f} MiB baseline", flush=True)
    dims = dict(n_in=conv["n_in"], n_gates=int(used.numel()), n_out=n_out)
    paths = (conv["out_idx"], conv["in_idx"], conv["gate_idx"], conv["values"])
    backends = ["torch"] + (["triton"] if device.type == "cuda" and triton_available(device) else [])
    if device.type == "cpu" and cpp_available():
        backends.append("cpp")
    extra_cols = dict(kept_paths=counts["P"], conversion_s=round(conv["seconds"], 3),
                      conversion_peak_mib=round(conv["peak_mib"], 1))
    rows = []
    for batch in batches:
        torch.manual_seed(1)
        if conv["tokens"] is not None:  # a pretrained block: its own tokens, a random draw of them
            if len(conv["tokens"]) < batch:
                print(f"  B{batch}: skipped ({len(conv['tokens']):,} tokens from {PRETRAINED_TEXTS} texts)")
                continue
            x = conv["tokens"][torch.randperm(len(conv["tokens"]))[:batch]].to(device)
        else:
            x = torch.randn(batch, n0, device=device)
        target = torch.randint(0, n_out, (batch,), device=device)
        x_tilde = torch.cat([x, torch.ones(batch, 1, device=device)], 1)
        with torch.no_grad():
            gates = structure.gates(selector, x)[:, used]  # [B, used gate columns] uint8

        if name in BLOCKS:
            # the fine-tuned block (ffn_mlp): GELU, Adam, as family T trains every head
            mlp = nn.Sequential(nn.Linear(arch[0], arch[1]), nn.GELU(), nn.Linear(arch[1], arch[2])).to(device)
            mlp_opt = build_optimizer("adam", mlp.parameters(), 1e-4, 0.0)
        else:
            mlp = MLPHead(arch).to(device)
            mlp_opt = build_optimizer("sgd", mlp.parameters(), 1e-3, 1e-3)
        # every method's optimiser comes from the runner's builder: the fused kernel where the device has one
        steps = {"mlp/-": make_step(mlp, mlp_opt, (x,), target)}
        limit = macs_ratio(gates, conv["gate_idx"].to(device), arch)
        # The dense reference is timed on its own, after the others: interleaved, its steps (up to seconds,
        # gigabytes of temporaries) evicted the caches of the millisecond steps after them and inflated their
        # medians (B1, batch 16: the torch backend read 3.4x the MLP interleaved with it, 2.0x without).
        reference = {}
        dense_size = max(batch, n_out) * dims["n_in"] * dims["n_gates"]
        if dense_size <= DENSE_MAX_ELEMENTS:
            dense = DenseEstimator.from_paths(*paths, torch.zeros(n_out), **dims).to(device)
            reference["dense/einsum"] = make_step(dense, build_optimizer("adam", dense.parameters(), 1e-3, 0.1),
                                                  (x_tilde, gates), target)
        else:
            print(f"  B{batch}: dense skipped ([max(B, n_out), n_in, n_gates] = {dense_size:.2g} floats)")
        for backend in backends:
            sparse = SparseEstimator.from_paths(*paths, torch.zeros(n_out), backend=backend, **dims).to(device)
            if backend == "torch" and sparse.layout.num_rows * batch > TORCH_MAX_ELEMENTS:
                # its [R, B] temporaries (gate rows, row sums, their gradients) would not fit beside the others
                print(f"  B{batch}: sparse/torch skipped ([R, B] = {sparse.layout.num_rows * batch:.2g} floats)")
                continue
            steps[f"sparse/{backend}"] = make_step(sparse, build_optimizer("adam", sparse.parameters(), 1e-3, 0.1),
                                                   (x_tilde, gates), target)
            if backend == "triton" and batch >= triton_kernels.BATCH_MAJOR_MIN_BATCH:
                # the row-major kernels at this batch too, for the comparison behind BATCH_MAJOR_MIN_BATCH
                steps["sparse/triton-rowmajor"] = RowMajor(steps["sparse/triton"])
        if batch == batches[0]:
            print(f"  layout: {sparse.layout.extra_repr()}")
        by_threads, opt_by_threads, auto_by_threads, tuned = {}, {}, {}, {}
        for n in threads:
            torch.set_num_threads(n)
            opt_by_threads[n] = {}
            before = len(tuning.timed)
            # the warm-up steps make the compiled kernels' choice at this thread count (off the clock)
            medians = time_interleaved(steps, repeats, warmup, device, budget_s, clock, opt_by_threads[n])
            medians.update(time_interleaved(reference, repeats, warmup, device, budget_s, clock, opt_by_threads[n]))
            by_threads[n] = medians
            if "sparse/cpp" in steps:
                choice = tuning.choose(sparse.layout, batch)
                tuned[n] = (choice.label, round(choice.tune_ms, 1) if len(tuning.timed) > before else 0.0)
            auto_by_threads[n] = resolve_backend("auto", device, batch, sparse.layout)  # after the timed steps
        auto = auto_by_threads[threads[0]]
        label = f"N{batch}" if batch in full else f"B{batch}"  # N: one full-batch pass
        for key in by_threads[threads[0]]:
            method, backend = key.split("/")
            line = f"  {label:<6} {method:<6} {backend:<7}"
            for n, medians in by_threads.items():
                ms, mlp_ms, opt_ms = medians[key], medians["mlp/-"], opt_by_threads[n][key]
                line += f" | {n}t {ms:10.3f} ms {ms / mlp_ms:6.2f}x MLP"
                blocking, tune_ms = tuned.get(n, ("", "")) if key == "sparse/cpp" else ("", "")
                rows.append(dict(shape=name, batch=batch, full_batch=batch in full, device=device.type, threads=n,
                                 method=method, backend=backend, step_ms=round(ms, 4),
                                 ratio_to_mlp=round(ms / mlp_ms, 4), optimizer_ms=round(opt_ms, 4),
                                 optimizer_share=round(opt_ms / ms, 4),
                                 macs_ratio=round(limit, 4) if method == "sparse" else "",
                                 auto=method == "sparse" and backend == auto_by_threads[n], blocking=blocking,
                                 tune_ms=tune_ms, **extra_cols, **cpu_columns()))
            first = by_threads[threads[0]]
            opt_first = opt_by_threads[threads[0]][key]
            line += f"  (optimiser {opt_first:.3f} ms, {opt_first / first[key]:.0%})"
            if method == "sparse" and "dense/einsum" in first:
                line += f"  ({first['dense/einsum'] / first[key]:.1f}x faster than dense)"
            if method == "sparse":
                line += f"  [limit {limit:.2f}x: active multiply-adds / the MLP's]"
            if method == "sparse" and backend == auto:
                line += "  <- auto"
            if key == "sparse/cpp" and tuned:
                line += f"  [{tuned[threads[0]][0]}]"
            print(line, flush=True)
    return rows


@contextlib.contextmanager
def _tuning(mode: str, private: str):
    """``--tuning``: ``fresh`` points GLAI_CACHE_DIR at ``private`` (every choice timed again), ``off`` sets
    GLAI_ESTIMATOR_TUNING=off, ``cached`` leaves both; restored afterwards."""
    names = {"fresh": ("GLAI_CACHE_DIR", private), "off": (tuning.ENV, "off")}
    saved = {k: os.environ.get(k) for k in ("GLAI_CACHE_DIR", tuning.ENV)}
    if mode in names:
        os.environ[names[mode][0]] = names[mode][1]
    tuning.clear_memory()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tuning.clear_memory()


def write_csv_atomic(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma list of shapes")
    parser.add_argument("--batches", default="16,1024,full",
                        help="comma list of batch sizes; 'full' = the stand-in's training rows (one full-batch "
                        "pass: forward, backward and step, as full-batch L-BFGS pays per evaluation)")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        choices=["cpu", "cuda"])
    parser.add_argument("--threads", default="1,2",
                        help="comma list of intra-op thread counts (torch.set_num_threads), each timed for every "
                        "method alike: one column each")
    parser.add_argument("--dense-budget", type=float, default=20.0,
                        help="seconds after which a slow method (dense reference, large shapes) stops at 3 "
                        "samples (per shape x batch)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="wall: perf_counter; cpu: process CPU time (robust on a shared machine, with "
                        "--threads 1 it equals the wall time of an unloaded core; CPU device only)")
    parser.add_argument("--quick", action="store_true", help="5 repeats, 2 warm-up steps")
    parser.add_argument("--tuning", default="fresh", choices=["fresh", "cached", "off"],
                        help="the compiled kernels' blocking: fresh = timed again in this run's warm-up (a private "
                        "tuning folder), cached = this CPU's saved choices (as a run), off = the built-in defaults")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV path (default results/bench/estimator-<device>.csv)")
    parser.add_argument("--convert-only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kept-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.convert_only:
        # child process of convert_in_child: one conversion, its peak memory above the post-import baseline
        torch.set_num_threads(int(args.threads))
        baseline = _maxrss_bytes()
        result = convert_shape(args.convert_only)
        peak = _maxrss_bytes()
        torch.save(result, args.kept_out)
        print(json.dumps({"peak_mib": (peak - baseline) / 2**20, "baseline_mib": baseline / 2**20}))
        return

    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    batches = [b.strip() if b.strip() == "full" else int(b) for b in args.batches.split(",")]
    repeats, warmup = (5, 2) if args.quick else (args.repeats, args.warmup)
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu measures host CPU time: use it with --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    threads = [int(n) for n in args.threads.split(",")]
    if any(n < 1 for n in threads):
        parser.error(f"--threads must be positive counts, got {args.threads!r}")
    # as in the runner: denormal floats (saturated softmax gradients) would cost 10-100x per CPU op
    flush = torch.set_flush_denormal(True)
    device = torch.device(args.device)
    cpu = cpu_info()
    print(f"torch {torch.__version__}, device {device}, threads {threads} (of {os.cpu_count()} CPUs), "
          f"clock {args.clock}, repeats {repeats}, warm-up {warmup}, flush denormals {flush}, tuning {args.tuning}")
    print(f"CPU {cpu['name']}: {' '.join(cpu['vector'])}; L1d {cpu['l1d_kib']} KiB, L2 {cpu['l2_kib']} KiB, "
          f"L3 {cpu['l3_kib']} KiB; torch capability {cpu['torch_capability']}")

    rows = []
    with tempfile.TemporaryDirectory() as private, _tuning(args.tuning, private):
        for name in shapes:
            rows += bench_shape(name, batches, device, repeats, warmup, args.dense_budget, clock, threads)
    out = args.out or ROOT / "results" / "bench" / f"estimator-{device.type}.csv"
    write_csv_atomic(rows, out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
