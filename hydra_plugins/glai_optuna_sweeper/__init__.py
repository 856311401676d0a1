"""The project's Hydra sweeper over Optuna's ask-and-tell API (``hydra/sweeper=glai_optuna``)."""
