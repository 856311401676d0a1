"""Bad config values fail before any work starts, naming the key and the fix (SPEC 1, 3, 6)."""

import re

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigKeyError, ValidationError

from glai.config import ConfigError, compose_config, validate
from glai.runner import run


def test_default_composes_to_digits_glai():
    cfg = compose_config()
    validate(cfg)
    assert cfg.experiment.name == "digits" and cfg.head.name == "glai"
    assert list(cfg.experiment.arch) == [64, 128, 10] and cfg.rho == 0.5
    assert cfg.head.optimizer == "adam" and cfg.head.weight_decay == cfg.experiment.wd_glai
    assert cfg.head.reduced_optimizer == "sgd" and cfg.head.reduced_weight_decay == cfg.experiment.wd_mlp


@pytest.mark.parametrize("head", ["mlp", "mlp_reduced", "linear", "glai"])
def test_heads_compose(head):
    cfg = compose_config([f"head={head}"])
    validate(cfg)
    assert cfg.head.name == head


def test_mlp_reduced_width_follows_rho():
    assert compose_config(["head=mlp_reduced", "rho=0.25"]).head.width_factor == 0.25


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["rho=1.5"], "rho"),
        (["rho=0"], "rho"),
        (["rho=1.0"], "rho"),
        (["rho=0.05"], "rho"),  # round(0.05 * 128) = 6 < 10 outputs
        (["head=mlp_reduced", "rho=0.05"], "rho"),
        (["experiment.max_epochs=0"], "experiment.max_epochs"),
        (["experiment.max_epochs=-3"], "experiment.max_epochs"),
        (["experiment.batch_size=0"], "experiment.batch_size"),
        (["experiment.reduced_epochs=0"], "experiment.reduced_epochs"),
        (["experiment.monitor=val_f1"], "experiment.monitor"),
        (["head.optimizer=rmsprop"], "head.optimizer"),
        (["experiment.lr=0"], "head.lr"),
        (["head.lr=-1"], "head.lr"),
        (["head.optimizer=lbfgs", "head.lr=0"], "head.lr"),  # its fix is its step length 1.0, not 1e-3 (issue 30)
        (["head.reduced_lr=0"], "head.reduced_lr"),
        # torch refused it only after the auto partner MLP had trained (issue 30)
        (["head.reduced_weight_decay=-0.5"], "head.reduced_weight_decay"),
        (["tuning=search", "tuning.repeats=1"], "tuning.repeats"),
        (["tuning=search", "tuning.max_reduced_epochs=0"], "tuning.max_reduced_epochs"),
        (["episodes=0"], "episodes"),
        (["experiment.patience=-1"], "experiment.patience"),
        (["seed=-1"], "seed"),
        (["experiment.min_delta=-1"], "experiment.min_delta"),
        (["num_threads=-2"], "num_threads"),
        (["experiment=offline/C1", "experiment.k_shot=0"], "experiment.k_shot"),
        (["experiment=offline/C1", "experiment.q_query=-1"], "experiment.q_query"),
        (["head=mlp", "head.l0_lambda=-0.1"], "head.l0_lambda"),
        (["head=mlp", "head.l0_lambda=0.01", "head.l0_sigma=0"], "head.l0_sigma"),
        (["head=linear", "head.l0_lambda=0.01"], "head.l0_lambda"),
        (["study.name=bogus"], "study.name"),
        (["study.name=retrain", "head=mlp"], "head.name"),
        (["study.name=retrain", "experiment=offline/C1"], "study.name"),
        (["study.name=retrain", "study.new_classes=10"], "study.new_classes"),
        (["study.name=retrain", "study.split=random", "study.new_fraction=1"], "study.new_fraction"),
        (["study.name=combine", "study.shards=1"], "study.shards"),
        (["study.name=combine", "study.shard_split=dirichlet"], "study.shard_split"),
        # NaN fails no `< 0` test: every float must be finite (issue 19)
        (["experiment.min_delta=nan"], "experiment.min_delta"),
        (["head.weight_decay=nan"], "head.weight_decay"),
        (["head=mlp", "head.lr=inf"], "head.lr"),
        # the reduction factor is named by the key it came from
        (["head=mlp_reduced", "head.width_factor=0.01"], "head.width_factor"),
        (["head=mlp_reduced", "head.width_factor=1.5"], "head.width_factor"),
        (["head=mlp", "head.width_factor=0.5"], "head.width_factor"),
        # the structural stop needs its path-distance sample
        (["experiment.reduced_epochs_mode=structure", "head.structure_threshold=0.05", "structure_samples=0"],
         "structure_samples"),
        # the selector control and the convex solver (issue 20)
        (["head.selector=learned"], "head.selector"),
        (["experiment=offline/B1", "head.optimizer=lbfgs"], "head.optimizer"),
        # record paths stay inside results_dir
        (["tag=../../etc"], "tag"),
        (["tag=a/b"], "tag"),
        (["experiment.name=../outside"], "experiment.name"),
        (["experiment.name=/abs/path"], "experiment.name"),
        # dataset and backbone schemas are checked by validate, before any work
        (["dataset.val_fraction=1.5"], "dataset.val_fraction"),
        (["dataset.source=ftp"], "dataset.source"),
        (["experiment=offline/A1", "backbone.pooling=max"], "backbone.pooling"),
        (["experiment=offline/A1", "backbone.batch_size=0"], "backbone.batch_size"),
    ],
    ids=lambda v: v if isinstance(v, str) else "_".join(v),
)
def test_range_errors_name_the_key_and_a_fix_that_works(overrides, key):
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError, match=rf"^{key}=.*Fix: ") as err:
        validate(cfg)
    fix = re.search(r"Fix: (\S+=\S+)", str(err.value)).group(1)
    fixed_key = fix.split("=")[0]
    if key == "head.lr" and "head.optimizer=lbfgs" in overrides:
        assert fix == "head.lr=1.0"
    validate(compose_config([o for o in overrides if o.split("=")[0] != fixed_key] + [fix]))


def test_keys_outside_the_schema_are_refused_with_the_near_key():
    """``+hed.lr=3`` (Hydra's hint for a misspelled key) adds a key nothing reads: refused, naming head.lr."""
    cfg = compose_config(["+hed.lr=3"])
    with pytest.raises(ConfigError, match=r"hed.lr=3: not a key of the config schema.*did you mean head.lr"):
        validate(cfg)
    with pytest.raises(ConfigError, match=r"head.lrr"):
        validate(compose_config(["+head.lrr=3"]))


def test_triton_backend_on_cpu_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cfg = compose_config(["head.backend=triton", "device=cpu", f"results_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"head.backend='triton' runs on CUDA.*Fix: head.backend=auto"):
        run(cfg)
    assert not any(tmp_path.rglob("*")), "nothing may be written for a run that never started"


def test_bad_config_fails_before_any_work(tmp_path):
    cfg = compose_config(["rho=2", f"results_dir={tmp_path}"])
    with pytest.raises(ConfigError):
        run(cfg)
    assert not any(tmp_path.rglob("*.json")), "no record may be written for a config that never started"


@pytest.mark.parametrize("override", ["head=transformer", "experiment=Z9"])
def test_unknown_group_option(override):
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as err:
        compose_config([override])
    assert override.split("=")[1] in str(err.value)


@pytest.mark.parametrize("override, error", [
    ("experiment.lrr=0.1", ConfigKeyError),   # misspelled key: the schema is closed
    ("experiment.lr=fast", ValidationError),  # wrong type
    ("seed=one", ValidationError),
])
def test_schema_rejects_typos_and_types(override, error):
    with pytest.raises((ConfigCompositionException, error)):
        compose_config([override])


@pytest.mark.parametrize("overrides, key", [
    (["experiment.arch=[32,128,10]"], r"experiment.arch\[0\]=32"),  # digits embeddings are 64-d
    (["experiment.arch=[64,128,8]", "rho=0.5"], r"experiment.arch\[-1\]=8"),  # 10 classes
])
def test_data_that_does_not_fit_the_head(overrides, key, tmp_path):
    with pytest.raises(ConfigError, match=key):
        run(compose_config([*overrides, "head=mlp", f"results_dir={tmp_path}"]))
