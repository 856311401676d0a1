"""Save the best settings of a finished search for the group it searched (SPEC 12, :mod:`glai.tuned`).

Usage: python scripts/save_tuned.py SWEEP_DIR [--out DIR] [--conf conf]
       python scripts/save_tuned.py --find OVERRIDE... (exit 0 and the file when this group has tuned settings)
       python scripts/save_tuned.py --finished STORAGE STUDY (the trials a persisted search has finished)

SWEEP_DIR is the Hydra sweep folder of ``python run.py -m tuning=search ...`` (``experiments/tune.sh`` names it
``results/tuning/sweeps/<experiment>/<head>``): its ``optimization_results.yaml`` (the Optuna sweeper's best
trial) and its first trial's ``.hydra/`` (the search's config and overrides). The file written,
``<out>/<experiment>/<head>/<group key>.yaml`` (``--out`` default ``GLAI_TUNED_DIR`` or ``results/tuned``;
``--out conf/tuned/best`` ships it), holds the search's group (the data, backbone, arch and protocol settings
that differ from the unmodified experiment: ``{}`` for its own data), the best values and the search's fixed
head and reduced-phase overrides (e.g. GLAI's ``experiment.reduced_epochs_mode=auto``), and the search's budget
and score; ``python run.py tuning=best <the same data overrides>`` applies them to runs of that group only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import optuna
import yaml
from omegaconf import OmegaConf

from glai.config import CONF_DIR, compose_config
from glai.errors import ConfigError
from glai.results.identity import is_variant_key
from glai.results.records import atomic_write_text, read_record
from glai.runner import objective, run_identity
from glai.tuned import find_tuned, group_of, tuned_path

#: Keys a search may set: the head's and the experiment's (never data, seed or paths).
TUNABLE_PREFIXES = ("head.", "experiment.")


def _round(value):
    """Floats to 3 significant digits: tuned settings are printed in table labels."""
    return float(f"{value:.3g}") if isinstance(value, float) else value


def _default_trial(overrides: list[str], params, conf_dir: Path) -> tuple[float, dict, str]:
    """``(score, settings, record path)`` of a head's default run on the tuning split (an enqueued first trial:
    the same overrides as the search's, at the config's own values of the searched keys)."""
    cfg = compose_config(overrides, conf_dir)
    path = run_identity(cfg)[2]
    record = read_record(path)
    if record is None or record.get("status") != "done":
        raise FileNotFoundError(f"the default trial {' '.join(overrides)} has no done record at {path}: run it "
                                "(experiments/tune.sh does) before saving the search")
    settings = {key: OmegaConf.select(cfg, key) for key in params}
    return objective(record), {k: _round(v) for k, v in settings.items()}, str(path)


def finished_trials(sweeper, scheduled: int | None = None) -> int:
    """Trials of the search's Optuna study that finished (complete or failed: each spent one of the budget).

    ``sweeper``: the sweep's ``hydra.sweeper`` config. Its study is read from ``storage`` when the search persists
    it (``experiments/tune.sh``: a resumed search holds the trials of every attempt); without a storage the study
    lived in memory and ``scheduled`` (the sweep's ``n_trials``) is the answer.
    """
    if not sweeper.get("storage"):
        return int(scheduled if scheduled is not None else sweeper.n_trials)
    storage = str(sweeper.storage)
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        return 0  # never create the database here: the sweeper does, with the study
    try:
        study = optuna.load_study(study_name=str(sweeper.study_name), storage=storage)
    except KeyError:  # no such study in this storage yet
        return 0
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return sum(t.state in done for t in study.get_trials(deepcopy=False))


def tuned_settings(sweep_dir: Path, conf_dir: Path = CONF_DIR, defaults: list[list[str]] | None = None
                   ) -> tuple[str, str, dict, dict, dict]:
    """``(experiment, head, settings, search, group)`` of a finished search.

    ``defaults``: the head's default settings run as trials of the same budget on the same tuning split (each a
    list of extra overrides, ``[]`` = the protocol's); the best of the search's trials and these is saved, and the
    search's record says which won (issue 20: tuned heads scored below their own defaults).

    Raises:
        FileNotFoundError: the folder lacks ``optimization_results.yaml`` or its first trial's ``.hydra/`` files
            (the search did not finish, or is not an Optuna sweep).
        ValueError: the search changed a key outside ``head.*`` / ``experiment.*``, or one that would change the
            group (a data or protocol setting).
    """
    results = sweep_dir / "optimization_results.yaml"
    job = sweep_dir / "0" / ".hydra"
    for path in (results, job / "config.yaml", job / "hydra.yaml"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {sweep_dir} a finished `python run.py -m "
                                    "tuning=search ...` sweep folder?")
    best = OmegaConf.to_container(OmegaConf.load(results))
    cfg = OmegaConf.load(job / "config.yaml")
    hydra = OmegaConf.load(job / "hydra.yaml").hydra
    experiment, head = str(hydra.runtime.choices["experiment"]), str(cfg.head.name)
    settings: dict = {}
    # every searched key: the sweeper's params and those given as ranges on the command line (tune.sh's)
    params = {**(hydra.sweeper.params or {}), **{k: None for k in best["best_params"]}}
    group_overrides = []
    for override in hydra.overrides.task:
        if not override.lstrip("+~").startswith(("hydra", *params)):
            group_overrides.append(override)
        key, _, text = override.partition("=")
        key = key.lstrip("+~")
        # the search's fixed head and reduced-phase overrides travel with its settings; data and protocol
        # overrides (experiment.arch, dataset.*) are its group
        if key.startswith(TUNABLE_PREFIXES) and is_variant_key(key) and key not in params and not any(
                f in text for f in ("interval(", "choice(", "range(", "tag(")):
            settings[key] = yaml.safe_load(text)  # 0.001 -> float, adam -> str
    for key, value in best["best_params"].items():
        if not key.startswith(TUNABLE_PREFIXES):
            raise ValueError(f"the search tuned {key!r}: only head.* and experiment.* settings can be saved")
        settings[key] = _round(value)
    changed = [k for k in settings if not is_variant_key(k)]
    if changed:
        raise ValueError(f"the search changed {changed}: a tuned setting may not change the run's group (data, "
                         "backbone, arch, protocol); search the head's settings only")
    group = group_of(compose_config(group_overrides, conf_dir), conf_dir)
    chosen, best_value, tried = "search", best["best_value"], []
    for extra in defaults or []:
        value, default_settings, path = _default_trial(group_overrides + list(extra), params, conf_dir)
        tried.append({"overrides": " ".join(extra) or "(protocol)", "value": value, "record": path})
        if value > best_value:
            chosen, best_value = f"default: {' '.join(extra) or '(protocol)'}", value
            settings.update(default_settings)
    search = {"best_value": best_value, "search_best_value": best["best_value"], "chosen": chosen,
              "defaults": tried, "n_trials": finished_trials(hydra.sweeper, hydra.sweeper.n_trials) + len(tried),
              "sampler": hydra.sweeper.sampler.get("_target_"), "sampler_seed": hydra.sweeper.sampler.get("seed"),
              "fraction": cfg.tuning.fraction, "tuning_seed": cfg.tuning.seed, "monitor": cfg.experiment.monitor,
              "seed": cfg.seed, "family": cfg.experiment.family, "episodes": cfg.episodes}
    return experiment, head, settings, search, group


def render(experiment: str, head: str, settings: dict, search: dict, sweep_dir: Path, group: dict | None = None) -> str:
    """The YAML text of ``<out>/<experiment>/<head>/<group key>.yaml`` (:mod:`glai.tuned` reads it)."""
    # family C: the tuned runs' episodes come from the classes the search never drew from
    tuning = {"role": "held_out" if search["family"] == "C" else "none"}
    if search["family"] == "C":
        tuning.update(fraction=search["fraction"], seed=search["tuning_seed"])
    body = {"experiment": experiment, "head": head, "group": dict(group or {}), "settings": settings,
            "tuning": tuning, "search": {k: search[k] for k in ("best_value", "chosen", "search_best_value",
                                                                "defaults", "n_trials", "sampler", "sampler_seed",
                                                                "monitor", "seed", "fraction", "tuning_seed")}}
    sign = "" if search["monitor"] != "val_loss" else " (minus the loss)"
    header = (
        f"# Tuned settings of experiment={experiment} head={head} (tuning=best applies them to runs of this group),\n"
        "# written by\n"
        f"# scripts/save_tuned.py {sweep_dir} on {datetime.date.today().isoformat()}:\n"
        f"# {search['n_trials']} trials ({len(search.get('defaults') or [])} of them the head's defaults, then "
        f"{search['sampler']}, seed {search['sampler_seed']}; chosen: {search.get('chosen', 'search')}) on run seed "
        f"{search['seed']}, scored on the tuning split\n"
        + (f"# ({search['fraction']:g} of train, tuning.seed {search['tuning_seed']}; never the validation split); "
           if search["family"] != "C" else
           f"# ({search['episodes']} episodes from {search['fraction']:g} of the pool's classes or rows, tuning.seed "
           f"{search['tuning_seed']}; the tuned runs draw from the rest: tuning.role held_out);\n# ")
        + f"best {search['monitor']}{sign}: {search['best_value']:.4g}.\n"
        "# group: the settings that differ from the unmodified experiment config ({} = its own data)\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="the search's Hydra sweep folder")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("GLAI_TUNED_DIR", "results/tuned")),
                        help="tuned settings folder (default: GLAI_TUNED_DIR or %(default)s)")
    parser.add_argument("--conf", type=Path, default=CONF_DIR, help="config folder (default: %(default)s)")
    parser.add_argument("--default", action="append", default=None, metavar="OVERRIDES",
                        help="a default trial of the same budget (space-separated overrides, '' = the protocol's); "
                             "repeatable: the best of the search and these is saved")
    parser.add_argument("--finished", nargs=2, metavar=("STORAGE", "STUDY"),
                        help="print how many trials of this Optuna study finished (0 without one) and exit")
    parser.add_argument("--find", nargs="+", metavar="OVERRIDE",
                        help="print the tuned settings file of this run's group and exit 0, or exit 1 without one")
    args = parser.parse_args(argv)
    if args.finished:
        storage, study = args.finished
        print(finished_trials(OmegaConf.create({"storage": storage, "study_name": study})))
        return 0
    if args.find:
        cfg = compose_config([*args.find, f"tuned_dir={args.out}"], args.conf)
        path, group = find_tuned(cfg, args.conf)
        print(path if path else f"no tuned settings for this group ({group or 'the experiment own data'})")
        return 0 if path else 1
    if args.sweep_dir is None:
        parser.error("give SWEEP_DIR, or --find OVERRIDE...")
    try:
        defaults = [d.split() for d in args.default] if args.default else None
        experiment, head, settings, search, group = tuned_settings(args.sweep_dir, args.conf, defaults)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        print(f"save_tuned: {err}", file=sys.stderr)
        return 1
    out = tuned_path(args.out, experiment, head, group)
    atomic_write_text(out, render(experiment, head, settings, search, args.sweep_dir, group))
    print(f"{out}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
