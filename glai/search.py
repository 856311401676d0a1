"""A search's Optuna study: storage, identity, distinct proposals, resumption, the one-standard-error choice
(docs/method.md, Tuned choice).

The project's Hydra sweeper (``hydra_plugins/glai_optuna_sweeper``) maps Hydra's overrides and launcher to the
trials of a :class:`SearchStudy`; everything about the study itself lives here, so ``scripts/save_tuned.py`` and
the tests read studies through the same code:

- **Storage** (:func:`open_storage`): by default Optuna's ``JournalStorage`` over a ``JournalFileBackend``
  (``<sweep dir>/optuna.journal``). It appends each change to one log file under a lock that Optuna designed for
  shared network disks (a symlink lock: atomic on NFS), so a search whose sweeper and trials run on different
  cluster nodes keeps one consistent study. SQLite's own locking is unreliable over NFS (its documentation says
  so), so an ``sqlite:///`` URL is accepted for a local disk only; any other SQLAlchemy URL (a database server)
  works too.
- **Identity** (:func:`study_name`): a study is named by the search's fixed overrides, its ranges and the code of
  its search space, so the same command resumes the same study and any other search gets its own.
- **Budget**: ``n_trials`` counts every trial the study holds that finished or is running (the head's default
  trials included), so a resumed search, or two sweepers on one study at once, run the budget once between them.
- **Distinct proposals** (:meth:`SearchStudy.propose`): under a file lock, each proposal is sampled on an
  in-memory copy of the study by a sampler seeded from the study's state (the number of trials it holds), so a
  restarted process never replays the sequence it proposed before; a parameter set the study already holds is
  drawn again (another seed), and only a distinct one is enqueued into the real study and asked for. No
  parameter set is ever run twice, however the search is cut off and resumed.
- **Resumption**: a trial left running by a sweeper that no longer exists on this host (a killed search) is
  adopted by the next one and run again under its own trial number, so its parameters are neither lost nor
  duplicated. A trial owned by a sweeper on another host is taken as live. A trial is written whole, its owner
  included, before it runs (enqueued, then asked for), so a sweeper killed at any write leaves either a running
  trial with a dead owner or a waiting trial, and the next sweeper adopts both.
- **A torn last line** (a crashed or disk-full write, a copy that lost its last bytes) is mended before the next
  append, under the journal's own lock: a line that holds a whole record is ended, a partial one dropped (Optuna
  never read it), so the study loses nothing it held and no corrupt line ends up in the middle of the file.
- **Pruning** (:class:`TrialReporter`, ``tuning.pruner``): a trial reports its first fold's per-epoch tuning score
  (the best so far) to the study, whose pruner (successive halving by default) stops it when it is not among the
  best at a rung; and a trial whose mean over its first folds lies clearly below the best complete trial's on the
  same folds skips its other folds (:func:`fold_rule`). The head's default trials report but are never pruned
  (the one-standard-error rule needs them complete). A pruned trial is stored as pruned: it spends the budget, is
  never chosen, and a resumed search neither reruns nor loses it.
- **The one-standard-error rule** (:func:`choose`): a trial's score is a mean over folds (or repeated splits, or
  episodes) with its standard error; the best trial replaces the head's protocol default only when it beats it
  by more than the best trial's standard error (Hastie, Tibshirani & Friedman, The Elements of Statistical
  Learning, 2nd ed., section 7.10: the simplest model within one standard error of the best), so noise never
  decides.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock

from glai.errors import ConfigError

__all__ = ["PRUNERS", "Proposal", "SearchStudy", "TrialReporter", "build_pruner", "check_search_overrides", "choose",
           "fold_rule", "mend_journal", "open_storage", "params_key", "storage_error", "study_name", "trial_score"]

#: The study's file under the sweep folder when ``hydra.sweeper.storage`` is null.
JOURNAL_FILE = "optuna.journal"
#: How many reseeded draws :meth:`SearchStudy.propose` tries before it says the space holds no new set.
MAX_DRAWS = 64

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Trial states that spend a search's budget: finished (complete, pruned, failed) or running.
SPENT = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL,
         optuna.trial.TrialState.RUNNING)


def _storage_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, TypeError, ImportError)
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # journal storage only
        return errors
    return (*errors, SQLAlchemyError)


#: What opening or writing a study's storage raises when the file or database is not usable.
STORAGE_ERRORS = _storage_errors()


def mend_journal(path: str | Path) -> str | None:
    """End or drop a torn last line of the journal file ``path`` (one without its newline): a line that holds a
    whole JSON record is ended with its newline, any other is cut off. Call it under the journal's lock. Optuna
    skips a torn last line when it reads, so neither loses a record the study held.

    Returns:
        ``"ended"``, ``"dropped"``, or None when the file ends with a newline (or is empty or missing).

    Raises:
        ValueError: the unterminated line is not a whole record and no journal record precedes it (a file with
            no newline, or whose last complete line is not JSON): not an Optuna journal, left as it is.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return None
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return None
            # the torn line starts after the last newline: read back until one is found
            start, block = size, 1 << 16
            while start > 0:
                low = max(0, start - block)
                f.seek(low)
                chunk = f.read(start - low)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    start = low + cut + 1
                    break
                start = low
            f.seek(start)
            tail = f.read()
            # the last complete line, which a journal's tear follows
            f.seek(max(0, start - block))
            before = f.read(start - max(0, start - block)).rstrip(b"\n").rsplit(b"\n", 1)[-1] if start else b""
    except FileNotFoundError:
        return None
    whole = _is_record(tail)
    if not whole and not _is_record(before):
        raise ValueError(f"{path}: its last line ({len(tail)} bytes, no newline) is not a whole record and follows "
                         "no journal record: not an Optuna journal")
    with open(path, "r+b") as f:
        if whole:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        else:
            f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    action = "ended" if whole else "dropped"
    print(f"[glai] search journal {path}: its last line was cut off ({len(tail)} bytes, "
          f"{'a whole record: ended' if whole else 'a partial record Optuna never read: dropped'})", file=sys.stderr)
    return action


def _is_record(line: bytes) -> bool:
    """Whether ``line`` is one whole journal record (a JSON object)."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _journal_backend(path: str):
    """Optuna's ``JournalFileBackend`` whose every append first mends a torn last line (:func:`mend_journal`),
    under the same lock as the append."""
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    class _MendingJournalFileBackend(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            # Optuna's append, with the mend first under its lock
            with get_lock_file(self._lock):
                mend_journal(self._file_path)
                text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
                with open(self._file_path, "ab") as f:
                    f.write(text.encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())

    return _MendingJournalFileBackend(path)


def open_storage(storage: str | Path) -> optuna.storages.BaseStorage | str:
    """The Optuna storage of ``storage``: a journal file path (``*.journal``, or any path without ``://``) ->
    ``JournalStorage`` over Optuna's file backend, whose appends mend a torn last line first
    (:func:`mend_journal`); an SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``) -> the URL itself
    (Optuna's RDB storage).

    Raises:
        ValueError: an empty ``storage``.
        OSError: the journal's folder or file cannot be created or written.
    """
    text = str(storage)
    if not text:
        raise ValueError("hydra.sweeper.storage is empty: give a journal file path, an SQLAlchemy URL, or null "
                         f"(<sweep dir>/{JOURNAL_FILE})")
    if "://" in text:
        return text
    from optuna.storages.journal import JournalStorage

    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(_journal_backend(text))


def storage_error(err: BaseException, storage: str | Path, name: str) -> ConfigError:
    """A study's storage failing (opening it, or writing a trial) as the one-line error the sweeper prints: a
    folder or database that cannot be written is named as such (the study in it is healthy), anything else as a
    file this Optuna cannot read."""
    text = str(storage)
    detail = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    low = detail.lower()
    if isinstance(err, PermissionError) or "readonly" in low or "read-only" in low or "permission denied" in low:
        where = text[len("sqlite:///"):] if text.startswith("sqlite:///") else text
        return ConfigError(f"hydra.sweeper.storage: the study {name!r} in {text} cannot be written ({detail}): the "
                           f"file or its folder is read-only; the study in it is unharmed. Fix: make {where} and "
                           "its folder writable, or copy them to a writable place and pass hydra.sweeper.storage= "
                           "that copy")
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
        return ConfigError(f"hydra.sweeper.storage: the study {name!r} in {text} cannot be written ({detail}). Fix: "
                           "free the disk or pass hydra.sweeper.storage= a file on a writable disk")
    return ConfigError(f"hydra.sweeper.storage: the study {name!r} in {text} cannot be opened ({detail}): not an "
                       "Optuna journal or database this Optuna can read (corrupt, or written by something else). "
                       "Fix: move it away and search again (a new study starts), or hydra.sweeper.storage= "
                       "another file")


def check_search_overrides(args: Sequence[str]) -> None:
    """The search's own command-line values, checked before Hydra composes anything: ``hydra.sweeper.n_trials``
    must be a whole number >= 1.

    Raises:
        ConfigError: naming the override and a value that works.
    """
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key.lstrip("+~") != "hydra.sweeper.n_trials":
            continue
        try:
            n = int(value)
        except ValueError:
            n = None
        if n is None or n < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={value!r}: the search's budget is a whole number of trials "
                              ">= 1 (the head's default trials count in it). Fix: hydra.sweeper.n_trials=16")


def _lock_path(storage: str | Path, name: str) -> Path:
    """The proposals' lock: beside a journal file, else in the working folder (RDB storages)."""
    text = str(storage)
    if "://" not in text:
        return Path(text + ".propose.lock")  # <journal>.lock is the journal backend's own
    if text.startswith("sqlite:///"):
        return Path(text[len("sqlite:///"):] + ".propose.lock")
    return Path(f".glai-study-{hashlib.sha1(f'{text}|{name}'.encode()).hexdigest()[:12]}.lock")


def study_name(fixed: Sequence[str], space: Sequence[str], code: str) -> str:
    """``search-<12 hex>``: the SHA-1 of the search's fixed overrides (sorted), its ranges (sorted) and the
    source of its search space -- the search's identity (a resumed search finds its study by it)."""
    text = "\n".join([*sorted(fixed), "--", *sorted(space), "--", code])
    return "search-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def params_key(params: dict[str, Any], implied: dict[str, Any] | None = None, default: str | None = None) -> str:
    """A parameter set's identity (what "the same trial" means): its sampled values, the overrides its space
    implied, and the name of the default it is, as sorted text."""
    items = sorted({**params, **(implied or {})}.items())
    return f"{default or ''}|" + "|".join(f"{k}={v!r}" for k, v in items)


def _key_of(trial: optuna.trial.FrozenTrial) -> str:
    attrs = trial.user_attrs
    return params_key(trial.params, attrs.get("implied"), attrs.get("default"))


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict[str, Any] | None) -> bool:
    """Whether the sweeper that owns a running trial still runs (always True for another host's)."""
    if not owner or owner.get("host") != socket.gethostname():
        return True
    pid = int(owner.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return owner.get("start") is None or _start_time(pid) == owner.get("start")


@dataclass
class Proposal:
    """One trial to run: its number in the study and the overrides that make it (beside the search's fixed ones)."""

    number: int
    overrides: list[str]
    trial: optuna.trial.Trial = field(repr=False)
    default: str | None = None
    adopted: bool = False


def _override(key: str, value: Any) -> str:
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"


def trial_score(result: Any) -> tuple[float, float | None, str | None]:
    """``(value, standard error, record path)`` of a trial's return value: a number, or the mapping
    ``run.py`` returns for a search (``{"value", "se", "record"}``); NaN for a run that did not finish."""
    if isinstance(result, dict):
        value = result.get("value")
        se = result.get("se")
        return (math.nan if value is None else float(value), None if se is None else float(se),
                result.get("record"))
    return (math.nan if result is None else float(result)), None, None


class SearchStudy:
    """The study of one search, with its budget and its lock.

    Args:
        storage: a journal file path or an SQLAlchemy URL (:func:`open_storage`).
        name: the study's name (:func:`study_name`).
        direction: ``maximize`` or ``minimize``.
        sampler: ``seed -> optuna.samplers.BaseSampler``: a fresh sampler per draw, seeded from the study's state.
        n_trials: the budget: trials of the study, default trials included.
        suggest: ``trial -> implied overrides``: makes one trial's suggestions (the distributions of the
            search's ranges and its custom space) and returns the fixed overrides they imply.
        defaults: ``[(name, overrides)]``: the head's default trials, run first and once (e.g.
            ``[("protocol", []), ("adam", ["head.optimizer=adam"])]``).
        seed: the sampler's base seed.
    """

    def __init__(self, storage: str | Path, name: str, direction: str, sampler: Callable[[int], Any], n_trials: int,
                 suggest: Callable[[Any], dict[str, Any]], defaults: Sequence[tuple[str, list[str]]] = (),
                 seed: int = 0):
        self.storage_text, self.name, self.direction = str(storage), name, direction
        self.sampler, self.n_trials, self.suggest, self.seed = sampler, int(n_trials), suggest, int(seed)
        self.defaults = [(str(n), list(o)) for n, o in defaults]
        self.lock = FileLock(str(_lock_path(storage, name)))
        try:
            self.study = optuna.create_study(study_name=name, storage=open_storage(storage), direction=direction,
                                             sampler=sampler(seed), load_if_exists=True)
        except STORAGE_ERRORS as err:  # JSON/unicode errors are ValueErrors; SQLAlchemy's for databases
            raise storage_error(err, storage, name) from err

    def trials(self, states: Sequence[optuna.trial.TrialState] | None = None) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=None if states is None else tuple(states))

    def _counted(self) -> int:
        """Trials that spend the budget: finished (complete, pruned or failed) or running."""
        return len(self.trials(SPENT))

    def _ask(self, params: dict[str, Any], user_attrs: dict[str, Any]) -> optuna.trial.Trial:
        """A new trial: enqueued with every attribute it needs, its owner included, in one write to the study,
        then asked for. A sweeper killed between the two leaves a waiting trial that the next one adopts
        (:meth:`propose`), and never a running trial without an owner, which would look live for ever."""
        self.study.enqueue_trial(params, user_attrs={**user_attrs, "owner": _owner()})
        return self.study.ask()

    def _adopt(self, trial: optuna.trial.Trial) -> Proposal:
        """A trial a dead sweeper left running or waiting, taken over: its owner is now this sweeper, and a
        sampled trial's enqueued values are recorded as its parameters (the sweeper may have died before)."""
        trial.set_user_attr("owner", _owner())
        trial.set_user_attr("adopted", True)
        attrs = trial.user_attrs
        if attrs.get("default") is None:
            self.suggest(trial)
        return Proposal(trial.number, list(attrs.get("overrides", [])), trial, attrs.get("default"), adopted=True)

    def _draw(self, held: set[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """A parameter set the study does not hold, drawn on an in-memory copy of the study by a sampler seeded
        from the study's state (the search's, then uniform); None when :data:`MAX_DRAWS` draws all repeat a held
        set."""
        existing = self.trials(SPENT)
        for attempt in range(MAX_DRAWS):
            seed = int.from_bytes(hashlib.sha1(f"{self.seed}|{len(self.trials())}|{attempt}".encode()).digest()[:4],
                                  "little")
            # the search's sampler first; past a quarter of the draws, uniform ones (TPE keeps to its good region,
            # so in a small discrete space the sets it has not run may lie where it no longer looks)
            sampler = self.sampler(seed) if attempt < MAX_DRAWS // 4 else optuna.samplers.RandomSampler(seed=seed)
            copy = optuna.create_study(direction=self.direction, sampler=sampler)
            copy.add_trials(existing)
            trial = copy.ask()
            implied = self.suggest(trial) or {}
            if params_key(trial.params, implied) not in held:
                return dict(trial.params), implied
        return None

    def propose(self, n: int) -> list[Proposal]:
        """Up to ``n`` trials to run now: first the running trials of a sweeper of this host that is gone and the
        waiting trials of a sweeper that died before it asked for them (adopted), then the head's defaults the
        study lacks, then distinct sampled sets, within the budget.
        Empty when the budget is spent (or the space holds no set the study has not run)."""
        out: list[Proposal] = []
        with self.lock:
            for frozen in self.trials((optuna.trial.TrialState.RUNNING,)):
                if len(out) < n and not _alive(frozen.user_attrs.get("owner")):
                    # Trial(study, id) is Optuna's own handle for a trial of another process (ask-and-tell)
                    out.append(self._adopt(optuna.trial.Trial(self.study, frozen._trial_id)))
            # every sweeper enqueues and asks under this lock, so a waiting trial seen here was left by one that
            # died in between; ask() pops the oldest waiting trial
            while (len(out) < n and self._counted() < self.n_trials
                   and self.trials((optuna.trial.TrialState.WAITING,))):
                out.append(self._adopt(self.study.ask()))
            have = {t.user_attrs.get("default") for t in self.trials()}
            for name, overrides in self.defaults:
                if len(out) < n and self._counted() < self.n_trials and name not in have:
                    trial = self._ask({}, {"default": name, "overrides": overrides, "implied": {}})
                    out.append(Proposal(trial.number, overrides, trial, name))
            held = {_key_of(t) for t in self.trials()}
            while len(out) < n and self._counted() < self.n_trials:
                drawn = self._draw(held)
                if drawn is None:
                    print(f"[glai] search {self.name}: the space holds no parameter set the study has not run "
                          f"({MAX_DRAWS} draws); stopping before the budget")
                    break
                params, implied = drawn
                overrides = [_override(k, v) for k, v in {**params, **implied}.items()]
                trial = self._ask(params, {"implied": implied, "overrides": overrides})
                got = self.suggest(trial) or {}  # the enqueued values: the same suggestions, recorded
                held.add(params_key(trial.params, got))
                out.append(Proposal(trial.number, overrides, trial))
        return out

    def tell(self, proposal: Proposal, result: Any, error: str | None = None) -> None:
        """Record a trial's result (:func:`trial_score`); a result that says ``pruned`` -> a pruned trial (its
        score the last one it reported); NaN, None or an error -> a failed trial."""
        value, se, record = trial_score(result)
        trial = proposal.trial
        if se is not None:
            trial.set_user_attr("se", se)
        if record is not None:
            trial.set_user_attr("record", record)
        if error is None and isinstance(result, dict) and result.get("pruned"):
            trial.set_user_attr("pruned", result["pruned"])
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif error is not None or not math.isfinite(value):
            if error:
                trial.set_user_attr("error", error[-500:])
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)




#: The epoch pruners :func:`build_pruner` builds (``tuning.pruner.epochs``; ``glai.config.PRUNERS`` lists the same).
PRUNERS = ("successive_halving", "hyperband", "median", "none")


def build_pruner(name: str, min_resource: int = 2, reduction_factor: int = 3, min_complete: int = 3
                 ) -> optuna.pruners.BasePruner:
    """The epoch pruner ``tuning.pruner.epochs`` names.

    - ``successive_halving``: Optuna's asynchronous successive halving (Li et al., "A System for Massively
      Parallel Hyperparameter Tuning", MLSys 2020, arXiv 1810.05934): at epochs ``min_resource *
      reduction_factor**r`` a trial goes on only when its score so far is among the best ``1/reduction_factor``
      of the trials that reached that epoch.
    - ``hyperband``: Optuna's Hyperband over such brackets (Li et al., JMLR 2018, arXiv 1603.06560).
    - ``median``: stopped when below the median of the complete trials at the same epoch, from epoch
      ``min_resource`` on, once ``min_complete`` trials are complete.
    - ``none``: no epoch pruning.

    Raises:
        ValueError: an unknown name, ``min_resource < 1`` or ``reduction_factor < 2``.
    """
    if name not in PRUNERS:
        raise ValueError(f"tuning.pruner.epochs={name!r}: choose one of {', '.join(PRUNERS)}")
    if int(min_resource) < 1 or int(reduction_factor) < 2:
        raise ValueError(f"tuning.pruner.min_resource={min_resource} (>= 1 epoch) and tuning.pruner.reduction_factor="
                         f"{reduction_factor} (>= 2) out of range")
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=int(min_resource),
                                                      reduction_factor=int(reduction_factor))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=int(min_resource), reduction_factor=int(reduction_factor))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(min_complete), n_warmup_steps=int(min_resource) - 1)
    return optuna.pruners.NopPruner()


def fold_rule(scores: Sequence[float], complete: Sequence[Sequence[float]], best: Sequence[float],
              fold_se: float, min_complete: int) -> str | None:
    """Whether a trial with the fold scores ``scores`` so far (its first ``j + 1`` folds, higher is better) skips
    its other folds.

    It does when its mean over those folds lies below the best complete trial's mean over the same folds by more
    than ``fold_se`` standard errors of that difference, ``s * sqrt(2 / (j + 1))`` with ``s`` the pooled
    standard deviation of a fold score over the complete trials (``complete``: their fold scores), the root of
    their mean variance. Pooled, not the median of the trials' own deviations: with 2 folds each of those rests
    on one degree of freedom, their median is about two thirds of the true spread and is zero when half the
    trials tie on their folds, which makes the margin a row of a fold. Such a trial is unlikely to become the
    best trial on its remaining folds; a pruned trial is never chosen (:func:`choose`).

    Args:
        scores: the trial's fold scores so far (at least one).
        complete: the fold scores of every complete trial (all its folds).
        best: the fold scores of the best complete trial.
        fold_se: the margin, in standard errors; <= 0 switches the rule off.
        min_complete: complete trials needed (with 2 or more folds each) before the rule prunes.

    Returns:
        the reason (one line) when the trial is pruned, else None.
    """
    n = len(scores)
    variances = [float(statistics.variance(c)) for c in complete if len(c) >= 2]
    if fold_se <= 0 or n < 1 or len(variances) < max(1, min_complete) or len(best) < n:
        return None
    s = math.sqrt(sum(variances) / len(variances))
    mine, theirs = sum(scores) / n, sum(best[:n]) / n
    margin = fold_se * s * math.sqrt(2.0 / n)
    if mine < theirs - margin:
        return (f"mean over its first {n} fold(s) {mine:.4g} < the best complete trial's {theirs:.4g} - "
                f"{fold_se:g} x {s * math.sqrt(2.0 / n):.3g}")
    return None


class TrialReporter:
    """A search trial's side of pruning, in the process that trains it (``run.py`` under the project's sweeper,
    which passes ``tuning.study``, ``tuning.storage`` and ``tuning.trial``).

    :meth:`epoch` reports the first fold's score after every epoch (the best so far, higher is better) and
    raises :class:`glai.training.loop.Pruned` when the study's epoch pruner stops the trial; :meth:`fold`
    records every fold's score (user attribute ``fold_scores``) and raises when :func:`fold_rule` prunes the
    trial's other folds. A default trial of the head reports but is never pruned, and a trial whose epochs are
    not minibatch passes (``by_epoch`` false: full-batch L-BFGS, one iteration an epoch) is never pruned by epoch:
    at a rung's epoch count it would be compared with trials that took hundreds of steps (measured: successive
    halving at epoch 2 stopped every L-BFGS trial of a digits search, and L-BFGS won the unpruned one).

    Args:
        storage, study: the study (:func:`open_storage`, its name).
        number: the trial's number in the study.
        pruner: the epoch pruner (:func:`build_pruner`).
        fold_se, min_complete: :func:`fold_rule`'s settings.
        folds: how many folds the trial trains.
        by_epoch: whether the epoch pruner may stop the trial (its epochs compare with the other trials').

    Raises:
        ConfigError: the study or the trial is not in ``storage``.
    """

    def __init__(self, storage: str | Path, study: str, number: int, pruner: optuna.pruners.BasePruner,
                 fold_se: float, min_complete: int, folds: int, by_epoch: bool = True):
        try:
            self.study = optuna.load_study(study_name=study, storage=open_storage(storage), pruner=pruner)
            self.trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(  # noqa: SLF001
                self.study._study_id, int(number))  # noqa: SLF001 -- Optuna's ask-and-tell handle of a trial
        except (KeyError, *STORAGE_ERRORS) as err:
            raise ConfigError(f"tuning.trial={number}: no trial {number} of study {study!r} in {storage} "
                              f"({type(err).__name__}). These keys are the sweeper's own: run a search with "
                              "python run.py -m tuning=search ..., and leave tuning.study/storage/trial unset") \
                from err
        self.trial = optuna.trial.Trial(self.study, self.trial_id)
        self.default = self.study._storage.get_trial(self.trial_id).user_attrs.get("default")  # noqa: SLF001
        self.fold_se, self.min_complete, self.folds = float(fold_se), int(min_complete), int(folds)
        self.by_epoch = bool(by_epoch)
        self.scores: list[float] = []

    def epoch(self, epoch: int, value: float) -> None:
        """Report the first fold's best score so far after ``epoch``; raise ``Pruned`` when the pruner says so."""
        from glai.training.loop import Pruned

        self.trial.report(float(value), int(epoch))
        # asked for every trial, defaults too: a rung-based pruner records each trial's value at its rungs when
        # asked, so the defaults are among the trials the others compete with
        if self.trial.should_prune() and self.default is None and self.by_epoch:
            raise Pruned(f"pruned at epoch {epoch} of its first fold (score so far {value:.4g}): the search's "
                         "epoch pruner", f"epoch {epoch} of fold 1", float(value), epochs=int(epoch))

    def fold(self, value: float) -> None:
        """Record the next fold's score; raise ``Pruned`` when :func:`fold_rule` skips the trial's other folds."""
        from glai.training.loop import Pruned

        self.scores.append(float(value))
        self.trial.set_user_attr("fold_scores", list(self.scores))
        if self.default is not None or len(self.scores) >= self.folds:
            return
        done = [t for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value) and t.user_attrs.get("fold_scores")]
        if not done:
            return
        # fold scores are the objective: higher is better unless the study minimises
        sign = -1.0 if self.study.direction == optuna.study.StudyDirection.MINIMIZE else 1.0
        best = max(done, key=lambda t: sign * t.value)
        why = fold_rule([sign * v for v in self.scores], [[sign * v for v in t.user_attrs["fold_scores"]]
                                                          for t in done],
                        [sign * v for v in best.user_attrs["fold_scores"]], self.fold_se, self.min_complete)
        if why:
            n = len(self.scores)
            raise Pruned(f"pruned after fold {n} of {self.folds}: {why}", f"fold {n} of {self.folds}",
                         sum(self.scores) / n)


def choose(trials: Sequence[optuna.trial.FrozenTrial], direction: str = "maximize",
           default: str = "protocol") -> dict[str, Any]:
    """The one-standard-error choice over a study's complete trials (ESL 7.10; docs/method.md, Tuned choice).

    The best trial (highest mean score; lowest when ``direction`` is ``minimize``) replaces the trial whose user
    attribute ``default`` is ``default`` only when it is better by more than its own standard error (user
    attribute ``se``; 0 where the trial was scored on one split); otherwise the default is kept.

    Returns:
        ``{"chosen": trial, "best": trial, "default": trial or None, "margin": best minus default (signed so that
        positive is better), "se": the best trial's SE, "rule": text}``.

    Raises:
        ValueError: no trial completed.
    """
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
            and math.isfinite(t.value)]
    if not done:
        states = {name: sum(1 for t in trials if t.state.name == name) for name in ("PRUNED", "FAIL", "RUNNING")}
        errors = sorted({str(t.user_attrs.get("error"))[:200] for t in trials if t.user_attrs.get("error")})
        raise ValueError(f"no trial of the search completed ({len(trials)} trials: {states['PRUNED']} pruned, "
                         f"{states['FAIL']} failed, {states['RUNNING']} running): nothing to choose"
                         + (f"; the failed trials' errors: {'; '.join(errors)}" if errors else ""))
    sign = 1.0 if direction == "maximize" else -1.0
    best = max(done, key=lambda t: (sign * t.value, -t.number))
    base = next((t for t in done if t.user_attrs.get("default") == default), None)
    se = float(best.user_attrs.get("se") or 0.0)
    if base is None:
        return {"chosen": best, "best": best, "default": None, "margin": None, "se": se,
                "rule": f"no complete '{default}' default trial: the best trial"}
    margin = sign * (best.value - base.value)
    chosen = best if margin > se else base
    rule = (f"the best trial beats the {default} default by {margin:.4g} > its standard error {se:.4g}"
            if chosen is best and best is not base else
            f"the best trial is within one standard error ({se:.4g}) of the {default} default (margin "
            f"{margin:.4g}): the default is kept" if best is not base else f"the {default} default is the best trial")
    return {"chosen": chosen, "best": best, "default": base, "margin": margin, "se": se, "rule": rule}
