"""Fixtures of the data tests: tiny offline backbones and datasets (see tiny_fixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_fixtures import TinyAssets, build_tiny_assets  # noqa: E402
from tiny_fixtures import tiny_experiment_overrides as _tiny_overrides  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> TinyAssets:
    """Every tiny fixture, built once per session under a temp folder (also the data_root)."""
    return build_tiny_assets(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_experiment_overrides(tiny_assets):
    """`f(experiment, fast=True) -> list[str]`: Hydra overrides running an experiment on the tiny fixtures."""

    def make(experiment: str, fast: bool = True) -> list[str]:
        return _tiny_overrides(experiment, tiny_assets, fast=fast)

    return make


@pytest.fixture
def compose_cfg():
    """`f(overrides) -> DictConfig`: compose conf/config.yaml with the structured schema registered."""
    from hydra import compose, initialize_config_dir

    from glai.config import register_configs

    register_configs()

    def make(overrides: list[str]):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)

    return make
