"""Choose GLAI's structural stop on the tuning split (docs/method.md, Path distance): the path-distance threshold at
which ``experiment.reduced_epochs_mode=structure`` ends the reduced phase, never chosen on the validation split.

Usage: python scripts/structure_threshold.py OVERRIDE... [--candidates 5] [--out DIR]
       (e.g. ``experiment=offline/A1``; the data overrides of your own data go here too)

1. On the tuning split (``tuning=search``: a stratified 20 % of train; family C: of the pool's classes), GLAI runs its
   reduced phase for the experiment's cap (``experiment.reduced_epochs``, mode ``fixed``) with the path distance
   m_t tracked: the curve of how much the activation patterns still change per epoch.
2. The candidates are the m_t values at ``--candidates`` epochs spread over the cap (the threshold just above m_t at
   epoch k ends the phase there); each is run as ``reduced_epochs_mode=structure`` on the same tuning split.
3. The best tuning score wins (ties: the larger threshold, the earlier stop). Thresholds that stop at the same epoch
   (m_t need not fall every epoch) run the same reduced phase: the output says so (``same_stop_as``). The choice
   and every candidate's score are written to ``<out>/<experiment>/glai/<group key>.structure.yaml`` (``--out`` default
   ``GLAI_TUNED_DIR`` or ``results/tuned``) and the override to use is printed:
   ``experiment.reduced_epochs_mode=structure head.structure_threshold=<t>``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hydra.errors import HydraException  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from glai.config import compose_config, compose_error_line  # noqa: E402
from glai.errors import ConfigError  # noqa: E402
from glai.results.records import atomic_write_text  # noqa: E402
from glai.runner import objective, run  # noqa: E402
from glai.tuned import group_key, group_of  # noqa: E402


def candidate_thresholds(path_distance: list, k: int) -> list[float]:
    """Thresholds just above the curve's value at ``k`` epochs spread over it (m_t of epoch e ends the phase there),
    in decreasing order (earlier stops first); m_t entries that are None (epoch 0) are skipped."""
    values = [(e, v) for e, v in enumerate(path_distance) if v is not None and math.isfinite(v) and v > 0]
    if not values:
        raise ValueError("the reduced phase recorded no path distance: set structure_samples > 0")
    picks = sorted({values[round(i * (len(values) - 1) / max(1, k - 1))] for i in range(k)})
    return sorted({float(f"{v * 1.0001:.6g}") for _, v in picks}, reverse=True)


def choose(overrides: list[str], k: int = 5, out: Path | None = None) -> dict:
    """Run the curve and the candidates on the tuning split; returns ``{"threshold", "scores", "file"}``."""
    base = [*overrides, "head=glai", "tuning=search", "verbose=false"]
    if int(compose_config(base).structure_samples) <= 0:
        # checked before the curve run: without tracked samples it records no path distance to choose from
        raise ConfigError("structure_samples=0: the structural stop is chosen on the path distance m_t, which is "
                          "tracked on structure_samples rows. Fix: drop structure_samples=0 (the default tracks 512)")
    curve = run(compose_config([*base, "experiment.reduced_epochs_mode=fixed"]))
    if curve.get("status") != "done":
        raise RuntimeError(f"the curve run failed: {curve.get('error')}")
    thresholds = candidate_thresholds(curve["metrics"]["structure"]["path_distance"], k)
    scores = []
    for t in thresholds:
        rec = run(compose_config([*base, "experiment.reduced_epochs_mode=structure", f"head.structure_threshold={t}"]))
        scores.append({"threshold": t, "score": objective(rec), "reduced_epochs": rec["metrics"]["reduced_epochs"]})
    for i, s in enumerate(scores):
        # m_t need not fall every epoch: a larger threshold can stop where a smaller one does, the same run
        twin = next((o for o in scores[:i] if o["reduced_epochs"] == s["reduced_epochs"]), None)
        if twin is not None:
            s["same_stop_as"] = twin["threshold"]
    best = max(scores, key=lambda s: (s["score"], s["threshold"]))
    cfg = compose_config([*overrides, "head=glai"])
    group = group_of(cfg)
    out = Path(out or os.environ.get("GLAI_TUNED_DIR", "results/tuned"))
    path = out / str(cfg.experiment.name) / "glai" / f"{group_key(group)}.structure.yaml"
    atomic_write_text(path, "# The structural stop chosen on the tuning split (scripts/structure_threshold.py)\n"
                      + yaml.safe_dump({"experiment": str(cfg.experiment.name), "group": group,
                                        "threshold": best["threshold"], "candidates": scores,
                                        "cap": int(cfg.experiment.reduced_epochs)}, sort_keys=False))
    return {"threshold": best["threshold"], "scores": scores, "file": str(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the run (experiment=..., data)")
    parser.add_argument("--candidates", type=int, default=5, help="thresholds tried (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="folder of the choice (default GLAI_TUNED_DIR)")
    args = parser.parse_args(argv)
    try:
        result = choose(args.overrides, args.candidates, args.out)
    except (ConfigError, ValueError, RuntimeError, HydraException, OmegaConfBaseException) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        line = compose_error_line(err) if isinstance(err, (HydraException, OmegaConfBaseException)) else err
        print(f"structure_threshold: {line}", file=sys.stderr)
        return 2
    for s in result["scores"]:
        same = (f" -- the same stop as threshold {s['same_stop_as']:.4g}: one reduced phase, not two candidates"
                if "same_stop_as" in s else "")
        print(f"# threshold {s['threshold']:.4g}: tuning score {s['score']:.4g}, {s['reduced_epochs']} reduced epochs"
              f"{same}", file=sys.stderr)
    distinct = len({s["reduced_epochs"] for s in result["scores"]})
    if distinct < len(result["scores"]):
        print(f"# {len(result['scores'])} thresholds, {distinct} distinct stops: m_t rises again between them",
              file=sys.stderr)
    print(f"# saved {result['file']}", file=sys.stderr)
    print(f"experiment.reduced_epochs_mode=structure head.structure_threshold={result['threshold']:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
