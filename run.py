"""Train one head on one experiment: ``python run.py experiment=A1 head=glai seed=0`` (see README).

A bad config value, data that cannot train the head, a backbone or dataset that is not there, or a results folder
that cannot be written (:data:`USER_ERRORS`) prints its message, which names the key or file and the fix, and exits
with status 2; ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from glai.cluster import use_squeue_without_accounting
from glai.config import precheck_overrides, register_configs
from glai.data.backbones import BackboneUnavailableError
from glai.data.readers.base import DatasetUnavailableError
from glai.errors import ConfigError, DataError, RecordWriteError
from glai.runner import run, search_result
from glai.search import check_search_overrides

register_configs()
#: Errors a user causes (a bad value, data, a missing backbone or dataset file, an unwritable results folder): one
#: line that names the key or file and the fix, exit 2; any other exception is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, DataError, BackboneUnavailableError, DatasetUnavailableError, RecordWriteError)
# hydra/launcher=slurm on a cluster without accounting: job states from squeue (glai.cluster)
use_squeue_without_accounting()


def _single_run() -> bool:
    """Whether this is ``python run.py ...`` (not one job of a ``-m`` sweep, which goes on past a failed run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.RUN


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict | None:
    try:
        record = run(cfg)
    except USER_ERRORS as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"[glai] {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if record.get("status") == "failed" and _single_run():
        # a diverged run (NaN/inf loss) is recorded as failed; alone on the command line it is the user's error
        print(f"[glai] the run failed: {record.get('error')}", file=sys.stderr)
        raise SystemExit(2)
    # a hyperparameter search (tuning=search, hydra/sweeper=glai_optuna) maximises the tuning split's score; the
    # sweeper keeps its standard error and the record's path beside it
    return search_result(record) if cfg.tuning.role == "search" else None


if __name__ == "__main__":
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        # a misspelled key, a missing group option or a wrong type: one line and exit 2 before Hydra starts
        try:
            check_search_overrides(sys.argv[1:])
            precheck_overrides(sys.argv[1:])
        except ConfigError as err:
            print(f"[glai] ConfigError: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    main()
