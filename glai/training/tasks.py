"""The three training families of the paper (4.1; docs/method.md, Families): losses and validation passes.

Every head is called as ``model(x, gates)`` (``gates`` is None for MLP heads), so all heads share the same
data path and the same validation passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["MONITORS", "Task", "SupervisedTask", "ContrastiveTask", "build_task", "info_nce", "draw_episode"]

# each monitored validation metric and its direction: val_acc in percent (maximised), val_loss (minimised)
MONITORS = {"val_acc": "max", "val_loss": "min"}

# rows per forward in validation passes that do not depend on the batch (accuracy, cross-entropy)
EVAL_CHUNK = 8192


def forward(model, x: torch.Tensor, gates: torch.Tensor | None) -> torch.Tensor:
    """``model(x, gates)``, or ``model(x)`` without gates, so any ``nn.Module`` trains (an ``nn.Sequential`` too)."""
    return model(x) if gates is None else model(x, gates)


class Task:
    """A training objective and its validation metrics."""

    monitor: str = "val_acc"

    def loss(self, model, x: torch.Tensor, y: torch.Tensor | None, gates: torch.Tensor | None) -> torch.Tensor:
        """Training loss of one batch: x float32 [B, n0], y int64 [B] or None, gates uint8 [B, n_gates] or None.

        Returns a scalar tensor (mean over the batch).
        """
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model, x, y, gates) -> dict[str, float | None]:
        """Validation pass over a whole split: ``{"val_loss": float, "val_acc": percent or None}``."""
        raise NotImplementedError


class SupervisedTask(Task):
    """Families A and C: cross-entropy; validation loss and accuracy in percent."""

    def loss(self, model, x, y, gates):
        return F.cross_entropy(forward(model, x, gates), y)

    @torch.no_grad()
    def evaluate(self, model, x, y, gates):
        total_loss, correct = 0.0, 0
        for start in range(0, x.shape[0], EVAL_CHUNK):
            sl = slice(start, start + EVAL_CHUNK)
            logits = forward(model, x[sl], None if gates is None else gates[sl])
            total_loss += float(F.cross_entropy(logits, y[sl], reduction="sum"))
            correct += int((logits.argmax(1) == y[sl]).sum())
        n = max(1, x.shape[0])
        return {"val_loss": total_loss / n, "val_acc": 100.0 * correct / n}


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over the batch: view k of sample b must match the other view of b.

    Args:
        z1, z2: float [B, D], the two views' projections. temperature: > 0.

    Returns:
        Scalar loss: mean of the two directions' cross-entropies over cosine similarities / temperature.
    """
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    logits = z1 @ z2.T / temperature  # [B, B]
    target = torch.arange(z1.shape[0], device=z1.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@dataclass
class ContrastiveTask(Task):
    """Family B: InfoNCE between two dropout views of each embedding.

    Dropout acts on the head input for every head; GLAI's gates come from the clean embedding (cached), so
    the frozen structure stays frozen. Validation is InfoNCE in eval mode (no dropout, both views equal),
    over consecutive batches of ``batch_size`` like training.
    """

    dropout: float
    temperature: float
    batch_size: int
    monitor: str = "val_loss"

    def loss(self, model, x, y, gates):
        v1 = F.dropout(x, self.dropout, training=True)
        v2 = F.dropout(x, self.dropout, training=True)
        return info_nce(forward(model, v1, gates), forward(model, v2, gates), self.temperature)

    @torch.no_grad()
    def evaluate(self, model, x, y, gates):
        total, n = 0.0, 0
        for start in range(0, x.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            if x[sl].shape[0] < 2:
                continue
            z = forward(model, x[sl], None if gates is None else gates[sl])
            total += float(info_nce(z, z, self.temperature)) * z.shape[0]
            n += z.shape[0]
        return {"val_loss": total / max(1, n), "val_acc": None}


def build_task(exp) -> Task:
    """The task of an experiment config's family (A, B or C)."""
    if exp.family == "B":
        return ContrastiveTask(exp.dropout, exp.temperature, exp.batch_size)
    task = SupervisedTask()
    task.monitor = exp.monitor
    return task


def draw_episode(x: torch.Tensor, y: torch.Tensor, n_way: int, k_shot: int, q_query: int, generator: torch.Generator):
    """One N-way K-shot Q-query episode from a pool of held-out classes (paper 4.1).

    Args:
        x: float32 [N, d] pool embeddings; y: int64 [N] their classes.
        generator: seeded generator (the run seed and episode number fix the draw).

    Returns:
        ``(support_x [n_way*k_shot, d], support_y, query_x [n_way*q_query, d], query_y)`` with labels 0..N-1.

    Raises:
        ValueError: when the pool has fewer than ``n_way`` classes with ``k_shot + q_query`` samples each.
    """
    classes, counts = torch.unique(y, return_counts=True)
    eligible = classes[counts >= k_shot + q_query]
    if eligible.numel() < n_way:
        raise ValueError(
            f"the episode pool has {eligible.numel()} classes with >= {k_shot + q_query} samples; "
            f"a {n_way}-way {k_shot}-shot {q_query}-query episode needs {n_way}"
        )
    chosen = eligible[torch.randperm(eligible.numel(), generator=generator)[:n_way]]
    sx, sy, qx, qy = [], [], [], []
    for label, c in enumerate(chosen.tolist()):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)[: k_shot + q_query]]
        sx.append(x[idx[:k_shot]])
        qx.append(x[idx[k_shot:]])
        sy.append(torch.full((k_shot,), label, dtype=torch.long))
        qy.append(torch.full((q_query,), label, dtype=torch.long))
    return torch.cat(sx), torch.cat(sy), torch.cat(qx), torch.cat(qy)
