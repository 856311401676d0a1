"""The l0 activation penalty of EAT (docs/method.md, The method family): sparser activation patterns.

``loss + lambda * l0_hat(h)``, with the differentiable l0 approximation ``l0_hat(h) = sum_j h_j^2 / (h_j^2 + sigma)``
over the hidden units of every hidden layer (post-ReLU activations), averaged over the batch. For GLAI it acts
on the reduced MLP (the path selector): fewer active hidden units per sample mean fewer active paths per sample.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from glai.training.tasks import Task

__all__ = ["ActivationPenaltyTask", "capture_hidden", "l0_hat"]


def l0_hat(hidden: list[torch.Tensor], sigma: float) -> torch.Tensor:
    """EAT's differentiable l0 norm, summed over units and layers, averaged over the batch.

    Args:
        hidden: post-activation values of each hidden layer, float [B, n_l].
        sigma: > 0; smaller is closer to the true count of non-zero units (and steeper near 0).

    Returns:
        A scalar tensor in [0, sum_l n_l].
    """
    total = hidden[0].new_zeros(())
    for h in hidden:
        sq = h.square()
        total = total + (sq / (sq + sigma)).sum(1).mean()
    return total


@contextmanager
def capture_hidden(model):
    """Collect the hidden activations of every forward of ``model`` inside the block (into the yielded list).

    ``model`` must support activation capture: an attribute ``captured_hidden`` that its forward appends its
    post-ReLU activations to when it is a list (``glai.method.heads.MLPHead``).

    Raises:
        TypeError: for a model without ``captured_hidden``.
    """
    if not hasattr(model, "captured_hidden"):
        raise TypeError(f"{type(model).__name__} does not expose its hidden activations (captured_hidden); the "
                        "l0 activation penalty applies to MLP heads and GLAI's reduced MLP")
    captured: list[torch.Tensor] = []
    model.captured_hidden = captured
    try:
        yield captured
    finally:
        model.captured_hidden = None


@dataclass
class ActivationPenaltyTask(Task):
    """``task``'s loss plus ``l0_lambda * l0_hat`` of the hidden activations of the forwards that loss ran
    (two for the contrastive family's two views: their mean); validation is ``task``'s, unpenalised.

    Args:
        task: the family's task (:mod:`glai.training.tasks`).
        l0_lambda: >= 0, the penalty weight.
        l0_sigma: > 0, the approximation's sigma.
    """

    task: Task
    l0_lambda: float
    l0_sigma: float

    @property
    def monitor(self) -> str:  # type: ignore[override]
        return self.task.monitor

    def loss(self, model, x, y, gates):
        with capture_hidden(model) as hidden:
            loss = self.task.loss(model, x, y, gates)
        if not hidden:
            raise RuntimeError("the model ran no hidden layer in its loss: nothing to penalise")
        per_forward = len(hidden) // max(1, getattr(model, "num_hidden", 1))
        return loss + self.l0_lambda * l0_hat(hidden, self.l0_sigma) / max(1, per_forward)

    def evaluate(self, model, x, y, gates):
        return self.task.evaluate(model, x, y, gates)
