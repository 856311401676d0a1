"""Fill the embedding cache of one experiment without training.

    python scripts/cache_embeddings.py experiment=offline/C1
    GLAI_DATA_ROOT=~/glai-data python scripts/cache_embeddings.py experiment=offline/A1 backbone.num_threads=1

Prints one JSON line: experiment, per-split shapes, cache events (hit / built / rebuilt) and wall-clock
seconds (extraction included, model loading included).
"""

import json
import logging
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glai.config import precheck_overrides, register_configs  # noqa: E402
from glai.errors import ConfigError  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from glai.data.loading import load_data

    logging.getLogger("glai").setLevel(logging.INFO)
    report: dict = {}
    t0 = time.perf_counter()
    if cfg.dataset.source == "sklearn_digits":
        splits = load_data(cfg)
    else:
        from glai.data.embeddings import load_embeddings

        splits = load_embeddings(cfg, report=report)
    summary = {
        "experiment": cfg.experiment.name,
        "backbone": cfg.backbone.name,
        "dataset": cfg.dataset.name,
        "shapes": {role: {"x": list(s.x.shape), "y": None if s.y is None else list(s.y.shape)}
                   for role, s in splits.items()},
        "cache": [{k: e[k] for k in ("status", "reason", "entry")} | {"seconds": round(e["seconds"], 1)}
                  for e in report.get("events", [])],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        try:  # a misspelled key or group option: one line and exit 2, as run.py
            precheck_overrides(sys.argv[1:], search_needs_multirun=False)
        except ConfigError as err:
            print(f"[glai] ConfigError: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    main()
