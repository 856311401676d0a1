"""The optimiser part of a search's space (docs/method.md, Tuned comparison), conditional on the
optimiser.

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

GLAI's whole pipeline is searched (:func:`glai_space`): the selector (trained or random gates) and, for a trained
one, the reduced phase's optimiser, learning rate and **length as an absolute epoch count**
(``experiment.reduced_epochs`` in ``fixed`` mode, 1 .. ``tuning.max_reduced_epochs``). An absolute count is what
makes the search the application (docs/method.md, Tuned choice): the ``auto`` rule's count is a fraction of a
partner MLP's epochs, and the partner of a search (the protocol MLP on the tuning folds) is not the partner of a
tuned run, so a fraction searched on one would run another length on the other. :func:`default_trials` names the
head's default trials, which every search runs first as trials of its budget.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

__all__ = ["FAMILY_T_LR", "FAMILY_T_OPTIMIZERS", "FIRST_ORDER", "FIRST_ORDER_LR", "LBFGS_STEP", "LORA_ALPHAS",
           "LORA_RANKS", "default_trials", "ffn_space", "glai_space", "head_space", "lr_range", "max_reduced_epochs",
           "optimizer_choices", "optimizer_space"]

#: The first-order optimisers every search offers.
FIRST_ORDER = ("sgd", "adam", "adamw")
#: Their learning rate's range (searched on a log scale).
FIRST_ORDER_LR = (1e-4, 3e-1)
#: L-BFGS's initial step length (``head.lr`` of ``head.optimizer=lbfgs``).
LBFGS_STEP = 1.0


#: Family T's optimisers: every head fine-tunes pretrained weights (or GLAI's converted estimator) with Adam's
#: family, decoupled decay (AdamW, LoRA's own) beside it; plain SGD at these steps would not move a block, and
#: L-BFGS's full batch is every token of the data through the block at each line-search evaluation.
FAMILY_T_OPTIMIZERS = ("adam", "adamw")
#: Family T's learning rate range (log scale), one for every head: wide enough for full fine-tuning (BERT: 2e-5 to
#: 5e-5), LoRA (4e-4 to 5e-4) and a new classifier alone (1e-3).
FAMILY_T_LR = (1e-5, 3e-3)


def optimizer_choices(family: str) -> tuple[str, ...]:
    """The optimisers a search of an experiment of ``family`` (``"A"``, ``"B"``, ``"C"``, ``"T"``) chooses from."""
    if family == "T":
        return FAMILY_T_OPTIMIZERS
    # family B's InfoNCE over every row at once is another objective
    return FIRST_ORDER if family == "B" else (*FIRST_ORDER, "lbfgs")


def lr_range(family: str) -> tuple[float, float]:
    """The first-order optimisers' learning rate range of a search of ``family`` (log scale)."""
    return FAMILY_T_LR if family == "T" else FIRST_ORDER_LR


def optimizer_space(cfg: DictConfig, trial: Any) -> None:
    """Suggest ``head.optimizer`` and ``head.lr`` for one trial (the sweeper turns ``trial.params`` into overrides).

    Args:
        cfg: the sweep's primary config (its ``experiment.family`` decides whether ``lbfgs`` is offered).
        trial: an ``optuna.trial.Trial``.
    """
    family = str(cfg.experiment.family)
    optimizer = trial.suggest_categorical("head.optimizer", list(optimizer_choices(family)))
    if optimizer == "lbfgs":
        trial.suggest_float("head.lr", LBFGS_STEP, LBFGS_STEP, log=True)
    else:
        trial.suggest_float("head.lr", *lr_range(family), log=True)


#: The reduced MLP's learning rate range (log scale) in a GLAI search.
REDUCED_LR = (1e-4, 3e-1)


def max_reduced_epochs(cfg: DictConfig) -> int:
    """The longest reduced phase a GLAI search tries: ``tuning.max_reduced_epochs``, else half the epoch cap
    (``experiment.max_epochs``), at least 1 (epochs)."""
    high = cfg.tuning.get("max_reduced_epochs")
    return max(1, int(high) if high else math.ceil(0.5 * int(cfg.experiment.max_epochs)))


def glai_space(cfg: DictConfig, trial: Any) -> dict[str, Any]:
    """Suggest GLAI's pipeline for one trial: ``head.selector`` (trained, random) and, for a trained selector,
    ``head.reduced_optimizer`` (sgd, adam), ``head.reduced_lr`` (log :data:`REDUCED_LR`) and
    ``experiment.reduced_epochs`` (1 .. :func:`max_reduced_epochs`).

    Returns:
        the overrides the suggestions imply: ``experiment.reduced_epochs_mode=fixed`` for a trained selector (its
        length is the count searched), nothing for random gates (no reduced phase).
    """
    if trial.suggest_categorical("head.selector", ["trained", "random"]) == "random":
        return {}
    trial.suggest_categorical("head.reduced_optimizer", ["sgd", "adam"])
    trial.suggest_float("head.reduced_lr", *REDUCED_LR, log=True)
    trial.suggest_int("experiment.reduced_epochs", 1, max_reduced_epochs(cfg))
    return {"experiment.reduced_epochs_mode": "fixed"}


#: ``ffn_lora``'s adapter ranks a family T search tries.
LORA_RANKS = (4, 8, 16, 32)
#: ``ffn_lora``'s scales alpha (the update is scaled by alpha / rank) a family T search tries.
LORA_ALPHAS = (8, 16, 32)


def ffn_space(cfg: DictConfig, trial: Any) -> dict[str, Any]:
    """Family T's head-specific part: ``ffn_glai``'s selector (trained, random) and, for the pretrained
    one, its selector phase as an epoch count (``experiment.reduced_epochs``, 0 .. :func:`max_reduced_epochs`, fixed
    mode: the ReLU block fine-tuned that long before the conversion); ``ffn_lora``'s rank (:data:`LORA_RANKS`) and
    scale (:data:`LORA_ALPHAS`).

    Returns:
        the overrides the suggestions imply.
    """
    name = str(cfg.head.name)
    if name == "ffn_lora":
        trial.suggest_categorical("ffn.lora_rank", list(LORA_RANKS))
        trial.suggest_categorical("ffn.lora_alpha", list(LORA_ALPHAS))
    if name != "ffn_glai" or trial.suggest_categorical("head.selector", ["trained", "random"]) == "random":
        return {}
    trial.suggest_int("experiment.reduced_epochs", 0, max_reduced_epochs(cfg))
    return {"experiment.reduced_epochs_mode": "fixed"}


def head_space(cfg: DictConfig, trial: Any) -> dict[str, Any]:
    """The search space of ``cfg.head.name`` (``conf/tuning/search.yaml``'s ``custom_search_space``): the optimiser
    part (:func:`optimizer_space`) for every head, GLAI's pipeline (:func:`glai_space`) for ``glai``, and family T's
    head part (:func:`ffn_space`) for its heads.

    Returns:
        the fixed overrides the trial's suggestions imply (the sweeper adds them to the trial's).
    """
    optimizer_space(cfg, trial)
    if str(cfg.experiment.family) == "T":
        return ffn_space(cfg, trial)
    return glai_space(cfg, trial) if str(cfg.head.name) == "glai" else {}


def default_trials(cfg: DictConfig) -> list[tuple[str, list[str]]]:
    """The head's defaults, run as the first trials of every search's budget: ``protocol`` (the config as it
    is) and ``adam`` (the same head on Adam; GLAI, whose estimator is on Adam already: its reduced phase on Adam).
    The protocol default is the one the one-standard-error rule keeps unless a trial beats it
    (:func:`glai.search.choose`). A GLAI default in ``auto`` mode runs the rule's count on the search's own
    partner MLP (the protocol MLP on the same tuning rows); a tuned file stores the count it ran. Family T's heads
    are on Adam already: their second default is ``adamw``, the same step with decoupled decay 0.01 (the usual
    setting of fine-tuning a pretrained Transformer with AdamW)."""
    if str(cfg.experiment.family) == "T":
        return [("protocol", []), ("adamw", ["head.optimizer=adamw", "head.weight_decay=0.01"])]
    adam = ["head.reduced_optimizer=adam"] if str(cfg.head.name) == "glai" else ["head.optimizer=adam"]
    return [("protocol", []), ("adam", adam)]
