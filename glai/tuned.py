"""Tuned settings belong to the group they were tuned on, and only to it (docs/method.md, Tuned
comparison).

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
work and names the search to run on this data. A file is checked against the schema when it is saved and when it
is loaded (:func:`check_settings`: known, tunable keys; values of the right type and range; a GLAI file's reduced
phase a fixed epoch count), and every error names the file. A head key given on the command line beside
``tuning=best`` with another value than the file's is refused before any work, naming both values: a tuned run
is the search's setting, and a variant of it is a run of its own (drop ``tuning=best`` and give every key).
``tuning.shipped=false`` reads ``tuned_dir`` only: a study that
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

from glai.config import CONF_DIR, compose_config, reference_configs, validate
from glai.data.loading import resolved_paths
from glai.errors import ConfigError
from glai.names import path_part
from glai.results.identity import differences, is_variant_key

__all__ = ["FORMAT", "SHIPPED", "StaleTunedError", "apply_tuned", "check_settings", "find_tuned", "group_key",
           "group_of", "search_command", "tuned_path"]

#: The tuned files' format: 2 = search = application (settings read from the chosen trial's record, the
#: reduced phase as the count it ran, the one-standard-error choice). Format 1 files are refused.
FORMAT = 2

#: Settings of a search run that say how its trials are scored, not which runs its settings belong to.
SEARCH_SCORING = ("episodes",)

#: The shipped tuned settings (the committed study's; ``docs/FINDINGS.md``).
SHIPPED = CONF_DIR / "tuned" / "best"


class StaleTunedError(ConfigError):
    """A tuned file that cannot be applied as it is (an old format, another group's): a new search replaces it."""


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
    """``<root>/<experiment>/<head>/<group key>.yaml``.

    Raises:
        ConfigError: an experiment or head name that would leave ``root`` (:func:`glai.names.path_part`).
    """
    folder = Path(root) / path_part("experiment.name", experiment, exact=True, nested=True)
    return folder / path_part("head", head, exact=True, fix="head=glai") / f"{group_key(group)}.yaml"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"tuned settings {path} cannot be read ({err}). Fix: delete it and search again") from err
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or "group" not in data:
        raise ConfigError(f"tuned settings {path} lack 'group' and 'settings' (written by scripts/save_tuned.py). "
                          "Fix: delete it and search again")
    if data.get("format") != FORMAT:
        raise StaleTunedError(f"tuned settings {path} are of format {data.get('format', 1)}, written before a search's "
                          "settings were read from the trial that ran (the reduced phase the search scored was not "
                          "the one tuning=best ran). Fix: search again (experiments/tune.sh) and save with "
                          "scripts/save_tuned.py")
    return data


def check_settings(path: str | Path, head: str, settings: dict[str, Any], cfg: DictConfig | None = None,
                   group_overrides: list[str] | None = None, conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """Check tuned ``settings`` against the schema: every key a tunable one (the head's, GLAI's reduced-phase
    rule) of the config, every value of the key's type and range (:func:`glai.config.validate`), and a GLAI file
    with a trained selector fixing its reduced phase as an epoch count (search = application).

    Args:
        path: the file (named in every error).
        head: the head the settings are for.
        settings: ``{dotted key: value}``.
        cfg: the run's config to apply them to; None composes ``group_overrides`` with ``head=<head>``.

    Returns:
        the config with the settings applied.

    Raises:
        ConfigError: naming the file, the key and the fix.
    """
    if cfg is None:
        overrides = [o for o in group_overrides or [] if not o.startswith(("tuning=", "head="))]
        cfg = compose_config([*overrides, f"head={head}"], conf_dir)
    out = copy.deepcopy(cfg)
    # every bad value at once: a user editing the file fixes them in one go
    problems: list[str] = []
    for key, value in settings.items():
        if not is_variant_key(key) or key.startswith("tuning."):
            problems.append(f"{key}, which would change the run's group (only the head's settings and GLAI's "
                            "reduced-phase rule are tuned)")
            continue
        if OmegaConf.select(out, key, default="<missing>") == "<missing>":
            problems.append(f"{key}, which is not a key of the config")
            continue
        try:
            OmegaConf.update(out, key, value, merge=False)
        except Exception as err:  # omegaconf's ValidationError and friends: a value of the wrong type
            problems.append(f"{key}={value!r}, which the schema refuses ({type(err).__name__}: "
                            f"{str(err).splitlines()[0]})")
            continue
        alone = _validated(cfg, {key: value})
        if alone is not None and key in alone:
            problems.append(alone)
    if out.tuning.role == "requested":
        with open_dict(out):
            out.tuning.role = "none"  # validated as the run it becomes (the file's tuning role is applied after)
    fix = (f"Fix: correct {'it' if len(problems) == 1 else 'them'} in {path} (tuning=best refuses a command-line "
           "value of a key the file sets), or delete the file and search again")
    if problems:
        raise ConfigError(f"tuned settings {path} set {'; '.join(problems)}. {fix}")
    together = _validated(out, {})
    if together is not None:
        raise ConfigError(f"tuned settings {path}: {together}. {fix}")
    if head == "glai" and out.head.selector != "random" and out.experiment.reduced_epochs_mode == "auto":
        raise ConfigError(f"tuned settings {path} leave GLAI's reduced phase to the auto rule, whose count depends on "
                          "the partner MLP of each run, so tuning=best would not run what the search scored. Fix: "
                          "save the search again with scripts/save_tuned.py (it stores the count the trial ran)")
    return out


def _validated(cfg: DictConfig, settings: dict[str, Any]) -> str | None:
    """What :func:`glai.config.validate` refuses in ``cfg`` with ``settings`` applied (its message without the
    command-line fix), or None."""
    out = copy.deepcopy(cfg)
    for key, value in settings.items():
        OmegaConf.update(out, key, value, merge=False)
    if out.tuning.role == "requested":
        with open_dict(out):
            out.tuning.role = "none"  # validated as the run it becomes (the file's tuning role is applied after)
    try:
        validate(out)
    except ConfigError as err:
        return str(err).split(". Fix: ")[0]
    return None


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
            if json.dumps(stored, sort_keys=True, default=str) != json.dumps(group, sort_keys=True, default=str):
                # the key is the group's hash: a file whose group differs was edited or copied from another group
                raise StaleTunedError(f"tuned settings {path} store the group {stored or '{}'}, not this run's "
                                  f"({group or '{}'}): the file was edited or copied from another group's. Fix: "
                                  "delete it and search again for this data")
            return path, group
    return None, group


def search_command(cfg: DictConfig, overrides: list[str]) -> str:
    """The search to run for this run's group: its own overrides with ``tuning=search``."""
    own = [o for o in overrides if not o.startswith(("tuning=", "tuning.", "seed=", "tag=", "head.", "hydra"))]
    parts = ["python run.py -m tuning=search", f"experiment={cfg.experiment.name}", f"head={cfg.head.name}"]
    parts += [o for o in own if not o.startswith(("experiment=", "head="))]
    return " ".join(parts) + "; python scripts/save_tuned.py <its sweep folder>"


def _refuse_conflicts(path: Path, settings: dict[str, Any], overrides: list[str]) -> None:
    """A command-line override of a key the tuned file sets, with another value, is refused."""
    for line in overrides:
        key, sep, text = line.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in settings:
            continue
        given = yaml.safe_load(text) if text else None
        tuned = settings[key]
        same = given == tuned or (isinstance(given, (int, float)) and isinstance(tuned, (int, float))
                                  and float(given) == float(tuned))
        if not same:
            raise ConfigError(f"tuning=best sets {key}={tuned!r} (from {path}), and the command line gives "
                              f"{key}={text}: a tuned run is what its search scored. Fix: drop {key}={text}, or drop "
                              "tuning=best to run that setting as a run of its own")


def apply_tuned(cfg: DictConfig, overrides: list[str] | None = None, conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """``tuning=best`` (``tuning.role: requested``): ``cfg`` with the settings saved for its group applied,
    ``tag: tuned`` and the file's tuning role (``none``; family C ``held_out``); any other role: ``cfg`` as is.

    Raises:
        ConfigError: no settings were saved for this group (the message names the search command), a file is
            unreadable, of an old format or against the schema, or a command-line override (``overrides``) gives a
            key of the file another value; raised before any work.
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
    _refuse_conflicts(path, data["settings"], overrides or [])
    out = check_settings(path, str(cfg.head.name), data["settings"], cfg)
    with open_dict(out):
        tuning = data.get("tuning") or {"role": "none"}
        for key, value in tuning.items():
            OmegaConf.update(out, f"tuning.{key}", value, merge=False)
        out.tag = "tuned"
    print(f"[glai] tuning=best: {path}")
    return out
