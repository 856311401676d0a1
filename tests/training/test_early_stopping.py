"""Early stopping on scripted metric sequences (SPEC 6)."""

import math

import pytest

from glai.training.early_stopping import EarlyStopping


def run(stopper, values):
    for v in values:
        if stopper.step(v):
            break
    return stopper


def test_stops_after_patience_without_improvement():
    s = run(EarlyStopping("max", patience=3, min_delta=0.1), [50, 60, 70, 70, 70, 70, 99])
    assert s.epochs == 6 and s.best == 70 and s.best_epoch == 3


def test_improvement_must_exceed_min_delta():
    # +0.1 exactly is not an improvement; the BVS still records the best value seen
    s = run(EarlyStopping("max", patience=2, min_delta=0.1), [80.0, 80.1, 80.05])
    assert s.epochs == 3 and s.should_stop
    assert s.best == 80.1 and s.best_epoch == 2


def test_small_steps_accumulate_against_the_reference():
    # each step is +0.06 < min_delta, but epoch 3 is +0.12 over the last counted improvement (epoch 1)
    s = run(EarlyStopping("max", patience=2, min_delta=0.1), [80.0, 80.06, 80.12, 80.18, 80.19, 80.20])
    assert s.bad_epochs == 2 and s.epochs == 5


def test_min_mode_for_losses():
    s = run(EarlyStopping("min", patience=2, min_delta=1e-5), [1.0, 0.5, 0.5 - 1e-6, 0.49999])
    assert s.epochs == 4 and s.best == pytest.approx(0.49999) and s.should_stop


def test_nan_never_improves():
    s = run(EarlyStopping("min", patience=2, min_delta=0.0), [1.0, math.nan, math.nan])
    assert s.should_stop and s.best == 1.0


def test_patience_resets_on_improvement():
    s = EarlyStopping("max", patience=2, min_delta=0.0)
    assert [s.step(v) for v in [1, 1, 2, 2, 3, 3, 3]] == [False, False, False, False, False, False, True]


@pytest.mark.parametrize("kwargs", [dict(mode="up", patience=1, min_delta=0), dict(mode="max", patience=0, min_delta=0),
                                    dict(mode="max", patience=1, min_delta=-1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        EarlyStopping(**kwargs)
