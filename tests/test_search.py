"""A search's study (glai.search, issue 27): distinct proposals, the budget, resumption after a kill, two
sweepers at once, and the one-standard-error choice."""

import multiprocessing as mp
import os

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.samplers import RandomSampler, TPESampler

from glai.search import SearchStudy, choose, params_key, study_name

DEFAULTS = [("protocol", []), ("adam", ["head.optimizer=adam"])]


def _space(trial) -> dict:
    """A small discrete space (8 sets): repeats are likely, so the dedupe is what keeps the trials distinct."""
    trial.suggest_int("x", 0, 3)
    if trial.suggest_categorical("mode", ["a", "b"]) == "b":
        return {"implied": "yes"}
    return {}


def _study(path, n_trials=6, space=_space, defaults=DEFAULTS, sampler=TPESampler):
    def factory(seed):
        return sampler(seed=seed, n_startup_trials=2) if sampler is TPESampler else sampler(seed=seed)

    return SearchStudy(str(path), "s", "maximize", factory, n_trials, space, defaults)


def _run(study, n=2, value=lambda p: float(len(p.overrides))):
    """Propose and tell until the budget is spent; returns the proposals."""
    done = []
    while proposals := study.propose(n):
        for p in proposals:
            study.tell(p, {"value": value(p), "se": 0.1, "record": None})
        done += proposals
    return done


def _keys(study) -> list[str]:
    return [params_key(t.params, t.user_attrs.get("implied"), t.user_attrs.get("default")) for t in study.trials()]


def test_defaults_come_first_and_the_budget_counts_them(tmp_path):
    study = _study(tmp_path / "a.journal", n_trials=5)
    first = study.propose(3)
    assert [p.default for p in first] == ["protocol", "adam", None] and first[1].overrides == ["head.optimizer=adam"]
    for p in first:
        study.tell(p, 1.0)
    _run(study)
    trials = study.trials()
    assert len(trials) == 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len(set(_keys(study))) == 5
    # a budget at or below the defaults' count: only the defaults (issue 27: HYDRA_TRIALS=2 failed before)
    small = _study(tmp_path / "b.journal", n_trials=1)
    assert [p.default for p in _run(small)] == ["protocol"] and len(small.trials()) == 1


def test_the_space_exhausted_stops_before_the_budget(tmp_path, capsys):
    study = _study(tmp_path / "a.journal", n_trials=20, defaults=[])
    _run(study, n=3)
    assert len(study.trials()) == 8 and len(set(_keys(study))) == 8  # every distinct set once, then stop
    assert "no parameter set the study has not run" in capsys.readouterr().out


def _killed_sweeper(path, n):
    """A sweeper that proposes n trials, finishes one and dies (os._exit: nothing told, no cleanup)."""
    study = _study(path, n_trials=8)
    _run_some = study.propose(n)
    study.tell(_run_some[0], 5.0)
    os._exit(0)


def test_a_killed_search_resumes_without_repeats_and_runs_the_full_budget(tmp_path):
    path = tmp_path / "a.journal"
    study = _study(path, n_trials=8)
    _run_one = study.propose(2)
    for p in _run_one:
        study.tell(p, 1.0)
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_killed_sweeper, args=(path, 3))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    left = [t for t in study.trials() if t.state == optuna.trial.TrialState.RUNNING]
    assert len(left) == 2  # the dead sweeper's in-flight trials
    resumed = _study(path, n_trials=8)
    proposals = _run(resumed, n=3)
    adopted = [p for p in proposals if p.adopted]
    assert sorted(p.number for p in adopted) == sorted(t.number for t in left)
    assert [p.overrides for p in adopted] == [t.user_attrs["overrides"] for t in sorted(left, key=lambda t: t.number)]
    trials = resumed.trials()
    assert len(trials) == 8 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len(set(_keys(resumed))) == 8  # no parameter set twice, the full budget of distinct trials


def _sweeper_killed_at_write(path, k):
    """A sweeper that dies (os._exit: nothing told, no cleanup) just before its k-th write to the study."""
    from optuna.storages.journal import JournalStorage

    write, count = JournalStorage._write_log, [0]

    def dying(self, *args, **kwargs):
        count[0] += 1
        if count[0] == k:
            os._exit(0)
        return write(self, *args, **kwargs)

    JournalStorage._write_log = dying
    _run(_study(path, n_trials=6), n=1)
    os._exit(3)  # the budget was spent before the k-th write


@pytest.mark.parametrize("k", range(1, 34))  # every write of a 6-trial search (33)
def test_a_sweeper_killed_at_any_write_leaves_a_study_the_next_one_completes(tmp_path, k):
    """CI caught a search cut off between Optuna's ask() and the trial's first attribute: a running trial without
    an owner looked live for ever, spent the budget and was never run. Now a trial is written whole before it
    runs, so a kill at any write leaves a trial the next sweeper adopts."""
    path = tmp_path / "a.journal"
    _study(path, n_trials=6)  # the study exists: the writes counted are the search's
    proc = mp.get_context("fork").Process(target=_sweeper_killed_at_write, args=(path, k))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, "the sweeper finished before its k-th write: k is past the search's writes"
    resumed = _study(path, n_trials=6)
    _run(resumed, n=1)
    trials = resumed.trials()
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len(set(_keys(resumed))) == 6
    assert [t.user_attrs.get("default") for t in trials[:2]] == ["protocol", "adam"]
    for t in trials[2:]:  # each sampled trial ran the overrides of its recorded parameters
        assert sorted(t.user_attrs["overrides"]) == sorted(f"{key}={value}" for key, value in
                                                           {**t.params, **t.user_attrs["implied"]}.items())


def test_a_restarted_sampler_does_not_replay_its_first_proposals(tmp_path):
    """The official sweeper re-seeded TPE with the same seed in every process, so a resumed search proposed the
    sets it had already run; here each draw's seed comes from the study's state."""
    space = {"x": FloatDistribution(0.0, 1.0)}

    def continuous(trial):
        trial._suggest("x", space["x"])
        return {}

    path = tmp_path / "a.journal"
    first = _study(path, n_trials=3, space=continuous, defaults=[], sampler=RandomSampler)
    _run(first)
    again = _study(path, n_trials=6, space=continuous, defaults=[], sampler=RandomSampler)
    _run(again)
    xs = [t.params["x"] for t in again.trials()]
    assert len(xs) == 6 and len(set(xs)) == 6
    # what a fresh RandomSampler(seed=0) proposes first in every process: run once only
    replay = optuna.create_study(sampler=RandomSampler(seed=0)).ask()
    assert sum(x == replay.suggest_float("x", 0.0, 1.0) for x in xs) <= 1


def _concurrent_sweeper(path, out):
    study = _study(path, n_trials=8, defaults=[])
    out.put([p.number for p in _run(study, n=1)])


def test_two_resumes_at_once_give_distinct_trials(tmp_path):
    path = tmp_path / "a.journal"
    _run(_study(path, n_trials=2, defaults=[]))
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_concurrent_sweeper, args=(path, out)) for _ in range(2)]
    for p in procs:
        p.start()
    numbers = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    study = _study(path, n_trials=8, defaults=[])
    assert len(study.trials()) == 8 and len(set(_keys(study))) == 8
    assert sorted(numbers[0] + numbers[1]) == list(range(2, 8))  # the budget shared, no trial run twice


def _frozen(number, value, se=None, default=None, state=optuna.trial.TrialState.COMPLETE):
    attrs = {k: v for k, v in (("se", se), ("default", default)) if v is not None}
    trial = optuna.trial.create_trial(value=value if state == optuna.trial.TrialState.COMPLETE else None,
                                      state=state, user_attrs=attrs)
    trial.number = number
    return trial


@pytest.mark.parametrize("best, se, kept", [(90.5, 1.0, True), (91.5, 1.0, False), (90.0, 0.0, True),
                                            (90.01, 0.0, False)])
def test_one_standard_error_rule(best, se, kept):
    trials = [_frozen(0, 90.0, 0.8, "protocol"), _frozen(1, 89.0, 0.5, "adam"), _frozen(2, best, se),
              _frozen(3, None, state=optuna.trial.TrialState.FAIL)]
    pick = choose(trials)
    assert pick["best"].number == (0 if best == 90.0 else 2)
    assert pick["chosen"].number == (0 if kept else 2)
    assert ("kept" in pick["rule"] or "is the best" in pick["rule"]) == kept


def test_one_standard_error_rule_minimising_and_without_a_default():
    trials = [_frozen(0, 1.0, 0.1, "protocol"), _frozen(1, 0.95, 0.1), _frozen(2, 0.8, 0.1)]
    assert choose(trials, "minimize")["chosen"].number == 2
    assert choose(trials[:2], "minimize")["chosen"].number == 0  # 0.05 better: within its SE
    assert choose(trials[1:])["chosen"].number == 1  # no protocol default: the best
    with pytest.raises(ValueError, match="no trial of the search completed"):
        choose([_frozen(0, None, state=optuna.trial.TrialState.FAIL)])


def test_study_name_is_the_searchs_identity():
    a = study_name(["experiment=digits", "head=mlp"], ["head.weight_decay=tag(log, interval(1e-6, 1e-1))"], "code")
    assert a == study_name(["head=mlp", "experiment=digits"], ["head.weight_decay=tag(log, interval(1e-6, 1e-1))"],
                           "code")
    assert a != study_name(["experiment=digits", "head=glai"], [], "code") != study_name(["x"], [], "other code")


def test_the_search_runs_on_the_maintained_optuna_line_without_pinning_sqlalchemy():
    """hydra-optuna-sweeper 1.3.0 held optuna at 2.10 (2021) and forced sqlalchemy<2 and alembic<1.14 into every
    user's environment (issue 27); the project's sweeper needs neither pin."""
    from importlib.metadata import requires, version

    deps = [d for d in requires("glai") if "extra ==" not in d]  # what pip installs with the package
    names = {d.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower(): d for d in deps}
    assert "hydra-optuna-sweeper" not in names and "sqlalchemy" not in names and "alembic" not in names
    assert names["optuna"] == "optuna>=4" and int(version("optuna").split(".")[0]) >= 4
    assert names["hydra-core"].replace(" ", "") in ("hydra-core>=1.3,<1.4", "hydra-core<1.4,>=1.3")  # the released line
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    assert "GlaiOptunaSweeper" in {p.__name__ for p in Plugins.instance().discover(Sweeper)}
