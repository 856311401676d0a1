"""Triton kernels of the pruned GLAI estimator (backend ``"triton"``; ``"auto"`` on CUDA).

Forward (paper Listing 2, restricted to the kept paths): one program per (output o, block of BLOCK_B
samples) walks the paths of o (contiguous in the ``(o, s, i)`` layout, ``out_ptr``), gathers
``x~[b, i_p]`` and ``gates[b, s_p]`` and accumulates ``values[p]`` times their product in registers.

Backward (paper Listing 3, an SDDMM over the kept paths): one program per block of BLOCK_P paths loops over
the batch, accumulating ``dy[b, o_p] * x~[b, i_p] * gates[b, s_p]``. Each output element is owned by one
program and reduced in a fixed order, so both kernels are deterministic (no atomics). The bias gradient is
``dy.sum(0)`` in PyTorch.

From batch :data:`BATCH_MAJOR_MIN_BATCH` up, both kernels read batch-major copies ([features, B], one transpose
per call) so that the samples of one path are contiguous: the row-major gathers ``x~[b, i_p]`` of a large
batch are strided by n_in and do not coalesce.

Triton is imported lazily (inside :func:`_kernels`), so this module imports on CPU-only installs. Under
``TRITON_INTERPRET=1`` the kernels run on CPU tensors (slowly; the tests use it at small sizes).
"""

from __future__ import annotations

import functools
import os

import torch

from glai.kernels.estimator.layout import PathLayout

__all__ = ["estimator_fwd", "estimator_bwd", "triton_available"]


def triton_available(device: torch.device | str | None = None) -> bool:
    """True when Triton imports and can run on ``device`` (CUDA, or any device under TRITON_INTERPRET=1)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True
    return device is not None and torch.device(device).type == "cuda"


@functools.cache
def _kernels():
    """Compile-on-first-use: returns ``(fwd, bwd, fwd_bt, bwd_bt)`` kernels (``_bt``: batch-major operands);
    raises ImportError without Triton."""
    import triton
    import triton.language as tl

    @triton.jit
    def _estimator_fwd_kernel(
        x_ptr, gates_ptr, out_ptr_ptr, in_idx_ptr, gate_idx_ptr, values_ptr, bias_ptr, y_ptr,
        batch, stride_xb, stride_gb, stride_yb,
        BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr,
    ):
        o = tl.program_id(0)
        offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)  # [BLOCK_B]
        mask_b = offs_b < batch
        start = tl.load(out_ptr_ptr + o)
        end = tl.load(out_ptr_ptr + o + 1)
        acc = tl.zeros([BLOCK_B], dtype=tl.float32)
        for p0 in range(start, end, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)  # [BLOCK_P]
            mask_p = offs_p < end
            i = tl.load(in_idx_ptr + offs_p, mask=mask_p, other=0)
            s = tl.load(gate_idx_ptr + offs_p, mask=mask_p, other=0)
            v = tl.load(values_ptr + offs_p, mask=mask_p, other=0.0)
            mask = mask_b[:, None] & mask_p[None, :]  # [BLOCK_B, BLOCK_P]
            xv = tl.load(x_ptr + offs_b[:, None] * stride_xb + i[None, :], mask=mask, other=0.0)
            gv = tl.load(gates_ptr + offs_b[:, None] * stride_gb + s[None, :], mask=mask, other=0)
            acc += tl.sum(xv * gv.to(tl.float32) * v[None, :], axis=1)
        acc += tl.load(bias_ptr + o)
        tl.store(y_ptr + offs_b * stride_yb + o, acc, mask=mask_b)

    @triton.jit
    def _estimator_bwd_kernel(
        x_ptr, gates_ptr, grad_y_ptr, out_idx_ptr, in_idx_ptr, gate_idx_ptr, grad_values_ptr,
        batch, num_paths, stride_xb, stride_gb, stride_gyb,
        BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr,
    ):
        offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # [BLOCK_P]
        mask_p = offs_p < num_paths
        o = tl.load(out_idx_ptr + offs_p, mask=mask_p, other=0)
        i = tl.load(in_idx_ptr + offs_p, mask=mask_p, other=0)
        s = tl.load(gate_idx_ptr + offs_p, mask=mask_p, other=0)
        acc = tl.zeros([BLOCK_P], dtype=tl.float32)
        for b0 in range(0, batch, BLOCK_B):
            offs_b = b0 + tl.arange(0, BLOCK_B)  # [BLOCK_B]
            mask = (offs_b < batch)[:, None] & mask_p[None, :]  # [BLOCK_B, BLOCK_P]
            xv = tl.load(x_ptr + offs_b[:, None] * stride_xb + i[None, :], mask=mask, other=0.0)
            gv = tl.load(gates_ptr + offs_b[:, None] * stride_gb + s[None, :], mask=mask, other=0)
            gy = tl.load(grad_y_ptr + offs_b[:, None] * stride_gyb + o[None, :], mask=mask, other=0.0)
            acc += tl.sum(xv * gv.to(tl.float32) * gy, axis=0)
        tl.store(grad_values_ptr + offs_p, acc, mask=mask_p)

    @triton.jit
    def _estimator_fwd_bt_kernel(
        xt_ptr, gt_ptr, out_ptr_ptr, in_idx_ptr, gate_idx_ptr, values_ptr, bias_ptr, y_ptr,
        batch, stride_yb,
        BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr,
    ):
        # batch-major operands xt [n_in, B], gt [n_gates, B]: each path's row of samples is contiguous
        o = tl.program_id(0)
        offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)  # [BLOCK_B]
        mask_b = offs_b < batch
        start = tl.load(out_ptr_ptr + o)
        end = tl.load(out_ptr_ptr + o + 1)
        acc = tl.zeros([BLOCK_B], dtype=tl.float32)
        for p0 in range(start, end, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)  # [BLOCK_P]
            mask_p = offs_p < end
            i = tl.load(in_idx_ptr + offs_p, mask=mask_p, other=0).to(tl.int64)
            s = tl.load(gate_idx_ptr + offs_p, mask=mask_p, other=0).to(tl.int64)
            v = tl.load(values_ptr + offs_p, mask=mask_p, other=0.0)
            mask = mask_p[:, None] & mask_b[None, :]  # [BLOCK_P, BLOCK_B]
            xv = tl.load(xt_ptr + i[:, None] * batch + offs_b[None, :], mask=mask, other=0.0)
            gv = tl.load(gt_ptr + s[:, None] * batch + offs_b[None, :], mask=mask, other=0)
            acc += tl.sum(xv * gv.to(tl.float32) * v[:, None], axis=0)
        acc += tl.load(bias_ptr + o)
        tl.store(y_ptr + offs_b * stride_yb + o, acc, mask=mask_b)

    @triton.jit
    def _estimator_bwd_bt_kernel(
        xt_ptr, gt_ptr, gyt_ptr, out_idx_ptr, in_idx_ptr, gate_idx_ptr, grad_values_ptr,
        batch, num_paths,
        BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr,
    ):
        offs_p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # [BLOCK_P]
        mask_p = offs_p < num_paths
        o = tl.load(out_idx_ptr + offs_p, mask=mask_p, other=0).to(tl.int64)
        i = tl.load(in_idx_ptr + offs_p, mask=mask_p, other=0).to(tl.int64)
        s = tl.load(gate_idx_ptr + offs_p, mask=mask_p, other=0).to(tl.int64)
        acc = tl.zeros([BLOCK_P], dtype=tl.float32)
        for b0 in range(0, batch, BLOCK_B):
            offs_b = b0 + tl.arange(0, BLOCK_B)  # [BLOCK_B]
            mask = mask_p[:, None] & (offs_b < batch)[None, :]  # [BLOCK_P, BLOCK_B]
            xv = tl.load(xt_ptr + i[:, None] * batch + offs_b[None, :], mask=mask, other=0.0)
            gv = tl.load(gt_ptr + s[:, None] * batch + offs_b[None, :], mask=mask, other=0)
            gy = tl.load(gyt_ptr + o[:, None] * batch + offs_b[None, :], mask=mask, other=0.0)
            acc += tl.sum(xv * gv.to(tl.float32) * gy, axis=1)
        tl.store(grad_values_ptr + offs_p, acc, mask=mask_p)

    return _estimator_fwd_kernel, _estimator_bwd_kernel, _estimator_fwd_bt_kernel, _estimator_bwd_bt_kernel


def _check(x_tilde: torch.Tensor, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit column stride (the kernels index columns directly); bool gates viewed as uint8."""
    if gates.dtype == torch.bool:
        gates = gates.view(torch.uint8)
    return x_tilde.contiguous(), gates.contiguous()


#: Batches from this size up use the batch-major kernels (``_bt``): the inputs, gates and output gradient are
#: transposed once per call to [features, B], so that each path's samples are contiguous (coalesced loads);
#: below it the row-major kernels are used. A module attribute so that benchmarks can compare both.
BATCH_MAJOR_MIN_BATCH = 64


def _batch_major(batch: int) -> bool:
    return batch >= BATCH_MAJOR_MIN_BATCH


def _block_b(batch: int) -> int:
    return min(64, max(16, 1 << (batch - 1).bit_length()))


def _fwd_block_p(batch: int) -> int:
    """Paths per inner step of the forward, measured on an H200 (``scripts/tune_estimator_blocks.py``).

    At batch 16, 256 ran 0.44-0.53x the time of 64 on all six paper shapes; at batches 64, 256 and 1024,
    128 was the fastest (0.51-0.87x the time of 64).
    """
    return 256 if batch <= 16 else 128


def estimator_fwd(
    x_tilde: torch.Tensor,
    gates: torch.Tensor,
    layout: PathLayout,
    values: torch.Tensor,
    bias: torch.Tensor,
    block_p: int | None = None,
) -> torch.Tensor:
    """Forward with :func:`_estimator_fwd_kernel` (paper Listing 2 over the kept paths).

    Args:
        x_tilde: float32 [B, n_in].
        gates: uint8 / bool / float {0, 1} [B, n_gates].
        layout: the :class:`PathLayout`, on the same device.
        values: float32 [P], layout order.
        bias: float32 [n_out].
        block_p: paths per inner step (power of two); None picks the measured default for the batch.

    Returns:
        float32 [B, n_out].

    Raises:
        ImportError: if Triton is not installed.
    """
    fwd_kernel, _, fwd_bt_kernel, _ = _kernels()
    x_tilde, gates = _check(x_tilde, gates)
    batch = x_tilde.shape[0]
    y = torch.empty(batch, layout.n_out, device=x_tilde.device, dtype=torch.float32)
    if batch == 0:
        return y
    block_b = _block_b(batch)
    block_p = block_p or _fwd_block_p(batch)
    grid = (layout.n_out, (batch + block_b - 1) // block_b)
    if _batch_major(batch):
        fwd_bt_kernel[grid](
            x_tilde.t().contiguous(), gates.t().contiguous(), layout.out_ptr, layout.in_idx, layout.gate_idx,
            values.contiguous(), bias.contiguous(), y,
            batch, y.stride(0),
            BLOCK_B=block_b, BLOCK_P=block_p // 4,
        )
        return y
    fwd_kernel[grid](
        x_tilde, gates, layout.out_ptr, layout.in_idx, layout.gate_idx, values.contiguous(),
        bias.contiguous(), y,
        batch, x_tilde.stride(0), gates.stride(0), y.stride(0),
        BLOCK_B=block_b, BLOCK_P=block_p,
    )
    return y


def estimator_bwd(
    grad_y: torch.Tensor,
    x_tilde: torch.Tensor,
    gates: torch.Tensor,
    layout: PathLayout,
    block_p: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of values and bias with :func:`_estimator_bwd_kernel` (paper Listing 3 over the kept paths).

    Args:
        grad_y: float32 [B, n_out].
        x_tilde: float32 [B, n_in].
        gates: uint8 / bool / float {0, 1} [B, n_gates].
        layout: the :class:`PathLayout`.
        block_p: paths per program (power of two). 32 was the fastest of 32-512 on every paper shape at
            batch 16 and 1024 on an H200 (0.65-1.00x the time of 128).

    Returns:
        ``(grad_values float32 [P] in layout order, grad_bias float32 [n_out])``.

    Raises:
        ImportError: if Triton is not installed.
    """
    _, bwd_kernel, _, bwd_bt_kernel = _kernels()
    x_tilde, gates = _check(x_tilde, gates)
    grad_y = grad_y.contiguous().float()
    batch, num_paths = x_tilde.shape[0], layout.num_paths
    grad_values = torch.empty(num_paths, device=x_tilde.device, dtype=torch.float32)
    if num_paths == 0 or batch == 0:
        return grad_values.zero_(), grad_y.sum(0)
    block_b = min(_block_b(batch), 32)
    grid = ((num_paths + block_p - 1) // block_p,)
    if _batch_major(batch):
        bwd_bt_kernel[grid](
            x_tilde.t().contiguous(), gates.t().contiguous(), grad_y.t().contiguous(), layout.out_idx,
            layout.in_idx, layout.gate_idx, grad_values,
            batch, num_paths,
            BLOCK_B=64, BLOCK_P=block_p,
        )
        return grad_values, grad_y.sum(0)
    bwd_kernel[grid](
        x_tilde, gates, grad_y, layout.out_idx, layout.in_idx, layout.gate_idx, grad_values,
        batch, num_paths, x_tilde.stride(0), gates.stride(0), grad_y.stride(0),
        BLOCK_B=block_b, BLOCK_P=block_p,
    )
    return grad_values, grad_y.sum(0)
