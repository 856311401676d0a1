"""Structural-knowledge tracking during MLP training: the path distance m_t (paper 3.6;
docs/method.md, Path distance).

A path of an MLP ``(n0, n1, ..., nL, n_out)`` is ``(i, s1, ..., sL, o)`` with ``i`` an input coordinate of
``x~ = [x, 1]`` (the constant 1 carries the first layer's bias), plus, for L >= 2, the paths started by the
bias of hidden layer k >= 2: ``(s_k, ..., s_L, o)`` with constant input 1 (docs/method.md, Conversion). The
indicator of a path is the product of the activation bits ``a_l[s_l](x)`` it crosses; it does not depend on ``o``.
Between two epochs t and t+1 (paper 3.6)::

    m_t = (1/P) sum_p d(c_p^t, c_p^{t+1})
    d   = mean_{x in Omega} |x~_i| * |ind_p^t(x) - ind_p^{t+1}(x)|

P grows as the product of the widths, so paths are never enumerated. For binary patterns the sum over the
routes ``(s_k, ..., s_L)`` of ``|prod_l a_l^t - prod_l a_l^{t+1}|`` is, per sample,
``prod_l |a_l^t| + prod_l |a_l^{t+1}| - 2 prod_l <a_l^t, a_l^{t+1}>`` (``|a|`` = number of active units),
because ``|A - B| = A + B - 2AB`` for bits A, B and each sum over routes of a product factorises over the
layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PathDistanceTracker", "path_distance", "structural_convergence", "default_sample_size"]


def default_sample_size(n_samples: int) -> int:
    """Default size M of the reference set Omega: ``min(N, 512)``."""
    return min(int(n_samples), 512)


def _route_sums(
    before: Sequence[torch.Tensor], after: Sequence[torch.Tensor], start: int
) -> torch.Tensor:
    """Per-sample sum over routes ``(s_start, ..., s_L)`` of ``|prod a^t - prod a^{t+1}|``.

    Args:
        before, after: per-layer activation patterns, L tensors [M, n_l] (any dtype holding 0/1).
        start: index (0-based) of the first hidden layer of the route.

    Returns:
        float64 [M].
    """
    m = before[0].shape[0]
    prod_b = torch.ones(m, dtype=torch.float64, device=before[0].device)
    prod_a = torch.ones_like(prod_b)
    prod_ab = torch.ones_like(prod_b)
    for a_t, a_t1 in zip(before[start:], after[start:], strict=True):
        a_t = a_t.to(torch.float64)
        a_t1 = a_t1.to(torch.float64)
        prod_b *= a_t.sum(dim=1)
        prod_a *= a_t1.sum(dim=1)
        prod_ab *= (a_t * a_t1).sum(dim=1)
    return prod_b + prod_a - 2.0 * prod_ab


def path_distance(
    x: torch.Tensor, before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]
) -> float:
    """The path distance m_t between two sets of activation patterns on the same samples (paper 3.6).

    Args:
        x: float [M, n0], the reference set Omega (without the constant column).
        before: activation patterns at epoch t, L tensors uint8/bool [M, n_l] (1 = active).
        after: activation patterns at epoch t+1, same shapes.

    Returns:
        m_t, the mean over all P paths of the mean over Omega of ``|x~_i| * |ind^t - ind^{t+1}|``
        (units of |x|). For L = 1 this is the mean over (i, s); for L >= 2 the bias-started paths of every
        hidden layer k >= 2 are included (docs/method.md, Conversion).

    Raises:
        ValueError: if the pattern lists are empty, of different depth, or shapes disagree with ``x``.
    """
    if len(before) == 0 or len(before) != len(after):
        raise ValueError(f"need the same number (>= 1) of hidden layers, got {len(before)} and {len(after)}")
    m = x.shape[0]
    for a_t, a_t1 in zip(before, after, strict=True):
        if a_t.shape != a_t1.shape or a_t.shape[0] != m:
            raise ValueError(f"pattern shapes {tuple(a_t.shape)} / {tuple(a_t1.shape)} do not match M = {m}")
    widths = [int(a.shape[1]) for a in before]
    n_in = x.shape[1] + 1
    # sum_i |x~_i| per sample; the appended constant input contributes 1.
    abs_sum = x.detach().to(torch.float64).abs().sum(dim=1) + 1.0  # [M]
    total = (abs_sum * _route_sums(before, after, 0)).mean()
    n_paths = float(n_in)
    for n in widths:
        n_paths *= n
    for k in range(1, len(widths)):
        total = total + _route_sums(before, after, k).mean()
        count = 1.0
        for n in widths[k:]:
            count *= n
        n_paths += count
    # n_out multiplies both the sum over paths and P, so it cancels.
    return float(total / n_paths)


class PathDistanceTracker:
    """Tracks m_t and the mean absolute weight change of an MLP epoch by epoch (paper 3.6, Figure 3).

    Args:
        x: float32 [M, n0], a fixed sample of training embeddings (Omega), chosen by the caller with a seeded
            generator; ``default_sample_size(N)`` gives the default M = min(N, 512).

    Usage: call :meth:`update` once before training or after the first epoch (stores the baseline and
    returns ``None`` values), then after every epoch.

    The MLP must expose ``.hidden_patterns(x) -> list[uint8 [M, n_l]]`` (``glai.method.heads.MLPHead``).
    """

    def __init__(self, x: torch.Tensor):
        if x.dim() != 2 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty [M, n0] tensor, got shape {tuple(x.shape)}")
        self.x = x.detach().to(torch.float32)
        self._patterns: list[torch.Tensor] | None = None
        self._params: torch.Tensor | None = None
        self.history: dict[str, list[float | None]] = {"path_distance": [], "weight_change": []}

    @staticmethod
    def _flat_params(mlp: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).to(torch.float64).cpu() for p in mlp.parameters()])

    @torch.no_grad()
    def update(self, mlp: nn.Module) -> dict[str, float | None]:
        """Record the MLP's current state and return the change since the previous call.

        Returns:
            ``{"path_distance": m_t, "weight_change": mean |theta^{t+1} - theta^t|}``; both ``None`` on the
            first call. The values are also appended to ``self.history``.

        Raises:
            ValueError: if the number of parameters or the pattern shapes change between calls.
        """
        first = next(mlp.parameters(), None)
        x = self.x.to(first.device) if first is not None else self.x
        patterns = [p.detach().to("cpu", torch.uint8) for p in mlp.hidden_patterns(x)]
        params = self._flat_params(mlp)
        out: dict[str, float | None] = {"path_distance": None, "weight_change": None}
        if self._patterns is not None:
            if params.shape != self._params.shape:
                raise ValueError("the MLP's parameter count changed between updates; track one model only")
            out["path_distance"] = path_distance(self.x, self._patterns, patterns)
            out["weight_change"] = float((params - self._params).abs().mean())
        self._patterns, self._params = patterns, params
        for key, value in out.items():
            self.history[key].append(value)
        return out


def structural_convergence(
    history: Sequence[float | None], threshold: float, consecutive: int = 1
) -> int | None:
    """First epoch at which the path distance falls below ``threshold`` (the structural switch,
    docs/method.md, The method family).

    Args:
        history: m_t per epoch, ``history[k]`` measured after epoch k + 1 (``None`` entries, e.g. the baseline
            call, never count).
        threshold: m_t must be strictly below it (units of |x|).
        consecutive: number of consecutive epochs below the threshold required; the epoch returned is the
            last of them.

    Returns:
        The 1-based epoch number, or ``None`` if the criterion is never met.

    Raises:
        ValueError: if ``consecutive < 1``.
    """
    if consecutive < 1:
        raise ValueError(f"consecutive must be >= 1, got {consecutive}")
    run = 0
    for k, value in enumerate(history):
        run = run + 1 if value is not None and value < threshold else 0
        if run >= consecutive:
            return k + 1
    return None
