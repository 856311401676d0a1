"""The pure-PyTorch fast path of the pruned GLAI estimator (backend ``"torch"``; ``"auto"`` without CUDA).

Factorisation over (output, gate) rows (see :mod:`glai.kernels.estimator.layout`):

    forward   H = M @ x~^T            M: CSR [R, n_in] holding the P kept values   (MKL csr @ dense)
              y^T = index_add over rows of gates^T[s_r] * H[r] , + beta
    backward  dH[r, b] = dy[b, o_r] * gates[b, s_r]
              dvalues = (dH @ x~) sampled at M's pattern                        (torch.sparse.sampled_addmm)
              dbeta = sum_b dy

Both products cost B*P multiply-adds; the rest is O(R*B) with R = distinct kept (o, s) pairs. Every op is
a plain PyTorch op, so the path also runs on CUDA (cuSPARSE; not benchmarked there, and its index_add uses
atomics, so there it is not bitwise deterministic). Deterministic on CPU (fixed reduction orders).
"""

from __future__ import annotations

import warnings

import torch

from glai.kernels.estimator.layout import PathLayout

__all__ = ["estimator_fwd_torch", "estimator_bwd_torch"]

# The CSR "beta" warning fires once per process (TORCH_WARN_ONCE) and says nothing actionable: spend it here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _ptr = torch.zeros(2, dtype=torch.int32)
    torch.sparse_csr_tensor(_ptr, _ptr[:0], torch.zeros(0), (1, 1))


def _rows_matrix(layout: PathLayout, values: torch.Tensor) -> torch.Tensor:
    """CSR [R, n_in] sharing ``values`` as its values (no copy)."""
    return torch.sparse_csr_tensor(
        layout.row_ptr,
        layout.col,
        values,
        (layout.num_rows, layout.n_in),
        check_invariants=False,
    )


def estimator_fwd_torch(
    x_tilde: torch.Tensor,
    gates: torch.Tensor,
    layout: PathLayout,
    values: torch.Tensor,
    bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward of the estimator with CSR products (paper Listing 2).

    Args:
        x_tilde: float32 [B, n_in].
        gates: uint8 / bool / float {0, 1} [B, n_gates].
        layout: the :class:`PathLayout` of the kept paths, on the same device.
        values: float32 [P], in layout order.
        bias: float32 [n_out].

    Returns:
        ``(y, gate_rows, rows)``: y float32 [B, n_out]; for the backward, gate_rows float32 [R, B]
        (``gates[b, s_r]``) and rows, the CSR [R, n_in] matrix of the values.
    """
    batch = x_tilde.shape[0]
    gate_rows = gates.t().contiguous().index_select(0, layout.row_gate).to(x_tilde.dtype)  # [R, B]
    rows = _rows_matrix(layout, values.detach())
    if layout.num_rows == 0:
        return bias.expand(batch, layout.n_out).clone(), gate_rows, rows
    h = torch.mm(rows, x_tilde.t().contiguous())  # [R, B]
    y_t = x_tilde.new_zeros(layout.n_out, batch).index_add_(0, layout.row_out, h.mul_(gate_rows))  # [O, B]
    # [B, O] view of the [O, B] result: the backward's dy^T is then contiguous for free.
    return y_t.t().add(bias), gate_rows, rows


def estimator_bwd_torch(
    grad_y: torch.Tensor,
    x_tilde: torch.Tensor,
    gate_rows: torch.Tensor,
    layout: PathLayout,
    rows: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the values (SDDMM over the kept paths, paper Listing 3) and of the bias.

    Args:
        grad_y: float32 [B, n_out].
        x_tilde: float32 [B, n_in], as in the forward.
        gate_rows: float32 [R, B] from :func:`estimator_fwd_torch`.
        layout: the :class:`PathLayout`.
        rows: the CSR [R, n_in] from :func:`estimator_fwd_torch` (only its sparsity pattern is used).

    Returns:
        ``(grad_values float32 [P] in layout order, grad_bias float32 [n_out])``.
    """
    grad_bias = grad_y.sum(0)
    if layout.num_rows == 0:
        return rows.values().new_zeros(0), grad_bias
    grad_h = grad_y.t().contiguous().index_select(0, layout.row_out).mul_(gate_rows)  # [R, B]
    # In place on a fresh zero-valued copy of the pattern: sampled_addmm(out=input) skips its clone of the
    # whole CSR (indices included, ~20% of the op at B1). Zeros, not empty: it computes 0 * old value.
    grad = _rows_matrix(layout, torch.zeros_like(rows.values()))
    torch.sparse.sampled_addmm(grad, grad_h, x_tilde, beta=0.0, out=grad)
    grad_values = grad.values()  # [P]
    return grad_values, grad_bias
