"""Optimisers of every head and phase, built one way so that every head gets an equally tuned step (SPEC 5)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "build_optimizer"]

# sgd: no momentum (the paper's MLPs); adam: L2 added to the gradient (PyTorch's default, the paper's
# estimator, SPEC 5); adamw: decoupled weight decay (Loshchilov & Hutter), SPEC 12
OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float):
    """SGD without momentum, Adam or AdamW with default betas; weight decay as the optimiser's own argument:
    added to the gradient for SGD and Adam (coupled L2), applied to the weights for AdamW (SPEC 5, 12).

    All use PyTorch's fused implementation (one kernel over all parameters) where the device has one, so
    every head gets an equally tuned optimiser step; otherwise the multi-tensor ``foreach`` one.

    Raises:
        ValueError: unknown optimiser name.
    """
    params = list(params)
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}: use one of {OPTIMIZERS}")
    try:
        return classes[name](params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return classes[name](params, lr=lr, weight_decay=weight_decay, foreach=True)
