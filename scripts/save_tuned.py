"""Save the one-standard-error choice of a finished search for the group it searched (docs/method.md,
Tuned choice; :mod:`glai.tuned`).

Usage: python scripts/save_tuned.py SWEEP_DIR [--out DIR] [--conf conf]
       python scripts/save_tuned.py --find OVERRIDE... (exit 0 and the file when this group has tuned settings that
           apply; 1 without, or with a stale file: an old format, another group's)
       python scripts/save_tuned.py --reduced-range OVERRIDE... (prints tuning.max_reduced_epochs=N for a GLAI
           search of this group: half the protocol MLP's epochs on the tuning rows, that run trained when missing)

SWEEP_DIR is the Hydra sweep folder of ``python run.py -m tuning=search ...`` (``experiments/tune.sh`` names it
``results/tuning/sweeps/<experiment>/<head>``): its ``search.yaml`` names the search's Optuna study
(``hydra/sweeper=glai_optuna``), which holds every trial, the head's defaults included, with its score, its
standard error and its record. The chosen trial is the best one if it beats the head's protocol default by more
than its standard error, else the default (:func:`glai.search.choose`, ESL 7.10).

**Search = application**: the settings saved are read from the chosen trial's *record* (the config
that ran and scored), for every key the search set in any trial; a GLAI trial's reduced phase is saved as the
epoch count it ran (``experiment.reduced_epochs_mode: fixed``), never as a rule that would resolve to another
count on other rows. The file, ``<out>/<experiment>/<head>/<group key>.yaml`` (``--out`` default
``GLAI_TUNED_DIR`` or ``results/tuned``; ``--out conf/tuned/best`` ships it), holds the search's group (the data,
backbone, arch and protocol settings that differ from the unmodified experiment: ``{}`` for its own data), the
settings, and both scores with their standard errors; it is checked against the schema before it is written.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from glai.config import CONF_DIR, compose_config, compose_error_line
from glai.errors import ConfigError
from glai.results.identity import RUNTIME_KEYS, is_variant_key
from glai.results.records import atomic_write_text, read_record
from glai.search import choose, open_storage
from glai.tuned import FORMAT, StaleTunedError, check_settings, find_tuned, group_of, tuned_path

#: Keys a search may set: the head's and the experiment's (never data, seed or paths).
TUNABLE_PREFIXES = ("head.", "experiment.")
#: GLAI's reduced-phase keys, saved as the count the chosen trial ran.
REDUCED = ("experiment.reduced_epochs", "experiment.reduced_epochs_mode", "experiment.reduced_fraction")


def _select(config: dict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _searched_keys(trials: list[optuna.trial.FrozenTrial], fixed: list[str]) -> list[str]:
    """Every tunable key any trial set: sampled, implied by the space, a default's, or fixed on the command line."""
    keys: dict[str, None] = {}
    lines = list(fixed)
    for t in trials:
        keys.update(dict.fromkeys(t.params))
        keys.update(dict.fromkeys(t.user_attrs.get("implied") or {}))
        lines += t.user_attrs.get("overrides") or []
    for line in lines:
        key = line.split("=", 1)[0].lstrip("+~")
        if key.startswith(TUNABLE_PREFIXES) and is_variant_key(key):
            keys[key] = None
    return list(keys)


def trial_record(trial: optuna.trial.FrozenTrial) -> dict:
    """The done record of a search trial (its user attribute ``record``).

    Raises:
        FileNotFoundError: the trial has none (its record was deleted, or it did not finish).
    """
    path = trial.user_attrs.get("record")
    record = read_record(Path(path)) if path else None
    if record is None or record.get("status") != "done":
        raise FileNotFoundError(f"trial {trial.number} has no done record ({path}): tuned settings are read from the "
                                "config that ran; keep the search's results_dir")
    return record


def trial_settings(record: dict, keys: list[str]) -> dict[str, Any]:
    """What a trial ran, as tuned settings: the value of every key in ``keys`` in the trial record's config, and a
    GLAI trial's reduced phase as the epoch count it ran (``fixed``; its record's ``reduced_epochs_rule``).

    Raises:
        ValueError: a key that would change the run's group.
    """
    changed = [k for k in keys if not is_variant_key(k)]
    if changed:
        raise ValueError(f"the search changed {changed}: a tuned setting may not change the run's group (data, "
                         "backbone, arch, protocol); search the head's settings only")
    config = record["config"]
    settings: dict[str, Any] = {}
    for key in keys:
        try:
            settings[key] = _select(config, key)
        except KeyError:
            continue  # a key of another head's config
    rule = (record.get("metrics") or {}).get("reduced_epochs_rule") or {}
    if record["head"] in ("glai", "ffn_glai") and config["head"].get("selector") != "random" and rule.get(
            "mode") in ("auto", "fixed"):
        # the reduced phase as the count the trial ran (search = application)
        settings.update({"experiment.reduced_epochs_mode": "fixed",
                         "experiment.reduced_epochs": int(rule["reduced_epochs"]),
                         "experiment.reduced_fraction": None})
    return settings


def load_search(sweep_dir: Path) -> tuple[dict, optuna.Study]:
    """``(search.yaml, study)`` of a sweep folder.

    Raises:
        FileNotFoundError: the folder has no ``search.yaml`` (not a ``hydra/sweeper=glai_optuna`` sweep) or its
            study's storage is gone.
        ValueError: the file is not a mapping naming a storage and a study.
    """
    path = sweep_dir / "search.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {sweep_dir} is not the folder of a search. Fix: give the "
                                "hydra.sweep.dir of a `python run.py -m tuning=search ...` sweep (it holds "
                                "search.yaml and optuna.journal)")
    try:
        info = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML ({err}); run the search again to rewrite it") from err
    if not isinstance(info, dict) or not info.get("storage") or not info.get("study_name"):
        raise ValueError(f"{path} lacks 'storage' and 'study_name' (written by the glai_optuna sweeper); run the "
                         "search again to rewrite it")
    fixed = info.get("fixed")
    if fixed is not None and not (isinstance(fixed, list) and all(isinstance(o, str) for o in fixed)):
        raise ValueError(f"{path} is cut or edited: 'fixed' is not a list of overrides; run the search again to "
                         "rewrite it")
    storage = str(info["storage"])
    if "://" not in storage and not Path(storage).is_file():
        raise FileNotFoundError(f"{path} names the study storage {storage}, which does not exist")
    try:
        study = optuna.load_study(study_name=str(info["study_name"]), storage=open_storage(storage))
    except KeyError as err:
        raise FileNotFoundError(f"{storage} holds no study {info['study_name']!r} (named in {path})") from err
    return info, study


def record_group(record: dict, path: Path, fixed: list[str], conf_dir: Path = CONF_DIR) -> dict:
    """The group (:func:`glai.tuned.group_of`) of the config a search trial ran, read from its ``record``, and
    checked against the group of the search's fixed overrides (``search.yaml`` at ``path``).

    The record is what ran; ``search.yaml`` only says what the search was asked to run. A file cut or edited after
    the search (a lost ``experiment.max_epochs=3``) would otherwise file the trial's settings under another group,
    where ``tuning=best`` applies them to runs the search never scored.

    Raises:
        ValueError: naming ``path``: its fixed overrides do not compose, or name another group than the record's.
    """
    fix = (f"Fix: run the search's command again (python run.py -m tuning=search ... with hydra.sweep.dir="
           f"{path.parent}): it rewrites {path.name} and keeps every finished trial")
    try:
        asked = group_of(compose_config(fixed, conf_dir), conf_dir)
    except (HydraException, OmegaConfBaseException) as err:
        raise ValueError(f"{path} is cut or edited: its fixed overrides do not compose "
                         f"({compose_error_line(err).split('. Fix:')[0]}). {fix}") from err
    config = {k: v for k, v in record["config"].items() if k not in RUNTIME_KEYS}
    ran = group_of(OmegaConf.create(config), conf_dir)
    if ran != asked:
        def text(group: dict) -> str:
            return ", ".join(f"{k}={v}" for k, v in group.items()) or "the experiment's own group"

        raise ValueError(f"{path} is cut or edited: its fixed overrides name the group ({text(asked)}), but the chosen "
                         f"trial's record ran ({text(ran)}). {fix}")
    return ran


def tuned_settings(sweep_dir: Path, conf_dir: Path = CONF_DIR) -> tuple[str, str, dict, dict, dict]:
    """``(experiment, head, settings, search, group)`` of a finished search (see the module docstring).

    Raises:
        FileNotFoundError: no ``search.yaml``, study or chosen record.
        ValueError: no trial completed, or the search set a key that would change the group.
    """
    info, study = load_search(sweep_dir)
    direction = str(info.get("direction", "maximize"))
    trials = study.get_trials(deepcopy=False)
    pick = choose(trials, direction)
    chosen = pick["chosen"]
    record = trial_record(chosen)
    settings = trial_settings(record, _searched_keys(trials, list(info.get("fixed") or [])))
    group = record_group(record, sweep_dir / "search.yaml", list(info.get("fixed") or []), conf_dir)
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)]
    # pruned trials spend the budget but never finished: counted apart
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]

    def score(t) -> dict[str, Any] | None:
        if t is None:
            return None
        return {"trial": t.number, "value": t.value, "se": t.user_attrs.get("se"),
                "default": t.user_attrs.get("default"), "record": t.user_attrs.get("record")}

    config = record["config"]
    tuning = config.get("tuning") or {}
    search = {"chosen": f"default: {chosen.user_attrs['default']}" if chosen.user_attrs.get("default")
              else f"trial {chosen.number}", "rule": pick["rule"], "chosen_score": score(chosen),
              "default_score": score(pick["default"]), "best_score": score(pick["best"]),
              "n_trials": len(finished), "pruned": len(pruned), "budget": info.get("n_trials"),
              "study_name": info["study_name"], "storage": str(info["storage"]),
              "sampler": (info.get("sampler") or {}).get("_target_"),
              "sampler_seed": (info.get("sampler") or {}).get("seed"), "monitor": record["metrics"].get("monitor"),
              "seed": record["seed"], "family": record["family"], "episodes": config.get("episodes"),
              "fraction": tuning.get("fraction"), "tuning_seed": tuning.get("seed"),
              "scored_by": _scored_by(record)}
    check_settings(sweep_dir / "search.yaml", record["head"], settings, group_overrides=list(info.get("fixed") or []),
                   conf_dir=conf_dir)
    return record["experiment"], record["head"], settings, search, group


def _scored_by(record: dict) -> str:
    metrics = record.get("metrics") or {}
    if metrics.get("folds"):
        folds = metrics["folds"]
        return f"{folds['k']} {'repeated tuning splits' if folds.get('kind') == 'repeats' else 'folds'}"
    if metrics.get("episodes"):
        return f"{metrics['episodes']['n']} episodes"
    return "one tuning split (no standard error)"


def render(experiment: str, head: str, settings: dict, search: dict, sweep_dir: Path, group: dict | None = None) -> str:
    """The YAML text of ``<out>/<experiment>/<head>/<group key>.yaml`` (:mod:`glai.tuned` reads it)."""
    # family C: the tuned runs' episodes come from the classes the search never drew from
    tuning = {"role": "held_out" if search["family"] == "C" else "none"}
    if search["family"] == "C":
        tuning.update(fraction=search["fraction"], seed=search["tuning_seed"])
    body = {"format": FORMAT, "experiment": experiment, "head": head, "group": dict(group or {}),
            "settings": settings, "tuning": tuning,
            "search": {k: v for k, v in search.items() if k not in ("family", "episodes")}}
    chosen, default = search["chosen_score"], search["default_score"]

    def text(s) -> str:
        if s is None:
            return "none"
        se = f" ± {s['se']:.3g}" if s.get("se") is not None else ""
        return f"{s['value']:.4g}{se}"

    sign = "" if search["monitor"] != "val_loss" else " (minus the loss)"
    header = (
        f"# Tuned settings of experiment={experiment} head={head} (tuning=best applies them to runs of this group),\n"
        f"# written by scripts/save_tuned.py {sweep_dir} on {datetime.date.today().isoformat()}:\n"
        f"# {search['n_trials']} trials (and {search.get('pruned', 0)} pruned) of study {search['study_name']} "
        f"({search['sampler']}, seed "
        f"{search['sampler_seed']}), run seed {search['seed']}, scored by {search['scored_by']} on the tuning rows\n"
        + (f"# ({search['fraction']:g} of train, tuning.seed {search['tuning_seed']}; never the validation split).\n"
           if search["family"] != "C" else
           f"# ({search['episodes']} episodes from {search['fraction']:g} of the pool's classes or rows, tuning.seed "
           f"{search['tuning_seed']}; the tuned runs draw from the rest: tuning.role held_out).\n")
        + f"# {search['monitor']}{sign}: chosen {search['chosen']} {text(chosen)}, protocol default {text(default)};\n"
        f"# {search['rule']} (one-standard-error rule, ESL 7.10).\n"
        "# settings: read from the chosen trial's record (what ran is what tuning=best runs).\n"
        "# group: the settings that differ from the unmodified experiment config ({} = its own data)\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False)


def reduced_range(overrides: list[str], conf_dir: Path = CONF_DIR) -> int:
    """The longest reduced phase a GLAI search of this group tries: ``max(2, ceil(0.5 * E))``, E the epochs of the
    protocol MLP's search run on the same tuning rows (the partner a GLAI default trial's auto rule reads, and the
    MLP search's protocol default trial: one record), trained first when it has none.

    Raises:
        RuntimeError: the MLP run did not finish.
    """
    from glai.runner import run

    cfg = compose_config([*overrides, "tuning=search", "head=mlp", "verbose=false"], conf_dir)
    record = run(cfg, [*overrides, "tuning=search", "head=mlp"])
    if record.get("status") != "done":
        raise RuntimeError(f"the protocol MLP search run {record.get('_path')} is {record.get('status')}: "
                           f"{record.get('error')}")
    return max(2, math.ceil(0.5 * float(record["metrics"]["epochs"])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="the search's Hydra sweep folder")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("GLAI_TUNED_DIR", "results/tuned")),
                        help="tuned settings folder (default: GLAI_TUNED_DIR or %(default)s)")
    parser.add_argument("--conf", type=Path, default=CONF_DIR, help="config folder (default: %(default)s)")
    parser.add_argument("--find", nargs="+", metavar="OVERRIDE",
                        help="print the tuned settings file of this run's group and exit 0, or exit 1 without one")
    parser.add_argument("--reduced-range", nargs="+", metavar="OVERRIDE",
                        help="print tuning.max_reduced_epochs=N for a GLAI search of this group and exit")
    args = parser.parse_args(argv)
    try:
        if args.reduced_range:
            print(f"tuning.max_reduced_epochs={reduced_range(args.reduced_range, args.conf)}")
            return 0
        if args.find:
            cfg = compose_config([*args.find, f"tuned_dir={args.out}"], args.conf)
            try:
                path, group = find_tuned(cfg, args.conf)
            except StaleTunedError as err:
                # tune.sh then searches again, and its file (in --out, read first) replaces this one
                print(f"save_tuned: {err}", file=sys.stderr)
                return 1
            print(path if path else f"no tuned settings for this group ({group or 'the experiment own data'})")
            return 0 if path else 1
        if args.sweep_dir is None:
            parser.error("give SWEEP_DIR, or --find OVERRIDE...")
        experiment, head, settings, search, group = tuned_settings(args.sweep_dir, args.conf)
    except (FileNotFoundError, ValueError, ConfigError, RuntimeError, HydraException, OmegaConfBaseException) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        line = (compose_error_line(err) if isinstance(err, (HydraException, OmegaConfBaseException))
                else str(err).strip().splitlines()[0])
        print(f"[glai] {type(err).__name__}: {line}", file=sys.stderr)
        return 2
    out = tuned_path(args.out, experiment, head, group)
    try:
        atomic_write_text(out, render(experiment, head, settings, search, args.sweep_dir, group))
    except OSError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"[glai] {type(err).__name__}: --out {args.out}: cannot write {out} ({err.strerror or err}). Fix: give "
              "--out (or GLAI_TUNED_DIR) a folder you can write; nothing was saved", file=sys.stderr)
        return 2
    print(f"{out}: {search['chosen']}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
