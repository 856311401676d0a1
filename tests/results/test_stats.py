"""Paired contrasts and one-sided Wilcoxon tests (paper 4.3, SPEC 9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from glai.results import stats as st
from glai.results.stats import (
    d_score,
    d_time,
    is_accuracy,
    paired_contrast,
    protocol_rhos,
    select,
    speedup_summary,
    wilcoxon_greater,
)
from tests.results.records import make_record


# Exact one-sided p-values by hand: under H0 each of the 2^n sign patterns of the ranks 1..n is equally
# likely, and p = P(W+ >= w_obs) = (# subsets of {1..n} with sum >= w_obs) / 2^n.
@pytest.mark.parametrize(
    "d, w_plus, p",
    [
        # all six positive: W+ = 21 = 1+...+6, only the all-positive pattern reaches it: 1/64
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 21.0, 1 / 64),
        # rank 1 negative: W+ = 20; W+ >= 20 <=> the negative ranks sum to <= 1: {} or {1}: 2/64
        ([-0.1, 2.0, 3.0, 4.0, 5.0, 6.0], 20.0, 2 / 64),
        # rank 3 negative: W+ = 18; negative ranks summing to <= 3: {}, {1}, {2}, {3}, {1,2}: 5/64
        ([-3.0, 1.0, 2.0, 4.0, 5.0, 6.0], 18.0, 5 / 64),
        # n = 7, ranks 1 and 2 negative: W+ = 25 of 28; negative sums <= 3: {}, {1}, {2}, {3}, {1,2}: 5/128
        ([-0.5, -1.5, 3.0, 4.0, 5.0, 6.0, 7.0], 25.0, 5 / 128),
        # all negative: W+ = 0, every pattern has W+ >= 0: p = 1
        ([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0], 0.0, 1.0),
    ],
    ids=["all-positive", "rank1-negative", "rank3-negative", "n7-two-negative", "all-negative"],
)
def test_wilcoxon_exact_small_n(d, w_plus, p):
    res = wilcoxon_greater(d)
    assert res.n == len(d)
    assert res.statistic == w_plus
    assert res.p_value == pytest.approx(p, rel=1e-12)


def test_wilcoxon_matches_scipy_n18():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, size=18)
    ref = sps.wilcoxon(d, alternative="greater")
    res = wilcoxon_greater(d)
    assert res.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert res.statistic == pytest.approx(float(ref.statistic))


def test_wilcoxon_too_few_pairs():
    res = wilcoxon_greater([1.0, 2.0, 3.0])
    assert res.p_value is None and res.cell() == "too few pairs (n=3)"
    # zeros are dropped by the test, so 6 pairs with 2 zeros are too few
    res = wilcoxon_greater([0.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    assert res.p_value is None and res.cell() == "too few non-zero pairs (n=4 of 6)"


def test_orientation():
    # faster model (2 s vs 4 s) -> positive
    assert d_time(2.0, 4.0) == pytest.approx(math.log(2.0))
    assert d_time(4.0, 2.0) < 0
    # accuracy: higher is better, relative to |S_ref|
    assert d_score(90.0, 80.0, accuracy=True) == pytest.approx(0.125)
    assert d_score(70.0, 80.0, accuracy=True) == pytest.approx(-0.125)
    # loss: lower is better
    assert d_score(1.5e-4, 2.0e-4, accuracy=False) == pytest.approx(0.25)
    assert d_score(2.5e-4, 2.0e-4, accuracy=False) == pytest.approx(-0.25)
    # negative reference loss (e.g. a log-likelihood) keeps the orientation through |S_ref|
    assert d_score(-2.0, -1.0, accuracy=False) > 0
    assert is_accuracy("val_acc") and not is_accuracy("val_loss") and not is_accuracy(None, "min")
    with pytest.raises(ValueError):
        d_time(0.0, 1.0)
    with pytest.raises(ValueError):
        d_score(1.0, 0.0, accuracy=True)
    with pytest.raises(ValueError):
        is_accuracy("f1")


def test_contrast_lists_missing_and_failed_partners():
    recs = [
        make_record("A1", "mlp", 0, total_s=10.0, bvs=80.0),
        make_record("A1", "glai", 0, total_s=5.0, bvs=88.0),
        make_record("A1", "mlp", 1, total_s=10.0, bvs=80.0),
        make_record("A1", "glai", 1, status="failed", error="RuntimeError: boom"),
        make_record("A1", "linear", 2, total_s=3.0, bvs=70.0),  # seed 2: neither mlp nor glai
        make_record("B1", "mlp", 0, total_s=8.0, bvs=2.0e-4, monitor="val_loss"),
        make_record("B1", "glai", 0, total_s=4.0, bvs=1.0e-4, monitor="val_loss"),
    ]
    con = paired_contrast(recs, "glai", "mlp")
    assert [(p.experiment, p.seed) for p in con.pairs] == [("A1", 0), ("B1", 0)]
    a1, b1 = con.pairs
    assert a1.d_time == pytest.approx(math.log(2.0)) and a1.d_score == pytest.approx(0.1)
    assert b1.d_score == pytest.approx(0.5) and b1.ratio == pytest.approx(2.0)
    reasons = {(u.experiment, u.seed): u.reason for u in con.unpaired}
    assert reasons[("A1", 1)] == "glai: status failed (RuntimeError: boom)"
    assert reasons[("A1", 2)] == "glai: no record; mlp: no record"
    assert con.time_test.cell() == "too few pairs (n=2)"


def test_select_and_protocol_rho():
    recs = [
        make_record("A1", "glai", 0, rho=0.5),
        make_record("A1", "glai", 0, rho=0.25, overrides=["experiment=A1", "rho=0.25"]),
        make_record("A1", "mlp", 0, rho=0.5, tag="adam"),
        make_record("C1", "glai", 0, rho=0.75, overrides=["rho=0.75"]),
    ]
    rhos = protocol_rhos(recs, conf_dir="/nonexistent")
    assert rhos == {"A1": 0.5, "C1": 0.5}  # C1: every run overrides rho -> the default
    assert len(select(recs, tag="", rho=rhos)) == 1
    assert len(select(recs, tag=None, rho=rhos)) == 2
    assert len(select(recs, tag={"mlp": "adam", "glai": ""}, rho=rhos)) == 2
    assert len(select(recs, tag=None, rho=None)) == 4


def test_speedup_mean_of_ratios():
    recs = []
    # A1: ratios 2 and 4 -> 3; A2: ratio 1 -> 1; mean of ratios = 2 (the ratio of mean times would differ)
    for exp, seed, t_glai in (("A1", 0, 5.0), ("A1", 1, 2.5), ("A2", 0, 10.0)):
        recs += [make_record(exp, "mlp", seed, total_s=10.0), make_record(exp, "glai", seed, total_s=t_glai)]
    s = speedup_summary(paired_contrast(recs, "glai", "mlp"))
    assert s["per_experiment"]["A1"] == (3.0, pytest.approx(math.sqrt(2.0)), 2)
    assert s["per_experiment"]["A2"] == (1.0, None, 1)
    assert s["mean"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(math.sqrt(2.0))
    assert (s["min"], s["max"], s["n_experiments"]) == (1.0, 3.0, 2)


def _curve_record(head, seed, curve, times, *, monitor="val_acc", phases=None, reduced_epochs=None,
                  min_delta=0.1, bvs=None, experiment="A1"):
    rec = make_record(experiment, head, seed, monitor=monitor, epochs=len(curve), phases=phases,
                      reduced_epochs=reduced_epochs, bvs=bvs if bvs is not None else (max(curve) if monitor ==
                                                                                      "val_acc" else min(curve)))
    rec["metrics"]["curves"].update({monitor: list(curve), "epoch_time_s": list(times)})
    rec["config"]["experiment"]["min_delta"] = min_delta
    return rec


def test_time_to_target_on_scripted_curves():
    rec = _curve_record("mlp", 0, [50.0, 80.0, 91.0, 89.0], [1.0, 1.0, 1.5, 1.0])
    assert st.time_to_target(rec, 90.0) == st.TimeToTarget(3.5, 3)
    assert st.time_to_target(rec, 91.05) == st.TimeToTarget(3.5, 3)  # within min_delta 0.1
    assert st.time_to_target(rec, 91.2) == st.TimeToTarget(None, None)  # never
    assert st.time_to_target(rec, 79.0, min_delta=0.0) == st.TimeToTarget(2.0, 2)
    # GLAI: the reduced MLP and the conversion are on its clock, its reduced epochs count
    glai = _curve_record("glai", 0, [85.0, 92.0], [0.5, 0.5], reduced_epochs=5,
                         phases={"reduced_mlp": 2.0, "conversion": 0.25, "estimator": 1.0})
    assert st.time_to_target(glai, 90.0) == st.TimeToTarget(3.25, 7)
    # a loss is reached from above
    loss = _curve_record("mlp", 0, [1.0, 0.5, 0.3], [1.0, 1.0, 1.0], monitor="val_loss", min_delta=0.0)
    assert st.time_to_target(loss, 0.4) == st.TimeToTarget(3.0, 3)
    assert st.time_to_target(loss, 0.4, min_delta=0.1) == st.TimeToTarget(2.0, 2)
    episodic = _curve_record("mlp", 0, [50.0], [1.0])
    episodic["metrics"]["episodes"] = {"n": 5}
    with pytest.raises(ValueError, match="multi-episode"):
        st.time_to_target(episodic, 40.0)


def test_time_to_target_contrast_and_its_wilcoxon():
    """Six seeds where GLAI reaches the MLP's BVS sooner: every D positive, exact p = 1/64; one more seed
    where it never does is counted, not tested."""
    recs = []
    for s in range(7):
        recs.append(_curve_record("mlp", s, [70.0, 80.0, 90.0], [1.0, 1.0, 1.0]))
        curve = [95.0, 96.0] if s < 6 else [60.0, 70.0]
        recs.append(_curve_record("glai", s, curve, [0.2, 0.2], reduced_epochs=2,
                                  phases={"reduced_mlp": 0.5 + 0.1 * s, "conversion": 0.1, "estimator": 0.4}))
    con = st.paired_contrast(recs, "glai", "mlp")
    assert len(con.pairs) == 7 and con.ttt_never == 1
    reached = [p for p in con.pairs if p.ttt == "reached"]
    assert reached[0].d_ttt == pytest.approx(math.log(3.0 / 0.8))
    assert con.ttt_test.p_value == pytest.approx(1 / 64)
