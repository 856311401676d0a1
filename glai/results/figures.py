"""Run records -> the paper's Figures 3-5 as PNG (matplotlib, Agg backend).

- Figure 3 (paper 3.6): per experiment, one MLP run: path distance m_t and mean absolute weight change
  (right axes) with train/val loss (left axis) per epoch, from ``metrics.structure`` and ``metrics.curves``.
- Figure 4 (paper 4.2): per experiment with GLAI runs at >= 2 values of rho: median BVS of GLAI vs rho,
  and the MLP's median BVS as a horizontal line.
- Figure 5 (paper 4.3): GLAI's time per phase (reduced MLP, conversion, estimator) divided by the MLP's
  total time of the same (experiment, seed), mean over seeds, stacked bars per experiment.

Each figure's numbers are also written as a CSV beside it.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from glai.results import stats as st  # noqa: E402
from glai.results.formatting import slug  # noqa: E402
from glai.results.groups import format_value  # noqa: E402
from glai.results.records import RECORD_MODE, atomic_write_text  # noqa: E402

__all__ = ["estimator_curves", "figure3", "figure4", "figure5", "figure_views", "slug", "write_figures"]

PHASES = ("reduced_mlp", "conversion", "estimator")
PHASE_LABEL = {"reduced_mlp": "reduced MLP training", "conversion": "conversion",
               "estimator": "GLAI training"}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.chmod(tmp, RECORD_MODE)  # readable by collaborators, like the records and tables
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values or []], dtype=np.float64)


def _pick_run(records: Sequence[Mapping], exp: str, rho) -> dict | None:
    """The protocol MLP run of ``exp`` with structure data and the lowest seed."""
    cands = [r for r in st.select(records, experiment=exp, head="mlp", tag="", rho=rho, status="done")
             if (r.get("metrics") or {}).get("structure", {}).get("path_distance")]
    return min(cands, key=lambda r: r["seed"]) if cands else None


def figure3(record: Mapping, path: Path) -> Path:
    """Path distance, weight change and losses per epoch of one MLP run (paper Figure 3)."""
    metrics = record["metrics"]
    curves = metrics.get("curves") or {}
    structure = metrics.get("structure") or {}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lines = []
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        y = _floats(curves.get(key))
        if y.size:
            label = key.replace("_", " ")
            lines += ax.plot(np.arange(1, y.size + 1), y, style, color="tab:blue", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    n_epochs = max((len(curves.get(k) or []) for k in ("train_loss", "val_loss")), default=0)
    right = ax.twinx()
    right2 = ax.twinx()
    right2.spines["right"].set_position(("axes", 1.2))
    for axis, key, color, label in ((right, "path_distance", "tab:red", "path distance $m_t$"),
                                    (right2, "weight_change", "tab:green", "mean |weight change|")):
        y = _floats(structure.get(key))
        if y.size:
            # structure[k] is the change up to epoch (n_epochs - len + 1 + k): len = n_epochs + 1 starts at 0
            start = max(n_epochs - y.size + 1, 0)
            lines += axis.plot(np.arange(start, start + y.size), y, "o-", ms=3, color=color, label=label)
        axis.set_ylabel(label, color=color)
        axis.tick_params(axis="y", colors=color)
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    ax.set_title(f"{record['experiment']}: MLP seed {record['seed']} (path distance, paper Fig. 3)")
    return _save(fig, path)


def _median_bvs(records) -> float | None:
    vals = [r["metrics"]["bvs"] for r in records if (r.get("metrics") or {}).get("bvs") is not None]
    return float(np.median(vals)) if vals else None


def figure4(
    records: Sequence[Mapping], path: Path, rho: Mapping | None = None
) -> tuple[Path, pd.DataFrame] | None:
    """Median BVS of GLAI vs rho with the MLP's median as a line, one panel per experiment (paper Figure 4).

    Returns:
        (path, data) or None if no experiment has GLAI runs at >= 2 values of rho.
    """
    glai = st.select(records, head="glai", tag="", status="done")
    by_exp: dict[str, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for r in glai:
        by_exp[r["experiment"]][float(r["rho"])].append(r)
    exps = sorted((e for e, d in by_exp.items() if len(d) >= 2), key=st.experiment_order)
    if not exps:
        return None
    rows = []
    fig, axes = plt.subplots(1, len(exps), figsize=(4.2 * len(exps), 3.6), squeeze=False)
    for ax, exp in zip(axes[0], exps, strict=True):
        mlp = st.select(records, experiment=exp, head="mlp", tag="", rho=rho, status="done") or \
            st.select(records, experiment=exp, head="mlp", tag="", status="done")
        rhos = sorted(by_exp[exp])
        med = [_median_bvs(by_exp[exp][x]) for x in rhos]
        ax.plot(rhos, med, "o-", color="tab:green", label="GLAI")
        base = _median_bvs(mlp)
        if base is not None:
            ax.axhline(base, color="tab:blue", ls="--", label="original MLP")
        monitor = (by_exp[exp][rhos[0]][0]["metrics"].get("monitor") or "val_acc")
        ax.set_xlabel(r"$\rho$")
        ax.set_ylabel("median best " + ("validation accuracy (%)" if "acc" in monitor else "validation loss"))
        ax.set_title(exp)
        ax.legend(fontsize=8)
        for x, m in zip(rhos, med, strict=True):
            rows.append({"experiment": exp, "rho": x, "glai_median_bvs": m, "n_glai": len(by_exp[exp][x]),
                         "mlp_median_bvs": base, "n_mlp": len(mlp)})
    return _save(fig, path), pd.DataFrame(rows)


def figure5(
    records: Sequence[Mapping], path: Path, rho: Mapping | None = None
) -> tuple[Path, pd.DataFrame] | None:
    """GLAI time per phase over the MLP's total time, stacked bars per experiment (paper Figure 5).

    Returns:
        (path, data) or None if no (experiment, seed) has both a done GLAI and a done MLP run.
    """
    con = st.paired_contrast(records, "glai", "mlp", tag="", rho=rho)
    per: dict[str, list[dict]] = defaultdict(list)
    by_path = {r["_path"]: r for r in records}
    for p in con.pairs:
        glai, mlp = by_path[p.model_path], by_path[p.ref_path]
        phases = (glai.get("cost") or {}).get("time_s") or {}
        t_mlp = float(mlp["cost"]["total_s"])
        per[p.experiment].append({k: float(phases.get(k, 0.0)) / t_mlp for k in PHASES})
    if not per:
        return None
    exps = sorted(per, key=st.experiment_order)
    rows = []
    for exp in exps:
        row = {"experiment": exp, "n_seeds": len(per[exp])}
        for k in PHASES:
            row[k] = float(np.mean([d[k] for d in per[exp]]))
        row["total"] = sum(row[k] for k in PHASES)
        rows.append(row)
    data = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(exps) + 2), 3.8))
    bottom = np.zeros(len(exps))
    for k, color in zip(PHASES, ("tab:orange", "tab:gray", "tab:green"), strict=True):
        ax.bar(exps, data[k].to_numpy(), bottom=bottom, color=color, label=PHASE_LABEL[k])
        bottom += data[k].to_numpy()
    ax.axhline(1.0, color="tab:blue", ls="--", lw=1, label="original MLP")
    ax.set_ylabel("time / MLP time")
    ax.set_title("GLAI training time per phase (paper Fig. 5)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=8)
    return _save(fig, path), data


def _variant(rec: Mapping) -> str:
    head = (rec.get("config") or {}).get("head") or {}
    return (f"{rec.get('head')}: {head.get('optimizer')} lr={format_value(head.get('lr'))} "
            f"wd={format_value(head.get('weight_decay'))}")


def estimator_curves(records: Sequence[Mapping], path: Path) -> tuple[Path, pd.DataFrame] | None:
    """Validation score per epoch of GLAI's estimator under each optimiser setting, one panel per
    experiment, with each MLP variant's BVS as a dashed line (the estimator diagnosis of
    ``experiments/estimator_diagnosis.sh``).

    Every done GLAI record is a line labelled by its estimator's optimiser, lr and weight decay; records of
    one (experiment, variant) are drawn seed by seed.

    Returns:
        (path, per-variant summary: best epoch, BVS, final score, drop from the BVS) or None without GLAI runs.
    """
    done = [r for r in records if r.get("status") == "done"]
    glai = [r for r in done if r.get("head") == "glai"]
    if not glai:
        return None
    exps = sorted({r["experiment"] for r in glai}, key=st.experiment_order)
    fig, axes = plt.subplots(1, len(exps), figsize=(9 * len(exps), 4.8), squeeze=False)
    rows = []
    for ax, exp in zip(axes[0], exps, strict=True):
        mine = sorted((r for r in glai if r["experiment"] == exp), key=lambda r: (_variant(r), r["seed"]))
        monitor = (mine[0].get("metrics") or {}).get("monitor", "val_acc")
        key = "val_acc" if monitor == "val_acc" else "val_loss"
        variants = sorted({_variant(r) for r in mine})
        colours = {v: plt.cm.tab10(k % 10) for k, v in enumerate(variants)}
        labelled = set()
        for rec in mine:
            m, variant = rec["metrics"], _variant(rec)
            ys = _floats(m["curves"][key])
            ax.plot(np.arange(1, len(ys) + 1), ys, marker=".", color=colours[variant], linewidth=1,
                    label=None if variant in labelled else variant)
            labelled.add(variant)
            best = int(np.nanargmax(ys) if monitor == "val_acc" else np.nanargmin(ys))
            rows.append({"experiment": exp, "variant": variant, "seed": rec["seed"],
                         "reduced_bvs": m.get("reduced_bvs"), "first_epoch": float(ys[0]),
                         "best_epoch": best + 1, "bvs": float(ys[best]), "final": float(ys[-1]),
                         "drop_from_bvs": float(ys[best] - ys[-1]), "epochs": len(ys),
                         "stopped_by": m.get("stopped_by")})
        mlp_bvs = defaultdict(list)
        for rec in (r for r in done if r["experiment"] == exp and r.get("head") == "mlp"):
            mlp_bvs[_variant(rec)].append(rec["metrics"]["bvs"])
        for k, (variant, values) in enumerate(sorted(mlp_bvs.items())):
            ax.axhline(float(np.median(values)), linestyle=("--", ":", "-.")[k % 3], linewidth=1.2, color="black",
                       label=f"{variant} (median BVS of {len(values)} seeds)")
        ax.set_xlabel("estimator epoch")
        ax.set_ylabel("validation accuracy [%]" if monitor == "val_acc" else "validation loss")
        ax.set_title(f"{exp}: GLAI estimator per epoch (one line per seed)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path), pd.DataFrame(rows)


def write_figures(records: Sequence[Mapping], out_dir: str | Path, rho: Mapping | None = None) -> list[Path]:
    """Figures 3-5 (and their data as CSV) under ``out_dir``; figures without data are skipped."""
    out_dir = Path(out_dir)
    written = []
    exps = sorted({r.get("experiment") for r in records if r.get("experiment")}, key=st.experiment_order)
    for exp in exps:
        rec = _pick_run(records, exp, rho)
        if rec is not None:
            written.append(figure3(rec, out_dir / f"fig3_path_distance_{slug(exp)}.png"))
    for name, fn in (("fig4_rho_ablation", figure4), ("fig5_time_breakdown", figure5)):
        res = fn(records, out_dir / f"{name}.png", rho=rho)
        if res is not None:
            written.append(res[0])
            csv = out_dir / f"{name}.csv"
            atomic_write_text(csv, res[1].to_csv(index=False))
            written.append(csv)
    return written


_HEAD_MARKERS = {"mlp": "s", "glai": "o", "linear": "^", "mlp_reduced": "v"}


def figure_views(views_raw: Mapping[str, pd.DataFrame], path: Path) -> Path | None:
    """``fig_views.png``: one panel per experiment, each (view, head) a point at its mean BVS and mean
    time to target (seconds until the same-seed MLP of the view reached its BVS; the MLP's point is its own time
    to its best epoch), colour = view, marker = head; a head that never reached the target is drawn on the top
    edge with an x. Returns None without data."""
    frames = [df.assign(view=view) for view, df in views_raw.items() if df is not None and len(df)]
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    for col in ("bvs_mean", "ttt_mean", "ttt_reached"):
        data[col] = pd.to_numeric(data[col], errors="coerce")
    data = data[data["head"].isin(_HEAD_MARKERS) & data["bvs_mean"].notna()]
    exps = sorted(data["experiment"].unique(), key=st.experiment_order)
    if not exps:
        return None
    cols = min(3, len(exps))
    rows = -(-len(exps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.8 * rows), squeeze=False)
    colours = {v: plt.get_cmap("tab10")(k % 10) for k, v in enumerate(views_raw)}
    for ax, exp in zip(axes.flat, exps):
        sub = data[data["experiment"] == exp]
        top = np.nanmax(sub["ttt_mean"].to_numpy()) if sub["ttt_mean"].notna().any() else 1.0
        for row in sub.itertuples():
            reached = bool(row.ttt_reached > 0) and bool(np.isfinite(row.ttt_mean))
            y = row.ttt_mean if reached else top * 1.5
            ax.scatter(row.bvs_mean, y, color=colours[row.view], marker=_HEAD_MARKERS[row.head] if reached else "x",
                       s=40, edgecolor="black" if row.head == "mlp" and reached else None, linewidths=0.6)
        ax.set_yscale("log")
        ax.set_title(str(exp), fontsize=8)
        ax.set_xlabel(f"BVS ({sub['monitor'].iloc[0] or 'score'})", fontsize=8)
        ax.set_ylabel("time to target [s]", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(exps):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=v) for v, c in colours.items()]
    handles += [plt.Line2D([], [], color="grey", marker=m, linestyle="", label=h) for h, m in _HEAD_MARKERS.items()]
    handles.append(plt.Line2D([], [], color="grey", marker="x", linestyle="", label="never reached"))
    fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=7, frameon=False)
    fig.suptitle("Time to the same-seed MLP's BVS against BVS, per view and head (means over seeds)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return _save(fig, path)
