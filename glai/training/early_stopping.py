"""Early stopping on a monitored validation value (paper 4.1; docs/method.md, Families)."""

from __future__ import annotations

import math

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Stop after ``patience`` epochs without an improvement larger than ``min_delta``.

    An epoch improves when its value beats the best so far by MORE than ``min_delta`` (strictly). The best
    value seen, improving or not, is the BVS. A NaN value never improves.

    Args:
        mode: "max" (accuracy, percent) or "min" (loss).
        patience: epochs without improvement before stopping, >= 1.
        min_delta: smallest improvement that counts, >= 0, in the monitored unit.

    Raises:
        ValueError: on a bad mode, patience or min_delta.
    """

    def __init__(self, mode: str, patience: int, min_delta: float):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.mode, self.patience, self.min_delta = mode, patience, min_delta
        self.reference = math.inf if mode == "min" else -math.inf  # best value that counted as an improvement
        self.best = self.reference  # best value seen (BVS)
        self.best_epoch = 0  # 1-based epoch of ``best``; 0 before any step
        self.bad_epochs = 0
        self.epochs = 0

    def _better(self, value: float, than: float, delta: float) -> bool:
        return value < than - delta if self.mode == "min" else value > than + delta

    def step(self, value: float) -> bool:
        """Record one epoch's value; returns True when training should stop."""
        self.epochs += 1
        if not math.isnan(value) and self._better(value, self.best, 0.0):
            self.best, self.best_epoch = value, self.epochs
        if not math.isnan(value) and self._better(value, self.reference, self.min_delta):
            self.reference = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience
