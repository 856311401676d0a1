"""The training loop shared by every head and phase (paper 4.1; docs/method.md, Heads and optimisers, Families).

One loop for all heads, so the MLP baseline and GLAI get the same data path (in-memory embeddings, a seeded
permutation per epoch), the same validation passes after every epoch and the same early stopping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from glai.training.early_stopping import EarlyStopping
from glai.training.optimizers import FullBatchLBFGS, build_optimizer
from glai.training.tasks import MONITORS, SupervisedTask, Task

__all__ = ["History", "LoopOptions", "NonFiniteLossError", "OptimizerOptions", "Pruned", "fit", "observe_epochs",
           "run_epochs", "wall_clock"]


def wall_clock(device: torch.device | str | None = None) -> float:
    """``time.perf_counter()`` (seconds) once the work queued on ``device`` is done: on CUDA it synchronises first,
    because kernels run asynchronously and the clock alone would time their launch, not their work.
    Every timer of the loop and the conversion reads it, for every head alike; on the CPU it is the plain clock."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass(frozen=True)
class OptimizerOptions:
    """One optimiser's settings (docs/method.md, Heads and optimisers), as :func:`fit` takes them:
    ``fit(..., **options.kwargs())``.

    Attributes:
        optimizer: ``sgd`` (no momentum) | ``adam`` (L2 coupled to the gradient) | ``adamw`` (decoupled decay).
        lr: learning rate (> 0); ``None`` only where a caller documents a fallback (GLAI's reduced phase).
        weight_decay: >= 0.
    """

    optimizer: str = "sgd"
    lr: float | None = 1e-3
    weight_decay: float = 0.0

    def kwargs(self) -> dict:
        """``{"optimizer", "lr", "weight_decay"}``: keyword arguments of :func:`fit`."""
        return asdict(self)


@dataclass(frozen=True)
class LoopOptions:
    """How long a phase trains and when it stops (paper 4.1; docs/method.md, Families): the loop keywords of
    :func:`fit`.

    Attributes:
        batch_size: samples per step.
        max_epochs: epoch cap.
        patience: epochs without an improvement of ``min_delta`` before stopping (None: exactly max_epochs).
        min_delta: smallest improvement that counts, in the monitor's unit (percentage points for val_acc).
    """

    batch_size: int = 16
    max_epochs: int = 60
    patience: int | None = 5
    min_delta: float = 0.1

    def kwargs(self) -> dict:
        """``{"batch_size", "max_epochs", "patience", "min_delta"}``: keyword arguments of :func:`fit`."""
        return asdict(self)


class NonFiniteLossError(RuntimeError):
    """The training or validation loss became NaN or infinite; the run is recorded as failed with this message."""


class Pruned(Exception):  # noqa: N818 -- a decision, not an error
    """Raised by an epoch observer (:func:`observe_epochs`) to stop the run: a search's pruner judged the trial
    unpromising. The runner records the run as ``pruned``.

    Attributes:
        at: where it was pruned, in words (``"epoch 2 of fold 1"``, ``"fold 2 of 5"``); value: the score
            reported there; epochs: the scored phase's epochs trained before it stopped (every fold's).
    """

    def __init__(self, message: str, at: str, value: float, epochs: int = 0):
        super().__init__(message)
        self.at, self.value, self.epochs = at, value, int(epochs)


#: The observer of the scored phase's epochs (:func:`observe_epochs`), or None.
_OBSERVER: ContextVar[Callable[[int, float], None] | None] = ContextVar("glai_epoch_observer", default=None)


@contextmanager
def observe_epochs(observer: Callable[[int, float], None]) -> Iterator[None]:
    """Within the block, every epoch of a phase trained with early stopping (the phase whose BVS is the run's
    score: an MLP, GLAI's estimator phase; never a fixed-length reduced or selector phase) calls
    ``observer(epoch, best)``: the 1-based epoch and the best monitored value so far, signed so that higher is
    better (``-val_loss`` for a minimised monitor). The observer may raise :class:`Pruned` to stop the run.
    A search trial uses it to report its per-epoch tuning score to the study's pruner."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


@dataclass
class History:
    """What one training phase did.

    Attributes:
        epochs: epochs run.
        bvs: best monitored value (percent for val_acc), NaN if no epoch ran.
        best_epoch: 1-based epoch of the BVS.
        time_s: wall-clock seconds of the phase, validation passes included, instrumentation excluded.
        curves: per-epoch lists: train_loss, val_loss, val_acc (None for family B), epoch_time_s.
        structure: per-epoch path distance m_t and mean absolute weight change (paper 3.6), when tracked.
        stopped_by: "early_stopping" | "max_epochs" | "fixed_epochs" | "structure".
        steps: training steps run; step_s: their wall-clock seconds (validation excluded).
    """

    epochs: int = 0
    bvs: float = math.nan
    best_epoch: int = 0
    time_s: float = 0.0
    curves: dict[str, list] = field(
        default_factory=lambda: {"train_loss": [], "val_loss": [], "val_acc": [], "epoch_time_s": []}
    )
    structure: dict[str, list] = field(default_factory=lambda: {"path_distance": [], "weight_change": []})
    instrumentation_s: float = 0.0
    stopped_by: str = ""
    steps: int = 0
    step_s: float = 0.0

    @property
    def step_ms(self) -> float:
        """Mean wall-clock milliseconds of one training step (forward, loss, backward, optimiser step)."""
        return 1e3 * self.step_s / self.steps if self.steps else math.nan


def run_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Task,
    train: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    val: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    *,
    batch_size: int,
    max_epochs: int,
    generator: torch.Generator,
    stopper: EarlyStopping | None = None,
    mode: str = "max",
    tracker=None,
    structure_threshold: float = 0.0,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> History:
    """Train ``model`` for at most ``max_epochs`` epochs, validating after each one.

    Args:
        model: a head, called ``model(x, gates)``.
        optimizer: over the trainable parameters only.
        task: loss and validation (glai.training.tasks).
        train, val: ``(x float32 [N, n0], y int64 [N] or None, gates uint8 [N, n_gates] or None)``.
        batch_size: samples per step (the last, smaller batch is kept).
        max_epochs: epoch cap; without ``stopper`` exactly this many epochs run (GLAI's reduced phase).
        generator: seeded CPU generator of the per-epoch permutations.
        stopper: early stopping on ``task.monitor``; None for fixed epochs.
        mode: "max" or "min", the direction of ``task.monitor`` (for the BVS when ``stopper`` is None).
        tracker: optional ``glai.training.structure.PathDistanceTracker``; its time is instrumentation, excluded from
            ``time_s`` unless ``structure_threshold > 0`` uses it to stop (then it is part of the method).
        structure_threshold: stop once the path distance m_t falls below it (0 = off).
        on_epoch: called with ``(epoch, metrics)`` after every epoch (logging).

    Returns:
        The :class:`History`.

    Raises:
        NonFiniteLossError: when an epoch's training or validation loss is NaN or infinite.
    """
    x, y, g = train
    vx, vy, vg = val
    n = x.shape[0]
    device = x.device
    hist = History()
    best = -math.inf if mode == "max" else math.inf
    start = wall_clock(device)
    if tracker is not None:
        t0 = wall_clock(device)
        tracker.update(model)
        hist.instrumentation_s += wall_clock(device) - t0
    for epoch in range(1, max_epochs + 1):
        t_epoch = wall_clock(device)
        model.train()
        t_steps = wall_clock(device)
        if isinstance(optimizer, FullBatchLBFGS):
            # one L-BFGS iteration over every training row (its line-search passes included)
            train_loss = optimizer.full_batch_epoch(lambda: task.loss(model, x, y, g))
            hist.steps += 1
        else:
            loss_sum = torch.zeros((), device=x.device)
            perm = torch.randperm(n, generator=generator).to(x.device)
            for s in range(0, n, batch_size):
                idx = perm[s : s + batch_size]
                loss = task.loss(model, x[idx], None if y is None else y[idx], None if g is None else g[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * idx.numel()
            train_loss = float(loss_sum) / n  # float() waits for the device: the steps are done
            hist.steps += -(-n // batch_size)
        hist.step_s += wall_clock(device) - t_steps
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"training loss is {train_loss} at epoch {epoch}")
        model.eval()
        metrics = task.evaluate(model, vx, vy, vg)
        if not math.isfinite(metrics["val_loss"]):
            raise NonFiniteLossError(f"validation loss is {metrics['val_loss']} at epoch {epoch}")
        value = metrics[task.monitor]
        hist.curves["train_loss"].append(train_loss)
        hist.curves["val_loss"].append(metrics["val_loss"])
        hist.curves["val_acc"].append(metrics["val_acc"])
        hist.epochs = epoch
        if value is not None and (value > best if mode == "max" else value < best):
            best, hist.best_epoch = value, epoch
        stop = stopper.step(value) if stopper is not None else False
        hist.curves["epoch_time_s"].append(wall_clock(device) - t_epoch)
        if tracker is not None:
            t0 = wall_clock(device)
            info = tracker.update(model)
            if structure_threshold <= 0:
                hist.instrumentation_s += wall_clock(device) - t0
            hist.structure["path_distance"].append(info.get("path_distance"))
            hist.structure["weight_change"].append(info.get("weight_change"))
            m_t = info.get("path_distance")
            if structure_threshold > 0 and m_t is not None and m_t < structure_threshold:
                hist.stopped_by = "structure"
                stop = True
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": train_loss, **metrics})
        observer = _OBSERVER.get() if stopper is not None else None
        if observer is not None and math.isfinite(best):
            # the report to a search's study is the search's work, not the head's: off the phase's clock
            t0 = wall_clock(device)
            try:
                observer(epoch, best if mode == "max" else -best)
            finally:
                hist.instrumentation_s += wall_clock(device) - t0
        if stop:
            hist.stopped_by = hist.stopped_by or "early_stopping"
            break
    hist.stopped_by = hist.stopped_by or ("max_epochs" if stopper is not None else "fixed_epochs")
    hist.time_s = wall_clock(device) - start - hist.instrumentation_s
    hist.bvs = best if math.isfinite(best) else math.nan
    return hist


def _split(data, name: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(f"{name} must be (x, y) or (x, y, gates), got {type(data).__name__}")
    x, y, *rest = data
    return x, y, rest[0] if rest else None


def fit(
    model: nn.Module,
    train: tuple,
    val: tuple,
    *,
    task: Task | None = None,
    optimizer: str = "sgd",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 16,
    max_epochs: int = 60,
    patience: int | None = 5,
    min_delta: float = 0.1,
    seed: int = 0,
    generator: torch.Generator | None = None,
    tracker=None,
    structure_threshold: float = 0.0,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> History:
    """Train any head the way the runner does: one optimiser over its trainable parameters, early stopping.

    A head that declares ``needs_gates`` (GLAI) and gets no gates has them computed once here, by
    ``model.gates(x)``, and the time counts in ``History.time_s``: the selector never runs in the loop.

    Args:
        model: a head called ``model(x, gates)``; only its parameters with ``requires_grad`` are trained.
        train, val: ``(x, y)`` or ``(x, y, gates)``: x float32 [N, n0], y int64 [N] (None for family B),
            gates uint8 [N, n_gates].
        task: loss and validation (:mod:`glai.training.tasks`); default cross-entropy with accuracy.
        optimizer: ``"sgd"`` (no momentum), ``"adam"``, ``"adamw"`` (:func:`glai.training.optimizers.build_optimizer`)
            or ``"lbfgs"``: full-batch L-BFGS, one iteration per epoch, L2 on the weights in the closure
            (:class:`glai.training.optimizers.FullBatchLBFGS`; ``batch_size`` is then unused).
        lr, weight_decay: the optimiser's learning rate and weight decay.
        batch_size: samples per step.
        max_epochs: epoch cap.
        patience: epochs without an improvement of ``min_delta`` before stopping (paper 4.1); None runs
            exactly ``max_epochs`` epochs (GLAI's reduced phase).
        min_delta: smallest improvement that counts, in the monitor's unit (percentage points for val_acc).
        seed: seeds the batch order when ``generator`` is None.
        generator: CPU generator of the per-epoch permutations (shared across phases by the GLAI pipeline).
        tracker, structure_threshold, on_epoch: as in :func:`run_epochs`.

    Returns:
        The :class:`History` (BVS, epochs, per-epoch curves, seconds).

    Raises:
        ValueError: ``train``/``val`` not a 2- or 3-tuple, or an unknown optimiser.
        NonFiniteLossError: a NaN/inf training loss.
    """
    task = task or SupervisedTask()
    mode = MONITORS[task.monitor]
    (x, y, g), (vx, vy, vg) = _split(train, "train"), _split(val, "val")
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    t0 = wall_clock(x.device)
    if getattr(model, "needs_gates", False) and (g is None or vg is None):
        g = model.gates(x) if g is None else g
        vg = model.gates(vx) if vg is None else vg
    gate_s = wall_clock(x.device) - t0
    if optimizer == "lbfgs":
        opt = FullBatchLBFGS([(k, p) for k, p in model.named_parameters() if p.requires_grad], lr, weight_decay)
    else:
        opt = build_optimizer(optimizer, (p for p in model.parameters() if p.requires_grad), lr, weight_decay)
    stopper = EarlyStopping(mode, patience, min_delta) if patience is not None else None
    hist = run_epochs(model, opt, task, (x, y, g), (vx, vy, vg), batch_size=batch_size, max_epochs=max_epochs,
               generator=generator, stopper=stopper, mode=mode, tracker=tracker,
               structure_threshold=structure_threshold, on_epoch=on_epoch)
    hist.time_s += gate_s
    return hist
