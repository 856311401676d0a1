"""Parameter matching between an MLP and its GLAI counterpart (paper 4.2; docs/method.md, Parameter matching).

The paper's closed forms for R and E disagree with direct counting (the erratum there), so everything here
is counted directly: O and R from real ``nn.Linear`` modules, E from the path structure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from torch import nn

from glai.method.heads import MLPHead, reduced_arch

__all__ = ["ParamBudget", "count_parameters", "count_paths", "parameter_budget"]

log = logging.getLogger(__name__)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_paths(arch: Sequence[int]) -> int:
    """Number of path weights ending at ONE output of an MLP ``arch = (n0, n1, ..., nL, n_out)``
    (docs/method.md, Conversion).

    Paths start at an input coordinate or at the constant bias input of layer 0 (``(n0 + 1) * n1 * ... * nL``)
    or at the bias of a deeper hidden layer k (``n_{k+1} * ... * nL``); the output bias is not a path.
    """
    hidden = list(arch[1:-1])
    if not hidden:
        raise ValueError(f"an MLP needs >= 1 hidden layer to have paths, got arch {list(arch)}")
    total = (arch[0] + 1) * math.prod(hidden)
    for k in range(1, len(hidden)):
        total += math.prod(hidden[k:])
    return total


@dataclass(frozen=True)
class ParamBudget:
    """Parameter counts of paper 4.2 (docs/method.md, Parameter matching).

    Attributes:
        O: parameters of the original MLP.
        R: parameters of the reduced MLP (the frozen path selector).
        E: estimator size before pruning: path weights + ``n_out`` output biases.
        mu: kept fraction ``(O - R) / E`` as computed (may exceed 1, paper Remark 5).
        kept: estimator parameters kept after pruning (kept paths + ``n_out`` biases).
        kept_paths: path weights kept, ``O - R - n_out`` so that ``R + kept = O`` exactly. The paper's
            "top mu * (E - n_out) paths" plus the never-pruned biases would overshoot O by ``n_out * (1 - mu)``
            (9 parameters on digits); we keep the exact parity the fraction is defined by.
        mu_clipped: True when ``mu >= 1`` and nothing is pruned (Remark 5).
    """

    O: int
    R: int
    E: int
    mu: float
    kept: int
    kept_paths: int
    mu_clipped: bool

    def as_dict(self) -> dict:
        return asdict(self)


def parameter_budget(arch: Sequence[int], rho: float) -> ParamBudget:
    """O, R, E, mu and the number of kept paths for ``arch`` reduced by ``rho`` (paper 4.2).

    Args:
        arch: original MLP widths ``(n0, n1, ..., nL, n_out)``, L >= 1.
        rho: hidden-width reduction factor in (0, 1).

    Raises:
        ValueError: bad ``rho`` or ``round(rho * nL) < n_out`` (see :func:`glai.method.heads.reduced_arch`).
    """
    n_out = arch[-1]
    red = reduced_arch(arch, rho)
    O = count_parameters(MLPHead(arch))
    R = count_parameters(MLPHead(red))
    E = n_out * count_paths(red) + n_out
    mu = (O - R) / E
    clipped = mu >= 1.0
    if clipped:
        log.warning("mu = %.3f >= 1 for arch %s, rho %s: keeping every path (paper Remark 5)", mu, arch, rho)
    kept_paths = E - n_out if clipped else O - R - n_out
    return ParamBudget(O=O, R=R, E=E, mu=mu, kept=kept_paths + n_out, kept_paths=kept_paths, mu_clipped=clipped)
