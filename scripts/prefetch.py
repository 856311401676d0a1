"""Download what one experiment needs into the standard caches, then print the command that runs it offline.

For a cluster whose compute nodes have no internet: run this on the login node (or any machine that shares the
caches), then submit the printed command (or a sweep with ``hydra/launcher=slurm``) to the compute nodes.

    python scripts/prefetch.py experiment=A1            (make prefetch EXP=A1)
    python scripts/prefetch.py experiment=A2 backbone=gpt2

What it fetches, through the same loaders a run uses (nothing is extracted or trained):
- the backbone's weights: timm / transformers ``from_pretrained`` into the Hugging Face hub cache
  (``HF_HOME``, default ``~/.cache/huggingface``), or the local files it names;
- the dataset's splits of the experiment's family: ``datasets.load_dataset`` into the HF datasets cache,
  torchvision's download into the dataset's torchvision root (``dataset.path``, default
  ``<data_root>/torchvision``: STL-10 for B1, Omniglot for C1), or the local files under ``data_root``.

Prints one line per step and, last, the offline command: ``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python run.py
<the same overrides>``. Exits 1, naming what failed, when a download fails.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glai.config import compose_config  # noqa: E402
from glai.data.backbones import build_backbone  # noqa: E402
from glai.data.datasets import load_splits, roles_for_family  # noqa: E402

OFFLINE_ENV = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"


def offline_command(overrides: list[str]) -> str:
    """The run command for a node without internet: the same overrides, the hub clients told to stay offline."""
    return f"{OFFLINE_ENV} python run.py {' '.join(shlex.quote(o) for o in overrides)}".rstrip()


def prefetch(overrides: list[str], echo=print) -> int:
    """Fetch the backbone and the dataset splits of ``overrides``' experiment; returns a process exit code."""
    cfg = compose_config(overrides)
    steps = []
    b = cfg.backbone
    if b.library != "none":
        steps.append((f"backbone {b.name} ({b.library} {b.model_id or b.path})",
                      lambda: build_backbone(b, cfg.data_root, device="cpu")))
    if cfg.dataset.source != "sklearn_digits":
        roles = roles_for_family(cfg.experiment.family)
        d = cfg.dataset
        where = (f"torchvision {d.torchvision_class} into {d.path or 'torchvision'} under data_root"
                 if d.source == "torchvision" else d.hf_path or d.path)
        steps.append((f"dataset {d.name} ({where}), roles {list(roles)}",
                      lambda: load_splits(cfg.dataset, roles, data_root=cfg.data_root, cache_dir=cfg.cache_dir)))
    for what, step in steps:
        t0 = time.perf_counter()
        try:
            step()
        except Exception as err:  # noqa: BLE001 - every loader failure is reported the same way
            echo(f"[prefetch] FAILED {what}: {type(err).__name__}: {err}")
            return 1
        echo(f"[prefetch] ok {what} ({time.perf_counter() - t0:.1f} s)")
    echo("[prefetch] everything this experiment downloads is cached; on a node without internet run:")
    echo(offline_command(overrides))
    return 0


if __name__ == "__main__":
    sys.exit(prefetch(sys.argv[1:]))
