"""Run records -> the paper's Tables 2-5 and a comparison with the paper's numbers (docs/method.md,
Statistics).

Every table is built as a pandas DataFrame of display strings and written as Markdown, LaTeX and CSV
(:func:`write_table`, atomically). Tables 3-5 also get a CSV of raw numbers (``*_values.csv``). Only runs
with status "done" are averaged; failed, running and unreadable records are listed in ``failed_runs.md``;
(experiment, seed) pairs without a usable partner in ``unpaired.md``. A cell without enough runs says so
instead of printing a number (``n=1 (need >= 2)`` for a std, ``too few pairs (n=..)`` for a test).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from glai.results import paper
from glai.results import stats as st
from glai.results.family import is_search, is_study, write_family
from glai.results.formatting import NO_RUNS, fmt_mean_std, fmt_num, markdown, mean_std_cell, write_table
from glai.results.groups import assign_groups, format_value
from glai.results.records import atomic_write_text
from glai.results.transformer import is_family_t, write_transformer

__all__ = [
    "HEAD_LABEL",
    "HEAD_ORDER",
    "comparison_table",
    "comparison_tests_table",
    "failed_runs_markdown",
    "fmt_mean_std",
    "fmt_num",
    "mean_std_cell",
    "speedup_table",
    "table2",
    "table3",
    "tests_table",
    "unpaired_markdown",
    "write_all",
    "write_table",
]

HEAD_ORDER = ("mlp", "mlp_reduced", "glai", "linear")
HEAD_LABEL = {"mlp": "MLP", "mlp_reduced": "MLP reduced", "glai": "GLAI", "linear": "Linear"}


def _head_key(head: str) -> tuple:
    return (HEAD_ORDER.index(head), head) if head in HEAD_ORDER else (len(HEAD_ORDER), str(head))


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return None, None
    arr = np.asarray(vals)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def _get(mapping: Mapping | None, dotted: str, default=None):
    node = mapping
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def _settings_cell(records: Iterable[Mapping], dotted: str) -> str:
    values = sorted({_get(r, dotted) for r in records if _get(r, dotted) is not None}, key=str)
    if not values:
        return NO_RUNS
    return " / ".join(fmt_setting(v) for v in values)


def fmt_setting(v) -> str:
    """A config value as in the paper's Table 2 (``0.001``, ``1e-05``, ``16``)."""
    return format_value(v)


def _score_label(records: Sequence[Mapping]) -> str:
    for rec in records:
        m = rec.get("metrics") or {}
        try:
            return "acc" if st.is_accuracy(m.get("monitor"), m.get("mode")) else "loss"
        except ValueError:
            continue
    return ""


def _done(records, **kw) -> list[dict]:
    return st.select(records, status="done", **kw)


def _experiments(records: Iterable[Mapping]) -> list[str]:
    return sorted({r["experiment"] for r in records if r.get("experiment")}, key=st.experiment_order)




def table2(records: Sequence[Mapping], *, tag="", rho=None) -> pd.DataFrame:
    """Settings and epochs to convergence per experiment (paper Table 2).

    Settings come from the resolved configs of the runs themselves (``config.head.lr`` and
    ``config.head.weight_decay`` of the MLP-type and GLAI runs, ``config.experiment.*``, ``rho``): a cell lists
    every value present; epochs are ``metrics.epochs`` of the MLP and of GLAI's estimator phase, mean ± std
    over the done seeds.
    """
    rows = []
    for exp in _experiments(st.select(records, tag=tag, rho=rho)):
        mlp = _done(records, experiment=exp, head="mlp", tag=tag, rho=rho)
        glai = _done(records, experiment=exp, head="glai", tag=tag, rho=rho)
        anyrun = _done(records, experiment=exp, tag=tag, rho=rho)
        mlp_type = [r for r in anyrun if r.get("head") != "glai"]
        rows.append({
            "Exp": exp,
            "LR": _settings_cell(anyrun, "config.head.lr"),
            "BS": _settings_cell(anyrun, "config.experiment.batch_size"),
            "WD MLP": _settings_cell(mlp_type, "config.head.weight_decay") if mlp_type else NO_RUNS,
            "Epochs MLP": mean_std_cell([_get(r, "metrics.epochs") for r in mlp]),
            "WD GLAI": _settings_cell(glai, "config.head.weight_decay") if glai else NO_RUNS,
            "rho": _settings_cell(glai, "rho") if glai else NO_RUNS,
            "Red. epochs": _settings_cell(glai, "config.experiment.reduced_epochs") if glai else NO_RUNS,
            "Red. epochs run": mean_std_cell([_get(r, "metrics.reduced_epochs") for r in glai]),
            "Epochs GLAI": mean_std_cell([_get(r, "metrics.epochs") for r in glai]),
        })
    return pd.DataFrame(rows, columns=["Exp", "LR", "BS", "WD MLP", "Epochs MLP", "WD GLAI", "rho",
                                       "Red. epochs", "Red. epochs run", "Epochs GLAI"])




def _seed_notes(records: Sequence[Mapping], exp: str, head: str, tag, rho) -> str:
    """Seeds of ``head`` that failed / are running / are missing while another head ran them."""
    all_recs = st.select(records, experiment=exp, tag=tag, rho=rho)
    expected = {r["seed"] for r in all_recs if r.get("seed") is not None}
    mine = [r for r in all_recs if r.get("head") == head]
    notes = []
    bad = defaultdict(list)
    for r in mine:
        if r.get("status") != "done":
            bad[r.get("status")].append(r.get("seed"))
    for status, seeds in sorted(bad.items(), key=lambda kv: str(kv[0])):
        notes.append(f"{status}: seed {', '.join(str(s) for s in sorted(seeds, key=str))}")
    missing = sorted(expected - {r.get("seed") for r in mine}, key=str)
    if missing:
        notes.append(f"missing: seed {', '.join(str(s) for s in missing)}")
    return "; ".join(notes)


def table3(records: Sequence[Mapping], *, tag="", rho=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Epochs, speedup vs the MLP and BVS per experiment x head, mean ± std over seeds (paper Table 3).

    The speedup of a seed is ``T_mlp / T_model`` of the same (experiment, seed) (``cost.total_s``).

    Returns:
        (display table, raw numbers).
    """
    rows, raw = [], []
    selected = st.select(records, tag=tag, rho=rho)
    for exp in _experiments(selected):
        heads = sorted({r["head"] for r in selected if r["experiment"] == exp}, key=_head_key)
        for head in heads:
            done = _done(records, experiment=exp, head=head, tag=tag, rho=rho)
            label = _score_label(done)
            epochs = [_get(r, "metrics.epochs") for r in done]
            bvs = [_get(r, "metrics.bvs") for r in done]
            if head == "mlp":
                ratios = [1.0] * len(done)
                speed = "1×" if done else NO_RUNS
            else:
                con = st.paired_contrast(records, head, "mlp", experiments=[exp], tag=tag, rho=rho)
                ratios = [p.ratio for p in con.pairs]
                speed = mean_std_cell(ratios, suffix="×") if ratios else "no MLP pair"
            ttt = _time_to_target_cell(records, done, exp, tag, rho)
            rows.append({
                "Exp": exp,
                "Head": HEAD_LABEL.get(head, head),
                "n": len(done),
                "Epochs": mean_std_cell(epochs),
                "Speedup": speed,
                "Time to target [s]": ttt,
                "BVS": f"{label}: {mean_std_cell(bvs)}" if done and label else mean_std_cell(bvs),
                "Notes": _seed_notes(records, exp, head, tag, rho),
            })
            em, es = _mean_std(epochs)
            sm, ss = _mean_std(ratios)
            bm, bs = _mean_std(bvs)
            tv = _time_to_target_values(records, done, exp, tag, rho)
            tm, _ = _mean_std(tv[0]) if tv else (math.nan, math.nan)
            raw.append({"experiment": exp, "head": head, "n": len(done), "monitor": label,
                        "epochs_mean": em, "epochs_std": es, "speedup_mean": sm, "speedup_std": ss,
                        "n_speedup_pairs": len(ratios), "bvs_mean": bm, "bvs_std": bs,
                        "time_s_mean": _mean_std([_get(r, "cost.total_s") for r in done])[0],
                        "ttt_mean": tm, "ttt_reached": len(tv[0]) if tv else 0, "ttt_never": tv[1] if tv else 0})
    cols = ["Exp", "Head", "n", "Epochs", "Speedup", "Time to target [s]", "BVS", "Notes"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(raw)


def _time_to_target_values(records, done: Sequence[Mapping], exp: str, tag, rho
                           ) -> tuple[list[float], int, int, int] | None:
    """``(seconds of the runs that reached the same-seed MLP's BVS, how many never did, how many have no MLP, how
    many have no per-epoch curve)``; None when the runs have no single validation curve (family C with several
    episodes). A record without curves counts as such, and leaves the other seeds' cell as it is."""
    mlp = {r["seed"]: r for r in _done(records, experiment=st.reference_label(exp, "mlp"), head="mlp",
                                       tag=st.tags_for(tag, "mlp"), rho=rho)}
    seconds, never, missing, no_curve = [], 0, 0, 0
    for rec in done:
        if ((rec.get("metrics") or {}).get("episodes") or {}).get("n", 1) > 1:
            return None
        ref = mlp.get(rec.get("seed"))
        if ref is None:
            missing += 1
            continue
        try:
            ttt = st.time_to_target(rec, float(ref["metrics"]["bvs"]))
        except ValueError:
            no_curve += 1
            continue
        if ttt.seconds is None:
            never += 1
        else:
            seconds.append(ttt.seconds)
    return seconds, never, missing, no_curve


def _time_to_target_cell(records, done: Sequence[Mapping], exp: str, tag, rho) -> str:
    """Seconds until each run first reached the same-seed MLP's BVS (within min_delta; docs/method.md, Time to
    target), mean ± std over the seeds that did, and how many never did (and how many records have no curve to
    tell)."""
    values = _time_to_target_values(records, done, exp, tag, rho)
    if values is None:
        return "n/a (no single validation curve)"
    seconds, never, missing, no_curve = values
    if not seconds and not never:
        if no_curve:
            return f"n/a ({no_curve} record(s) without curves)"
        return "no MLP pair" if missing else NO_RUNS
    cell = mean_std_cell(seconds) if seconds else "never"
    cell += f" (never: {never} of {never + len(seconds)})" if never and seconds else ""
    return cell + (f" ({no_curve} without curves)" if no_curve else "")


def suite_contrasts(records, *, kind: str, tag="", rho=None) -> dict[str, dict[str, st.Contrast]]:
    """Suite -> {head: contrast} for Table 4 (``kind="table4"``) or Table 5 (``"table5"``); suites without a
    record are left out. Suites are never pooled (the stand-ins repeat the paper's experiments)."""
    fn = {"table4": st.table4, "table5": st.table5}[kind]
    present = {r.get("experiment") for r in st.select(records, tag=tag, rho=rho)}
    out = {}
    for suite, exps in st.SUITES.items():
        if present & set(exps):
            out[suite] = fn(records, experiments=exps, tag=tag, rho=rho)
    others = sorted(e for e in present if e and not any(e in x for x in st.SUITES.values()))
    for exp in others:
        out[exp] = fn(records, experiments=[exp], tag=tag, rho=rho)
    return out


def tests_table(
    contrasts: Mapping[str, Mapping[str, st.Contrast]], kind: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Display and raw tables of one-sided Wilcoxon p-values (paper Tables 4-5).

    Args:
        contrasts: :func:`suite_contrasts` output.
        kind: "table4" (rows "<model> vs MLP") or "table5" (rows "GLAI vs <baseline>").
    """
    rows, raw = [], []
    for suite, by_head in contrasts.items():
        for head, con in by_head.items():
            d_time = [p.d_time for p in con.pairs]
            d_score = [p.d_score for p in con.pairs]
            name = (f"{HEAD_LABEL.get(head, head)} vs MLP" if kind == "table4"
                    else f"GLAI vs {HEAD_LABEL.get(head, head)}")
            tt, ts = con.time_test, con.score_test
            tq = con.ttt_test
            rows.append({"Suite": suite, "Comparison": name, "n pairs": len(con.pairs),
                         "Time p-value": tt.cell(), "BVS p-value": ts.cell(),
                         "Time-to-target p-value": tq.cell(), "Never reached": con.ttt_never,
                         "Unpaired": len(con.unpaired)})
            raw.append({"suite": suite, "model": con.model, "ref": con.ref, "n_pairs": len(con.pairs),
                        "time_statistic": tt.statistic, "time_p": tt.p_value,
                        "bvs_statistic": ts.statistic, "bvs_p": ts.p_value,
                        "ttt_statistic": tq.statistic, "ttt_p": tq.p_value, "n_ttt_never": con.ttt_never,
                        "n_unpaired": len(con.unpaired),
                        "mean_d_time": float(np.mean(d_time)) if d_time else None,
                        "mean_d_score": float(np.mean(d_score)) if d_score else None})
    cols = ["Suite", "Comparison", "n pairs", "Time p-value", "BVS p-value", "Time-to-target p-value",
            "Never reached", "Unpaired"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(raw)


def speedup_table(contrasts4: Mapping[str, Mapping[str, st.Contrast]]) -> pd.DataFrame:
    """Mean-of-ratios speedup of every head over the MLP per suite (paper 4.3: GLAI 1.92)."""
    rows = []
    for suite, by_head in contrasts4.items():
        for head, con in by_head.items():
            s = st.speedup_summary(con)
            n = s["n_experiments"]
            headline = paper.HEADLINE_SPEEDUP
            paper_cell = (f"{headline['mean']}× (+{headline['plus']} / -{headline['minus']})"
                          if suite == "paper" and head == "glai" else "")
            rows.append({
                "Suite": suite,
                "Head": HEAD_LABEL.get(head, head),
                "Experiments": n,
                "Mean of ratios": fmt_num(s["mean"]) + "×" if n else NO_RUNS,
                "Std over experiments": (fmt_num(s["std"], like=s["mean"]) if s["std"] is not None
                                         else f"n={n} (need >= 2)"),
                "Range": f"{fmt_num(s['min'])} – {fmt_num(s['max'])}" if n else NO_RUNS,
                "Paper": paper_cell,
            })
    cols = ["Suite", "Head", "Experiments", "Mean of ratios", "Std over experiments", "Range", "Paper"]
    return pd.DataFrame(rows, columns=cols)




def _paper_cell(pair: tuple[float, float], suffix: str = "") -> str:
    return fmt_mean_std(pair[0], pair[1], suffix)


def comparison_table(records: Sequence[Mapping], *, rho=None) -> pd.DataFrame:
    """Our Table 3 beside the paper's (docs/method.md, Statistics): for each paper experiment X and head, the
    paper's row, our protocol runs of X and of the stand-in ``offline/X`` (labelled as such). Only groups whose
    settings equal the unmodified experiment (``_protocol``, :mod:`glai.results.groups`) and untagged appear
    here: a variant of X is never printed beside the paper's numbers. Records are those of :func:`write_all`
    (``experiment`` = the group label)."""
    ours, _ = table3(records, tag="", rho=rho)
    index = {(r["Exp"], r["Head"]): r for _, r in ours.iterrows()}
    protocol_labels: dict[str, set] = defaultdict(set)
    for r in records:
        if r.get("_protocol") and not r.get("tag"):
            protocol_labels[r.get("_base")].add(r["experiment"])
    rows = []
    for exp in paper.EXPERIMENTS:
        for head in paper.HEADS:
            label = HEAD_LABEL[head]
            p = paper.TABLE3[exp][head]
            unit = "acc" if paper.MONITOR[exp] == "val_acc" else "loss"
            rows.append({"Paper exp": exp, "Head": label, "Source": "paper",
                         "Epochs": _paper_cell(p["epochs"]),
                         "Speedup": "1×" if head == "mlp" else _paper_cell(p["speedup"], "×"),
                         "BVS": f"{unit}: {_paper_cell(p['bvs'])}", "n": 3})
            for base, kind in ((exp, ""), (f"offline/{exp}", " (stand-in)")):
                found = [(lab, index[(lab, label)]) for lab in sorted(protocol_labels.get(base, ()))
                         if (lab, label) in index]
                if not found:
                    rows.append({"Paper exp": exp, "Head": label, "Source": f"ours: {base}{kind}",
                                 "Epochs": NO_RUNS, "Speedup": NO_RUNS, "BVS": NO_RUNS, "n": 0})
                for lab, row in found:
                    rows.append({"Paper exp": exp, "Head": label, "Source": f"ours: {lab}{kind}",
                                 "Epochs": row["Epochs"], "Speedup": row["Speedup"], "BVS": row["BVS"],
                                 "n": int(row["n"])})
    return pd.DataFrame(rows, columns=["Paper exp", "Head", "Source", "Epochs", "Speedup", "BVS", "n"])


def comparison_tests_table(contrasts4, contrasts5) -> pd.DataFrame:
    """Our Table 4-5 p-values beside the paper's (n = 18 there), for the real suite and its stand-ins."""
    rows = []
    specs = [("table4", m, f"{HEAD_LABEL[m]} vs MLP", paper.TABLE4[m], contrasts4) for m in st.TABLE4_MODELS]
    specs += [("table5", r, f"GLAI vs {HEAD_LABEL[r]}", paper.TABLE5[r], contrasts5) for r in st.TABLE5_REFS]
    for table, key, name, (p_time, p_bvs), source in specs:
        row = {"Table": table[-1], "Comparison": name, "Paper time p": f"{p_time:.4f}",
               "Paper BVS p": f"{p_bvs:.4f}"}
        for suite, label in (("paper", "ours"), ("offline", "stand-in")):
            con = source.get(suite, {}).get(key)
            row[f"{label} n"] = len(con.pairs) if con else 0
            row[f"{label} time p"] = con.time_test.cell() if con else NO_RUNS
            row[f"{label} BVS p"] = con.score_test.cell() if con else NO_RUNS
        rows.append(row)
    return pd.DataFrame(rows)




def failed_runs_markdown(records: Sequence[Mapping]) -> str:
    """Markdown listing of every record whose status is not "done" (never averaged)."""
    bad = [r for r in records if r.get("status") != "done"]
    lines = ["# Runs not averaged (status other than \"done\")", ""]
    if not bad:
        return "\n".join(lines + ["None: every record is done.", ""])
    df = pd.DataFrame([{
        "experiment": r.get("experiment"), "head": r.get("head"), "tag": r.get("tag") or "",
        "rho": r.get("rho"), "seed": r.get("seed"), "status": r.get("status"),
        "error": st.error_summary(r, width=200),
        "record": r.get("_path", ""),
    } for r in sorted(bad, key=lambda r: (st.experiment_order(str(r.get("experiment"))), str(r.get("head")),
                                          str(r.get("seed"))))])
    return "\n".join(lines + [f"{len(bad)} record(s):", "", markdown(df), ""])


def unpaired_markdown(sections: Mapping[str, Mapping[str, Mapping[str, st.Contrast]]]) -> str:
    """Markdown listing of the (experiment, seed) pairs left out of each contrast, with the reason."""
    lines = ["# (experiment, seed) pairs left out of the paired tests", ""]
    count = 0
    for title, by_suite in sections.items():
        for suite, by_head in by_suite.items():
            for con in by_head.values():
                if not con.unpaired:
                    continue
                count += len(con.unpaired)
                lines += [f"## {title}, suite {suite}: {con.model} vs {con.ref}", "",
                          markdown(pd.DataFrame([{"experiment": u.experiment, "seed": u.seed, "reason": u.reason}
                                                 for u in con.unpaired])), ""]
    if not count:
        lines.append("None: every (experiment, seed) has both partners done.")
    return "\n".join(lines) + "\n"


def _write_raw(df: pd.DataFrame, out_dir: Path, name: str) -> Path:
    path = out_dir / f"{name}_values.csv"
    atomic_write_text(path, df.to_csv(index=False))
    return path


def _write_view(records, out_dir: Path, tag, rho, label: str) -> tuple[list[Path], dict, dict, pd.DataFrame]:
    written = []
    t2 = table2(records, tag=tag, rho=rho)
    written += write_table(t2, out_dir, "table2", f"Table 2 ({label}): settings and epochs to convergence "
                           "(mean ± std over seeds; GLAI epochs = estimator phase).")
    t3, t3raw = table3(records, tag=tag, rho=rho)
    written += write_table(t3, out_dir, "table3", f"Table 3 ({label}): epochs, speedup T_MLP/T_model, time to "
                           "target (seconds until the validation score first reached the same-seed MLP's BVS "
                           "within min_delta) and BVS (acc in %, loss dimensionless), mean ± std over "
                           "seeds.")
    written.append(_write_raw(t3raw, out_dir, "table3"))
    c4 = suite_contrasts(records, kind="table4", tag=tag, rho=rho)
    c5 = suite_contrasts(records, kind="table5", tag=tag, rho=rho)
    for kind, cons, caption in (
        ("table4", c4, "one-sided paired Wilcoxon tests against the MLP over (experiment, seed) pairs, of the "
                       "time to early stop, the BVS, and the time to reach the reference's BVS (pairs where the "
                       "model never reached it are counted, not tested)"),
        ("table5", c5, "one-sided paired Wilcoxon tests of GLAI against the simplified baselines (time, BVS, "
                       "time to the baseline's BVS)"),
    ):
        disp, raw = tests_table(cons, kind)
        written += write_table(disp, out_dir, kind, f"Table {kind[-1]} ({label}): {caption} "
                               f"(no p-value below {st.MIN_PAIRS} pairs).")
        written.append(_write_raw(raw, out_dir, kind))
    written += write_table(speedup_table(c4), out_dir, "speedup",
                           f"Mean-of-ratios speedup over the MLP ({label}): per experiment the mean over "
                           "seeds of T_MLP/T_model, then the mean over experiments.")
    return written, c4, c5, t3, t3raw


def tuning_gain_table(raw: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per experiment and head: the tuned view's mean BVS minus the head's defaults' (the protocol's and, where
    it ran, the Adam view's), over seeds, each with its standard error.

    A BVS's standard error is its std over seeds / sqrt(n); a gain's is sqrt(SE_tuned^2 + SE_default^2). "Tuned >=
    protocol - 1 SE" says whether the tuned head scored at or above its protocol default minus one standard error
    of the gain ("better" is higher accuracy, lower loss): the promise of the one-standard-error choice
    (:func:`glai.search.choose`) on held-out validation rows.
    """
    if "tuned" not in raw or not len(raw["tuned"]):
        return pd.DataFrame()

    def stats(view: str) -> dict:
        df = raw.get(view)
        if df is None or not len(df):
            return {}
        return {(r.experiment, r.head): (r.bvs_mean, r.bvs_std / math.sqrt(r.n) if r.n > 1 else math.nan, r.monitor)
                for r in df.itertuples()}

    def cell(mean, se) -> str:
        return fmt_num(mean) if math.isnan(se) else f"{fmt_num(mean)} ± {fmt_num(se, like=mean)}"

    def gain(a, b) -> tuple[float, float]:
        return a[0] - b[0], math.sqrt(a[1] ** 2 + b[1] ** 2)

    tuned, protocol, adam = stats("tuned"), stats("protocol"), stats("adam")
    rows = []
    for (exp, head), value in sorted(tuned.items(), key=lambda kv: (st.experiment_order(kv[0][0]), kv[0][1])):
        row = {"Exp": exp, "Head": HEAD_LABEL.get(head, head), "Tuned BVS": cell(*value[:2]),
               "Protocol BVS": cell(*protocol[(exp, head)][:2]) if (exp, head) in protocol else NO_RUNS}
        if (exp, head) in protocol:
            g, se = gain(value, protocol[(exp, head)])
            better = -g if value[2] == "loss" else g
            row["Tuned - protocol"] = cell(g, se)
            row["Tuned >= protocol - 1 SE"] = "n/a" if math.isnan(se) else ("yes" if better >= -se else "no")
        else:
            row["Tuned - protocol"], row["Tuned >= protocol - 1 SE"] = NO_RUNS, "-"
        adam_tag = st.VIEWS["adam"].get(head)
        row["Tuned - Adam default"] = cell(*gain(value, adam[(exp, head)])) if adam_tag and (exp, head) in adam else "-"
        rows.append(row)
    return pd.DataFrame(rows)


#: Views whose GLAI (and linear) runs race the tuned MLP in :func:`against_tuned_table`, with their tags.
RACE_TAGS = ("", "random", "lbfgs", "structure", "fixed", "sgd", "tuned")


def against_tuned_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """Does any GLAI variant reach an equally tuned MLP's BVS sooner? Per experiment, for GLAI and the linear probe
    of every view tag (:data:`RACE_TAGS`): seconds until each run first reached the same-seed *tuned* MLP's BVS
    (within min_delta, everything on its clock), mean over the seeds that did and how many never did, beside the
    tuned MLP's own seconds to that score (its best epoch). Experiments without tuned MLP runs are left out."""
    rows = []
    for exp in _experiments(records):
        ref = {r["seed"]: r for r in _done(records, experiment=exp, head="mlp", tag="tuned")}
        if not ref:
            continue
        own = [st.time_to_target(r, float(r["metrics"]["bvs"])).seconds for r in ref.values()
               if not (r["metrics"].get("episodes") or {}).get("n", 1) > 1]
        own = [t for t in own if t is not None]
        rows.append({"Exp": exp, "Head": "MLP", "Tag": "tuned", "n": len(ref), "Reached": len(own),
                     "Time to the tuned MLP's BVS [s]": mean_std_cell(own) if own else "n/a",
                     "vs the tuned MLP": "1×"})
        mlp_s = float(np.mean(own)) if own else math.nan
        for head in ("glai", "linear"):
            for tag in RACE_TAGS:
                done = _done(records, experiment=exp, head=head, tag=tag)
                if not done:
                    continue
                seconds, never = [], 0
                for rec in done:
                    target = ref.get(rec.get("seed"))
                    if target is None:
                        continue
                    try:
                        ttt = st.time_to_target(rec, float(target["metrics"]["bvs"]))
                    except ValueError:
                        continue
                    if ttt.seconds is None:
                        never += 1
                    else:
                        seconds.append(ttt.seconds)
                if not seconds and not never:
                    continue
                cell = mean_std_cell(seconds) if seconds else "never"
                ratio = f"{mlp_s / float(np.mean(seconds)):.2f}× faster" if seconds and mlp_s == mlp_s else "-"
                rows.append({"Exp": exp, "Head": HEAD_LABEL.get(head, head), "Tag": tag or "(protocol)",
                             "n": len(done), "Reached": len(seconds),
                             "Time to the tuned MLP's BVS [s]": cell + (f" (never: {never})" if never else ""),
                             "vs the tuned MLP": ratio if seconds else "never"})
    return pd.DataFrame(rows)


def views_tables(views: Mapping[str, tuple[pd.DataFrame, Mapping[str, Mapping[str, st.Contrast]]]],
                 heads: Sequence[str] = ("mlp", "glai", "linear")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The views side by side (``views.md``): per experiment, each view's Table 3 rows of ``heads``, and per
    suite each view's Table 4 tests of GLAI (and of the linear probe, where it ran) against the MLP.

    Args:
        views: view name -> (its :func:`table3` display table, its Table 4 :func:`suite_contrasts`).
        heads: the heads whose Table 3 rows are shown.

    Returns:
        (Table 3 rows with a ``View`` column, sorted by experiment then view; Table 4 GLAI-vs-MLP rows that
        have at least one pair).
    """
    labels = [HEAD_LABEL.get(h, h) for h in heads]
    order = {name: i for i, name in enumerate(views)}
    parts = []
    for name, (t3, _) in views.items():
        part = t3[t3["Head"].isin(labels)].copy()
        part.insert(1, "View", name)
        parts.append(part)
    t3_all = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(t3_all):
        t3_all["_v"] = t3_all["View"].map(order)
        t3_all["_h"] = t3_all["Head"].map({label: i for i, label in enumerate(labels)})
        t3_all = t3_all.sort_values(["Exp", "_v", "_h"], kind="stable").drop(columns=["_v", "_h"])
    tests = []
    for name, (_, c4) in views.items():
        # rows without a single GLAI-MLP pair (e.g. a variant group holding only MLP runs) say nothing here;
        # Table 4 of the view and unpaired.md still list them
        disp, _ = tests_table({suite: {h: c for h, c in by_head.items() if h in ("glai", "linear") and c.pairs}
                               for suite, by_head in c4.items()}, "table4")
        disp.insert(1, "View", name)
        tests.append(disp)
    t4_all = pd.concat(tests, ignore_index=True) if tests else pd.DataFrame()
    if len(t4_all):
        t4_all["_v"] = t4_all["View"].map(order)
        t4_all = t4_all.sort_values(["Suite", "_v"], kind="stable").drop(columns=["_v"])
    return t3_all.reset_index(drop=True), t4_all.reset_index(drop=True)


def write_all(runs_dir: str | Path = "results/runs", out_dir: str | Path = "results/tables", tag: str = "",
              conf_dir: str | Path = "conf", figures: bool = True,
              references: Mapping[tuple[str, str], Mapping] | None = None,
              echo: Callable[[str], None] | None = None) -> list[Path]:
    """Every table (and, with ``figures``, every figure of :mod:`glai.results.figures`) from the records under
    ``runs_dir``.

    Runs are grouped by setting (:func:`glai.results.groups.assign_groups` against ``references``, the
    unmodified experiments' configs): a table row averages the seeds of one group only, and a variant
    (``A1 [head.lr=0.1]``) is a row of its own, never the paper's. Tables are filtered by ``tag``; with
    ``tag=""`` the other views of :data:`glai.results.stats.VIEWS` (fixed reduced epochs, optimiser-controlled,
    tuned) that have records are also written to ``<out_dir>/<view>/``.

    Args:
        echo: called with one line counting the records read, invalid, failed and non-protocol.

    Returns:
        Paths written.
    """
    out_dir = Path(out_dir)
    loaded = st.load_records(runs_dir)
    # which records were skipped and why (a newer schema, unreadable JSON): failed_runs.md lists them all
    invalid = [st.error_summary(r, width=300) for r in loaded if r.get("status") == "invalid"]
    skipped = (f"; skipped: {'; '.join(invalid[:3])}" + (f"; and {len(invalid) - 3} more (failed_runs.md)"
                                                        if len(invalid) > 3 else "")) if invalid else ""
    # the method family's studies (one job, many models) have tables of their own (glai.results.family)
    studies = [r for r in loaded if is_study(r)]
    # a search's trials are scored on a tuning split carved from train: never a row of any table
    searches = [r for r in loaded if is_search(r)]
    loaded = [r for r in loaded if not (is_study(r) or is_search(r))]
    counts = assign_groups(loaded, references)
    # family T trains a Transformer's block, not a head on embeddings: its own tables
    transformer = [{**r, "experiment": r["_label"]} for r in loaded if is_family_t(r)]
    loaded = [r for r in loaded if not is_family_t(r)]
    if echo is not None:
        echo(counts.line() + (f"; {len(studies)} method-family study records (retrain.md, combine.md)"
                              if studies else "") + (f"; {len(searches)} search trials (tuning=search) left out"
                                                     if searches else "") + skipped)
    # a table row is a group: the label stands in for the experiment, so variants never mix with it
    records = [{**r, "experiment": r["_label"]} for r in loaded]
    # rho variants are groups of their own, so no rho filter is needed
    rho = None
    label = "protocol runs" if tag == "" else f"tag {tag!r}"
    written, c4, c5, t3, t3raw = _write_view(records, out_dir, tag, rho, label)
    views = {"protocol": (t3, c4)}
    views_raw = {"protocol": t3raw}
    sections = {label: {}}
    for suite in c4:
        sections[label][f"{suite} (Table 4)"] = c4[suite]
    for suite in c5:
        sections[label][f"{suite} (Table 5)"] = c5[suite]
    if tag == "":
        written += write_table(comparison_table(records, rho=rho), out_dir, "comparison",
                               "Our results beside the paper's Table 3. 'ours: X' is our run of "
                               "the paper's experiment X; 'ours: offline/X (stand-in)' is the offline "
                               "stand-in for X.")
        written += write_table(comparison_tests_table(c4, c5), out_dir, "comparison_tests",
                               "Our Wilcoxon p-values beside the paper's Tables 4-5 (paper: n = 18 pairs).")
        tags_present = {(r.get("head"), r.get("tag") or "") for r in records}
        for view, mapping in st.VIEWS.items():
            if view == "protocol" or not any((h, t) in tags_present for h, t in mapping.items() if t):
                continue
            vlabel = st.VIEW_LABELS[view]
            w, v4, v5, vt3, vraw = _write_view(records, out_dir / view, mapping, rho, vlabel)
            views[view] = (vt3, v4)
            views_raw[view] = vraw
            written += w
            sections[vlabel] = {f"{s} (Table 4)": c for s, c in v4.items()}
            sections[vlabel].update({f"{s} (Table 5)": c for s, c in v5.items()})
    if len(views) > 1:
        v3, v4 = views_tables(views)
        written += write_table(v3, out_dir, "views", "The views side by side: Table 3's MLP and GLAI rows "
                               "of each view (protocol: each experiment's config; fixed: GLAI with the paper's "
                               "fixed reduced-epoch count; adam / sgd: every head on one optimiser; tuned: every "
                               "head with its searched settings). Time to target is against the view's MLP.")
        written += write_table(v4, out_dir, "views_tests", "Table 4's GLAI-vs-MLP tests in each view "
                               f"(one-sided paired Wilcoxon; no p-value below {st.MIN_PAIRS} pairs).")
        race = against_tuned_table(records)
        if len(race):
            written += write_table(race, out_dir, "against_tuned_mlp", "Does any GLAI variant (or the linear probe) "
                                   "reach an equally tuned MLP's BVS sooner? Seconds until each run first reached "
                                   "the same-seed tuned MLP's BVS within min_delta (GLAI: reduced phase and "
                                   "conversion on its clock), mean ± std over the seeds that did; 'x× faster' is "
                                   "the tuned MLP's own seconds to that score over the variant's.")
        gain = tuning_gain_table(views_raw)
        if len(gain):
            written += write_table(gain, out_dir, "tuning_gain", "Did tuning help? Per experiment and head, the "
                                   "tuned view's mean BVS on the validation split minus the head's defaults' (the "
                                   "protocol's; the Adam view's where it ran), over seeds, ± standard errors (std "
                                   "over seeds / sqrt(n); a gain's: sqrt(SE_tuned^2 + SE_default^2)); the last "
                                   "column says whether the tuned head is at or above its protocol default minus "
                                   "one standard error of the gain (higher accuracy, lower loss).")
    written += write_family(loaded + studies, out_dir, figures=figures)
    written += write_transformer(transformer, out_dir)
    atomic_write_text(out_dir / "failed_runs.md", failed_runs_markdown(records + studies + transformer))
    atomic_write_text(out_dir / "unpaired.md", unpaired_markdown(sections))
    written += [out_dir / "failed_runs.md", out_dir / "unpaired.md"]
    labels = ({r["_label"] for r in loaded} | {r.get("experiment") for r in loaded + studies}
              | {r["experiment"] for r in transformer})
    if figures:
        # matplotlib loads only when figures are asked for
        from glai.results.figures import write_figures

        # Figure 4 sweeps rho: variants that differ only in rho are drawn under their experiment
        fig_records = [{**r, "experiment": r["_base"] if set(r["_diff"]) <= {"rho", "head.width_factor"}
                        else r["_label"]} for r in loaded]
        written += write_figures(fig_records, out_dir, rho=st.protocol_rhos(fig_records, conf_dir=conf_dir))
        if len(views_raw) > 1:
            from glai.results.figures import figure_views

            fig = figure_views(views_raw, out_dir / "fig_views.png")
            if fig is not None:
                written.append(fig)
    written.append(write_index(out_dir, written, labels))
    return written


#: Captions of the figures by file-name prefix (the tables carry theirs in their first line).
_FIGURE_CAPTIONS = {
    "fig3_path_distance_": "Figure 3: path distance m_t of the reduced MLP over its epochs",
    "fig4_rho_ablation": "Figure 4: BVS of GLAI against rho, the MLP's as a line",
    "fig5_time_breakdown": "Figure 5: time per phase (GLAI: reduced MLP, conversion, estimator)",
    "fig_sparsity_": "accuracy against firing ratio under the l0 activation penalty",
    "fig_retrain": "learning new classes: MLP fine-tuning against GLAI estimator-only re-training",
    "fig_combine": "combining shard models by weighted averaging",
    "fig_views": "time to the same-seed MLP's BVS against BVS, per view and head",
}


def write_index(out_dir: str | Path, written: Sequence[Path], labels: Iterable[str] = ()) -> Path:
    """``<out_dir>/README.md``: every table (``.md``; each also as ``.tex`` and ``.csv``) and figure written, one
    line each with its caption, grouped by view (the top folder: protocol runs; ``<view>/``) and, for the
    per-group figures, by the group's full label (file names carry :func:`glai.results.formatting.slug`)."""
    from glai.results.formatting import slug

    out_dir = Path(out_dir)
    by_slug = {slug(lab): lab for lab in labels if lab}
    sections: dict[str, list[str]] = defaultdict(list)
    for path in sorted({Path(p) for p in written}):
        if path.suffix not in (".md", ".png") or path.name == "README.md":
            continue
        rel = path.relative_to(out_dir)
        view = rel.parts[0] if len(rel.parts) > 1 else ""
        if path.suffix == ".md":
            first = path.read_text().split("\n", 1)[0].strip().lstrip("# ")
            caption = first if len(first) <= 160 else first[:157] + "..."
        else:
            prefix = next((k for k in _FIGURE_CAPTIONS if path.stem.startswith(k)), None)
            caption = _FIGURE_CAPTIONS.get(prefix, path.stem)
            rest = path.stem[len(prefix):] if prefix and prefix.endswith("_") else ""
            if rest:
                caption += f": {by_slug.get(rest, rest)}"
        sections[view].append(f"- [`{rel}`]({rel}): {caption}")
    lines = ["# Tables and figures", "", "Written by `make tables` (`scripts/make_tables.py`) from the run records; "
             "each table is also written as `.tex` and `.csv` beside its `.md`.", ""]
    for view in sorted(sections, key=lambda v: (v != "", v)):
        title = "Protocol runs, views side by side, method family" if view == "" else (
            f"View `{view}`: {st.VIEW_LABELS.get(view, view)}")
        lines += [f"## {title}", "", *sections[view], ""]
    path = out_dir / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path
