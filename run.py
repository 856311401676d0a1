"""Train one head on one experiment: ``python run.py experiment=A1 head=glai seed=0`` (see README)."""

import hydra
from omegaconf import DictConfig

from glai.config import register_configs
from glai.runner import objective, run

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    record = run(cfg)
    # a hyperparameter search (tuning=search, the Optuna sweeper) maximises the tuning split's score
    return objective(record) if cfg.tuning.role == "search" else None


if __name__ == "__main__":
    main()
