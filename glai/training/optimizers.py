"""Optimisers of every head and phase, built one way so that every head gets an equally tuned step (docs/method.md,
Heads and optimisers)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "FullBatchLBFGS", "build_optimizer"]

# sgd: no momentum (the paper's MLPs); adam: L2 added to the gradient (PyTorch's default, the paper's
# estimator); adamw: decoupled weight decay (Loshchilov & Hutter); lbfgs: full-batch L-BFGS (the convex solver of
# GLAI's estimator and of the linear probe)
OPTIMIZERS = ("sgd", "adam", "adamw", "lbfgs")


class FullBatchLBFGS:
    """Full-batch L-BFGS with the strong-Wolfe line search, one iteration per epoch.

    The objective is the task's mean loss over every training row plus ``weight_decay / 2 * ||w||^2`` over the
    weights (parameters whose name does not end in ``bias``: as scikit-learn's ``LogisticRegression`` and the
    DINOv2 / CLIP linear probes, the intercepts are not penalised), computed in the closure -- L-BFGS has no
    weight decay of its own. With cross-entropy and frozen gates (GLAI's estimator, the linear head) the
    objective is convex, and its optimum is scikit-learn's with ``C = 1 / (weight_decay * N)``.

    One epoch is one L-BFGS iteration: the closure is evaluated once per line-search trial (at most
    ``max_eval`` full passes, usually one or two), all on the run's clock. A non-finite loss or parameter after an
    iteration restores the parameters from before it and restarts L-BFGS with an empty history; a second one in a
    row is reported (the epoch's loss is NaN, which the loop turns into ``NonFiniteLossError``). float32
    throughout, like every other optimiser here (the estimator kernels are float32); it reaches scikit-learn's
    float64 optimum to 1e-4 relative on the tests' shapes.

    Args:
        named_params: ``(name, parameter)`` pairs of the trainable parameters.
        lr: the initial step length (1.0 is L-BFGS's natural scale; the line search adapts it).
        weight_decay: L2 strength on the weights, >= 0.
        history_size: curvature pairs kept.
        max_eval: closure evaluations allowed per iteration (line search included).
    """

    def __init__(self, named_params, lr: float, weight_decay: float, history_size: int = 20, max_eval: int = 25):
        named = list(named_params)
        self.params = [p for _, p in named]
        self.decayed = [p for n, p in named if not n.endswith("bias")]
        self.lr, self.weight_decay = lr, weight_decay
        self.history_size, self.max_eval = history_size, max_eval
        self.restarts = 0
        self._failed_last = False
        self._new()

    def _new(self) -> None:
        self.opt = torch.optim.LBFGS(self.params, lr=self.lr, max_iter=1, max_eval=self.max_eval,
                                     history_size=self.history_size, line_search_fn="strong_wolfe")

    def penalty(self) -> torch.Tensor:
        """``weight_decay / 2 * ||w||^2`` over the weights."""
        if not self.weight_decay:
            return torch.zeros((), device=self.params[0].device)
        return 0.5 * self.weight_decay * sum(p.pow(2).sum() for p in self.decayed)

    def full_batch_epoch(self, loss_fn) -> float:
        """One iteration; ``loss_fn()`` is the mean training loss over every row. Returns that loss (without the
        penalty) at the iteration's start point, or NaN after a second failure in a row."""
        snapshot = [p.detach().clone() for p in self.params]
        start: list[float] = []

        def closure():
            self.opt.zero_grad(set_to_none=False)
            loss = loss_fn()
            if not start:
                start.append(float(loss.detach()))
            total = loss + self.penalty()
            total.backward()
            return total

        self.opt.step(closure)
        ok = start and math.isfinite(start[0]) and all(bool(torch.isfinite(p).all()) for p in self.params)
        if ok:
            self._failed_last = False
            return start[0]
        with torch.no_grad():
            for p, saved in zip(self.params, snapshot):
                p.copy_(saved)
        self.restarts += 1
        self._new()
        if self._failed_last:
            return math.nan
        self._failed_last = True
        return start[0] if start and math.isfinite(start[0]) else self.full_batch_epoch(loss_fn)


def build_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float):
    """SGD without momentum, Adam or AdamW with default betas; weight decay as the optimiser's own argument:
    added to the gradient for SGD and Adam (coupled L2), applied to the weights for AdamW.

    All use PyTorch's fused implementation (one kernel over all parameters) where the device has one, so
    every head gets an equally tuned optimiser step; otherwise the multi-tensor ``foreach`` one.

    Raises:
        ValueError: unknown optimiser name, or ``lbfgs``: it needs the parameters' names (biases are not
            penalised), so it is :class:`FullBatchLBFGS` built from ``model.named_parameters()``, as ``fit`` does.
    """
    params = list(params)
    if name == "lbfgs":
        raise ValueError("optimizer 'lbfgs' needs named parameters: FullBatchLBFGS(model.named_parameters(), lr, "
                         "weight_decay), as glai.training.loop.fit builds it")
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}: use one of {OPTIMIZERS}")
    try:
        return classes[name](params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return classes[name](params, lr=lr, weight_decay=weight_decay, foreach=True)
