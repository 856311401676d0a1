"""Estimator pruning by path score (paper 3.7, Theorem 2; docs/method.md, Pruning)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glai.method.conversion import PathExpansion, PathStructure, PathWeights
from glai.method.heads import MLPHead

__all__ = ["KeptPaths", "path_norms", "path_scores", "prune", "prune_streaming"]


@dataclass
class KeptPaths:
    """The paths kept by pruning, in descending score order (ties: ascending flat index ``(o, i, g)``).

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
def path_norms(x_tilde: torch.Tensor, gates: torch.Tensor, max_elements: int = 2**25) -> torch.Tensor:
    """``||c_(i,g)||_1 = mean_{x in Omega} |x~_i| * gate_g(x)`` (paper 3.5).

    Args:
        x_tilde: float32 [N, n_in], the reference set Omega with the constant column.
        gates: uint8 [N, n_gates].
        max_elements: rows per float64 matmul are chosen so that one chunk of gates holds at most this many
            values (bounds memory for the millions of gate columns of deep heads).

    Returns:
        float32 [n_in, n_gates].
    """
    chunk = max(1, max_elements // max(1, gates.shape[1]))
    acc = torch.zeros(x_tilde.shape[1], gates.shape[1], dtype=torch.float64, device=x_tilde.device)
    for start in range(0, x_tilde.shape[0], chunk):
        xa = x_tilde[start : start + chunk].abs().double()
        acc += xa.T @ gates[start : start + chunk].double()
    return (acc / max(1, x_tilde.shape[0])).float()


@torch.no_grad()
def path_scores(weight: torch.Tensor, norms: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``|w[o,i,g]| * ||c_(i,g)||_1``: float32 [n_out, n_in, n_gates] (or a block of outputs); -1 where
    ``valid`` says no path exists.

    Args:
        weight: float32 [O_block, n_in, n_gates] path weights.
        norms: float32 [n_in, n_gates] (:func:`path_norms`).
        valid: bool [n_in, n_gates] or None (every entry is a path).
    """
    scores = weight.abs().mul_(norms.unsqueeze(0))  # in place: one block-sized buffer
    if valid is not None:
        scores.masked_fill_(~valid.unsqueeze(0), -1.0)
    return scores


class _TopK:
    """Running global top-``k`` of (score, flat index, value) over blocks fed in ascending index order.

    Order (documented tie-break): descending score, then ascending flat index ``(o * n_in + i) * n_gates + g``,
    so the kept set does not depend on how the paths were cut into blocks.
    """

    def __init__(self, k: int):
        self.k = k
        self.scores = torch.empty(0)
        self.index = torch.empty(0, dtype=torch.int64)
        self.values = torch.empty(0)
        self.total = torch.zeros((), dtype=torch.float64)

    def add(self, scores: torch.Tensor, values: torch.Tensor, offset: int) -> None:
        """One block: float32 scores [m] and values [m] of the paths ``offset .. offset + m - 1``."""
        self.total = self.total.to(scores.device) + torch.sum(scores.clamp_min(0), dtype=torch.float64)
        if self.scores.numel() >= self.k:
            # a path of this block enters only by beating the k-th best so far (a tie loses: higher index)
            idx = torch.nonzero(scores > self.scores.min()).squeeze(1)
        elif scores.numel() > self.k:
            # only this block's own top k (and its ties) can enter: never index the whole block
            kth = torch.kthvalue(scores.cpu(), scores.numel() - self.k + 1).values.to(scores.device)
            idx = torch.nonzero(scores >= kth).squeeze(1)
        else:
            idx = torch.arange(scores.numel(), device=scores.device)
        if idx.numel() == 0:
            return
        self.scores = torch.cat([self.scores.to(scores.device), scores[idx]])
        self.index = torch.cat([self.index.to(scores.device), idx + offset])
        self.values = torch.cat([self.values.to(scores.device), values[idx]])
        if self.scores.numel() > self.k:
            self._trim()

    def _trim(self) -> None:
        m, k = self.scores.numel(), self.k
        kth = torch.kthvalue(self.scores.cpu(), m - k + 1).values.to(self.scores.device)  # k-th largest
        above = self.scores > kth
        ties = torch.nonzero(self.scores == kth).squeeze(1)
        need = k - int(above.sum())
        # among paths tied at the threshold keep those of smallest index
        ties = ties[torch.argsort(self.index[ties])[:need]]
        keep = torch.cat([torch.nonzero(above).squeeze(1), ties])
        self.scores, self.index, self.values = self.scores[keep], self.index[keep], self.values[keep]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``(index, values, scores)`` in the documented order, and the removed score (Theorem 2 bound)."""
        order = torch.argsort(self.index)
        order = order[torch.argsort(-self.scores[order], stable=True)]
        removed = float(self.total - self.scores.double().sum())
        return self.index[order], self.values[order], self.scores[order], max(removed, 0.0)


def _kept(index: torch.Tensor, values: torch.Tensor, removed: float, n_in: int, n_gates: int) -> KeptPaths:
    out_idx = index // (n_in * n_gates)
    in_idx = (index // n_gates) % n_in
    gate_idx = index % n_gates
    return KeptPaths(out_idx, in_idx, gate_idx, values.clone(), removed)


def _check(structure: PathStructure, x_tilde: torch.Tensor, gates: torch.Tensor, keep: int) -> None:
    if x_tilde.shape[1] != structure.n_in or gates.shape[1] != structure.n_gates:
        raise ValueError(
            f"x_tilde [N, {x_tilde.shape[1]}] / gates [N, {gates.shape[1]}] do not match the expansion "
            f"(n_in {structure.n_in}, n_gates {structure.n_gates})"
        )
    if not 1 <= keep <= structure.num_paths:
        raise ValueError(f"keep must be in [1, {structure.num_paths}], got {keep}")


@torch.no_grad()
def prune(expansion: PathExpansion, x_tilde: torch.Tensor, gates: torch.Tensor, keep: int) -> KeptPaths:
    """Keep the ``keep`` paths of highest score over the whole estimator (global top-k).

    Output biases are never pruned. By paper Theorem 2 the pruned model satisfies
    ``sum_o mean_Omega |phi_o - phi~_o| <= KeptPaths.removed_score``. Ties are broken by the smaller flat
    index ``(o, i, g)``, so :func:`prune_streaming` keeps exactly the same paths.

    Args:
        expansion: the unpruned GLAI model.
        x_tilde: float32 [N, n0 + 1], Omega = the training embeddings with the constant column.
        gates: uint8 [N, n_gates], their gate columns.
        keep: number of path weights to keep, 1 <= keep <= number of paths.

    Raises:
        ValueError: if ``keep`` is out of range or the shapes disagree.
    """
    _check(expansion, x_tilde, gates, keep)
    top = _TopK(keep)
    top.add(path_scores(expansion.weight, path_norms(x_tilde, gates), expansion.valid).flatten(),
            expansion.weight.flatten(), 0)
    index, values, _, removed = top.result()
    return _kept(index, values, removed, expansion.n_in, expansion.n_gates)


@torch.no_grad()
def prune_streaming(
    mlp: MLPHead, x_tilde: torch.Tensor, gates: torch.Tensor, keep: int, max_elements: int = 2**24
) -> KeptPaths:
    """:func:`prune` of ``mlp_to_glai(mlp)`` without ever holding all path weights.

    Path weights are computed a block of outputs at a time (:class:`PathWeights`, bit-identical to the
    dense expansion), scored, and merged into a running global top-k. Peak memory is the routes of the
    last hidden layer plus one block of about ``max_elements`` paths plus the kept paths, never
    ``n_out * n_in * n_gates``. The kept paths, their values and their order equal :func:`prune`'s.

    Args:
        mlp: the trained selector (:class:`MLPHead`, L >= 1).
        x_tilde: float32 [N, n0 + 1], Omega with the constant column.
        gates: uint8 [N, n_gates], its gate columns (``path_structure(mlp).gates``).
        keep: number of path weights to keep.
        max_elements: paths scored per block (a block is at least one output).

    Raises:
        ValueError: if ``keep`` is out of range or the shapes disagree.
    """
    weights = PathWeights(mlp)
    structure = weights.structure
    _check(structure, x_tilde, gates, keep)
    norms = path_norms(x_tilde, gates)
    valid = structure.valid_mask(norms.device)
    per_output = structure.n_in * structure.n_gates
    step = max(1, max_elements // per_output)
    top = _TopK(keep)
    for start in range(0, structure.n_out, step):
        block = weights.block(start, min(start + step, structure.n_out))
        top.add(path_scores(block, norms, valid).flatten(), block.flatten(), start * per_output)
        del block
    index, values, _, removed = top.result()
    return _kept(index, values, removed, structure.n_in, structure.n_gates)
