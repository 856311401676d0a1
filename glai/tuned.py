"""Tuned settings belong to the group they were tuned on, and only to it (SPEC 12 "Tuned comparison", issue 19).

A run's *group* is what it is apart from the head's settings: the data, backbone, arch and protocol settings
that differ from the unmodified ``experiment=X`` config (:func:`group_of`; the same rule labels it in the tables,
:mod:`glai.results.groups`). ``{}`` is the experiment's own group (a stand-in's data); a user's data set, another
arch or another ``data_root`` is another group. A search's best settings are saved for its group
(``scripts/save_tuned.py``) as ``<experiment>/<head>/<group key>.yaml``:

- in ``tuned_dir`` (``GLAI_TUNED_DIR``, default ``results/tuned``, beside the records): a user's searches; share
  the folder (or one file) with the results it produced;
- in ``conf/tuned/best/`` (the shipped settings the committed study found, ``docs/FINDINGS.md``; read-only
  unless ``save_tuned.py --out conf/tuned/best``).

``tuning=best`` (:func:`apply_tuned`) finds the file of the run's own group (``tuned_dir`` first), checks that
its stored group equals the run's, and applies its settings and ``tag: tuned``; without one it stops before any
work and names the search to run on this data. ``tuning.shipped=false`` reads ``tuned_dir`` only: a study that
must apply its own searches and nothing else (``experiments/tune.sh`` with ``SHIPPED=0``). Group keys are a hash
of the group, so a search never overwrites another group's settings.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from glai.config import CONF_DIR, reference_configs
from glai.data.loading import resolved_paths
from glai.errors import ConfigError
from glai.results.identity import differences, is_variant_key

__all__ = ["SHIPPED", "apply_tuned", "find_tuned", "group_key", "group_of", "search_command", "tuned_path"]

#: Settings of a search run that say how its trials are scored, not which runs its settings belong to.
SEARCH_SCORING = ("episodes",)

#: The shipped tuned settings (the committed study's; ``docs/FINDINGS.md``).
SHIPPED = CONF_DIR / "tuned" / "best"


def group_of(cfg: DictConfig, conf_dir: str | Path = CONF_DIR) -> dict[str, Any]:
    """The settings of ``cfg`` that differ from the unmodified ``experiment=<name> head=<head>`` config,
    the head's own settings, the tuning role and the tag aside (:func:`glai.results.identity.is_variant_key`);
    ``dataset.path`` and ``backbone.path`` compared resolved against ``data_root``.

    Raises:
        ConfigError: the experiment has no config under ``conf_dir`` to compare with.
    """
    exp, head = str(cfg.experiment.name), str(cfg.head.name)
    reference = reference_configs([(exp, head)], conf_dir).get((exp, head))
    if reference is None:
        raise ConfigError(f"experiment.name={exp!r}: tuned settings are kept per group of conf/experiment/{exp}.yaml, "
                          "which does not exist. Fix: run an experiment of conf/experiment/ (e.g. "
                          "experiment=offline/A1 dataset=folder ...) so the group can be told")
    config = OmegaConf.to_container(cfg, resolve=True)
    for key, value in resolved_paths(config, cfg.data_root).items():
        group, name = key.split(".")
        config[group][name] = value
    # how a search is scored is not what the tuned runs are: a family C search averages more episodes
    scoring = SEARCH_SCORING if cfg.tuning.role == "search" else ()
    return {k: v for k, v in differences(config, reference).items() if not is_variant_key(k) and k not in scoring}


def group_key(group: dict[str, Any]) -> str:
    """``protocol`` for the experiment's own group, else the first 10 hex digits of the group's SHA-256."""
    if not group:
        return "protocol"
    return hashlib.sha256(json.dumps(group, sort_keys=True, default=str).encode()).hexdigest()[:10]


def tuned_path(root: str | Path, experiment: str, head: str, group: dict[str, Any]) -> Path:
    """``<root>/<experiment>/<head>/<group key>.yaml``."""
    return Path(root) / experiment / head / f"{group_key(group)}.yaml"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"tuned settings {path} cannot be read ({err}). Fix: delete it and search again") from err
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or "group" not in data:
        raise ConfigError(f"tuned settings {path} lack 'group' and 'settings' (written by scripts/save_tuned.py). "
                          "Fix: delete it and search again")
    return data


def find_tuned(cfg: DictConfig, conf_dir: str | Path = CONF_DIR) -> tuple[Path | None, dict[str, Any]]:
    """``(file, group)``: the tuned settings of the run's group (``tuned_dir`` first, then :data:`SHIPPED` unless
    ``tuning.shipped`` is false), or ``(None, group)`` when no search of this group was saved there."""
    group = group_of(cfg, conf_dir)
    roots = [Path(cfg.tuned_dir)]
    if cfg.tuning.get("shipped", True):
        roots.append(SHIPPED)
    for root in roots:
        path = tuned_path(root, str(cfg.experiment.name), str(cfg.head.name), group)
        if path.is_file():
            stored = _load(path).get("group") or {}
            if json.dumps(stored, sort_keys=True, default=str) == json.dumps(group, sort_keys=True, default=str):
                return path, group
    return None, group


def search_command(cfg: DictConfig, overrides: list[str]) -> str:
    """The search to run for this run's group: its own overrides with ``tuning=search``."""
    own = [o for o in overrides if not o.startswith(("tuning=", "tuning.", "seed=", "tag=", "head.", "hydra"))]
    parts = ["python run.py -m tuning=search", f"experiment={cfg.experiment.name}", f"head={cfg.head.name}"]
    parts += [o for o in own if not o.startswith(("experiment=", "head="))]
    return " ".join(parts) + "; python scripts/save_tuned.py <its sweep folder>"


def apply_tuned(cfg: DictConfig, overrides: list[str] | None = None, conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """``tuning=best`` (``tuning.role: requested``): ``cfg`` with the settings saved for its group applied,
    ``tag: tuned`` and the file's tuning role (``none``; family C ``held_out``); any other role: ``cfg`` as is.

    Raises:
        ConfigError: no settings were saved for this group (the message names the search command), or a file
            is unreadable; raised before any work.
    """
    if cfg.get("tuning") is None or cfg.tuning.role != "requested":
        return cfg
    path, group = find_tuned(cfg, conf_dir)
    if path is None:
        shown = ", ".join(f"{k}={v}" for k, v in group.items()) or "the experiment's own data"
        raise ConfigError(
            f"tuning=best: no tuned settings for experiment={cfg.experiment.name} head={cfg.head.name} on this group "
            f"({shown}; looked for {tuned_path(cfg.tuned_dir, cfg.experiment.name, cfg.head.name, group)}"
            f"{' and under conf/tuned/best' if cfg.tuning.get('shipped', True) else ' only (tuning.shipped=false)'})."
            " Settings searched on other data are never applied. Fix: "
            f"{search_command(cfg, overrides or [])}, or drop tuning=best")
    data = _load(path)
    out = copy.deepcopy(cfg)
    with open_dict(out):
        for key, value in data["settings"].items():
            if not is_variant_key(key) or key.startswith("tuning."):
                raise ConfigError(f"tuned settings {path} set {key}, which would change the run's group (only the "
                                  "head's settings and GLAI's reduced-phase rule are tuned). Fix: delete the file")
            OmegaConf.update(out, key, value, merge=False)
        tuning = data.get("tuning") or {"role": "none"}
        for key, value in tuning.items():
            OmegaConf.update(out, f"tuning.{key}", value, merge=False)
        out.tag = "tuned"
    print(f"[glai] tuning=best: {path}")
    return out
