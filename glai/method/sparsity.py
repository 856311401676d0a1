"""How sparse a head's activation patterns are (EAT's firing ratio; docs/method.md, The method
family).

- Firing ratio of an MLP: per hidden layer, the fraction of its units active (ReLU > 0) for a sample, averaged
  over samples.
- Active paths of a GLAI head: per sample, the kept paths whose gate column is on; the estimator's work per
  sample is proportional to it.
"""

from __future__ import annotations

import torch

from glai.method.heads import MLPHead

__all__ = ["firing_ratio", "active_paths_per_sample"]


@torch.no_grad()
def firing_ratio(mlp: MLPHead, x: torch.Tensor, chunk: int = 8192) -> list[float]:
    """Per hidden layer, the mean over the rows of ``x`` of the fraction of active units.

    Args:
        mlp: an :class:`MLPHead` with at least one hidden layer (an MLP, or GLAI's selector).
        x: float32 [N, n0], N >= 1.
        chunk: rows per forward.

    Returns:
        L floats in [0, 1].

    Raises:
        ValueError: for a head without hidden layers or an empty ``x``.
    """
    if mlp.num_hidden < 1 or x.shape[0] == 0:
        raise ValueError(f"firing ratio needs hidden layers and rows, got {mlp.num_hidden} layers and "
                         f"{x.shape[0]} rows")
    active = [0.0] * mlp.num_hidden
    for start in range(0, x.shape[0], chunk):
        for layer, pattern in enumerate(mlp.hidden_patterns(x[start:start + chunk])):
            active[layer] += float(pattern.float().mean(1).sum())
    return [a / x.shape[0] for a in active]


@torch.no_grad()
def active_paths_per_sample(gates: torch.Tensor, gate_idx: torch.Tensor) -> float:
    """Mean over samples of the number of kept paths whose gate is on.

    Args:
        gates: uint8 {0, 1} [N, n_gates], the cached activation patterns (gate columns), N >= 1.
        gate_idx: int64 [P], each kept path's gate column.

    Returns:
        A float in [0, P].
    """
    per_column = torch.bincount(gate_idx.to(gates.device), minlength=gates.shape[1]).to(torch.float64)  # [n_gates]
    return float((gates.to(torch.float64) @ per_column).mean())
