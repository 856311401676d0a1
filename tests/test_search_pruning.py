"""A search's pruning (glai.search: TrialReporter, fold_rule) and its journal's torn last line (mend_journal).

A trial the pruner stops is stored as pruned in the journal, spends the budget, is never chosen and never rerun;
the head's default trials report but are never pruned; and a journal cut anywhere inside its last record is
mended before the next append, so a resumed search loses nothing the study held."""

from __future__ import annotations

import json
import multiprocessing as mp

import optuna
import pytest
from optuna.samplers import RandomSampler

from glai.config import PRUNERS as CONFIG_PRUNERS
from glai.errors import ConfigError
from glai.search import (
    PRUNERS,
    SearchStudy,
    TrialReporter,
    build_pruner,
    check_search_overrides,
    choose,
    fold_rule,
    mend_journal,
    open_storage,
    params_key,
)
from glai.training.loop import Pruned

DEFAULTS = [("protocol", []), ("adam", ["head.optimizer=adam"])]
PRUNED, COMPLETE = optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE


def _space(trial) -> dict:
    trial.suggest_int("x", 0, 50)
    return {}


def _study(path, n_trials=6, defaults=DEFAULTS):
    return SearchStudy(str(path), "s", "maximize", lambda seed: RandomSampler(seed=seed), n_trials, _space, defaults)


def _reporter(path, number, pruner, folds=1, fold_se=2.0, min_complete=3, by_epoch=True):
    return TrialReporter(str(path), "s", number, pruner, fold_se, min_complete, folds, by_epoch=by_epoch)


def _job(path, proposal, curve, pruner, folds=None):
    """What run.py does for one trial: report the first fold's per-epoch best-so-far, then every fold's score;
    returns what the sweeper tells the study."""
    folds = folds or [curve[-1]]
    reporter = _reporter(path, proposal.number, pruner, folds=len(folds))
    try:
        for epoch, value in enumerate(curve, start=1):
            reporter.epoch(epoch, value)
        for value in folds:
            reporter.fold(value)
    except Pruned as err:
        return {"value": err.value, "se": None, "record": None, "pruned": {"at": err.at, "value": err.value}}
    return {"value": sum(folds) / len(folds), "se": 0.1, "record": None}


def _keys(study) -> list[str]:
    return [params_key(t.params, t.user_attrs.get("implied"), t.user_attrs.get("default")) for t in study.trials()]


def test_the_pruner_names_of_the_schema_are_the_ones_built():
    assert set(CONFIG_PRUNERS) == set(PRUNERS)
    for name in PRUNERS:
        assert isinstance(build_pruner(name), optuna.pruners.BasePruner)
    with pytest.raises(ValueError, match="tuning.pruner.epochs='halving'"):
        build_pruner("halving")
    with pytest.raises(ValueError, match="reduction_factor"):
        build_pruner("successive_halving", reduction_factor=1)


def test_a_pruned_trial_is_stored_pruned_never_chosen_and_the_defaults_never_pruned(tmp_path):
    path = tmp_path / "a.journal"
    study = _study(path, n_trials=5)
    # successive halving with a first rung at epoch 1 and room for the best half only
    pruner = build_pruner("successive_halving", min_resource=1, reduction_factor=2)
    proposals = study.propose(5)
    assert [p.default for p in proposals[:2]] == ["protocol", "adam"]
    # the defaults learn slowly: a pruner would stop them (the adam default reports the worst epoch 1 of all)
    results = {proposals[0].number: _job(path, proposals[0], [50.0, 70.0, 80.0], pruner),
               proposals[1].number: _job(path, proposals[1], [10.0, 60.0, 75.0], pruner)}
    # a sampled trial that starts well and one that starts worse than every trial at epoch 1
    results[proposals[2].number] = _job(path, proposals[2], [60.0, 72.0, 79.0], pruner)
    results[proposals[3].number] = _job(path, proposals[3], [5.0, 99.0, 99.5], pruner)
    results[proposals[4].number] = _job(path, proposals[4], [55.0, 56.0, 57.0], pruner)
    for p in proposals:
        study.tell(p, results[p.number])
    states = {t.number: t.state for t in study.trials()}
    assert states[proposals[0].number] == states[proposals[1].number] == COMPLETE  # defaults: never pruned
    assert states[proposals[3].number] == PRUNED and results[proposals[3].number]["pruned"]["at"] == \
        "epoch 1 of fold 1"
    pruned = [t for t in study.trials() if t.state == PRUNED]
    assert pruned and all(t.user_attrs["pruned"]["at"] for t in pruned)
    # never chosen, not even when the score it had reported would be the best
    best_pruned = max(pruned, key=lambda t: t.value)
    pick = choose(study.trials())
    assert pick["chosen"].state == COMPLETE and pick["best"].state == COMPLETE
    assert all(t.number != pick["chosen"].number for t in pruned) and best_pruned.state == PRUNED


def test_a_resumed_search_neither_reruns_nor_loses_a_pruned_trial(tmp_path):
    path = tmp_path / "a.journal"
    study = _study(path, n_trials=4)
    pruner = build_pruner("successive_halving", min_resource=1, reduction_factor=4)
    curves = iter([[80.0, 90.0], [70.0, 85.0], [10.0, 20.0], [11.0, 21.0]])
    while proposals := study.propose(1):
        for p in proposals:
            study.tell(p, _job(path, p, next(curves), pruner))
    before = {t.number: (t.state, t.value, t.params) for t in study.trials()}
    pruned = [n for n, (state, _, _) in before.items() if state == PRUNED]
    assert pruned, "a trial far below the defaults at epoch 1 is pruned"
    assert len(before) == 4  # pruned trials spend the budget
    resumed = _study(path, n_trials=7)
    while proposals := resumed.propose(2):
        assert all(p.number not in before for p in proposals)  # nothing of the first search runs again
        for p in proposals:
            resumed.tell(p, _job(path, p, [85.0, 95.0], pruner))
    after = {t.number: (t.state, t.value, t.params) for t in resumed.trials()}
    assert len(after) == 7 and {n: after[n] for n in before} == before  # the pruned trials kept as they were
    assert len(set(_keys(resumed))) == 7  # no parameter set run twice


def test_the_fold_rule_prunes_only_what_lies_clearly_below_the_best():
    complete = [[90.0, 92.0, 91.0], [88.0, 89.0, 90.0], [85.0, 86.0, 84.0]]  # fold sd 1.0 each
    best = complete[0]
    # one fold: the margin is 2 x 1.0 x sqrt(2) = 2.83 below the best's first fold (90): 87.17
    assert fold_rule([87.2], complete, best, 2.0, 3) is None
    assert fold_rule([87.1], complete, best, 2.0, 3).startswith("mean over its first 1 fold(s) 87.1 <")
    # two folds: the margin shrinks with sqrt(2 / n) to 2.0 below the best's mean of its first two (91)
    assert fold_rule([89.0, 89.1], complete, best, 2.0, 3) is None
    assert fold_rule([88.0, 89.9], complete, best, 2.0, 3) is not None
    # too few complete trials, or the rule off: never
    assert fold_rule([0.0], complete[:2], best, 2.0, 3) is None
    assert fold_rule([0.0], complete, best, 0.0, 3) is None


def test_the_fold_rule_pools_the_spread_so_tied_folds_do_not_shrink_the_margin():
    # a family T search on 2 folds (350 rows each, one row 0.286 pp): two trials tied or one row apart on their
    # folds and one 1.29 pp apart; the median of their deviations (0.10) made the margin one row, and pruned
    # a trial one row below the best
    complete = [[93.43, 93.29], [93.29, 93.29], [92.14, 92.0], [92.57, 93.86]]
    best = complete[0]
    pooled = (sum((a - b) ** 2 / 2 for a, b in complete) / 4) ** 0.5  # 0.46: the root of the mean variance
    assert fold_rule([93.14], complete, best, 2.0, 3) is None  # one row below: within 2 x 0.46 x sqrt(2) = 1.31
    assert fold_rule([93.43 - 2 * pooled * 2 ** 0.5 + 0.01], complete, best, 2.0, 3) is None
    reason = fold_rule([93.43 - 2 * pooled * 2 ** 0.5 - 0.01], complete, best, 2.0, 3)
    assert reason is not None and reason.endswith(f"2 x {pooled * 2 ** 0.5:.3g}")
    assert fold_rule([91.43], complete, best, 2.0, 3) is not None  # clearly below: still pruned


def test_a_trial_worse_on_its_first_fold_skips_the_others_and_a_default_never_does(tmp_path):
    path = tmp_path / "a.journal"
    study = _study(path, n_trials=6)
    none = build_pruner("none")
    folds = iter([[90.0, 92.0, 91.0], [88.0, 89.0, 90.0], [87.0, 88.0, 89.0], [70.0, 95.0, 95.0],
                  [91.0, 93.0, 90.0], [60.0, 60.0, 60.0]])
    results = {}
    while proposals := study.propose(1):
        for p in proposals:
            f = next(folds)
            results[p.number] = _job(path, p, [f[0]], none, folds=f)
            study.tell(p, results[p.number])
    by = {t.number: t for t in study.trials()}
    assert [by[n].state for n in sorted(by)] == [COMPLETE, COMPLETE, COMPLETE, PRUNED, COMPLETE, PRUNED]
    assert results[3]["pruned"]["at"] == "fold 1 of 3" and by[3].user_attrs["fold_scores"] == [70.0]
    # a default trial as bad as that completes all its folds
    study2 = _study(tmp_path / "b.journal", n_trials=5, defaults=[("protocol", [])])
    for f in ([90.0, 92.0, 91.0], [88.0, 89.0, 90.0], [87.0, 88.0, 89.0]):
        (p,) = study2.propose(1)
        study2.tell(p, _job(tmp_path / "b.journal", p, [f[0]], none, folds=f))
    assert all(t.state == COMPLETE for t in study2.trials())


def test_a_reporter_of_a_trial_the_study_lacks_names_the_keys(tmp_path):
    path = tmp_path / "a.journal"
    _study(path)
    with pytest.raises(ConfigError, match="tuning.trial=9: no trial 9 of study 's'"):
        _reporter(path, 9, build_pruner("none"))


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_a_budget_that_is_not_a_count_of_trials_is_named(value):
    with pytest.raises(ConfigError, match=rf"hydra.sweeper.n_trials='{value}'.*Fix: hydra.sweeper.n_trials=16"):
        check_search_overrides(["tuning=search", f"hydra.sweeper.n_trials={value}"])
    check_search_overrides(["hydra.sweeper.n_trials=3"])


def _finished_study(path, n_trials=4):
    study = _study(path, n_trials=n_trials)
    while proposals := study.propose(1):
        for p in proposals:
            study.tell(p, {"value": float(p.number), "se": 0.5, "record": f"r{p.number}.json"})
    return {t.number: (t.state, t.value, t.params, t.user_attrs.get("record")) for t in study.trials()}


def test_a_journal_cut_at_every_byte_of_its_last_record_resumes_with_nothing_finished_lost(tmp_path):
    """A crashed or disk-full write, or a copy that lost its last bytes: Optuna skips the torn line when it reads,
    and before the fix the next append landed right after it, leaving a corrupt line in the middle of the file
    that every later read refused."""
    source = tmp_path / "whole.journal"
    # written by another process, as a search is: a trial its cut left running has a dead owner
    proc = mp.get_context("fork").Process(target=_finished_study, args=(source,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    finished = {t.number: (t.state, t.value) for t in optuna.load_study(study_name="s",
                                                                          storage=open_storage(source)).trials}
    data = source.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # the last record's first byte
    assert json.loads(data[last:])["op_code"] is not None
    for cut in range(last, len(data)):
        path = tmp_path / f"cut{cut}.journal"
        path.write_bytes(data[:cut])
        held = {t.number: t for t in optuna.load_study(study_name="s", storage=open_storage(path)).trials}
        resumed = _study(path, n_trials=6)
        while proposals := resumed.propose(1):
            for p in proposals:
                resumed.tell(p, {"value": 10.0 + p.number, "se": 0.5, "record": None})
        lines = path.read_bytes().split(b"\n")
        assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1]), cut  # no corrupt line
        again = optuna.load_study(study_name="s", storage=open_storage(path))
        trials = {t.number: t for t in again.trials}
        for number, t in held.items():  # what the cut study held is all there, as it was
            if t.state == COMPLETE:
                assert (trials[number].state, trials[number].value) == (COMPLETE, finished[number][1]), cut
        assert len(trials) == 6 and all(t.state == COMPLETE for t in trials.values()), cut
    # a whole last record that lost only its newline is ended, not dropped
    path = tmp_path / "newline.journal"
    path.write_bytes(data[:-1])
    assert mend_journal(path) == "ended" and path.read_bytes() == data
    path.write_bytes(data[:-5])
    assert mend_journal(path) == "dropped" and path.read_bytes() == data[:last]
    assert mend_journal(path) is None


def test_a_read_only_journal_is_not_called_corrupt(tmp_path, monkeypatch):
    """A folder the sweeper cannot write (the tests run as root, which writes anyway: the OS's refusal is what the
    journal's open raises, simulated here) is named as such, never as a corrupt study to throw away."""
    path = tmp_path / "a.journal"
    _finished_study(path)
    from optuna.storages.journal import JournalFileBackend

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(JournalFileBackend, "__init__", refused)
    with pytest.raises(ConfigError, match="read-only; the study in it is unharmed") as err:
        _study(path, n_trials=6)
    assert "corrupt" not in str(err.value) and "move it away" not in str(err.value)


def test_a_corrupt_or_read_only_sqlite_study_is_one_line(tmp_path):
    db = tmp_path / "s.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"cannot be opened .*Fix: move it away"):
        SearchStudy(f"sqlite:///{db}", "s", "maximize", lambda seed: RandomSampler(seed=seed), 3, _space, DEFAULTS)


def test_a_trial_whose_epochs_are_not_minibatch_passes_is_never_pruned_by_epoch(tmp_path):
    """Full-batch L-BFGS runs one iteration an epoch: at a rung it would meet trials that took hundreds of steps
    (successive halving at epoch 2 stopped every L-BFGS trial of a digits search that L-BFGS won unpruned)."""
    path = tmp_path / "a.journal"
    study = _study(path, n_trials=4)
    pruner = build_pruner("successive_halving", min_resource=1, reduction_factor=4)
    proposals = study.propose(4)
    for p in proposals[:3]:
        study.tell(p, _job(path, p, [90.0, 95.0], pruner))
    reporter = _reporter(path, proposals[3].number, pruner, by_epoch=False)
    for epoch, value in enumerate([10.0, 20.0, 97.0], start=1):
        reporter.epoch(epoch, value)  # the worst at every rung: not stopped
    reporter.fold(97.0)
    with pytest.raises(Pruned):  # the same curve with minibatch epochs is stopped at the first rung
        other = _study(tmp_path / "c.journal", n_trials=4)
        ps = other.propose(4)
        for p in ps[:3]:
            other.tell(p, _job(tmp_path / "c.journal", p, [90.0, 95.0], pruner))
        _reporter(tmp_path / "c.journal", ps[3].number, pruner).epoch(1, 10.0)


def test_a_file_that_is_no_journal_is_never_mended(tmp_path):
    """Bytes without a newline, or after a line that is no record, are not a journal's torn end: left untouched,
    and the study is refused as a file this Optuna cannot read."""
    for data in (bytes(range(128, 256)) * 4, b"not a journal\nnor this"):
        path = tmp_path / "x.journal"
        path.write_bytes(data)
        with pytest.raises(ValueError, match="not an Optuna journal"):
            mend_journal(path)
        with pytest.raises(ConfigError, match="cannot be opened .*Fix: move it away"):
            _study(path)
        assert path.read_bytes() == data
