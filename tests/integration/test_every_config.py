"""Every config file is exercised (issue 19, lightning-hydra-template's ``experiment=glob(*)``): each
``conf/experiment/**.yaml`` composes and validates with every head, and runs end to end with its own
reduced-epoch rule (``auto`` trains the MLP partner first) on digits or on tiny fixtures of its modality; each
shipped tuned file is selected by ``tuning=best``. A new config file is covered without editing this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glai.config import CONF_DIR, compose_config, validate
from glai.errors import ConfigError
from glai.runner import run

EXPERIMENTS = sorted(str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
                     for p in (CONF_DIR / "experiment").rglob("*.yaml"))
HEADS = sorted(p.stem for p in (CONF_DIR / "head").glob("*.yaml"))
TUNED = sorted(p.relative_to(CONF_DIR / "tuned" / "best").with_suffix("")
               for p in (CONF_DIR / "tuned" / "best").rglob("*.yaml"))  # <experiment>/<head>/<group key>
# short runs that keep each experiment's own reduced-epoch rule (the fixtures' fast mode forces `fixed`)
SHORT = ["experiment.max_epochs=3", "experiment.patience=2", "structure_samples=32", "verbose=false"]


def _paper_name(experiment: str) -> str | None:
    """The paper experiment whose modality a config uses (``retrain/offline_A1`` -> ``A1``); None for digits."""
    leaf = experiment.split("/")[-1].removeprefix("offline_").removesuffix("_14k")
    return None if leaf == "digits" else leaf


def test_the_glob_finds_every_family():
    assert {"digits", "A1", "offline/C2", "retrain/digits", "combine/digits", "ffn/dbpedia"} <= set(EXPERIMENTS)
    assert set(HEADS) == {"mlp", "mlp_reduced", "linear", "glai", "ffn_mlp", "ffn_relu", "ffn_lora", "ffn_glai"}


def _family_t(experiment: str) -> bool:
    return experiment.startswith("ffn/")


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment, head):
    cfg = compose_config([f"experiment={experiment}", f"head={head}"])
    if cfg.study.name != "standard" and head != "glai":
        pytest.skip("a study runs as one GLAI job (head=glai); other heads are refused by design")
    if _family_t(experiment) != head.startswith("ffn_") and head != "linear":
        # family T's heads train a Transformer's block; the others a head on embeddings: each refused elsewhere
        with pytest.raises(ConfigError, match=r"^head="):
            validate(cfg)
        return
    validate(cfg)
    assert cfg.experiment.name == experiment


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from tests.data.tiny_fixtures import build_tiny_assets

    return build_tiny_assets(tmp_path_factory.mktemp("tiny"))


def _overrides(experiment: str, assets, tmp_path: Path) -> list[str]:
    from tests.data.tiny_fixtures import tiny_experiment_overrides

    paper = _paper_name(experiment)
    out = [f"experiment={experiment}", f"cache_dir={tmp_path}/cache"]
    if _family_t(experiment):
        from tests.data.tiny_fixtures import group_overrides, tiny_backbone, tiny_dataset

        # the tiny BERT (hidden 32, FFN 64) on the tiny text, 6 classes
        out += [*group_overrides("dataset", tiny_dataset("text", assets)),
                *group_overrides("backbone", tiny_backbone("bert", assets)), "experiment.arch=[32,64,6]",
                f"data_root={assets.root}"]
    elif paper is not None:
        tiny = tiny_experiment_overrides(paper, assets, fast=False)
        out = [o for o in tiny if not o.startswith("experiment=")] + [f"experiment={experiment}"]
    out += [f"results_dir={tmp_path}/runs", *SHORT]
    cfg = compose_config(out)
    if cfg.study.name == "retrain" and cfg.study.new_classes >= cfg.experiment.arch[-1]:
        out.append("study.new_classes=1")  # the tiny fixtures have fewer classes than the real data
    return out


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_end_to_end_under_its_own_defaults(experiment, assets, tmp_path):
    """``retrain/*`` and ``combine/*`` inherit ``reduced_epochs_mode: auto``: their MLP partner is a standard
    run (issue 19: it kept ``study`` set and every study failed under its own defaults)."""
    overrides = _overrides(experiment, assets, tmp_path)
    cfg = compose_config(overrides + ["head=ffn_glai" if _family_t(experiment) else "head=glai"])
    rec = run(cfg)
    assert rec["status"] == "done", rec.get("error")
    rule = rec["metrics"].get("reduced_epochs_rule") or {}
    assert rule.get("mode") == cfg.experiment.reduced_epochs_mode
    if rule.get("mode") == "auto":
        partner = rule["mlp_record"]
        assert Path(partner).is_file() and "/mlp/" in partner
    if cfg.study.name != "standard":
        assert rec["metrics"]["study"]["name"] == cfg.study.name


@pytest.mark.parametrize("tuned", TUNED, ids=str)
def test_every_shipped_tuned_file_is_selected_by_tuning_best(tuned, tmp_path):
    import yaml

    from glai.tuned import apply_tuned

    experiment, head, key = str(tuned.parent.parent), tuned.parent.name, tuned.name
    assert key == "protocol", "the shipped settings are the stand-ins' own groups"
    data = yaml.safe_load((CONF_DIR / "tuned" / "best" / f"{tuned}.yaml").read_text())
    cfg = apply_tuned(compose_config([f"experiment={experiment}", f"head={head}", "tuning=best",
                                      f"tuned_dir={tmp_path}"]))
    validate(cfg)
    assert cfg.tag == "tuned" and cfg.tuning.role in ("none", "held_out")
    from omegaconf import OmegaConf

    assert all(OmegaConf.select(cfg, k) == v for k, v in data["settings"].items())
