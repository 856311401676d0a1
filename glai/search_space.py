"""The optimiser part of a search's space (SPEC 12 "Tuned comparison", issue 20), conditional on the optimiser.

``conf/tuning/search.yaml`` names :func:`optimizer_space` as the Optuna sweeper's ``custom_search_space``: Hydra's
flat ``params`` cannot say that the learning rate means something else for each optimiser. Per trial:

- ``head.optimizer``: ``sgd``, ``adam``, ``adamw`` and, where the run allows it, ``lbfgs`` (full-batch L-BFGS;
  never family B, whose InfoNCE over every row at once is another objective: ``glai.config.validate`` refuses it);
- ``head.lr``: the first-order optimisers' learning rate on a log scale over :data:`FIRST_ORDER_LR`; for
  ``lbfgs`` the initial step length, fixed at :data:`LBFGS_STEP` (L-BFGS's natural scale, which its strong-Wolfe
  line search adapts: a smaller one only costs extra full passes per iteration, a search over it would handicap the
  solver). Optuna records it as a one-point distribution, never sampled.

The L2 strength (``head.weight_decay``, the convex problem's one hyperparameter for GLAI's estimator and the linear
head) stays in ``params``, shared by every optimiser.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

__all__ = ["FIRST_ORDER", "FIRST_ORDER_LR", "LBFGS_STEP", "optimizer_choices", "optimizer_space"]

#: The first-order optimisers every search offers.
FIRST_ORDER = ("sgd", "adam", "adamw")
#: Their learning rate's range (searched on a log scale).
FIRST_ORDER_LR = (1e-4, 3e-1)
#: L-BFGS's initial step length (``head.lr`` of ``head.optimizer=lbfgs``).
LBFGS_STEP = 1.0


def optimizer_choices(family: str) -> tuple[str, ...]:
    """The optimisers a search of an experiment of ``family`` (``"A"``, ``"B"``, ``"C"``) chooses from."""
    return FIRST_ORDER if family == "B" else (*FIRST_ORDER, "lbfgs")


def optimizer_space(cfg: DictConfig, trial: Any) -> None:
    """Suggest ``head.optimizer`` and ``head.lr`` for one trial (the sweeper turns ``trial.params`` into overrides).

    Args:
        cfg: the sweep's primary config (its ``experiment.family`` decides whether ``lbfgs`` is offered).
        trial: an ``optuna.trial.Trial``.
    """
    optimizer = trial.suggest_categorical("head.optimizer", list(optimizer_choices(str(cfg.experiment.family))))
    if optimizer == "lbfgs":
        trial.suggest_float("head.lr", LBFGS_STEP, LBFGS_STEP, log=True)
    else:
        trial.suggest_float("head.lr", *FIRST_ORDER_LR, log=True)
