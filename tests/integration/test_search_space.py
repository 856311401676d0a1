"""The search's optimiser space (glai/search_space.py): conditional on the optimiser, valid for every experiment."""

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from glai.config import compose_config, validate
from glai.errors import ConfigError
from glai.search_space import FIRST_ORDER_LR, LBFGS_STEP, optimizer_choices, optimizer_space

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(str(p.relative_to(ROOT / "conf" / "experiment").with_suffix(""))
                     for p in (ROOT / "conf" / "experiment").rglob("*.yaml"))


def test_search_yaml_names_the_extender_and_leaves_the_optimiser_to_it():
    search = OmegaConf.load(ROOT / "conf" / "tuning" / "search.yaml").hydra.sweeper
    assert search.custom_search_space == "glai.search_space.head_space"
    assert search.default_trials == "glai.search_space.default_trials"
    assert "head.optimizer" not in search.params and "head.lr" not in search.params


def test_glais_space_searches_its_reduced_phase_as_an_epoch_count():
    """A trained selector's reduced phase is an absolute count in fixed mode (what tuning=best then runs, issue
    27); random gates have no reduced phase to search."""
    from glai.search_space import default_trials, head_space, max_reduced_epochs

    cfg = compose_config(["head=glai", "tuning=search", "tuning.max_reduced_epochs=7"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        implied = head_space(cfg, trial)
        p = trial.params
        seen.add(p["head.selector"])
        if p["head.selector"] == "random":
            assert implied == {} and "experiment.reduced_epochs" not in p
        else:
            assert implied == {"experiment.reduced_epochs_mode": "fixed"}
            assert 1 <= p["experiment.reduced_epochs"] <= 7 and isinstance(p["experiment.reduced_epochs"], int)
        study.tell(trial, 1.0)
    assert seen == {"trained", "random"}
    assert max_reduced_epochs(compose_config(["tuning=search", "experiment.max_epochs=9"])) == 5
    assert [n for n, _ in default_trials(cfg)] == ["protocol", "adam"]
    assert default_trials(cfg)[1][1] == ["head.reduced_optimizer=adam"]
    assert default_trials(compose_config(["head=mlp"]))[1][1] == ["head.optimizer=adam"]
    mlp = optuna.create_study().ask()
    assert head_space(compose_config(["head=mlp"]), mlp) == {} and set(mlp.params) == {"head.optimizer", "head.lr"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_offered_optimizer_validates_and_lbfgs_only_where_allowed(experiment):
    """A trial never proposes a run that validate refuses (a sweep would abort on it)."""
    family = compose_config([f"experiment={experiment}"]).experiment.family
    heads = ("ffn_mlp", "ffn_glai", "ffn_lora", "linear") if family == "T" else ("mlp", "glai", "linear")
    for head in heads:
        try:  # the studies (retrain/, combine/) run with one head: the others are refused whatever the optimiser
            validate(compose_config([f"experiment={experiment}", f"head={head}", "tuning=search"]))
        except ConfigError:
            continue
        for optimizer in ("sgd", "adam", "adamw", "lbfgs"):
            cfg = compose_config([f"experiment={experiment}", f"head={head}", f"head.optimizer={optimizer}",
                                  "tuning=search"])
            if optimizer in optimizer_choices(family):
                validate(cfg)
            elif family == "B":  # refused by validate; family T leaves L-BFGS out of its searches for their cost
                with pytest.raises(ConfigError, match="head.optimizer"):
                    validate(cfg)


@pytest.mark.parametrize("family", ["A", "B", "C"])
def test_lbfgs_trials_take_its_step_length_and_tpe_samples_the_rest_in_range(family):
    """Past TPE's startup trials (where the one-point lbfgs lr is among the observations) every first-order lr
    stays in its range, lbfgs always gets its step length, and family B never gets lbfgs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = OmegaConf.create({"experiment": {"family": family}})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4))
    for _ in range(30):
        trial = study.ask()
        optimizer_space(cfg, trial)
        p = trial.params
        assert set(p) == {"head.optimizer", "head.lr"}
        if p["head.optimizer"] == "lbfgs":
            assert p["head.lr"] == LBFGS_STEP
        else:
            assert FIRST_ORDER_LR[0] <= p["head.lr"] <= FIRST_ORDER_LR[1]
        study.tell(trial, 1.0 if p["head.optimizer"] == "lbfgs" else -abs(p["head.lr"] - 3e-3))
    seen = {t.params["head.optimizer"] for t in study.trials}
    assert ("lbfgs" in seen) == (family != "B")
    assert seen <= set(optimizer_choices(family))
