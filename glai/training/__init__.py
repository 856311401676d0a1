"""Training any head on embeddings (paper 4.1; docs/method.md): the loop, the families' tasks, early stopping,
optimisers and the structural (path-distance) tracking. Imports no method code: it trains any model."""

from glai.training.early_stopping import EarlyStopping
from glai.training.loop import History, LoopOptions, NonFiniteLossError, OptimizerOptions, fit, run_epochs
from glai.training.optimizers import OPTIMIZERS, build_optimizer
from glai.training.structure import PathDistanceTracker
from glai.training.tasks import MONITORS, ContrastiveTask, SupervisedTask, Task, build_task

__all__ = [
    "MONITORS",
    "OPTIMIZERS",
    "ContrastiveTask",
    "EarlyStopping",
    "History",
    "LoopOptions",
    "NonFiniteLossError",
    "OptimizerOptions",
    "PathDistanceTracker",
    "SupervisedTask",
    "Task",
    "build_optimizer",
    "build_task",
    "fit",
    "run_epochs",
]
