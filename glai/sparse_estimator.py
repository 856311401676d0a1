"""Sparse GLAI estimator (placeholder: plain gather; the kernels issue replaces the internals)."""

from __future__ import annotations

import torch
from torch import nn


class SparseEstimator(nn.Module):
    """Estimator over kept paths only: ``y[b,o] = sum_p x~[b,i_p] g[b,s_p] w_p + beta[o]`` (SPEC 2-3)."""

    def __init__(self, out_idx, in_idx, gate_idx, values, bias, n_in, n_gates, n_out, backend="auto"):
        super().__init__()
        self.register_buffer("out_idx", out_idx.long())
        self.register_buffer("in_idx", in_idx.long())
        self.register_buffer("gate_idx", gate_idx.long())
        self.values = nn.Parameter(values.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float())
        self.n_in, self.n_gates, self.n_out = n_in, n_gates, n_out

    @classmethod
    def from_paths(cls, out_idx, in_idx, gate_idx, values, bias, n_in, n_gates, n_out, backend="auto"):
        return cls(out_idx, in_idx, gate_idx, values, bias, n_in, n_gates, n_out, backend)

    def forward(self, x_tilde, gates):
        contrib = x_tilde[:, self.in_idx] * gates[:, self.gate_idx].to(x_tilde.dtype) * self.values
        y = x_tilde.new_zeros(x_tilde.shape[0], self.n_out).index_add_(1, self.out_idx, contrib)
        return y + self.bias
