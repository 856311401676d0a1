"""Autograd function and public op of the pruned GLAI estimator (docs/method.md; paper Listings 1-3)."""

from __future__ import annotations

import torch

from glai.kernels.estimator import triton as triton_kernels
from glai.kernels.estimator import tuning
from glai.kernels.estimator.compiled import cpp_available, estimator_bwd_cpp, estimator_fwd_cpp
from glai.kernels.estimator.cpu import estimator_bwd_torch, estimator_fwd_torch
from glai.kernels.estimator.layout import PathLayout
from glai.kernels.estimator.triton import estimator_bwd, estimator_fwd, triton_available

__all__ = ["EstimatorFunction", "glai_estimator", "resolve_backend", "backend_label", "BACKENDS",
           "AUTO_TRITON_MAX_BATCH", "AUTO_TRITON_MAX_PATHS_PER_PROGRAM"]

BACKENDS = ("auto", "triton", "cpp", "torch")
# "auto" on CUDA, measured on an H200 (scripts/bench_estimator.py, one full Adam step; docs/bench/):
# - up to batch 16 Triton's row-major kernels: 0.88-0.95x the MLP step on the six paper shapes and T768, 0.78x on
#   D768, against 1.06-1.33x for the torch backend (cuSPARSE);
# - from batch 64 (triton.BATCH_MAJOR_MIN_BATCH) Triton's batch-major kernels, unless a program (one output, 64
#   samples) would walk more than AUTO_TRITON_MAX_PATHS_PER_PROGRAM paths: then too few programs fill the GPU
#   and cuSPARSE wins. At batch 1024 this picks the faster backend on all eight shapes (Triton: A1 0.93x,
#   A2 0.93x, B1 1.24x, B2 0.94x, C1 1.00x, T768 3.22x the MLP; torch: C2 1.09x at 3,092 paths per program,
#   D768 1.04x at 2,476, where Triton ran 1.73x and 1.63x; C1, the largest Triton pick, has 931);
# - in between (17-63) the torch backend: the row-major kernels lost to it at 64 on C1 and C2.
AUTO_TRITON_MAX_BATCH = 16
AUTO_TRITON_MAX_PATHS_PER_PROGRAM = 1500


def resolve_backend(backend: str, device: torch.device | str, batch: int | None = None,
                    layout: PathLayout | None = None) -> str:
    """The backend that runs: named backends pass through; ``"auto"`` picks by device and batch.

    On the CPU: ``"torch"`` when the compiled estimator is not built for this machine
    (:mod:`glai.kernels.estimator.compiled`); else, given the batch and the layout, the faster of ``"cpp"`` and
    ``"torch"`` as timed on this CPU for the layout's shape class and the batch's class
    (:func:`glai.kernels.estimator.tuning.choose`: once per CPU and class, cached on disk; torch only when at least
    5 % faster), and ``"cpp"`` without them. On this project's machines the compiled kernels' step was the faster in
    every cell measured (``docs/bench/estimator-cpu-auto-sweep.csv``, 84 cells: 1.30-6.8x at batch 1-16,
    1.59-1.98x at 64, 1.66-6.2x at 256 to a full batch); the timing keeps ``auto`` right on a CPU where that does
    not hold. On CUDA with Triton: ``"triton"`` when
    ``batch <= AUTO_TRITON_MAX_BATCH`` (or ``batch`` is None), or when ``batch >= BATCH_MAJOR_MIN_BATCH`` and
    each forward program (one output, a block of 64 samples) walks at most
    ``AUTO_TRITON_MAX_PATHS_PER_PROGRAM`` paths on average; ``"torch"`` otherwise (see the measurements above).

    Args:
        backend: one of :data:`BACKENDS`.
        device: where the inputs live.
        batch: rows of the input batch, B; None when unknown.
        layout: the kept paths' :class:`PathLayout` (its P and n_out); None when unknown (then large batches
            go to ``"torch"``).

    Raises:
        ValueError: for an unknown backend name.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    device = torch.device(device)
    if device.type == "cpu":
        if not cpp_available():
            return "torch"
        if batch is None or layout is None:
            return "cpp"
        return tuning.choose(layout, batch, need_backend=True).backend
    if device.type != "cuda" or not triton_available(device):
        return "torch"
    if batch is None or batch <= AUTO_TRITON_MAX_BATCH:
        return "triton"
    if batch >= triton_kernels.BATCH_MAJOR_MIN_BATCH and layout is not None:
        programs = max(1, layout.n_out) * -(-batch // 64)
        if layout.num_paths / programs <= AUTO_TRITON_MAX_PATHS_PER_PROGRAM:
            return "triton"
    return "torch"


def backend_label(backend: str, batch: int, layout: PathLayout) -> str:
    """The backend that ran at this batch as a run record names it (``cost.estimator_backends``): ``"cpp"`` with its
    blocking, ``"cpp fwd 4x32768 bwd 65536 kmov"`` (:func:`glai.kernels.estimator.tuning.choose`, the choice the
    kernels used), else the backend's name."""
    return f"cpp {tuning.choose(layout, batch).label}" if backend == "cpp" else backend


class EstimatorFunction(torch.autograd.Function):
    """``y = estimator(x~, gates; values, bias)`` with gradients for ``values`` and ``bias`` only.

    The inputs and gates are constants of estimator training (cached embeddings and frozen activation
    patterns), so their gradients are None; :func:`glai_estimator` refuses inputs that require grad.
    """

    @staticmethod
    def forward(ctx, x_tilde, gates, values, bias, layout: PathLayout, backend: str):
        if backend == "triton":
            y = estimator_fwd(x_tilde, gates, layout, values, bias)
            ctx.save_for_backward(x_tilde, gates)
        elif backend == "cpp":
            # this CPU's blocking for the layout and batch (timed on this batch the first time; the numbers are the
            # same under any)
            ctx.blocking = tuning.choose(layout, x_tilde.shape[0], x_tilde, gates).blocking
            y, xt, gm = estimator_fwd_cpp(x_tilde, gates, layout, values, bias, ctx.blocking)
            ctx.save_for_backward(xt, gm)
        else:
            y, gate_rows, rows = estimator_fwd_torch(x_tilde, gates, layout, values, bias)
            ctx.save_for_backward(x_tilde, gate_rows)
            # A sparse CSR tensor cannot go through save_for_backward; it holds no autograd history.
            ctx.rows = rows
        ctx.layout, ctx.backend = layout, backend
        return y

    @staticmethod
    def backward(ctx, grad_y):
        if ctx.backend == "triton":
            x_tilde, gates = ctx.saved_tensors
            grad_values, grad_bias = estimator_bwd(grad_y, x_tilde, gates, ctx.layout)
        elif ctx.backend == "cpp":
            xt, gm = ctx.saved_tensors
            grad_values, grad_bias = estimator_bwd_cpp(grad_y, xt, gm, ctx.layout, ctx.blocking)
        else:
            x_tilde, gate_rows = ctx.saved_tensors
            grad_values, grad_bias = estimator_bwd_torch(grad_y, x_tilde, gate_rows, ctx.layout, ctx.rows)
        return None, None, grad_values, grad_bias, None, None


def glai_estimator(
    x_tilde: torch.Tensor,
    gates: torch.Tensor,
    layout: PathLayout,
    values: torch.Tensor,
    bias: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """The pruned GLAI estimator, at a cost proportional to the kept paths.

    ``y[b,o] = sum_{p: out_idx[p]=o} x~[b,in_idx[p]] * gates[b,gate_idx[p]] * values[p] + bias[o]``
    (docs/method.md, Conversion; paper Listing 1 restricted to the kept paths, Listings 2-3 for forward and backward).

    Args:
        x_tilde: float32 [B, n_in], inputs with the constant column (a constant: no gradient flows to it).
        gates: uint8 {0, 1} [B, n_gates] (bool or float accepted), the cached activation pattern.
        layout: :class:`PathLayout` of the kept paths, on the same device as the inputs.
        values: float32 [P], path weights in layout order (``layout.to_layout(values)``).
        bias: float32 [n_out].
        backend: ``"auto"`` (see :func:`resolve_backend`), ``"triton"`` (CUDA, or CPU under TRITON_INTERPRET=1),
            ``"cpp"`` (the compiled CPU kernels, :mod:`glai.kernels.estimator.compiled`) or ``"torch"`` (PyTorch
            sparse CSR ops, any device).

    Returns:
        float32 [B, n_out].

    Raises:
        ValueError: on a shape, dtype or backend mismatch, or when ``x_tilde``/``gates`` require grad.
        RuntimeError: if ``backend="triton"`` and Triton cannot run on the inputs' device, or ``backend="cpp"``
            and the inputs are not on the CPU or the extension is not built.
    """
    if x_tilde.dim() != 2 or x_tilde.shape[1] != layout.n_in:
        raise ValueError(f"x_tilde must be [B, n_in={layout.n_in}], got {tuple(x_tilde.shape)}")
    if gates.dim() != 2 or gates.shape != (x_tilde.shape[0], layout.n_gates):
        raise ValueError(
            f"gates must be [B={x_tilde.shape[0]}, n_gates={layout.n_gates}], got {tuple(gates.shape)}"
        )
    if values.shape != (layout.num_paths,) or bias.shape != (layout.n_out,):
        raise ValueError(
            f"values must be [{layout.num_paths}] and bias [{layout.n_out}], "
            f"got {tuple(values.shape)} and {tuple(bias.shape)}"
        )
    if x_tilde.dtype != torch.float32 or values.dtype != torch.float32 or bias.dtype != torch.float32:
        raise ValueError(
            f"x_tilde, values and bias must be float32, got {x_tilde.dtype}, {values.dtype}, {bias.dtype}"
        )
    if x_tilde.requires_grad or gates.requires_grad:
        raise ValueError(
            "the estimator's inputs are constants (cached embeddings, frozen gates) and get no "
            "gradient: pass x_tilde.detach()"
        )
    backend = resolve_backend(backend, x_tilde.device, x_tilde.shape[0], layout)
    if backend == "triton" and not triton_available(x_tilde.device):
        raise RuntimeError(
            f"backend='triton' needs Triton and a CUDA device (got {x_tilde.device}); set TRITON_INTERPRET=1 "
            "before importing triton to run it on CPU, or use backend='torch'"
        )
    if backend == "cpp" and x_tilde.device.type != "cpu":
        raise RuntimeError(f"backend='cpp' runs on the CPU only (got {x_tilde.device}); use backend='auto'")
    return EstimatorFunction.apply(x_tilde, gates, values, bias, layout, backend)
