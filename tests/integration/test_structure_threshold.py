"""scripts/structure_threshold.py says when two candidate thresholds stop at the same epoch: m_t need not fall every
epoch, and a larger threshold then ends the reduced phase where a smaller one does (the same run offered twice)."""

from __future__ import annotations

import math

from tests.conftest import load_script

#: m_t per epoch (epoch 0 has none): it rises at epoch 3, so the thresholds just above epochs 2 and 3 both stop at 2.
CURVE = [None, 0.4, 0.3, 0.35, 0.1]


def _fake_run(cfg):
    """A record as the runner returns it: the curve run, or a structure run stopping at the first m_t < t."""
    if cfg.experiment.reduced_epochs_mode == "fixed":
        return {"status": "done", "metrics": {"structure": {"path_distance": CURVE}}}
    t = float(cfg.head.structure_threshold)
    stop = next(e for e, v in enumerate(CURVE) if v is not None and v < t)
    return {"status": "done", "metrics": {"reduced_epochs": stop, "bvs": 90.0 - stop}}


def test_two_thresholds_that_stop_at_the_same_epoch_are_named(tmp_path, monkeypatch, capsys):
    st = load_script("structure_threshold")
    monkeypatch.setattr(st, "run", _fake_run)
    monkeypatch.setattr(st, "objective", lambda rec: rec["metrics"]["bvs"])
    assert st.main(["experiment.reduced_epochs=4", "--candidates", "4", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    thresholds = st.candidate_thresholds(CURVE, 4)
    assert [math.isclose(t, v * 1.0001, rel_tol=1e-5) for t, v in zip(thresholds, [0.4, 0.35, 0.3, 0.1])] == [True] * 4
    assert (f"# threshold {thresholds[2]:.4g}: tuning score 88, 2 reduced epochs -- the same stop as threshold "
            f"{thresholds[1]:.4g}: one reduced phase, not two candidates") in err, err
    assert "4 thresholds, 3 distinct stops" in err, err
