"""Run records -> paired contrasts and one-sided Wilcoxon tests (paper 4.3, Tables 4-5; docs/method.md,
Statistics).

Pairs are (experiment, seed). For a model and a reference head (the MLP in Table 4, the simplified
baseline in Table 5)::

    D_time  = log(T_ref / T_model)                      (T = cost.total_s, seconds)
    D_score = (S_model - S_ref) / |S_ref|               (accuracy: monitor val_acc, mode max)
            = (S_ref - S_model) / |S_ref|               (loss: monitor val_loss, mode min)

so that a positive value always favours the model. Each column is tested with
``scipy.stats.wilcoxon(d, alternative="greater")``. A pair whose partner is missing, failed or unusable is
listed with the reason, never silently dropped.

Records are plain dicts (schema of ``docs/INTERFACES.md``) with the key ``"_path"`` added by
:func:`load_records`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as sps

from glai.results.identity import reads_rho
from glai.results.schema import SCHEMA_VERSION

__all__ = [
    "MIN_PAIRS",
    "PAPER_SUITE",
    "OFFLINE_SUITE",
    "SUITES",
    "VIEWS",
    "VIEW_LABELS",
    "Contrast",
    "Pair",
    "TestResult",
    "TimeToTarget",
    "Unpaired",
    "d_score",
    "d_time",
    "error_summary",
    "experiment_order",
    "is_accuracy",
    "load_records",
    "paired_contrast",
    "protocol_rhos",
    "reference_label",
    "select",
    "speedup_summary",
    "table4",
    "table5",
    "tags_for",
    "time_to_target",
    "wilcoxon_greater",
]

#: Fewer pairs than this: no p-value is printed. With n = 5 the smallest one-sided exact p is 1/32 = 0.031, the
#: fewest pairs that can reach 0.05 (docs/method.md: a study that reports a p-value per set runs 5 seeds).
MIN_PAIRS = 5

PAPER_SUITE = ("A1", "A2", "B1", "B2", "C1", "C2")
OFFLINE_SUITE = tuple(f"offline/{e}" for e in PAPER_SUITE)
#: Suites whose (experiment, seed) pairs are pooled into one test; never pooled across suites.
SUITES = {"paper": PAPER_SUITE, "offline": OFFLINE_SUITE, "digits": ("digits",)}

#: Head -> tag of the records used per view (the four views of experiments/views.sh). "protocol": each
#: experiment's own config (the paper's six: SGD MLPs, Adam estimator, Table 2's reduced epochs; digits and the
#: stand-ins: the same with ``auto`` reduced epochs). "fixed": GLAI with the paper's fixed reduced-epoch
#: count (tagged ``fixed``) against the protocol MLPs. "adam" puts every head on Adam (MLP heads tagged ``adam``,
#: GLAI's protocol runs); "sgd" every head on SGD (GLAI tagged ``sgd``, the MLP heads' protocol runs); see
#: ``experiments/optimizer_control.sh``. "tuned": every head with the settings its search found (``tuning=best``,
#: tagged ``tuned``; ``experiments/tune.sh``). The paper's open questions: "random" (GLAI's selector at its random
#: initialisation), "lbfgs" (the estimator and the linear probe on full-batch L-BFGS, against the Adam MLP),
#: "structure" (the structural stop chosen on the tuning split); ``experiments/open_questions.sh``.
VIEWS = {
    "protocol": {"mlp": "", "mlp_reduced": "", "linear": "", "glai": ""},
    "fixed": {"mlp": "", "mlp_reduced": "", "linear": "", "glai": "fixed"},
    "adam": {"mlp": "adam", "mlp_reduced": "adam", "linear": "adam", "glai": ""},
    "sgd": {"mlp": "", "mlp_reduced": "", "linear": "", "glai": "sgd"},
    "tuned": {"mlp": "tuned", "mlp_reduced": "tuned", "linear": "tuned", "glai": "tuned"},
    # the paper's open questions: the selector control, the convex solver, the structural stop
    "random": {"mlp": "", "mlp_reduced": "", "linear": "", "glai": "random"},
    "lbfgs": {"mlp": "adam", "mlp_reduced": "adam", "linear": "lbfgs", "glai": "lbfgs"},
    "structure": {"mlp": "", "mlp_reduced": "", "linear": "", "glai": "structure"},
}
#: What each view compares, as the tables' captions say it.
VIEW_LABELS = {
    "fixed": "GLAI with the paper's fixed reduced-epoch count (tag fixed) against the protocol MLPs",
    "adam": "optimiser-controlled: every head on adam",
    "sgd": "optimiser-controlled: every head on sgd",
    "tuned": "tuned: every head with the settings its search on the tuning split found (tag tuned)",
    "random": "GLAI with a random selector (head.selector=random, tag random: gates from random hyperplanes, no "
              "reduced epoch) against the protocol MLPs",
    "lbfgs": "convex solver: GLAI's estimator and the linear probe on full-batch L-BFGS (tag lbfgs) against the "
             "Adam MLPs",
    "structure": "GLAI's structural stop (reduced_epochs_mode=structure, threshold chosen on the tuning split, tag "
                 "structure) against the protocol MLPs",
}


def tags_for(tag: str | Mapping[str, str] | None, head: str) -> str | None:
    """Tag of ``head``'s records: one tag for every head, a head -> tag mapping, or None (any tag)."""
    if tag is None or isinstance(tag, str):
        return tag
    return tag.get(head, "")


def load_records(runs_dir: str | Path) -> list[dict]:
    """Every ``*.json`` record under ``runs_dir`` (recursively), sorted by path.

    A file that is not valid JSON, lacks the schema's identity keys, or says ``done`` without its ``metrics``
    and ``cost`` objects or without a finite ``metrics.bvs`` (studies aside) becomes a record with
    ``status = "invalid"`` and the reason (naming the file) in ``error``, so that it is listed and skipped, not lost.
    A record of a newer schema than :data:`glai.results.schema.SCHEMA_VERSION` (written by a newer glai, whose
    fields this code may misread) keeps its experiment, head and seed, so its partner's row names it, and becomes
    ``invalid`` likewise. Each record gains ``"_path"`` (str).
    """
    out = []
    for path in sorted(Path(runs_dir).rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in ("experiment", "head", "seed", "status") if k not in rec]
            if missing:
                raise ValueError(f"missing keys {missing}")
            version = rec.get("schema_version")
            if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
                rec.update(status="invalid", error=f"record {path} is of schema version {version}, newer than this "
                           f"glai's {SCHEMA_VERSION}: skipped (a newer glai wrote it). Fix: update glai (git pull) to "
                           "tabulate it")
                rec.setdefault("tag", "")
                rec["_path"] = str(path)
                out.append(rec)
                continue
            if rec["status"] == "done" and not (isinstance(rec.get("metrics"), dict)
                                                and isinstance(rec.get("cost"), dict)):
                raise ValueError("a done record without its metrics and cost objects")
            bvs = (rec.get("metrics") or {}).get("bvs")
            if rec["status"] == "done" and "study" not in rec["metrics"] and not (
                    isinstance(bvs, (int, float)) and not isinstance(bvs, bool) and math.isfinite(bvs)):
                raise ValueError(f"a done record whose metrics.bvs is {bvs!r}, not a finite number")
        except (OSError, ValueError) as err:
            # <runs>/<experiment>/<head>[-<tag>]/<file>: the path still tells which run it was
            exp_dir = path.parent.parent
            experiment = str(exp_dir.relative_to(runs_dir)) if exp_dir != Path(runs_dir) else "?"
            rec = {"status": "invalid", "error": f"unreadable record {path}: {err}", "experiment": experiment,
                   "head": path.parent.name, "seed": None, "rho": None, "tag": ""}
        rec.setdefault("tag", "")
        rec["_path"] = str(path)
        out.append(rec)
    return out


def _has_rho_override(rec: Mapping) -> bool:
    return any(re.match(r"^\+{0,2}rho=", str(o)) for o in rec.get("overrides") or [])


def _conf_rho(experiment: str, conf_dir: Path) -> float | None:
    """rho of ``conf/experiment/<experiment>.yaml`` (``@package _global_``) or of ``conf/config.yaml``."""
    from omegaconf import OmegaConf

    for path in (conf_dir / "experiment" / f"{experiment}.yaml", conf_dir / "config.yaml"):
        try:
            cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        except Exception:  # noqa: BLE001 - a missing or odd file only means "not found here"
            continue
        if isinstance(cfg, dict) and isinstance(cfg.get("rho"), (int, float)):
            return float(cfg["rho"])
    return None


def protocol_rhos(records: Iterable[Mapping], conf_dir: str | Path = "conf", default: float = 0.5) -> dict:
    """The protocol rho of each experiment: the rho of its runs made without a ``rho=`` override.

    Falls back to ``conf/`` (experiment file, then ``config.yaml``) and then to ``default`` (paper 4.2: 0.5)
    for experiments whose every run overrides rho.

    Returns:
        experiment -> rho.
    """
    seen: dict[str, Counter] = defaultdict(Counter)
    experiments = set()
    for rec in records:
        experiments.add(rec.get("experiment"))
        if rec.get("rho") is not None and not _has_rho_override(rec):
            seen[rec["experiment"]][float(rec["rho"])] += 1
    out = {}
    for exp in experiments:
        if seen.get(exp):
            out[exp] = seen[exp].most_common(1)[0][0]
        else:
            rho = _conf_rho(str(exp), Path(conf_dir))
            out[exp] = default if rho is None else rho
    return out


def select(
    records: Iterable[Mapping],
    *,
    experiment: str | Sequence[str] | None = None,
    head: str | None = None,
    tag: str | Mapping[str, str] | None = "",
    rho: float | Mapping[str, float] | None = None,
    status: str | None = None,
) -> list[dict]:
    """Records matching every given filter (None = no filter on that key).

    Args:
        tag: one tag, a head -> tag mapping (see :data:`VIEWS`), or None for any tag.
        rho: one value, an experiment -> rho mapping (e.g. :func:`protocol_rhos`), or None for any rho.
            Compared with a tolerance of 1e-9; heads that do not read rho (mlp, linear) pass at any rho.
        status: e.g. "done"; None keeps failed and running records too.
    """
    if isinstance(experiment, str):
        experiment = (experiment,)
    out = []
    for rec in records:
        if experiment is not None and rec.get("experiment") not in experiment:
            continue
        if head is not None and rec.get("head") != head:
            continue
        want_tag = tags_for(tag, rec.get("head"))
        if want_tag is not None and (rec.get("tag") or "") != want_tag:
            continue
        if rho is not None and reads_rho(str(rec.get("head"))):
            want = rho.get(rec.get("experiment")) if isinstance(rho, Mapping) else rho
            if want is not None and (rec.get("rho") is None or abs(float(rec["rho"]) - float(want)) > 1e-9):
                continue
        if status is not None and rec.get("status") != status:
            continue
        out.append(rec)
    return out


def is_accuracy(monitor: str | None = None, mode: str | None = None) -> bool:
    """True when the score is maximised (accuracy), False when minimised (loss).

    Raises:
        ValueError: when neither the monitor nor the mode says which.
    """
    if mode in ("max", "min"):
        return mode == "max"
    if monitor is not None and ("acc" in monitor or "loss" in monitor):
        return "acc" in monitor
    raise ValueError(f"cannot orient the score: monitor={monitor!r}, mode={mode!r}; "
                     "expected val_acc or val_loss")


def d_time(t_model: float, t_ref: float) -> float:
    """``log(T_ref / T_model)`` (paper 4.3): > 0 when the model trains faster. Times in seconds, > 0.

    Raises:
        ValueError: if a time is not positive.
    """
    if not (t_model > 0 and t_ref > 0):
        raise ValueError(f"times must be positive, got T_model={t_model}, T_ref={t_ref}")
    return math.log(t_ref / t_model)


def d_score(s_model: float, s_ref: float, accuracy: bool) -> float:
    """Relative score difference oriented so that > 0 favours the model (paper 4.3).

    Args:
        accuracy: True for a maximised score (``(S_model - S_ref)/|S_ref|``), False for a loss
            (``(S_ref - S_model)/|S_ref|``).

    Raises:
        ValueError: if ``S_ref`` is 0.
    """
    if s_ref == 0:
        raise ValueError("the reference score is 0; the relative difference is undefined")
    diff = s_model - s_ref if accuracy else s_ref - s_model
    return diff / abs(s_ref)


@dataclass
class TestResult:
    """A one-sided Wilcoxon signed-rank test. ``p_value`` is None when ``note`` says why no test was run."""

    n: int
    statistic: float | None = None
    p_value: float | None = None
    note: str = ""

    def cell(self, digits: int = 4) -> str:
        """Table cell: the p-value, or the reason there is none."""
        if self.p_value is None:
            return self.note
        return f"{self.p_value:.{digits}f}"


def wilcoxon_greater(d: Sequence[float], min_pairs: int = MIN_PAIRS) -> TestResult:
    """One-sided paired Wilcoxon signed-rank test of H1: the differences are shifted above 0.

    Uses ``scipy.stats.wilcoxon(d, alternative="greater")`` (scipy's "auto" method: the exact null
    distribution for small n, the normal approximation otherwise; zero differences are dropped, "wilcox").

    Returns:
        A :class:`TestResult`; below ``min_pairs`` pairs (or non-zero differences) no p-value and a
        note such as ``"too few pairs (n=3)"``.
    """
    d = np.asarray([x for x in d if x is not None and np.isfinite(x)], dtype=np.float64)
    n = int(d.size)
    if n < min_pairs:
        return TestResult(n=n, note=f"too few pairs (n={n})")
    nonzero = int(np.count_nonzero(d))
    if nonzero < min_pairs:
        # scipy drops zero differences ("wilcox"), so they do not count towards the test's size
        return TestResult(n=n, note=f"too few non-zero pairs (n={nonzero} of {n})")
    res = sps.wilcoxon(d, alternative="greater")
    return TestResult(n=n, statistic=float(res.statistic), p_value=float(res.pvalue))


@dataclass
class Pair:
    """One (experiment, seed) contrast; positive values favour the model."""

    experiment: str
    seed: int
    d_time: float
    d_score: float
    ratio: float  # T_ref / T_model
    model_path: str
    ref_path: str
    # log(TtT_ref / TtT_model), time to target (docs/method.md); None when the model never reached the target
    # ("never") or the records have no single validation curve ("n/a": multi-episode family C)
    d_ttt: float | None = None
    ttt: str = "n/a"


@dataclass
class Unpaired:
    """An (experiment, seed) that could not be paired, and why."""

    experiment: str
    seed: int | None
    reason: str


@dataclass
class Contrast:
    """Model vs reference over every (experiment, seed) of the selected records."""

    model: str
    ref: str
    pairs: list[Pair] = field(default_factory=list)
    unpaired: list[Unpaired] = field(default_factory=list)

    @property
    def time_test(self) -> TestResult:
        return wilcoxon_greater([p.d_time for p in self.pairs])

    @property
    def score_test(self) -> TestResult:
        return wilcoxon_greater([p.d_score for p in self.pairs])

    @property
    def ttt_test(self) -> TestResult:
        """Time to target (docs/method.md) over the pairs where the model reached the reference's BVS."""
        return wilcoxon_greater([p.d_ttt for p in self.pairs if p.d_ttt is not None])

    @property
    def ttt_never(self) -> int:
        """Pairs where the model never reached the reference's BVS (left out of :attr:`ttt_test`)."""
        return sum(p.ttt == "never" for p in self.pairs)


@dataclass
class TimeToTarget:
    """When a run's validation score first reached a target (docs/method.md, Time to target).

    Attributes:
        seconds: wall-clock seconds from the start of the head's training (GLAI: the reduced MLP and the
            conversion included), or None when the target was never reached.
        epochs: epochs run by then (GLAI: reduced epochs included), or None.
    """

    seconds: float | None
    epochs: int | None


def time_to_target(rec: Mapping, target: float, min_delta: float | None = None) -> TimeToTarget:
    """Seconds and epochs until ``rec``'s validation score first reaches ``target`` within ``min_delta``:
    ``score >= target - min_delta`` for accuracy, ``<= target + min_delta`` for a loss.

    The score is the head's final phase (GLAI: the estimator, after the reduced MLP and the conversion, whose
    seconds and epochs are added). Epoch seconds are ``metrics.curves.epoch_time_s``.

    Args:
        rec: a done run record.
        target: the score to reach (usually the same-seed MLP's BVS), in the monitor's unit.
        min_delta: tolerance; None reads the one the run stopped with (``metrics.min_delta``), else
            ``config.experiment.min_delta`` (0 if absent).

    Raises:
        ValueError: a record without per-epoch curves or times, or a multi-episode family C record (its curves
            are one episode's; its BVS is the mean of several).
    """
    metrics, cost = rec.get("metrics") or {}, rec.get("cost") or {}
    if (metrics.get("episodes") or {}).get("n", 1) > 1:
        raise ValueError("a multi-episode run has no single validation curve")
    acc = is_accuracy(metrics.get("monitor"), metrics.get("mode"))
    curves = metrics.get("curves") or {}
    scores, seconds = curves.get("val_acc" if acc else "val_loss"), curves.get("epoch_time_s")
    if not scores or not seconds:
        raise ValueError("the record has no per-epoch validation curve and times")
    if min_delta is None:
        ran = metrics.get("min_delta")
        min_delta = float(ran if ran is not None else (((rec.get("config") or {}).get("experiment") or {}).get(
            "min_delta")) or 0.0)
    phases = cost.get("time_s") or {}
    # GLAI's work before its estimator's first epoch: the reduced MLP (family T: the selector phase) and the
    # conversion
    offset_s = sum(float(phases.get(k, 0.0)) for k in ("reduced_mlp", "selector", "conversion"))
    offset_epochs = int(metrics.get("reduced_epochs") or metrics.get("selector_epochs") or 0)
    elapsed = 0.0
    for epoch, (score, dt) in enumerate(zip(scores, seconds, strict=False), start=1):
        elapsed += float(dt)
        if score is not None and (score >= target - min_delta if acc else score <= target + min_delta):
            return TimeToTarget(offset_s + elapsed, offset_epochs + epoch)
    return TimeToTarget(None, None)


def _ttt_contrast(model: Mapping, ref: Mapping) -> tuple[float | None, str]:
    """``(log(TtT_ref / TtT_model), "reached")`` for the reference's BVS as target; ``(None, "never")`` or
    ``(None, "n/a")``."""
    target = float(ref["metrics"]["bvs"])
    try:
        ttt_m, ttt_r = time_to_target(model, target), time_to_target(ref, target)
    except ValueError:
        return None, "n/a"
    if ttt_m.seconds is None:
        return None, "never"
    if ttt_r.seconds is None or not (ttt_m.seconds > 0 and ttt_r.seconds > 0):
        return None, "n/a"
    return d_time(ttt_m.seconds, ttt_r.seconds), "reached"


def error_summary(rec: Mapping, width: int = 160) -> str:
    """Last non-empty line of a record's error (the exception, for a traceback), at most ``width`` chars."""
    lines = [ln.strip() for ln in str(rec.get("error") or "").splitlines() if ln.strip()]
    return lines[-1][:width] if lines else ""


def _usable(rec: Mapping | None, head: str) -> str | None:
    """None if the record can be used in a contrast, else the reason it cannot."""
    if rec is None:
        return f"{head}: no record"
    if rec.get("status") != "done":
        detail = f" ({error_summary(rec)})" if rec.get("error") else ""
        return f"{head}: status {rec.get('status')}{detail}"
    metrics, cost = rec.get("metrics") or {}, rec.get("cost") or {}
    if metrics.get("bvs") is None or not np.isfinite(metrics["bvs"]):
        return f"{head}: no finite metrics.bvs"
    if not (cost.get("total_s") or 0) > 0:
        return f"{head}: no positive cost.total_s"
    return None


_ENV_SUFFIX = re.compile(r" \{([^{}]*)\}$")


def reference_label(label: str, ref_head: str) -> str:
    """The label under which ``ref_head``'s same-setting runs are found for a run labelled ``label``: ``label``
    itself, or, for an environment variant whose keys the reference head never reads (``X {head.backend=torch}``
    of GLAI beside an MLP, which has no estimator backend), the label without that suffix (else such a GLAI
    variant would get no MLP pair)."""
    from glai.results.identity import GLAI_HEADS, GLAI_ONLY

    match = _ENV_SUFFIX.search(label)
    if match is None or ref_head in GLAI_HEADS:
        return label
    keys = [part.split("=", 1)[0].strip() for part in match.group(1).split(",")]
    return label[: match.start()] if keys and all(k in GLAI_ONLY for k in keys) else label


def paired_contrast(
    records: Iterable[Mapping],
    model: str,
    ref: str,
    *,
    experiments: Sequence[str] | None = None,
    tag: str | Mapping[str, str] | None = "",
    rho: float | Mapping[str, float] | None = None,
) -> Contrast:
    """Pair ``model`` with ``ref`` over every (experiment, seed) seen in the selected records.

    The (experiment, seed) keys are those of any head's record that passes the filters, so a seed missing
    for both heads still shows up (as unpaired) when another head ran it.

    Args:
        records: run records (:func:`load_records`).
        model, ref: head names, e.g. ``"glai"``, ``"mlp"``.
        experiments: restrict to these (e.g. :data:`PAPER_SUITE`); None = all.
        tag, rho: filters of :func:`select`.
    """
    wanted = None if experiments is None else ({experiments} if isinstance(experiments, str) else set(experiments))
    # the reference runs of a GLAI-only environment variant live under the label without it (reference_label)
    chosen = select(records, experiment=None if wanted is None else sorted(
        wanted | {reference_label(e, ref) for e in wanted}), tag=tag, rho=rho)
    by_key: dict[tuple, list] = defaultdict(list)
    keys = set()
    for rec in chosen:
        if rec.get("seed") is None:
            continue
        if wanted is None or rec["experiment"] in wanted:
            keys.add((rec["experiment"], rec["seed"]))
        by_key[(rec["experiment"], rec["head"], rec["seed"])].append(rec)
    out = Contrast(model=model, ref=ref)
    for exp, seed in sorted(keys, key=lambda k: (str(k[0]), k[1])):
        recs = {}
        reasons = []
        for head in (model, ref):
            found = by_key.get((exp, head, seed), []) or (
                by_key.get((reference_label(exp, head), head, seed), []) if head == ref else [])
            if len(found) > 1:
                reasons.append(f"{head}: {len(found)} records match (rho/tag filter too loose)")
                continue
            rec = found[0] if found else None
            why = _usable(rec, head)
            if why:
                reasons.append(why)
            recs[head] = rec
        if not reasons:
            m, r = recs[model], recs[ref]
            mm, rm = m["metrics"], r["metrics"]
            try:
                acc = is_accuracy(rm.get("monitor"), rm.get("mode"))
                if is_accuracy(mm.get("monitor"), mm.get("mode")) != acc:
                    raise ValueError("the two heads monitor different scores")
                t_m, t_r = float(m["cost"]["total_s"]), float(r["cost"]["total_s"])
                pair = Pair(exp, seed, d_time(t_m, t_r), d_score(float(mm["bvs"]), float(rm["bvs"]), acc),
                            t_r / t_m, m["_path"], r["_path"], *_ttt_contrast(m, r))
            except (ValueError, KeyError) as err:
                reasons.append(str(err))
            else:
                out.pairs.append(pair)
                continue
        out.unpaired.append(Unpaired(exp, seed, "; ".join(reasons)))
    return out


#: Table 4: every simplified head against the MLP. Table 5: GLAI against the simplified heads.
TABLE4_MODELS = ("glai", "mlp_reduced", "linear")
TABLE5_REFS = ("linear", "mlp_reduced")


def table4(records, *, experiments=None, tag="", rho=None) -> dict[str, Contrast]:
    """Model -> contrast against the MLP (paper Table 4)."""
    return {m: paired_contrast(records, m, "mlp", experiments=experiments, tag=tag, rho=rho)
            for m in TABLE4_MODELS}


def table5(records, *, experiments=None, tag="", rho=None) -> dict[str, Contrast]:
    """Baseline -> contrast of GLAI against it, the baseline as reference (paper Table 5)."""
    return {r: paired_contrast(records, "glai", r, experiments=experiments, tag=tag, rho=rho)
            for r in TABLE5_REFS}


def speedup_summary(contrast: Contrast) -> dict:
    """Mean-of-ratios speedup T_ref / T_model (paper 4.3): per experiment the mean over seeds, then the mean
    over experiments.

    Returns:
        ``{"per_experiment": {exp: (mean, std over seeds or None, n)}, "mean": float | None,
        "std": std over experiments (ddof 1) or None, "min", "max", "n_experiments"}``.
        The paper's asymmetric spread (+1.25 / -0.96) is not reproducible from its Table 3, so the
        spread here is the std and the range of the per-experiment means.
    """
    per: dict[str, list[float]] = defaultdict(list)
    for p in contrast.pairs:
        per[p.experiment].append(p.ratio)
    per_exp = {}
    for exp, ratios in sorted(per.items()):
        arr = np.asarray(ratios)
        per_exp[exp] = (float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None, int(arr.size))
    means = np.asarray([v[0] for v in per_exp.values()])
    return {
        "per_experiment": per_exp,
        "mean": float(means.mean()) if means.size else None,
        "std": float(means.std(ddof=1)) if means.size > 1 else None,
        "min": float(means.min()) if means.size else None,
        "max": float(means.max()) if means.size else None,
        "n_experiments": int(means.size),
    }


def experiment_order(name: str) -> tuple:
    """Sort key: the paper's suite, then its stand-ins (``offline/*``), then digits, then the rest; a group
    label (``A1 [head.lr=0.1]``) sorts right after its experiment."""
    base = str(name).split(" ", 1)[0]
    if base in PAPER_SUITE:
        return (0, PAPER_SUITE.index(base), str(name))
    if base in OFFLINE_SUITE:
        return (1, OFFLINE_SUITE.index(base), str(name))
    if base == "digits":
        return (2, 0, str(name))
    return (3, 0, str(name))
