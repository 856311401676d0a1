"""Heads trained on frozen embeddings: MLP, reduced MLP, linear, and GLAI (paper 4.1; docs/method.md, Heads and
optimisers).

Every head has the same call signature ``head(x, gates=None) -> logits`` so the training loop, the data
path and the validation passes are shared by all heads; only GLAI uses ``gates`` (cached activation
patterns).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLPHead", "LinearHead", "GLAIHead", "reduced_arch"]


def reduced_arch(arch: Sequence[int], rho: float) -> tuple[int, ...]:
    """Hidden widths scaled by ``rho`` (paper 4.2): ``(n0, round(rho*n1), ..., round(rho*nL), n_out)``.

    Raises:
        ValueError: if ``rho`` is outside (0, 1] or the last reduced hidden width is below ``n_out``
            (paper 4.2 requires ``round(rho * nL) >= n_out``, else the reduced MLP is a bottleneck).
    """
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}; set e.g. rho=0.5")
    hidden = [max(1, round(rho * n)) for n in arch[1:-1]]
    if hidden and hidden[-1] < arch[-1]:
        raise ValueError(
            f"round(rho * nL) = round({rho} * {arch[-2]}) = {hidden[-1]} < n_out = {arch[-1]}: the reduced MLP "
            f"would be a bottleneck (paper 4.2). Use rho >= {arch[-1] / arch[-2]:.3f}."
        )
    return (arch[0], *hidden, arch[-1])


class MLPHead(nn.Module):
    """ReLU MLP ``(n0, n1, ..., nL, n_out)`` with biases everywhere (paper Definition 1).

    Args:
        arch: layer widths, at least ``(n0, n1, n_out)`` for an MLP or ``(n0, n_out)`` for a linear head.

    Shapes:
        ``forward(x)``: x float32 [B, n0] -> logits float32 [B, n_out].
    """

    needs_gates = False

    def __init__(self, arch: Sequence[int]):
        super().__init__()
        if len(arch) < 2 or any(int(n) < 1 for n in arch):
            raise ValueError(f"arch must list >= 2 positive widths (n0, ..., n_out), got {list(arch)}")
        self.arch = tuple(int(n) for n in arch)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.arch[:-1], self.arch[1:]))
        # a list while glai.training.penalty.capture_hidden runs: forward appends each hidden layer's output
        self.captured_hidden: list[torch.Tensor] | None = None

    @property
    def num_hidden(self) -> int:
        """L, the number of hidden ReLU layers."""
        return len(self.layers) - 1

    def forward(self, x: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        captured = self.captured_hidden
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
            if captured is not None:
                captured.append(x)
        return self.layers[-1](x)

    def pre_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-ReLU values of each hidden layer: list of L float tensors [B, n_l]."""
        out = []
        for layer in self.layers[:-1]:
            z = layer(x)
            out.append(z)
            x = torch.relu(z)
        return out

    @torch.no_grad()
    def hidden_patterns(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activation pattern of each hidden layer (paper Definition 2): list of L uint8 [B, n_l], 1 = active."""
        return [(z > 0).to(torch.uint8) for z in self.pre_activations(x)]


class LinearHead(MLPHead):
    """One ``nn.Linear(n0, n_out)``: the paper's linear baseline."""

    def __init__(self, n0: int, n_out: int):
        super().__init__((n0, n_out))


class GLAIHead(nn.Module):
    """A frozen path selector (the reduced MLP) and a trainable linear estimator over its paths (paper 3.2).

    Args:
        selector: the trained reduced MLP; frozen here (``requires_grad_(False)``, eval mode).
        estimator: a module ``estimator(x_tilde [B, n0+1], gates uint8 [B, n_gates]) -> [B, n_out]``,
            e.g. :class:`glai.method.sparse_estimator.SparseEstimator` or
            :class:`glai.method.dense_estimator.DenseEstimator`.
        gate_fn: maps the selector's hidden patterns to the estimator's gate columns
            (``glai.method.conversion.PathExpansion.gates_from_patterns``); identity for L = 1.

    Shapes:
        ``forward(x, gates)``: x float32 [B, n0]; gates uint8 [B, n_gates] (cached) or None to run
        the selector (inference on new data) -> float32 [B, n_out].
    """

    needs_gates = True

    def __init__(self, selector: MLPHead, estimator: nn.Module, gate_fn=None):
        super().__init__()
        self.selector = selector.eval().requires_grad_(False)
        self.estimator = estimator
        self._gate_fn = gate_fn
        # set by glai.method.pipeline.build_glai_head: kept paths, cached gates, seconds (a Conversion)
        self.conversion = None

    @torch.no_grad()
    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gate columns of ``x`` from the frozen selector: uint8 [B, n_gates]."""
        patterns = self.selector.hidden_patterns(x)
        return self._gate_fn(patterns) if self._gate_fn is not None else patterns[0]

    def forward(self, x: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        if gates is None:
            gates = self.gates(x)
        x_tilde = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)  # [B, n0+1]
        return self.estimator(x_tilde, gates)
