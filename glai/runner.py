"""One run: compose -> validate -> data -> train a head -> record (called by ``run.py``).

Orchestration only: the config is translated into calls of the method (:func:`glai.method.pipeline.train_glai`,
the paper's pipeline 3.3) and of the training loop (:func:`glai.training.loop.fit`), and the result into a
record (:mod:`glai.results.records`). Each GLAI phase is timed separately; nothing GLAI does is left off
its clock.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from glai.config import CONF_DIR, REDUCED_FRACTION, ConfigError, HeadConfig, StudyConfig, compose_config, validate
from glai.data.loading import data_identity, load_data, resolved_paths, search_folds
from glai.data.splits import EmbeddingSplit
from glai.errors import RecordWriteError
from glai.kernels.estimator import cpp_available, resolve_backend
from glai.method.budget import count_parameters
from glai.method.pipeline import train_glai
from glai.method.sparsity import active_paths_per_sample, firing_ratio
from glai.method.studies import combine_study, retrain_study
from glai.options import build_head, run_options
from glai.results.identity import GLAI_HEADS, fingerprint, reads_rho, short
from glai.results.records import (
    RunLock,
    RunLockedError,
    environment,
    process_info,
    read_record,
    record_fingerprint,
    record_path,
    write_record,
)
from glai.results.report import log_wandb, summary
from glai.results.schema import check_record, new_record
from glai.training.loop import History, NonFiniteLossError, Pruned, fit, observe_epochs
from glai.training.penalty import ActivationPenaltyTask
from glai.training.structure import PathDistanceTracker
from glai.training.tasks import MONITORS, build_task, draw_episode
from glai.tuned import apply_tuned

__all__ = ["objective", "run", "run_identity", "run_study", "train_ffn", "train_head", "resolve_device",
           "estimator_backend"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu.

    Raises:
        ConfigError: ``device=cuda`` on a machine without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda': no CUDA device is available here. Fix: device=auto or device=cpu")
    return torch.device(name)


def _tracker(cfg, x: torch.Tensor, seed: int) -> PathDistanceTracker | None:
    if cfg.structure_samples <= 0:
        return None
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=g)[: cfg.structure_samples].to(x.device)
    return PathDistanceTracker(x[idx])


def _phase_record(hist: History) -> dict[str, Any]:
    return {"epochs": hist.epochs, "bvs": hist.bvs, "best_epoch": hist.best_epoch, "curves": hist.curves,
            "stopped_by": hist.stopped_by, "step_ms": hist.step_ms}


def train_head(cfg, train: EmbeddingSplit, val: EmbeddingSplit, seed: int) -> dict[str, Any]:
    """Train ``cfg.head`` on one train/val pair and return the record's ``metrics`` and ``cost`` parts.

    Args:
        cfg: the composed config (validated); read once into :func:`glai.options.run_options`.
        train, val: embeddings on the run's device; ``y`` None for family B.
        seed: fixes the head's initialisation and the batch order (the same for every head of a seed).

    Raises:
        NonFiniteLossError: a NaN/inf training loss.
    """
    opts = run_options(cfg, n_val=len(val.x))
    head_opts, arch = opts.head, list(opts.arch)
    task = build_task(cfg.experiment)

    if head_opts.glai is None:
        torch.manual_seed(seed)
        model = build_head(head_opts, arch).to(train.x.device)
        tracker = _tracker(cfg, train.x, seed) if head_opts.name != "linear" else None
        if head_opts.l0_lambda > 0:
            task = ActivationPenaltyTask(task, head_opts.l0_lambda, head_opts.l0_sigma)
        hist = fit(model, (train.x, train.y), (val.x, val.y), task=task, seed=seed, tracker=tracker,
                   **head_opts.optim.kwargs(), **opts.loop.kwargs())
        metrics = {**_phase_record(hist), "min_delta": opts.loop.min_delta,
                   "structure": hist.structure if tracker else None,
                   "firing_ratio": firing_ratio(model, val.x) if model.num_hidden else None}
        cost = {"time_s": {"train": hist.time_s}, "total_s": hist.time_s,
                "params": {"trainable": count_parameters(model, trainable_only=True)}}
        return {"metrics": metrics, "cost": cost}

    tracker = _tracker(cfg, train.x, seed)
    glai = train_glai(arch, (train.x, train.y), (val.x, val.y), head_opts.glai, loop=opts.loop, task=task,
                      seed=seed, tracker=tracker)
    red, est = glai.reduced, glai.estimator
    metrics = {**_phase_record(est), "min_delta": opts.loop.min_delta, "reduced_epochs": red.epochs,
               "total_epochs": red.epochs + est.epochs, "reduced_curves": red.curves,
               "reduced_bvs": red.bvs, "reduced_stopped_by": red.stopped_by, "reduced_step_ms": red.step_ms,
               "structure": red.structure if tracker else None,
               "theorem2_bound": glai.head.conversion.kept.removed_score,
               "firing_ratio": firing_ratio(glai.head.selector, val.x),
               "active_paths_per_sample": _active_paths(glai.head)}
    times = glai.time_s
    cost = {"time_s": times, "total_s": sum(times.values()),
            "params": {**glai.budget.as_dict(),
                       "trainable": count_parameters(glai.head.estimator, trainable_only=True),
                       "hidden_layers": len(arch) - 2, "gate_columns": glai.head.conversion.gate_columns,
                       "gate_columns_used": glai.head.estimator.n_gates}}
    ran = getattr(glai.head.estimator, "backends_ran", None)  # the sparse estimator's; the dense one has none
    if ran:
        cost["estimator_backends"] = {str(batch): backend for batch, backend in sorted(ran.items())}
    return {"metrics": metrics, "cost": cost}


def train_ffn(cfg, train: EmbeddingSplit, val: EmbeddingSplit, device: torch.device) -> dict[str, Any]:
    """Family T (docs/method.md, Family T): the head ``cfg.head.name`` in the last feed-forward block of the frozen
    ``cfg.backbone``, on the cached tokens (``x`` [N, L, d] with ``mask``); the record's ``metrics`` and ``cost``.

    Raises:
        ConfigError: a model whose blocks cannot be read, or an ``experiment.arch`` that is not the block's
            ``(d, d_ff)`` and the classes.
    """
    from glai.data.backbones import build_backbone
    from glai.transformer import Tokens, read_ffn_blocks
    from glai.transformer.model import FrozenAttention
    from glai.transformer.train import FFNOptions, train_ffn_head

    model = build_backbone(cfg.backbone, data_root=cfg.data_root, device=device.type).model
    try:
        blocks = read_ffn_blocks(model, int(cfg.ffn.blocks))
    except ValueError as err:
        raise ConfigError(f"backbone={cfg.backbone.name}: {err}") from err
    block = blocks[0]
    # between two trained blocks the layer's own attention runs, frozen, on every head alike
    attentions = [FrozenAttention(b.attention, model.config).to(device) for b in blocks[1:]]
    arch = list(cfg.experiment.arch)
    if arch[:2] != [block.d, block.d_ff]:
        raise ConfigError(f"experiment.arch={arch}: the feed-forward block of backbone {cfg.backbone.name!r} is "
                          f"{block.d} -> {block.d_ff} -> {block.d}. Fix: experiment.arch=[{block.d},{block.d_ff},"
                          f"{arch[-1]}]")
    opts = run_options(cfg, n_val=len(val.y))
    head, exp = cfg.head, cfg.experiment
    ffn = FFNOptions(kind=str(head.name), optim=opts.head.optim, loop=opts.loop, backend=str(head.backend),
                     lora_rank=int(cfg.ffn.lora_rank), lora_alpha=float(cfg.ffn.lora_alpha),
                     selector=str(head.selector), activation=str(cfg.ffn.activation),
                     selector_epochs=int(exp.reduced_epochs) if head.name == "ffn_glai" else 0)
    out = train_ffn_head(ffn, blocks, (Tokens(train.x, train.mask), train.y), (Tokens(val.x, val.mask), val.y),
                         n_classes=arch[-1], seed=int(cfg.seed), attentions=attentions)
    out["metrics"]["min_delta"] = opts.loop.min_delta
    return out


def _union_backends(out: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """``cost.estimator_backends`` of several heads (episodes, folds): every batch size any of them ran."""
    ran = {k: v for r in results for k, v in r["cost"].get("estimator_backends", {}).items()}
    if ran:
        # "<batch>", or family T's "<smallest>-<largest>" token batches
        out["cost"]["estimator_backends"] = dict(sorted(ran.items(), key=lambda kv: int(kv[0].split("-")[0])))


def run_study(cfg: DictConfig, train: EmbeddingSplit, val: EmbeddingSplit) -> dict[str, Any]:
    """A method-family study (``study.name`` retrain | combine; :mod:`glai.method.studies`) as the record's
    ``metrics.study``; the GLAI arms read the GLAI head's options, the MLP arms those of ``conf/head/mlp.yaml``
    (the auto partner's head, :func:`mlp_partner_config`), both through :func:`glai.options.run_options`."""
    study = cfg.study
    opts = run_options(cfg)
    mlp = run_options(mlp_partner_config(cfg)).head.optim
    common = dict(seed=opts.seed, loop=opts.loop, glai=opts.head.glai, mlp=mlp,
                  tracker=_tracker(cfg, train.x, opts.seed))
    arch = list(opts.arch)
    t0 = time.perf_counter()
    if study.name == "retrain":
        result = retrain_study(arch, (train.x, train.y), (val.x, val.y), split=study.split,
                               new_classes=study.new_classes, new_fraction=study.new_fraction, **common)
    else:
        result = combine_study(arch, (train.x, train.y), (val.x, val.y), shards=study.shards,
                               shard_split=study.shard_split, **common)
    seconds = time.perf_counter() - t0
    return {"metrics": {"study": {"name": study.name, **result}}, "cost": {"total_s": seconds}}


def _active_paths(head) -> float | None:
    """Mean kept paths with an active gate per validation sample (the sparse estimator's work per sample)."""
    layout = getattr(head.estimator, "layout", None)
    if layout is None or len(head.conversion.gates) < 2:
        return None
    return active_paths_per_sample(head.conversion.gates[1], layout.gate_idx)


def trial_reporter(cfg, units: int):
    """The :class:`glai.search.TrialReporter` of a search trial that its sweeper named (``tuning.trial``), built
    from ``tuning.pruner``; None for any other run."""
    tuning = cfg.tuning
    if tuning.role != "search" or tuning.get("trial") is None or not tuning.get("study"):
        return None
    from glai.search import TrialReporter, build_pruner

    p = tuning.pruner
    pruner = build_pruner(str(p.epochs), int(p.min_resource), int(p.reduction_factor), int(p.min_complete))
    # full-batch L-BFGS runs one iteration an epoch: its epochs are not the others' (TrialReporter)
    return TrialReporter(str(tuning.storage), str(tuning.study), int(tuning.trial), pruner, float(p.fold_se),
                         int(p.min_complete), units, by_epoch=str(cfg.head.optimizer) != "lbfgs")


def _unit_score(cfg, result: dict[str, Any]) -> float:
    """One fold's (repeat's, episode's) score as the search maximises it: its BVS, negated for a minimised
    monitor."""
    bvs = float(result["metrics"]["bvs"])
    return bvs if MONITORS[build_task(cfg.experiment).monitor] == "max" else -bvs


def run_units(cfg, units: list) -> list[dict[str, Any]]:
    """Run a trial's units (folds, repeated splits, episodes; one for a plain run), each a callable returning the
    record's ``metrics`` and ``cost`` parts. A search trial reports the first unit's per-epoch score and every
    unit's score to its study (:func:`trial_reporter`), which may stop it with :class:`glai.training.loop.Pruned`.
    """
    reporter = trial_reporter(cfg, len(units))
    results = []
    try:
        for j, unit in enumerate(units):
            if reporter is not None and j == 0:
                with observe_epochs(reporter.epoch):
                    results.append(unit())
            else:
                results.append(unit())
            if reporter is not None:
                reporter.fold(_unit_score(cfg, results[-1]))
    except Pruned as err:
        # what the trial trained before it stopped: the finished units' epochs and the stopped unit's
        err.epochs += sum(int(r["metrics"]["epochs"]) for r in results)
        raise
    return results


def _episodes(cfg, pool: EmbeddingSplit, device) -> dict[str, Any]:
    """Family C: train a fresh head on each episode's support set, validate on its query set."""
    exp = cfg.experiment

    def episode(e: int):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + e)
        sx, sy, qx, qy = draw_episode(pool.x.cpu(), pool.y.cpu(), exp.n_way, exp.k_shot, exp.q_query, gen)
        return lambda: train_head(cfg, EmbeddingSplit(sx.to(device), sy.to(device)),
                                  EmbeddingSplit(qx.to(device), qy.to(device)), cfg.seed * 100_003 + e)

    results = run_units(cfg, [episode(e) for e in range(cfg.episodes)])
    if len(results) == 1:
        return results[0]
    from scipy import stats  # imported here: only family C's multi-episode runs need it

    bvs = [r["metrics"]["bvs"] for r in results]
    n = len(bvs)
    mean = sum(bvs) / n
    sem = stats.sem(bvs) if n > 1 else math.nan
    out = results[0]
    out["metrics"] = {**out["metrics"], "bvs": mean, "bvs_se": standard_error(bvs),
                      "epochs": sum(r["metrics"]["epochs"] for r in results) / n,
                      "episodes": {"n": n, "bvs": bvs, "mean": mean,
                                   "ci95": float(stats.t.ppf(0.975, n - 1) * sem) if n > 1 else math.nan,
                                   "epochs": [r["metrics"]["epochs"] for r in results],
                                   "total_s": [r["cost"]["total_s"] for r in results]}}
    # sparsity: means over the episodes' heads
    if out["metrics"].get("firing_ratio") is not None:
        layers = zip(*(r["metrics"]["firing_ratio"] for r in results), strict=True)
        out["metrics"]["firing_ratio"] = [sum(v) / n for v in layers]
    if out["metrics"].get("active_paths_per_sample") is not None:
        out["metrics"]["active_paths_per_sample"] = sum(r["metrics"]["active_paths_per_sample"] for r in results) / n
    for key in out["cost"]["time_s"]:
        out["cost"]["time_s"][key] = sum(r["cost"]["time_s"][key] for r in results) / n
    out["cost"]["total_s"] = sum(r["cost"]["total_s"] for r in results) / n
    _union_backends(out, results)
    return out


def _folds(cfg, splits: dict[str, EmbeddingSplit]) -> dict[str, Any]:
    """A search trial scored by k-fold (``tuning.folds``, :func:`glai.data.loading.tuning_folds`): the head trains
    on each fold's other rows and is scored on the fold; the trial's BVS is the mean over folds (what the search
    maximises), its cost the sum. The record's ``metrics.folds`` keeps every fold's BVS and epochs."""
    k = sum(1 for name in splits if name.endswith("/train"))

    def train(tr: EmbeddingSplit, va: EmbeddingSplit) -> dict[str, Any]:
        if cfg.experiment.family == "T":
            return train_ffn(cfg, tr, va, tr.x.device)
        return train_head(cfg, tr, va, cfg.seed)

    results = run_units(cfg, [lambda j=j: train(splits[f"fold{j}/train"], splits[f"fold{j}/val"]) for j in range(k)])
    bvs = [r["metrics"]["bvs"] for r in results]
    n_train = len(splits["fold0/train"]) + len(splits["fold0/val"])
    kind = "repeats" if search_folds(n_train, cfg.tuning.fraction, cfg.tuning.folds, cfg.tuning.repeats) < 0 \
        else "kfold"
    out = results[0]
    out["metrics"] = {**out["metrics"], "bvs": sum(bvs) / k, "bvs_se": standard_error(bvs),
                      "epochs": sum(r["metrics"]["epochs"] for r in results) / k,
                      "folds": {"k": k, "kind": kind, "bvs": bvs, "epochs": [r["metrics"]["epochs"] for r in results],
                                "rows": [len(splits[f"fold{j}/val"]) for j in range(k)]}}
    for key in out["cost"]["time_s"]:
        out["cost"]["time_s"][key] = sum(r["cost"]["time_s"][key] for r in results)
    out["cost"]["total_s"] = sum(r["cost"]["total_s"] for r in results)
    _union_backends(out, results)
    return out


def run(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run one job and write its record; the record is identified by the config's fingerprint (docs/method.md,
    Run identity).

    - A record "done" with the same fingerprint is kept (and returned) unless ``overwrite=true``; a run with
      any other setting gets its own record.
    - While the run trains it holds ``.<record>.lock``: the same job started meanwhile returns at once with
      the running record, saying which process holds it. A "running" record whose lock is free is stale
      (its process died): it is reported, then run again.
    - A NaN/inf training or validation loss ends the run with status "failed" and the reason in the record;
      any other error is recorded the same way, then re-raised.
    - When the final write fails, the complete record is saved under ``<cache_dir>/unsaved-records/`` and the
      summary printed before the error.

    Args:
        cfg: the composed config.
        overrides: the command-line overrides to record; None reads Hydra's (``run.py``).

    Raises:
        ConfigError: a bad config value, before any work starts.
        DataError: non-finite embeddings, before training.
        RecordWriteError: the results folder is not writable (nothing is trained, or the trained result is
            saved elsewhere first).
    """
    cfg = apply_tuned(cfg, _overrides() if overrides is None else overrides)
    validate(cfg)
    device = resolve_device(cfg.device)
    config, fp, path = run_identity(cfg, device)
    # the backend the record names is the one that runs; auto on the CPU stays auto for the estimator, which then
    # runs the compiled backend or, where this CPU's timing says it is faster for the layout and batch, torch
    # (glai.kernels.estimator.tuning; cost.estimator_backends names what ran at each batch)
    if not (cfg.head.backend == "auto" and config["head"]["backend"] == "cpp"):
        cfg.head.backend = config["head"]["backend"]
    existing = _previous_run(cfg, path, fp)
    if existing is not None and existing.get("status") == "done" and not cfg.overwrite:
        return _skip(existing, fp)
    # the data are loaded and checked (glai.data.splits.check_splits) before any record, lock or partner run
    # exists: data that cannot train the head leave nothing behind
    t0 = time.perf_counter()
    splits = load_data(cfg)
    data_s = time.perf_counter() - t0
    lock = RunLock(path)
    try:
        lock.acquire()
    except RunLockedError as err:
        print(f"[glai] {err}")
        return read_record(path) or {"status": "running", "fingerprint": fp}
    except OSError as err:
        raise RecordWriteError(f"cannot create {path} ({err}): {_WRITABLE_HINT.format(cfg.results_dir)}") from err
    try:
        existing = _previous_run(cfg, path, fp)  # again: another job may have finished it meanwhile
        if existing is not None and existing.get("status") == "done" and not cfg.overwrite:
            return _skip(existing, fp)
        if existing is not None and existing.get("status") == "running":
            holder = existing.get("process") or {}
            print(f"[glai] {path} says 'running' (pid {holder.get('pid')} on {holder.get('host')}, started "
                  f"{holder.get('start_utc')}) but no process holds its lock: a stale run; running it again")
        record = _train_and_record(cfg, path, config, fp, device, splits, data_s,
                                   _overrides() if overrides is None else overrides)
        return {**record, "_path": str(path)}
    finally:
        lock.release()


def _skip(existing: dict[str, Any], fp: str) -> dict[str, Any]:
    print(f"[glai] {existing['_path']} is done (same fingerprint {short(fp)}); skipping "
          "(pass overwrite=true to run it again)")
    return existing


_WRITABLE_HINT = "results_dir={!r} (or GLAI_RESULTS_DIR) must name a writable folder"


def estimator_backend(cfg: DictConfig, device: torch.device) -> str:
    """The sparse estimator backend a GLAI run uses: ``head.backend`` with ``auto`` resolved on the CPU
    (``cpp`` when the compiled estimator is built for this machine, else ``torch``); on CUDA ``auto`` stays
    ``auto`` (Triton up to batch 16, cuSPARSE above, per call: :func:`glai.kernels.estimator.resolve_backend`).

    Raises:
        ConfigError: ``head.backend=cpp`` on a CUDA device, or before the extension is built; ``triton`` off
            CUDA (unless ``TRITON_INTERPRET=1``).
    """
    backend = cfg.head.backend
    if backend == "cpp" and device.type != "cpu":
        raise ConfigError(f"head.backend='cpp' runs on the CPU only (device is {device.type}). Fix: head.backend=auto")
    if backend == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError(f"head.backend='triton' runs on CUDA (device is {device.type}; the CPU runs it only under "
                          "TRITON_INTERPRET=1, for tests). Fix: head.backend=auto, or device=cuda")
    if backend == "cpp" and not cpp_available():
        raise ConfigError("head.backend='cpp': the compiled CPU estimator is not built for this machine. Fix: "
                          "python -m glai.kernels.estimator (make install runs it), or head.backend=auto")
    if device.type == "cpu":
        return resolve_backend(backend, device)
    return backend


def run_identity(cfg: DictConfig, device: torch.device | None = None) -> tuple[dict[str, Any], str, Path]:
    """``(resolved config, fingerprint, record path)`` of a run (docs/method.md, Run identity;
    :mod:`glai.results.identity`).

    The config stores the device that runs (``device: auto`` resolved): a GPU run and a CPU run are
    different runs. A GLAI run likewise stores the estimator backend that runs (:func:`estimator_backend`),
    so runs with and without the compiled CPU estimator are never averaged together.
    """
    device = device or resolve_device(cfg.device)
    config = OmegaConf.to_container(cfg, resolve=True)
    config["device"] = device.type
    # the data's identity, never its spelling: absolute sources, and what their files hold
    for key, value in resolved_paths(config, cfg.data_root).items():
        group, field = key.split(".")
        config[group][field] = value
    content = data_identity(config, cfg.data_root)
    if content is not None:
        config["data_content"] = content
    if cfg.head.name in ("glai", "ffn_glai") and cfg.head.estimator == "sparse":
        config["head"]["backend"] = estimator_backend(cfg, device)
    fp = fingerprint(config)
    own = _own_dataset(str(cfg.experiment.name))
    other = str(cfg.dataset.name) if own is not None and str(cfg.dataset.name) != own else None
    path = record_path(cfg.results_dir, cfg.experiment.name, cfg.head.name, _path_rho(cfg), cfg.seed, cfg.tag, fp,
                       dataset=other)
    return config, fp, path


@functools.lru_cache(maxsize=64)
def _own_dataset(experiment: str) -> str | None:
    """``dataset.name`` of ``python run.py experiment=<experiment>`` as shipped; None for an experiment name that
    is no config of ``conf/experiment`` (a user's name for their own setting)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return str(compose_config([f"experiment={experiment}"]).dataset.name)
    except (HydraException, OmegaConfBaseException, ValueError):
        return None


def _path_rho(cfg) -> float | None:
    """rho in the record's name only for the heads that read it (an MLP run is the same at every rho)."""
    return cfg.rho if reads_rho(cfg.head.name) else None


def _previous_run(cfg, path, fp: str) -> dict[str, Any] | None:
    """The record of this fingerprint: at ``path``, or a schema-1 record (no fingerprint in its name) whose
    stored config has the same fingerprint."""
    for candidate in (path, record_path(cfg.results_dir, cfg.experiment.name, cfg.head.name, cfg.rho, cfg.seed,
                                        cfg.tag)):
        try:
            rec = read_record(candidate)
        except ValueError as err:
            if not cfg.overwrite:
                raise ConfigError(f"{err}") from err
            print(f"[glai] {candidate} is not a valid record; overwrite=true replaces it")
            continue
        if rec is not None and record_fingerprint(rec) == fp:
            rec["_path"] = str(candidate)
            return rec
    return None


def _train_and_record(cfg, path, config: dict, fp: str, device: torch.device, splits: dict[str, EmbeddingSplit],
                      data_s: float, overrides: list[str]) -> dict[str, Any]:
    exp = cfg.experiment
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    # Denormal floats (e.g. softmax gradients of saturated logits, ~1e-45) cost 10-100x per CPU operation:
    # one step of the C2 shape went from 1.9 to 11 ms. Flushed to zero for every head alike (a ~1e-38
    # change in values that small); recorded in environment.flush_denormal.
    flush = torch.set_flush_denormal(True)
    record = new_record(
        status="running", error=None, experiment=exp.name, head=cfg.head.name, tag=cfg.tag, seed=cfg.seed,
        rho=cfg.rho, family=exp.family, fingerprint=fp, group_fingerprint=fingerprint(config, seed=False),
        overrides=list(overrides), config=config, deviations=list(exp.deviations),
        environment={**environment(device.type), "flush_denormal": flush}, process=process_info(), data_s=data_s)
    try:
        check_record(record)
        write_record(path, record)
    except OSError as err:
        raise RecordWriteError(f"cannot write {path} ({err}): {_WRITABLE_HINT.format(cfg.results_dir)}") from err
    try:
        cfg, reduced = _resolve_reduced_epochs(cfg)
        splits = {k: v.to(device) for k, v in splits.items()}
        if cfg.study.name != "standard":
            result = run_study(cfg, splits["train"], splits["val"])
        elif "fold0/train" in splits:
            result = _folds(cfg, splits)
        elif exp.family == "T":
            result = run_units(cfg, [lambda: train_ffn(cfg, splits["train"], splits["val"], device)])[0]
        elif exp.family == "C":
            result = _episodes(cfg, splits["pool"], device)
        else:
            result = run_units(cfg, [lambda: train_head(cfg, splits["train"], splits["val"], cfg.seed)])[0]
        record.update(result)
        if reduced is not None:
            record["metrics"]["reduced_epochs_rule"] = reduced
        monitor = build_task(exp).monitor
        record["metrics"].update(monitor=monitor, mode=MONITORS[monitor])
        record["status"] = "done"
    except Pruned as err:
        # a search's pruner stopped the trial: recorded as pruned (never done), with where and why
        record.update(status="pruned", metrics={"pruned": {"at": err.at, "value": err.value, "reason": str(err),
                                                           "epochs": err.epochs}})
        _write_final(cfg, path, record)
        print(f"[glai] search trial {cfg.tuning.trial} {err}; record: {path}")
        return record
    except NonFiniteLossError as err:
        # the usual cause is a step too large for the loss: name the key and a smaller value
        lr = float(cfg.head.lr)
        smaller = 1.0 if cfg.head.optimizer == "lbfgs" else min(lr / 10, 1e-2)
        err = NonFiniteLossError(f"{err}: the step is likely too large (head.lr={lr:g}, head.optimizer="
                                 f"{cfg.head.optimizer}). Fix: a smaller head.lr, e.g. head.lr={smaller:g}")
        record.update(status="failed", error=f"NonFiniteLossError: {err}")
        _write_final(cfg, path, record)
        print(f"[glai] run FAILED ({err}); record: {path}")
        return record
    except BaseException as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        try:
            _write_final(cfg, path, record)
        except RecordWriteError as write_err:
            raise write_err from err
        raise
    _write_final(cfg, path, record)
    if cfg.wandb.enabled:
        log_wandb(record, cfg.wandb.project, cfg.wandb.mode)
    if cfg.verbose:
        print(summary(record, path))
    return record


def mlp_partner_config(cfg: DictConfig) -> DictConfig:
    """The same-configuration MLP run of a GLAI run (docs/method.md, Reduced-epoch rule), derived by resetting
    every section that is not the protocol's, explicitly:

    - ``head``: ``conf/head/mlp.yaml`` as ``head=mlp`` composes it (its values interpolate the experiment's); family
      T: ``conf/head/ffn_relu.yaml`` (the ReLU-switched block GLAI converts), on the family's optimiser.
    - ``study``: ``standard`` (a study trains its own MLP arms; its partner is the protocol MLP on the same
      data, whose epochs set the reduced phase; ``retrain/*`` and ``combine/*`` default to ``auto``).
    - ``tag``: cleared (a tag names the GLAI variant, ``tag=sgd``, ``tag=fixed``; the partner is the untagged
      MLP of the same data). A tuned GLAI has no partner: its tuned file fixes the reduced phase as the epoch
      count its search trial ran, so the auto rule never runs in the tuned view.
    - ``overwrite``: false (a done partner is reused).

    ``tuning`` is kept: its role decides which rows train and score (a search's partner trains on the same
    tuning split, so a GLAI default trial's auto count is the rule's on those rows). Data, backbone, experiment,
    seed and environment are the GLAI run's.
    """
    partner = copy.deepcopy(cfg)
    # family T's partner is the ReLU-switched block fine-tuned (ffn_relu): the block GLAI converts
    name = "ffn_relu" if cfg.experiment.family == "T" else "mlp"
    head = OmegaConf.merge(OmegaConf.structured(HeadConfig), OmegaConf.load(CONF_DIR / "head" / f"{name}.yaml"))
    if cfg.experiment.family == "T":
        head.optimizer = cfg.head.optimizer  # the family's experiments set one optimiser for every head
    study = OmegaConf.structured(StudyConfig)
    with open_dict(partner):
        partner.head = head
        partner.study = study
        partner.overwrite = False
        partner.tag = ""
        # a search trial's partner is its own run: it reports to no trial of the study
        partner.tuning.study = partner.tuning.storage = partner.tuning.trial = None
    return partner


def _resolve_reduced_epochs(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any] | None]:
    """``experiment.reduced_epochs_mode=auto`` for GLAI: ``max(1, ceil(fraction * E_mlp))`` with E_mlp the
    epochs to early stop of the same-configuration, same-seed MLP run (:func:`mlp_partner_config`), read from
    its record or trained first and recorded as its own run (paper 3.6; docs/method.md, Reduced-epoch rule).

    Returns:
        ``(cfg, rule)``: cfg with ``experiment.reduced_epochs`` set to the resolved count, and what the rule
        resolved (mode, fraction, the MLP's epochs and record) for the record; ``(cfg, None)`` otherwise.
        The MLP's training is not on GLAI's clock: it is the baseline's own run.

    Raises:
        RuntimeError: the MLP partner run failed (its record says why).
    """
    exp = cfg.experiment
    if cfg.head.name in GLAI_HEADS and cfg.head.selector == "random":
        # nothing is trained before the conversion: no reduced epochs to resolve, no partner MLP to read
        return cfg, {"mode": "random_selector", "reduced_epochs": 0}
    if cfg.head.name not in GLAI_HEADS or exp.reduced_epochs_mode != "auto":
        mode = exp.reduced_epochs_mode if cfg.head.name in GLAI_HEADS else None
        return cfg, ({"mode": mode, "reduced_epochs": exp.reduced_epochs} if mode else None)
    partner = mlp_partner_config(cfg)
    path = run_identity(partner)[2]
    # the partner's record lists the overrides it was run with: the GLAI job's, its head ones replaced
    # (tuning=best selects GLAI's tuned settings: the partner is the protocol MLP, tuned or not)
    overrides = [o for o in _overrides()
                 if not (o.lstrip("+~").startswith(("head", "tag", "study", "tuning.study", "tuning.storage",
                                                    "tuning.trial")) or o == "tuning=best")] + [
        f"head={partner.head.name}"]
    mlp = run(partner, overrides)
    if mlp.get("status") == "running":
        # another job of a parallel sweep trains the same partner right now: wait for it, then read its record
        print(f"[glai] waiting for the MLP partner run {path}")
        RunLock(path).wait()
        mlp = run(partner, overrides)
    if mlp.get("status") != "done":
        raise RuntimeError(f"reduced_epochs_mode=auto needs the MLP run {path}, which is {mlp.get('status')}: "
                           f"{mlp.get('error')}")
    fraction = exp.reduced_fraction if exp.reduced_fraction is not None else REDUCED_FRACTION[exp.family]
    epochs_mlp = float(mlp["metrics"]["epochs"])
    resolved = max(1, math.ceil(fraction * epochs_mlp - 1e-9))
    cfg = copy.deepcopy(cfg)
    cfg.experiment.reduced_epochs = resolved
    return cfg, {"mode": "auto", "fraction": fraction, "mlp_epochs": epochs_mlp, "reduced_epochs": resolved,
                 "mlp_record": str(path), "mlp_fingerprint": mlp.get("fingerprint")}


def standard_error(values: list[float]) -> float | None:
    """The standard error of the mean of ``values`` (sample standard deviation over sqrt(n)); None for fewer
    than two (a score on one split has none)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def search_result(record: dict[str, Any]) -> dict[str, Any]:
    """What a search trial returns to the sweeper (``hydra/sweeper=glai_optuna``): ``{"value": objective,
    "se": the score's standard error over folds, repeats or episodes (None on one split), "record": its path}``."""
    metrics = record.get("metrics") or {}
    if record.get("status") == "pruned":
        pruned = metrics.get("pruned") or {}
        return {"value": pruned.get("value", math.nan), "se": None, "record": record.get("_path"), "pruned": pruned}
    se = metrics.get("bvs_se")
    return {"value": objective(record), "se": None if se is None or record.get("status") != "done" else float(se),
            "record": record.get("_path")}


def objective(record: dict[str, Any]) -> float:
    """A search's score of one run, to maximise (``hydra/sweeper=optuna``, ``conf/tuning/search.yaml``): the
    BVS on the tuning split when the monitor is maximised (val_acc, percent), minus it when minimised
    (val_loss); NaN for a run that did not finish, which Optuna records as a failed trial."""
    if record.get("status") != "done":
        return math.nan
    bvs = float(record["metrics"]["bvs"])
    return bvs if record["metrics"].get("mode", "max") == "max" else -bvs


def _write_final(cfg, path, record: dict[str, Any]) -> None:
    """Write the finished record; if that fails, save it under ``<cache_dir>/unsaved-records/`` (or the
    system temp folder), print its summary, and raise naming ``results_dir``."""
    check_record(record)  # a record that breaks the schema is a bug: it fails here, before any write
    try:
        write_record(path, record)
        return
    except OSError as err:
        error = err
    name = "__".join(Path(path).parts[-3:])
    saved = None
    for folder in (Path(cfg.cache_dir) / "unsaved-records", Path(tempfile.gettempdir()) / "glai-unsaved-records"):
        try:
            write_record(folder / name, record)
            saved = folder / name
            break
        except OSError:
            continue
    if record.get("status") == "done":
        print(summary(record, saved))
    where = f"the complete record was saved to {saved}" if saved else "the record could not be saved anywhere"
    raise RecordWriteError(
        f"could not write the run record {path} ({error}); {where}: copy it there once "
        f"{_WRITABLE_HINT.format(cfg.results_dir)}"
    ) from error


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not running under @hydra.main (tests, scripts)
        return []
