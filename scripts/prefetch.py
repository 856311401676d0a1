"""Get what one experiment reads, on a machine with internet, so that the same run command then works offline.

    python scripts/prefetch.py experiment=offline/A2                   (make prefetch EXP=offline/A2)
    python scripts/prefetch.py experiment=ffn/dbpedia                  (make prefetch EXP=ffn/dbpedia)
    python scripts/prefetch.py experiment=A1 backbone=gpt2
    python scripts/prefetch.py --source fancyzhx/dbpedia_14=/data/dbpedia_14 experiment=ffn/dbpedia

Two kinds of data, each fetched the way a run reads it:

- An offline stand-in (a config whose ``path`` is relative, e.g. ``dataset=dbpedia14_local``: ``data/dbpedia14``
  under ``data_root``, i.e. ``GLAI_DATA_ROOT``) that is missing is built there from its public source
  (``glai.data.standins``: the hub dataset or model, or torchvision's download, and how it is cut). One that
  exists is left as it is.
- A hub source (``experiment=A1``: DeiT-S weights, Oxford-IIIT Pets) is downloaded through the same loaders a run
  uses into the standard caches: the Hugging Face cache (``HF_HOME``, default ``~/.cache/huggingface``) for hub
  weights and datasets, torchvision's root (``<data_root>/torchvision``) for STL-10 (B1) and Omniglot (C1).

Then the backbone and the dataset's splits are loaded once, as a run loads them (nothing is extracted or trained).
``--source ID=PATH`` (repeatable) builds a stand-in from a local copy of its source in the source's own format (a
clone of the hub repository, a torchvision root, a weights file) instead of downloading it.

Prints one line per step and, last, the offline command: ``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python run.py
<the same overrides>``. Exits 1, naming what failed, when a step fails; exits 2 on a malformed ``--source``.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glai.config import compose_config  # noqa: E402
from glai.data.backbones import build_backbone  # noqa: E402
from glai.data.datasets import load_splits, resolve_path, roles_for_family  # noqa: E402
from glai.data.standins import standin_for  # noqa: E402

OFFLINE_ENV = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"


def offline_command(overrides: list[str]) -> str:
    """The run command for a node without internet: the same overrides, the hub clients told to stay offline,
    and ``GLAI_DATA_ROOT`` when it is set here (the stand-ins' root)."""
    env = OFFLINE_ENV
    if os.environ.get("GLAI_DATA_ROOT"):
        env += f" GLAI_DATA_ROOT={shlex.quote(os.environ['GLAI_DATA_ROOT'])}"
    return f"{env} python run.py {' '.join(shlex.quote(o) for o in overrides)}".rstrip()


def _standin_steps(cfg, sources: dict[str, str]) -> list:
    """A build step for each stand-in the experiment reads (its dataset's and its backbone's ``path``)."""
    steps = []
    for group in (cfg.dataset, cfg.backbone):
        standin = standin_for(group.get("path"))
        if standin is None:
            continue
        where = resolve_path(standin.path, cfg.data_root)
        if where.exists():
            steps.append((f"stand-in {standin.path} (already at {where})", lambda: None))
            continue
        via = f"the local copy {sources[standin.source]}" if standin.source in sources else standin.url
        steps.append((f"stand-in {standin.path} built at {where} from {standin.source} ({via}): {standin.cut}",
                      lambda s=standin: s.build(cfg.data_root, sources)))
    return steps


def prefetch(overrides: list[str], echo=print, sources: dict[str, str] | None = None) -> int:
    """Build the stand-ins, fetch the backbone and the dataset splits of ``overrides``' experiment.

    Args:
        overrides: the run's Hydra overrides (``experiment=offline/A2``, ``data_root=...``).
        echo: where each line goes.
        sources: source id -> a local copy of that source, read instead of the download (``--source``).

    Returns:
        The process exit code: 0 when everything is in place, 1 when a step failed (its line says which).
    """
    sources = dict(sources or {})
    cfg = compose_config(overrides)
    steps = _standin_steps(cfg, sources)
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
    echo("[prefetch] everything this experiment reads is in place; on a node without internet run:")
    echo(offline_command(overrides))
    return 0


def parse_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``argv`` into Hydra overrides and ``--source ID=PATH`` pairs.

    Raises:
        SystemExit: exit 2 on a ``--source`` without ``ID=PATH``, naming the argument and the form.
    """
    overrides, sources = [], {}
    args = iter(argv)
    for arg in args:
        if arg == "--source" or arg.startswith("--source="):
            value = arg.split("=", 1)[1] if arg.startswith("--source=") else next(args, "")
            source, sep, path = value.partition("=")
            if not (sep and source and path):
                print(f"[glai] ConfigError: --source {value!r} is not ID=PATH. Fix: --source "
                      "fancyzhx/dbpedia_14=/data/dbpedia_14 (a local copy in the source's own format)",
                      file=sys.stderr)
                raise SystemExit(2)
            sources[source] = path
        else:
            overrides.append(arg)
    return overrides, sources


if __name__ == "__main__":
    _overrides, _sources = parse_args(sys.argv[1:])
    sys.exit(prefetch(_overrides, sources=_sources))
