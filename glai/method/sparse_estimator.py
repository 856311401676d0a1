"""The pruned GLAI estimator as a module whose cost scales with its kept paths (docs/method.md, Pruning and
The method family).

After pruning only a fraction mu (1-3%) of the path weights remain (docs/method.md, Pruning). The dense reference
(:class:`glai.method.dense_estimator.DenseEstimator`, paper Listing 1) still pays for every one of them, in
compute and in optimiser state. This module stores only the kept values and computes with
:func:`glai.kernels.estimator.glai_estimator` (Triton on CUDA, PyTorch sparse CSR products on CPU).
"""

from __future__ import annotations

import torch
from torch import nn

from glai.kernels.estimator import BACKENDS, PathLayout, backend_label, glai_estimator, resolve_backend

__all__ = ["SparseEstimator"]


class SparseEstimator(nn.Module):
    """``y[b,o] = sum_{p: o_p = o} x~[b, i_p] * gates[b, s_p] * w_p + beta[o]`` over the kept paths.

    Trainable parameters are only ``values`` (float32 [P], the kept path weights, stored in the layout order
    of ``self.layout``) and ``bias`` (float32 [n_out]), so an optimiser keeps state for the kept paths only.
    The path indices live in ``self.layout`` (a :class:`PathLayout` of buffers, moved by ``.to()``).

    Args:
        out_idx, in_idx, gate_idx: int64 [P], the kept paths (``glai.method.pruning.KeptPaths``), any order.
        values: float32 [P], their weights, in the same order as the indices.
        bias: float32 [n_out], output biases (never pruned).
        n_in: inputs including the constant column (n0 + 1).
        n_gates: gate columns.
        n_out: outputs.
        backend: ``"auto"`` | ``"triton"`` | ``"cpp"`` | ``"torch"``, see :func:`glai.kernels.estimator.glai_estimator`.

    Shapes:
        ``forward(x_tilde float32 [B, n_in], gates uint8 [B, n_gates]) -> float32 [B, n_out]``.

    Raises:
        ValueError: if the index arrays, values and bias disagree in length or range, or the backend is
            unknown.
    """

    def __init__(
        self,
        out_idx: torch.Tensor,
        in_idx: torch.Tensor,
        gate_idx: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor,
        n_in: int,
        n_gates: int,
        n_out: int,
        backend: str = "auto",
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        values = torch.as_tensor(values).detach()
        bias = torch.as_tensor(bias).detach()
        if values.dim() != 1 or values.numel() != torch.as_tensor(out_idx).numel():
            raise ValueError(
                f"values must be 1-D with one entry per path ({torch.as_tensor(out_idx).numel()}), "
                f"got shape {tuple(values.shape)}"
            )
        if bias.shape != (int(n_out),):
            raise ValueError(f"bias must be [n_out={n_out}], got {tuple(bias.shape)}")
        self.layout = PathLayout(out_idx, in_idx, gate_idx, n_in, n_gates, n_out)
        self.values = nn.Parameter(self.layout.to_layout(values.cpu().float()).to(values.device))
        self.bias = nn.Parameter(bias.clone().float())
        self.layout.to(values.device)
        self.backend = backend
        #: {batch size: backend that ran} over this module's forward calls (``auto`` resolved per call); the run
        #: record stores it (``cost.estimator_backends``), so the record names what ran at every batch size.
        self.backends_ran: dict[int, str] = {}

    @classmethod
    def from_paths(
        cls,
        out_idx: torch.Tensor,
        in_idx: torch.Tensor,
        gate_idx: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor,
        n_in: int,
        n_gates: int,
        n_out: int,
        backend: str = "auto",
    ) -> SparseEstimator:
        """Build from kept paths ``(out_idx, in_idx, gate_idx, values)``; see the class docstring."""
        return cls(out_idx, in_idx, gate_idx, values, bias, n_in, n_gates, n_out, backend)

    @property
    def n_in(self) -> int:
        return self.layout.n_in

    @property
    def n_gates(self) -> int:
        return self.layout.n_gates

    @property
    def n_out(self) -> int:
        return self.layout.n_out

    @property
    def num_kept(self) -> int:
        """Number of kept path weights P (output biases not counted)."""
        return self.layout.num_paths

    def forward(self, x_tilde: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """x_tilde float32 [B, n_in], gates uint8 {0,1} [B, n_gates] -> float32 [B, n_out]."""
        batch = x_tilde.shape[0]
        backend = resolve_backend(self.backend, x_tilde.device, batch, self.layout)
        y = glai_estimator(x_tilde, gates, self.layout, self.values, self.bias, backend)
        # what ran, as the record names it: the compiled backend with the blocking chosen on this CPU
        self.backends_ran[batch] = backend_label(backend, batch, self.layout)
        return y

    @torch.no_grad()
    def kept_paths(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(out_idx, in_idx, gate_idx, values)`` in layout order: int64 [P] x 3 and float32 [P]."""
        lay = self.layout
        return lay.out_idx, lay.in_idx, lay.gate_idx, self.values.detach().clone()

    @torch.no_grad()
    def to_dense(self) -> torch.Tensor:
        """The dense path weights, float32 [n_out, n_in, n_gates] (zero at pruned paths), for checks."""
        lay = self.layout
        dense = torch.zeros(lay.n_out, lay.n_in, lay.n_gates, device=self.values.device)
        dense.index_put_((lay.out_idx, lay.in_idx, lay.gate_idx), self.values.detach(), accumulate=True)
        return dense

    def extra_repr(self) -> str:
        return f"num_kept={self.num_kept}, n_in={self.n_in}, n_gates={self.n_gates}, n_out={self.n_out}, " \
            f"backend={self.backend!r}"
