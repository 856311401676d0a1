"""Compose the run config outside ``@hydra.main`` (scripts, tests, notebooks)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from glai.config import register_configs

__all__ = ["CONF_DIR", "compose_config"]

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config ``python run.py <overrides>`` would get.

    Raises:
        hydra.errors.ConfigCompositionException / omegaconf errors: unknown group option, misspelled key, wrong type.
    """
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))
