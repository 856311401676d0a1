"""The dense reference estimator (paper Listing 1).

It pays for every path weight whether kept or not; :class:`glai.method.sparse_estimator.SparseEstimator` is the
fast one. Kept here as the reference in tests and in ``scripts/bench_estimator.py``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DenseEstimator"]


class DenseEstimator(nn.Module):
    """``y = einsum(bis,ois->bo, x~ (x) gates, weight * mask) + bias`` (paper Listing 1).

    Args:
        weight: float32 [n_out, n_in, n_gates], initial path weights.
        bias: float32 [n_out].
        mask: bool [n_out, n_in, n_gates] of kept paths, or None to keep all.

    Shapes:
        ``forward(x_tilde [B, n_in] f32, gates [B, n_gates] uint8) -> [B, n_out] f32``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float())
        if mask is None:
            mask = torch.ones_like(self.weight, dtype=torch.bool)
        self.register_buffer("mask", mask.to(torch.bool))

    @classmethod
    def from_paths(cls, out_idx, in_idx, gate_idx, values, bias, n_in: int, n_gates: int, n_out: int):
        """Dense estimator holding only the given paths (the others masked to zero)."""
        weight = torch.zeros(n_out, n_in, n_gates)
        mask = torch.zeros(n_out, n_in, n_gates, dtype=torch.bool)
        weight[out_idx, in_idx, gate_idx] = values.float()
        mask[out_idx, in_idx, gate_idx] = True
        return cls(weight, bias, mask)

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_gates(self) -> int:
        return self.weight.shape[2]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    def forward(self, x_tilde: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        outer = torch.einsum("bi,bs->bis", x_tilde, gates.to(x_tilde.dtype))  # [B, n_in, n_gates]
        return torch.einsum("bis,ois->bo", outer, self.weight * self.mask) + self.bias
