"""Estimator pruning by path score (paper 3.7, Theorem 2, SPEC 3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glai.method.conversion import PathExpansion

__all__ = ["KeptPaths", "path_norms", "path_scores", "prune"]


@dataclass
class KeptPaths:
    """The paths kept by pruning, in descending score order.

    Attributes:
        out_idx, in_idx, gate_idx: int64 [P], the path ``(o, i, g)``.
        values: float32 [P], path weights ``w[o, i, g]``.
        removed_score: sum of the scores of the removed paths (the Theorem 2 bound), float.
    """

    out_idx: torch.Tensor
    in_idx: torch.Tensor
    gate_idx: torch.Tensor
    values: torch.Tensor
    removed_score: float

    def __len__(self) -> int:
        return self.values.numel()


@torch.no_grad()
def path_norms(x_tilde: torch.Tensor, gates: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """``||c_(i,g)||_1 = mean_{x in Omega} |x~_i| * gate_g(x)`` (paper 3.5, SPEC 3).

    Args:
        x_tilde: float32 [N, n_in], the reference set Omega with the constant column.
        gates: uint8 [N, n_gates].
        chunk: rows per matmul, to bound memory.

    Returns:
        float32 [n_in, n_gates].
    """
    acc = torch.zeros(x_tilde.shape[1], gates.shape[1], dtype=torch.float64, device=x_tilde.device)
    for start in range(0, x_tilde.shape[0], chunk):
        xa = x_tilde[start : start + chunk].abs().double()
        acc += xa.T @ gates[start : start + chunk].double()
    return (acc / max(1, x_tilde.shape[0])).float()


@torch.no_grad()
def path_scores(expansion: PathExpansion, norms: torch.Tensor) -> torch.Tensor:
    """``|w[o,i,g]| * ||c_(i,g)||_1``: float32 [n_out, n_in, n_gates]; -1 where no path exists."""
    scores = expansion.weight.abs() * norms.unsqueeze(0)
    if expansion.valid is not None:
        scores = scores.masked_fill(~expansion.valid.unsqueeze(0), -1.0)
    return scores


@torch.no_grad()
def prune(expansion: PathExpansion, x_tilde: torch.Tensor, gates: torch.Tensor, keep: int) -> KeptPaths:
    """Keep the ``keep`` paths of highest score over the whole estimator (global top-k, SPEC 3).

    Output biases are never pruned. By paper Theorem 2 the pruned model satisfies
    ``sum_o mean_Omega |phi_o - phi~_o| <= KeptPaths.removed_score``.

    Args:
        expansion: the unpruned GLAI model.
        x_tilde: float32 [N, n0 + 1], Omega = the training embeddings with the constant column.
        gates: uint8 [N, n_gates], their gate columns.
        keep: number of path weights to keep, 1 <= keep <= number of paths.

    Raises:
        ValueError: if ``keep`` is out of range or the shapes disagree.
    """
    if x_tilde.shape[1] != expansion.n_in or gates.shape[1] != expansion.n_gates:
        raise ValueError(
            f"x_tilde [N, {x_tilde.shape[1]}] / gates [N, {gates.shape[1]}] do not match the expansion "
            f"(n_in {expansion.n_in}, n_gates {expansion.n_gates})"
        )
    if not 1 <= keep <= expansion.num_paths:
        raise ValueError(f"keep must be in [1, {expansion.num_paths}], got {keep}")
    scores = path_scores(expansion, path_norms(x_tilde, gates)).flatten()
    top = torch.topk(scores, keep, sorted=True).indices
    total = scores.clamp_min(0).double().sum()
    removed = float(total - scores[top].double().sum())
    n_in, n_gates = expansion.n_in, expansion.n_gates
    out_idx = top // (n_in * n_gates)
    in_idx = (top // n_gates) % n_in
    gate_idx = top % n_gates
    values = expansion.weight.flatten()[top].clone()
    return KeptPaths(out_idx, in_idx, gate_idx, values, max(removed, 0.0))
