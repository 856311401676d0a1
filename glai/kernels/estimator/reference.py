"""Pure-PyTorch reference of the pruned GLAI estimator: the spec every backend is tested against.

Source: docs/method.md (Conversion, Pruning), paper Listings 1-3 (Listing 1 is the dense einsum; this is the
same sum restricted to the kept paths). It materialises one [B, P] product, so it is for tests and small problems only.
"""

from __future__ import annotations

import torch

__all__ = ["estimator_reference"]


def estimator_reference(
    x_tilde: torch.Tensor,
    gates: torch.Tensor,
    out_idx: torch.Tensor,
    in_idx: torch.Tensor,
    gate_idx: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor,
    n_out: int,
) -> torch.Tensor:
    """``y[b,o] = sum_{p: out_idx[p]=o} x~[b,in_idx[p]] * gates[b,gate_idx[p]] * values[p] + bias[o]``.

    Differentiable through autograd in ``values`` and ``bias`` (and in ``x_tilde`` if it requires grad,
    unlike the fast backends, which treat the inputs as constants).

    Args:
        x_tilde: float32 [B, n_in], inputs with the constant 1 as last column.
        gates: uint8 (or bool / float) {0, 1} [B, n_gates], the activation pattern (route indicators).
        out_idx, in_idx, gate_idx: int64 [P], the kept paths ``(o, i, s)``, any order, duplicates summed.
        values: float32 [P], the path weights.
        bias: float32 [n_out], output biases ``beta``.
        n_out: number of outputs.

    Returns:
        float32 [B, n_out].
    """
    contrib = x_tilde[:, in_idx] * gates[:, gate_idx].to(x_tilde.dtype) * values  # [B, P]
    y = x_tilde.new_zeros(x_tilde.shape[0], n_out).index_add(1, out_idx, contrib)  # [B, n_out]
    return y + bias
