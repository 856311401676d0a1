"""Tables and figures of the method family beyond the paper (docs/method.md, The method family): the l0
activation penalty (EAT), estimator-only re-training and combining estimators (GreenLightningAI).

- ``sparsity``: per experiment, head and l0 lambda, accuracy, firing ratio, active paths per sample and step
  time (the protocol run is lambda = 0); ``fig_sparsity_<experiment>.png``: accuracy against firing ratio.
- ``retrain``: per experiment, each arm's accuracy on old, new and all validation rows and its seconds; the
  share of new rows with an activation pattern no old row has.
- ``combine``: per experiment and shard split (IID, non-IID by class), GLAI and the MLP trained on all rows,
  their shard models and the average of the shard models.
- ``fig_retrain.png`` and ``fig_combine.png``: the same, as bars.

Every cell is a mean ± std over the seeds of one setting (seedless fingerprint): runs of other settings or
environments under the same label get rows of their own, marked ``#<fingerprint>``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from glai.results.formatting import mean_std_cell, write_table
from glai.results.groups import format_value
from glai.results.identity import short
from glai.results.records import record_config, record_fingerprint

__all__ = ["combine_table", "is_search", "is_study", "retrain_table", "sparsity_figures", "sparsity_table",
           "study_figures", "write_family"]

L0_KEYS = {"head.l0_lambda", "head.l0_sigma"}
ARMS = {"mlp_old": "MLP, old data", "glai_old": "GLAI, old data",
        "mlp_new": "MLP fine-tuned on new rows", "mlp_all": "MLP fine-tuned on old + new rows",
        "glai_new": "GLAI estimator re-trained on new rows", "glai_all": "GLAI estimator re-trained on old + new rows"}


def _cfg(rec: Mapping, dotted: str, default=None):
    node = record_config(rec) or {}
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def is_study(rec: Mapping) -> bool:
    """A method-family study record (``study.name`` retrain or combine), not one head's run."""
    return _cfg(rec, "study.name", "standard") != "standard"


def is_search(rec: Mapping) -> bool:
    """A hyperparameter search's trial (``tuning.role=search``): scored on a tuning split, not validation."""
    return _cfg(rec, "tuning.role", "none") == "search"


def _done(records) -> list[Mapping]:
    return [r for r in records if r.get("status") == "done"]


def _pct(values) -> str:
    return mean_std_cell([100.0 * v for v in values if v is not None])


def _by_setting(groups: Mapping[tuple, list[Mapping]]) -> dict[tuple, list[Mapping]]:
    """Each key's records split by setting (seedless fingerprint), so a row never averages runs of
    different settings or environments; when one key holds several, its first element gets ``#<fingerprint>``."""
    out = {}
    for key, recs in groups.items():
        by_fp = defaultdict(list)
        for r in recs:
            by_fp[record_fingerprint(r, seed=False) or "?"].append(r)
        for fp, rs in by_fp.items():
            out[key if len(by_fp) == 1 else (f"{key[0]} #{short(fp)}", *key[1:])] = rs
    return out


def sparsity_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """Rows (experiment, head, lambda) of the experiments that have an l0 run (records as grouped by
    :func:`glai.results.groups.assign_groups`: ``_base`` and ``_diff``); runs that differ from the protocol
    in anything but the l0 keys are left out."""
    runs = [r for r in _done(records) if not (is_study(r) or is_search(r)) and r.get("head") in ("mlp", "glai")
            and set(r.get("_diff") or {}) <= L0_KEYS and r.get("_base")]
    experiments = sorted({r["_base"] for r in runs if (_cfg(r, "head.l0_lambda", 0.0) or 0.0) > 0})
    cells = defaultdict(list)
    for r in runs:
        if r["_base"] in experiments:
            lam = _cfg(r, "head.l0_lambda", 0.0) or 0.0
            sigma = _cfg(r, "head.l0_sigma") if lam > 0 else None
            cells[(r["_base"], r["head"], float(lam), sigma)].append(r)
    rows = []
    cells = _by_setting(cells)
    for (exp, head, lam, sigma), recs in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        m = [r["metrics"] for r in recs]
        firing = [float(np.mean(x["firing_ratio"])) for x in m if x.get("firing_ratio")]
        rows.append({"Exp": exp, "Head": "GLAI" if head == "glai" else "MLP", "lambda": format_value(lam),
                     "sigma": "" if sigma is None else format_value(sigma), "n": len(recs),
                     "BVS": mean_std_cell([x["bvs"] for x in m]),
                     "Firing ratio [%]": _pct(firing),
                     "Active paths / sample": mean_std_cell([x.get("active_paths_per_sample") for x in m
                                                             if x.get("active_paths_per_sample") is not None]),
                     "Step [ms]": mean_std_cell([x.get("step_ms") for x in m if x.get("step_ms")]),
                     "Time [s]": mean_std_cell([r["cost"]["total_s"] for r in recs]),
                     "_firing": float(np.mean(firing)) if firing else np.nan,
                     "_bvs": float(np.mean([x["bvs"] for x in m]))})
    return pd.DataFrame(rows)


def sparsity_figures(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``fig_sparsity_<experiment>.png``: mean BVS against mean firing ratio, one line per head over lambda."""
    if table.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glai.results.figures import _save, slug

    paths = []
    for exp, rows in table.groupby("Exp"):
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for head, hrows in rows.groupby("Head"):
            hrows = hrows.sort_values("_firing")
            ax.plot(100 * hrows["_firing"], hrows["_bvs"], marker="o", label=head)
            for _, r in hrows.iterrows():
                ax.annotate(f"λ={r['lambda']}", (100 * r["_firing"], r["_bvs"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("firing ratio of the hidden units [%] (GLAI: its path selector)")
        ax.set_ylabel("BVS (validation accuracy, %)")
        ax.set_title(f"{exp}: l0 activation penalty (EAT), mean over seeds", fontsize=9)
        ax.legend(fontsize=8)
        paths.append(_save(fig, out_dir / f"fig_sparsity_{slug(exp)}.png"))
    return paths


def retrain_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """Rows (experiment, arm) of the re-training studies."""
    groups = defaultdict(list)
    for r in _done(records):
        if _cfg(r, "study.name") == "retrain":
            groups[(r.get("_label") or r["experiment"],)].append(r)
    rows = []
    for (exp,), recs in sorted(_by_setting(groups).items()):
        studies = [r["metrics"]["study"] for r in recs]
        unseen = _pct([s["unseen_pattern_fraction"] for s in studies])
        dist_new = _pct([s["pattern_distance"]["new"] for s in studies])
        dist_old = _pct([s["pattern_distance"]["old_val"] for s in studies])
        for arm, name in ARMS.items():
            phase, key = ("old", arm.split("_")[0]) if arm.endswith("_old") else ("arms", arm)
            vals = [s[phase][key] for s in studies]
            rows.append({"Exp": exp, "Model": name, "n": len(vals),
                         "Old classes [%]": mean_std_cell([v["acc_old"] for v in vals]),
                         "New classes [%]": mean_std_cell([v["acc_new"] for v in vals]),
                         "All [%]": mean_std_cell([v["acc_all"] for v in vals]),
                         "Time [s]": mean_std_cell([v["time_s"] for v in vals]),
                         "Epochs": mean_std_cell([v["epochs"] for v in vals]),
                         "New rows with unseen patterns [%]": unseen if arm == "glai_old" else "",
                         "Nearest old pattern: new / old-val rows [% units]":
                             f"{dist_new} / {dist_old}" if arm == "glai_old" else ""})
    return pd.DataFrame(rows)


def combine_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """Rows (experiment, shard split, model) of the combination studies."""
    groups = defaultdict(list)
    for r in _done(records):
        if _cfg(r, "study.name") == "combine":
            split = _cfg(r, "study.shard_split")
            groups[(r["experiment"], "IID" if split == "iid" else "non-IID (by class)", _cfg(r, "study.shards"))
                   ].append(r)
    rows = []
    for (exp, split, k), recs in sorted(_by_setting(groups).items()):
        studies = [r["metrics"]["study"] for r in recs]
        for model, label in (("glai", "GLAI (one selector, one kept path set)"), ("mlp", "MLP (same init)")):
            v = [s[model] for s in studies]
            rows.append({"Exp": exp, "Shards": f"{k} {split}", "Model": label, "n": len(v),
                         "All rows [%]": mean_std_cell([x["all"] for x in v]),
                         "Shard models, mean [%]": mean_std_cell([float(np.mean([s["acc"] for s in x["shards"]]))
                                                                  for x in v]),
                         "Combined (weighted average) [%]": mean_std_cell([x["combined"] for x in v]),
                         "Combined - all rows [pp]": mean_std_cell([x["combined"] - x["all"] for x in v])})
    return pd.DataFrame(rows)


def _studies(records, name: str) -> dict[str, list[Mapping]]:
    groups = defaultdict(list)
    for r in _done(records):
        if _cfg(r, "study.name") == name:
            key = r["experiment"] if name == "retrain" else f"{r['experiment']} ({_cfg(r, 'study.shard_split')})"
            groups[(key,)].append(r)
    return {key[0]: [r["metrics"]["study"] for r in recs] for key, recs in sorted(_by_setting(groups).items())}


def study_figures(records: Sequence[Mapping], out_dir: Path) -> list[Path]:
    """``fig_retrain.png`` (per experiment and arm: old- and new-class accuracy and seconds) and
    ``fig_combine.png`` (per experiment and split: all rows, mean shard model, combined; GLAI and MLP)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glai.results.figures import _save

    paths = []
    retrain = _studies(records, "retrain")
    if retrain:
        arms = ["mlp_new", "mlp_all", "glai_new", "glai_all"]
        fig, axes = plt.subplots(1, len(retrain), figsize=(4.2 * len(retrain), 3.4), squeeze=False)
        for ax, (exp, studies) in zip(axes[0], retrain.items(), strict=True):
            xs = np.arange(len(arms))
            for j, (key, label) in enumerate((("acc_old", "old classes"), ("acc_new", "new classes"))):
                vals = [np.mean([s["arms"][a][key] for s in studies]) for a in arms]
                ax.bar(xs + (j - 0.5) * 0.38, vals, 0.38, label=label)
            secs = [np.mean([s["arms"][a]["time_s"] for s in studies]) for a in arms]
            ax.set_xticks(xs, [f"{a.replace('_', ' on ')}\n{t:.1f} s" for a, t in zip(arms, secs, strict=True)],
                          fontsize=7)
            ax.set_ylim(0, 100)
            ax.set_title(exp, fontsize=9)
            ax.set_ylabel("validation accuracy [%]")
        axes[0][0].legend(fontsize=7)
        fig.suptitle("Learning new classes: MLP fine-tuning vs GLAI estimator-only re-training (new / old + new "
                     "rows; seconds below)", fontsize=9)
        paths.append(_save(fig, out_dir / "fig_retrain.png"))
    combine = _studies(records, "combine")
    if combine:
        fig, axes = plt.subplots(1, len(combine), figsize=(3.2 * len(combine), 3.2), squeeze=False)
        for ax, (exp, studies) in zip(axes[0], combine.items(), strict=True):
            kinds = [("all", "all rows"), ("shards", "shard mean"), ("combined", "combined")]
            xs = np.arange(2)
            for j, (key, label) in enumerate(kinds):
                vals = [np.mean([np.mean([sh["acc"] for sh in s[m]["shards"]]) if key == "shards" else s[m][key]
                                 for s in studies]) for m in ("glai", "mlp")]
                ax.bar(xs + (j - 1) * 0.27, vals, 0.27, label=label)
            ax.set_xticks(xs, ["GLAI", "MLP"])
            ax.set_ylim(0, 100)
            ax.set_title(exp, fontsize=8)
        axes[0][0].set_ylabel("validation accuracy [%]")
        axes[0][0].legend(fontsize=7)
        fig.suptitle("Combining shard models by weighted averaging", fontsize=9)
        paths.append(_save(fig, out_dir / "fig_combine.png"))
    return paths


def write_family(records: Sequence[Mapping], out_dir: str | Path, figures: bool = True) -> list[Path]:
    """Write the three tables (md, tex, csv) and the sparsity figures under ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    written = []
    sparsity = sparsity_table(records)
    shown = sparsity.drop(columns=[c for c in sparsity.columns if c.startswith("_")]) if len(sparsity) else sparsity
    written += write_table(shown, out_dir, "sparsity",
                           "l0 activation penalty (EAT): head.l0_lambda on the MLP and on GLAI's reduced "
                           "MLP; firing ratio = active hidden units per sample on the validation set (GLAI: its "
                           "path selector), active paths = kept paths with an active gate per validation sample; "
                           "mean ± std over seeds (lambda 0 = the protocol run).")
    written += write_table(retrain_table(records), out_dir, "retrain",
                           "Estimator-only re-training (GreenLightningAI): old phase on the old classes, then each arm "
                           "learns the new rows from its old model, early-stopped on all validation rows; "
                           "accuracy on old-class, new-class and all validation rows, seconds of that phase "
                           "(GLAI's include the gates of rows it had not seen); mean ± std over seeds.")
    written += write_table(combine_table(records), out_dir, "combine",
                           "Combining estimators (GreenLightningAI): K shard models from one conversion (GLAI) or one "
                           "initialisation (MLP), averaged with weights n_k/N; validation accuracy; mean ± std "
                           "over seeds.")
    if figures:
        written += sparsity_figures(sparsity, out_dir)
        written += study_figures(records, out_dir)
    return written
