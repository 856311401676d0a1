"""Combining estimators that share a path selector (GreenLightningAI; docs/method.md, The method
family): the federated case.

K estimators start from one conversion (the same frozen selector, the same kept paths, the same initial
values) and train on K disjoint shards. Because each is linear in its path weights for fixed gates, their
weighted average is again an estimator over the same paths: ``values = sum_k w_k values_k``, ``bias = sum_k w_k
bias_k`` with ``w_k = n_k / sum n`` (shard sizes). Averaging is exact on aligned paths: the combined forward
equals the weighted average of the K forwards. MLPs share no such alignment (their hidden units can permute
and their patterns differ), which is why the same averaging applied to K MLPs is the expected failure.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from glai.method.dense_estimator import DenseEstimator
from glai.method.sparse_estimator import SparseEstimator

__all__ = ["average_estimators", "average_modules", "shard_weights"]


def shard_weights(sizes: Sequence[int]) -> list[float]:
    """``n_k / sum(n)`` for each shard.

    Raises:
        ValueError: for no shard, a negative size, or all sizes zero.
    """
    if not sizes or any(n < 0 for n in sizes) or sum(sizes) == 0:
        raise ValueError(f"shard sizes must be >= 0 with a positive sum, got {list(sizes)}")
    total = float(sum(sizes))
    return [n / total for n in sizes]


def _same_paths(a: nn.Module, b: nn.Module) -> bool:
    if isinstance(a, SparseEstimator):
        la, lb = a.layout, b.layout
        return all(torch.equal(getattr(la, k), getattr(lb, k)) for k in ("out_idx", "in_idx", "gate_idx")) and (
            la.n_in, la.n_gates, la.n_out) == (lb.n_in, lb.n_gates, lb.n_out)
    return torch.equal(a.mask, b.mask)


def average_estimators(estimators: Sequence[nn.Module], weights: Sequence[float]) -> nn.Module:
    """The weighted average of estimators over the same kept paths (a new module; the inputs are untouched).

    Args:
        estimators: K >= 1 :class:`SparseEstimator` (or K :class:`DenseEstimator`) with identical paths.
        weights: K floats summing to 1 (:func:`shard_weights`).

    Returns:
        An estimator of the same class and paths: ``values = sum_k w_k values_k``, ``bias = sum_k w_k bias_k``
        (float32, summed in float64).

    Raises:
        ValueError: K = 0, a length mismatch, weights not summing to 1, mixed classes, or different paths (the
            estimators must come from one conversion).
    """
    if not estimators or len(estimators) != len(weights):
        raise ValueError(f"need K >= 1 estimators and K weights, got {len(estimators)} and {len(weights)}")
    if abs(sum(weights) - 1.0) > 1e-9:
        raise ValueError(f"weights must sum to 1, got {sum(weights)}")
    first = estimators[0]
    if not isinstance(first, (SparseEstimator, DenseEstimator)) or any(type(e) is not type(first)
                                                                        for e in estimators):
        raise ValueError("average_estimators takes SparseEstimator or DenseEstimator modules of one class, got "
                         f"{sorted({type(e).__name__ for e in estimators})}")
    if not all(_same_paths(first, e) for e in estimators[1:]):
        raise ValueError("the estimators keep different paths: only estimators from one conversion (same selector, "
                         "same kept paths) can be averaged")
    return average_modules(estimators, weights)


def average_modules(modules: Sequence[nn.Module], weights: Sequence[float]) -> nn.Module:
    """Parameter-wise weighted average of modules of one architecture (a copy of the first, averaged).

    For estimators use :func:`average_estimators`, which checks the paths; for MLPs this is one-shot FedAvg.

    Raises:
        ValueError: when the modules' parameter names or shapes differ.
    """
    names = [n for n, _ in modules[0].named_parameters()]
    shapes = [tuple(p.shape) for p in modules[0].parameters()]
    for m in modules[1:]:
        if [n for n, _ in m.named_parameters()] != names or [tuple(p.shape) for p in m.parameters()] != shapes:
            raise ValueError("the modules' parameters differ in names or shapes: they cannot be averaged")
    out = copy.deepcopy(modules[0])
    params = [dict(m.named_parameters()) for m in modules]
    with torch.no_grad():
        for name, p in out.named_parameters():
            acc = torch.zeros_like(p, dtype=torch.float64)
            for w, ps in zip(weights, params, strict=True):
                acc += w * ps[name].detach().to(torch.float64)
            p.copy_(acc.to(p.dtype))
    return out
