"""``hydra/sweeper=glai_optuna``: a Hydra sweeper whose trials are those of a :class:`glai.search.SearchStudy`.

Why the project has its own: the official ``hydra-optuna-sweeper`` has no release for current Optuna
(1.3.0 pins ``optuna<3``, which forces ``sqlalchemy<2`` on every user; its 1.4.0 release candidates need a
hydra-core release candidate). This plugin only maps Hydra to the study: the command line's ranges
(``interval``, ``choice``, ``range``, ``tag(log, ...)``) and ``params`` become Optuna distributions, a
``custom_search_space`` function adds conditional ones (``glai.search_space.head_space``), each trial's overrides
go to Hydra's launcher (basic, joblib, submitit / Slurm), and each job's return value is told to the study.
Optuna does the sampling; :mod:`glai.search` keeps the proposals distinct, the budget and the resumption.

A sweep writes ``<sweep dir>/search.yaml`` (the storage, the study's name, the fixed overrides, the budget) and,
when done, ``optimization_results.yaml`` (the best trial and the one-standard-error choice);
``scripts/save_tuned.py <sweep dir>`` reads them.
"""


import inspect
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

log = logging.getLogger(__name__)


@dataclass
class GlaiOptunaSweeperConf:
    """``hydra.sweeper`` of ``hydra/sweeper=glai_optuna`` (``conf/tuning/search.yaml`` sets the project's)."""

    _target_: str = "hydra_plugins.glai_optuna_sweeper.sweeper.GlaiOptunaSweeper"
    # the sampler stays a config: the sweeper instantiates a fresh one per draw, seeded from the study's state
    _recursive_: bool = False
    # maximize | minimize (run.py returns the score to maximise)
    direction: str = "maximize"
    # null: <sweep dir>/optuna.journal (Optuna's JournalStorage, file backend: safe on shared cluster disks);
    # a journal file path; or an SQLAlchemy URL (sqlite:/// on a local disk only)
    storage: Any = None
    # null: the search's identity (glai.search.study_name): the same command resumes the same study
    study_name: Any = None
    # the study's budget: trials it holds (finished or running), the default trials included
    n_trials: int = 16
    # trials launched together (hydra/launcher=joblib runs them in parallel)
    n_jobs: int = 1
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0})
    # dotted name of f(cfg, trial) -> dict of implied overrides, making conditional suggestions
    custom_search_space: Any = None
    # dotted name of f(cfg) -> [(name, overrides)]: default trials, run first, once per study
    default_trials: Any = None
    params: Any = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="glai_optuna", node=GlaiOptunaSweeperConf,
                             provider="glai")


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a sweep override (None for a plain value).

    ``choice(a, b)`` -> categorical; ``range(lo, hi, step)`` -> int (float when any bound is a float; Hydra's
    ``range`` excludes ``hi``); ``interval(lo, hi)`` -> float, int when both are ints; ``tag(log, ...)`` -> log
    scale.

    Raises:
        ValueError: a sweep kind Optuna cannot sample (a glob).
    """
    if not override.is_sweep_override():
        return None
    if override.is_choice_sweep():
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    value = override.value()
    log_scale = "log" in getattr(value, "tags", set())
    if override.is_range_sweep():
        if value.shuffle:
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop - value.step, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    if override.is_interval_sweep():
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: the glai_optuna sweeper samples choice(), range() and interval() "
                     "(tag(log, interval(...)) for a log scale)")


def _quote(value: str) -> str:
    """A value as one Hydra override value: quoted when it holds characters Hydra's grammar would read."""
    if all(c.isalnum() or c in "/._-" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class GlaiOptunaSweeper(Sweeper):
    """Hydra sweeper over a :class:`glai.search.SearchStudy` (see the module docstring)."""

    def __init__(self, direction: str, storage: Any, study_name: Any, n_trials: int, n_jobs: int, sampler: Any,
                 custom_search_space: Any, default_trials: Any, params: Any) -> None:
        self.direction, self.storage, self.name = str(direction), storage, study_name
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.sampler_cfg = OmegaConf.to_container(sampler, resolve=True) if isinstance(sampler, DictConfig) \
            else dict(sampler or {})
        self.custom = get_method(custom_search_space) if custom_search_space else None
        self.default_fn = get_method(default_trials) if default_trials else None
        self.params = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) \
            else dict(params or {})
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                               task_function=task_function)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def _sampler(self, seed: int):
        cfg = {k: v for k, v in self.sampler_cfg.items() if k != "seed"}
        if "seed" in inspect.signature(get_method(cfg["_target_"])).parameters:
            cfg["seed"] = seed
        return instantiate(cfg)

    def _fail(self, err: Exception) -> None:
        """A user's error (a budget, a study file): one line and exit 2, as ``run.py`` answers bad input."""
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise err
        print(f"[glai] ConfigError: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    def sweep(self, arguments: list[str]) -> None:
        from glai.errors import ConfigError
        from glai.results.records import atomic_write_text
        from glai.search import (
            JOURNAL_FILE,
            STORAGE_ERRORS,
            SearchStudy,
            build_pruner,
            choose,
            storage_error,
            study_name,
        )

        assert self.config is not None
        if self.n_trials < 1:
            self._fail(ConfigError(f"hydra.sweeper.n_trials={self.n_trials}: the search's budget is a whole number of "
                                   "trials >= 1 (the head's default trials count in it). Fix: "
                                   "hydra.sweeper.n_trials=16"))
        pruner_cfg = self.config.tuning.get("pruner")
        pruner = OmegaConf.to_container(pruner_cfg, resolve=True) if pruner_cfg is not None else {}
        try:
            if pruner:
                build_pruner(str(pruner["epochs"]), int(pruner["min_resource"]), int(pruner["reduction_factor"]))
        except ValueError as err:
            self._fail(ConfigError(str(err)))
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        parsed = OverridesParser.create().parse_overrides(lines)
        space = {o.get_key_element(): d for o in parsed if (d := distribution(o)) is not None}
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        fixed = [line for line in fixed if line.split("=", 1)[0].lstrip("+~") not in space]
        code = inspect.getsource(self.custom) if self.custom else ""
        ranges = [o.input_line for o in parsed if o.is_sweep_override()]
        # the pruner is part of the search's identity: a search pruned otherwise is another study
        pruning = [f"tuning.pruner.{k}={v}" for k, v in sorted(pruner.items())]
        name = str(self.name) if self.name else study_name(fixed, ranges + pruning, code)
        storage = str(self.storage) if self.storage else str(self.sweep_dir / JOURNAL_FILE)
        defaults = self.default_fn(self.config) if self.default_fn else []
        base_seed = int(self.sampler_cfg.get("seed") or 0)

        def suggest(trial) -> dict[str, Any]:
            for key, dist in space.items():
                trial._suggest(key, dist)  # noqa: SLF001 -- Optuna's one entry for a prebuilt distribution
            return self.custom(self.config, trial) if self.custom else {}

        try:
            study = SearchStudy(storage, name, self.direction, self._sampler, self.n_trials, suggest, defaults,
                                seed=base_seed)
        except ConfigError as err:  # a study file that cannot be read or written: one line, exit 2
            self._fail(err)
        info = {"storage": storage, "study_name": name, "direction": self.direction, "n_trials": self.n_trials,
                "fixed": fixed, "ranges": ranges, "pruner": pruner, "custom_search_space": self.custom and
                f"{self.custom.__module__}.{self.custom.__name__}", "defaults": [list(d) for d in defaults],
                "sampler": self.sampler_cfg}
        try:
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
            # written whole or not at all: scripts/save_tuned.py reads the search's group from it
            atomic_write_text(self.sweep_dir / "search.yaml", yaml.safe_dump(info, sort_keys=False))
        except OSError as err:
            self._fail(ConfigError(f"hydra.sweep.dir={self.sweep_dir}: cannot write search.yaml there ({err}). "
                                   "Fix: hydra.sweep.dir= a writable folder"))
        held = len(study.trials())
        log.info(f"study {name} in {storage}: {held} trials held, budget {self.n_trials}")
        # each trial's run reports its per-epoch tuning score to the study, for the pruner (glai.search)
        where = [f"tuning.study={name}", f"tuning.storage={_quote(storage)}"]
        job_idx = held
        try:
            while proposals := study.propose(self.n_jobs):
                for p in proposals:
                    kind = f"default {p.default}" if p.default else ("adopted" if p.adopted else "sampled")
                    log.info(f"trial {p.number} ({kind}): {' '.join(p.overrides) or '(the config as it is)'}")
                returns = self.launcher.launch([tuple(fixed + p.overrides + where + [f"tuning.trial={p.number}"])
                                                for p in proposals], initial_job_idx=job_idx)
                job_idx += len(returns)
                for p, ret in zip(proposals, returns):
                    try:
                        result = ret.return_value
                    except Exception as err:  # noqa: BLE001 -- a failed job is a failed trial, the search goes on
                        log.warning(f"trial {p.number} failed: {type(err).__name__}: {err}")
                        study.tell(p, None, error=f"{type(err).__name__}: {err}")
                        continue
                    if isinstance(result, dict) and result.get("pruned"):
                        log.info(f"trial {p.number} pruned at {result['pruned'].get('at')}")
                    study.tell(p, result)
        except STORAGE_ERRORS as err:
            if isinstance(err, (KeyError, TypeError)):
                raise
            self._fail(storage_error(err, storage, name))
        trials = study.trials()
        states = {s: sum(1 for t in trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL")}
        log.info(f"study {name}: {states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed")
        try:
            pick = choose(trials, self.direction)
        except ValueError as err:
            log.warning(f"study {name}: {err}")
            return
        best, chosen = pick["best"], pick["chosen"]
        results = {"name": "glai_optuna", "study_name": name, "storage": storage,
                   "best_params": dict(best.params), "best_value": best.value, "best_trial": best.number,
                   "chosen_trial": chosen.number, "chosen_value": chosen.value, "rule": pick["rule"]}
        (self.sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(results, sort_keys=False))
        log.info(f"best trial {best.number}: {best.value:.4g}; chosen {chosen.number} ({pick['rule']})")
        if not math.isfinite(best.value):
            log.warning("no finite score")
