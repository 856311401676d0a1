"""Train one head on one experiment: ``python run.py experiment=A1 head=glai seed=0`` (see README)."""

import hydra
from omegaconf import DictConfig

from glai.config import register_configs
from glai.runner import run

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
