"""Write the best settings of a finished search to ``conf/tuned/best/<experiment>/<head>.yaml`` (SPEC 12).

Usage: python scripts/save_tuned.py SWEEP_DIR [--conf conf]

SWEEP_DIR is the Hydra sweep folder of ``python run.py -m tuning=search ...`` (``experiments/tune.sh`` names it
``results/tuning/sweeps/<experiment>/<head>``): its ``optimization_results.yaml`` (the Optuna sweeper's best
trial) and its first trial's ``.hydra/`` (the search's config and overrides). The file written sets the best
values, the search's fixed head and experiment overrides (e.g. GLAI's ``experiment.reduced_epochs_mode=auto``),
``tag: tuned`` and ``tuning.role: none``; ``python run.py tuning=best experiment=<experiment> head=<head>``
then runs them.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from glai.results.records import atomic_write_text

#: Keys a search may set: the head's and the experiment's (never data, seed or paths).
TUNABLE_PREFIXES = ("head.", "experiment.")


def _round(value):
    """Floats to 3 significant digits: tuned settings are printed in table labels."""
    return float(f"{value:.3g}") if isinstance(value, float) else value


def tuned_settings(sweep_dir: Path) -> tuple[str, str, dict, dict]:
    """``(experiment, head, settings, search)`` of a finished search.

    Raises:
        FileNotFoundError: the folder lacks ``optimization_results.yaml`` or its first trial's ``.hydra/`` files
            (the search did not finish, or is not an Optuna sweep).
        ValueError: the search changed a key outside ``head.*`` / ``experiment.*``.
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
    params = hydra.sweeper.params or {}
    for override in hydra.overrides.task:
        key, _, text = override.partition("=")
        key = key.lstrip("+~")
        if key.startswith(TUNABLE_PREFIXES) and key not in params and not any(
                f in text for f in ("interval(", "choice(", "range(", "tag(")):
            settings[key] = yaml.safe_load(text)  # 0.001 -> float, adam -> str
    for key, value in best["best_params"].items():
        if not key.startswith(TUNABLE_PREFIXES):
            raise ValueError(f"the search tuned {key!r}: only head.* and experiment.* settings can be saved")
        settings[key] = _round(value)
    search = {"best_value": best["best_value"], "n_trials": hydra.sweeper.n_trials,
              "sampler": hydra.sweeper.sampler.get("_target_"), "sampler_seed": hydra.sweeper.sampler.get("seed"),
              "fraction": cfg.tuning.fraction, "tuning_seed": cfg.tuning.seed, "monitor": cfg.experiment.monitor,
              "seed": cfg.seed, "family": cfg.experiment.family, "episodes": cfg.episodes}
    return experiment, head, settings, search


def render(experiment: str, head: str, settings: dict, search: dict, sweep_dir: Path) -> str:
    """The YAML text of ``conf/tuned/best/<experiment>/<head>.yaml``."""
    nested: dict = {}
    for key, value in settings.items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    # family C: the tuned runs' episodes come from the classes the search never drew from
    tuning = nested.setdefault("tuning", {})
    tuning["role"] = "held_out" if search["family"] == "C" else "none"
    if search["family"] == "C":
        tuning.update(fraction=search["fraction"], seed=search["tuning_seed"])
    nested["tag"] = "tuned"
    sign = "" if search["monitor"] != "val_loss" else " (minus the loss)"
    header = (
        "# @package _global_\n"
        f"# Tuned settings of experiment={experiment} head={head} (tuning=best selects them), written by\n"
        f"# scripts/save_tuned.py {sweep_dir} on {datetime.date.today().isoformat()}:\n"
        f"# {search['n_trials']} trials of {search['sampler']} (seed {search['sampler_seed']}) on run seed "
        f"{search['seed']}, scored on the tuning split\n"
        + (f"# ({search['fraction']:g} of train, tuning.seed {search['tuning_seed']}; never the validation split); "
           if search["family"] != "C" else
           f"# ({search['episodes']} episodes from {search['fraction']:g} of the pool's classes or rows, tuning.seed "
           f"{search['tuning_seed']}; the tuned runs draw from the rest: tuning.role held_out);\n# ")
        + f"best {search['monitor']}{sign}: {search['best_value']:.4g}.\n"
    )
    return header + OmegaConf.to_yaml(OmegaConf.create(nested))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the search's Hydra sweep folder")
    parser.add_argument("--conf", type=Path, default=Path("conf"), help="config folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        experiment, head, settings, search = tuned_settings(args.sweep_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"save_tuned: {err}", file=sys.stderr)
        return 1
    out = args.conf / "tuned" / "best" / experiment / f"{head}.yaml"
    atomic_write_text(out, render(experiment, head, settings, search, args.sweep_dir))
    print(f"{out}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
