"""One run: compose -> validate -> data -> train a head -> record (called by ``run.py``).

The GLAI head is trained as the paper's pipeline (3.3): the reduced MLP for ``reduced_epochs`` (SGD,
WD(MLP)), then conversion (activation patterns cached for train and val, path norms, pruning, the sparse
estimator built), then the estimator (Adam, WD(GLAI)) with early stopping. Each phase is timed separately;
nothing GLAI does is left off its clock.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from glai.config import MONITORS, ConfigError, validate
from glai.conversion import mlp_to_glai
from glai.data import EmbeddingSplit, load_data
from glai.early_stopping import EarlyStopping
from glai.estimator import DenseEstimator
from glai.heads import GLAIHead, LinearHead, MLPHead, reduced_arch
from glai.params import count_parameters, parameter_budget
from glai.pruning import prune
from glai.records import SCHEMA_VERSION, environment, read_record, record_path, write_record
from glai.sparse_estimator import SparseEstimator
from glai.tasks import build_task, draw_episode
from glai.training import NonFiniteLossError, build_optimizer, fit

__all__ = ["run", "train_head", "resolve_device"]

log = logging.getLogger(__name__)


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


def _tracker(cfg, x: torch.Tensor, seed: int):
    if cfg.structure_samples <= 0:
        return None
    from glai.structure import PathDistanceTracker

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=g)[: cfg.structure_samples].to(x.device)
    return PathDistanceTracker(x[idx])


def _phase_record(hist) -> dict[str, Any]:
    return {"epochs": hist.epochs, "bvs": hist.bvs, "best_epoch": hist.best_epoch, "curves": hist.curves,
            "stopped_by": hist.stopped_by}


def train_head(cfg, train: EmbeddingSplit, val: EmbeddingSplit, seed: int) -> dict[str, Any]:
    """Train ``cfg.head`` on one train/val pair and return the record's ``metrics`` and ``cost`` parts.

    Args:
        cfg: the composed config (validated).
        train, val: embeddings on the run's device; ``y`` None for family B.
        seed: fixes the head's initialisation and the batch order (the same for every head of a seed).

    Raises:
        NonFiniteLossError: a NaN/inf training loss.
    """
    exp, head_cfg = cfg.experiment, cfg.head
    arch = list(exp.arch)
    task = build_task(exp)
    mode = MONITORS[task.monitor]
    gen = torch.Generator().manual_seed(seed)

    def stopper():
        return EarlyStopping(mode, exp.patience, exp.min_delta)

    common = dict(batch_size=exp.batch_size, generator=gen, mode=mode)
    tr, va = (train.x, train.y, None), (val.x, val.y, None)
    torch.manual_seed(seed)

    if head_cfg.name in ("mlp", "mlp_reduced", "linear"):
        if head_cfg.name == "linear":
            model = LinearHead(arch[0], arch[-1])
        else:
            model = MLPHead(reduced_arch(arch, head_cfg.width_factor) if head_cfg.width_factor < 1 else arch)
        model = model.to(train.x.device)
        opt = build_optimizer(head_cfg.optimizer, model.parameters(), head_cfg.lr, head_cfg.weight_decay)
        tracker = _tracker(cfg, train.x, seed) if head_cfg.name != "linear" else None
        hist = fit(model, opt, task, tr, va, max_epochs=exp.max_epochs, stopper=stopper(), tracker=tracker, **common)
        metrics = {**_phase_record(hist), "structure": hist.structure if tracker else None}
        cost = {"time_s": {"train": hist.time_s}, "total_s": hist.time_s,
                "params": {"trainable": count_parameters(model, trainable_only=True)}}
        return {"metrics": metrics, "cost": cost}

    # GLAI phase 1: the reduced MLP, for a fixed number of epochs (structural knowledge).
    red = reduced_arch(arch, head_cfg.width_factor)
    selector = MLPHead(red).to(train.x.device)
    opt = build_optimizer(head_cfg.reduced_optimizer, selector.parameters(), head_cfg.lr, head_cfg.reduced_weight_decay)
    tracker = _tracker(cfg, train.x, seed)
    red_hist = fit(selector, opt, task, tr, va, max_epochs=exp.reduced_epochs, stopper=None, tracker=tracker,
                   structure_threshold=head_cfg.structure_threshold, **common)

    # GLAI phase 2: conversion = path weights, cached gates for train and val, path norms, pruning, estimator.
    t0 = time.perf_counter()
    budget = parameter_budget(arch, head_cfg.width_factor)
    model, kept, (train_gates, val_gates) = build_glai_head(
        selector, train.x, budget.kept_paths, head_cfg.estimator, head_cfg.backend, cache=(val.x,)
    )
    conversion_s = time.perf_counter() - t0

    # GLAI phase 3: the estimator, with early stopping.
    opt = build_optimizer(head_cfg.optimizer, model.estimator.parameters(), head_cfg.lr, head_cfg.weight_decay)
    est_hist = fit(model, opt, task, (train.x, train.y, train_gates), (val.x, val.y, val_gates),
                   max_epochs=exp.max_epochs, stopper=stopper(), **common)
    metrics = {**_phase_record(est_hist), "reduced_epochs": red_hist.epochs,
               "total_epochs": red_hist.epochs + est_hist.epochs, "reduced_curves": red_hist.curves,
               "reduced_bvs": red_hist.bvs, "reduced_stopped_by": red_hist.stopped_by,
               "structure": red_hist.structure if tracker else None,
               "theorem2_bound": kept.removed_score}
    times = {"reduced_mlp": red_hist.time_s, "conversion": conversion_s, "estimator": est_hist.time_s}
    cost = {"time_s": times, "total_s": sum(times.values()),
            "params": {**budget.as_dict(), "trainable": count_parameters(model.estimator, trainable_only=True)}}
    return {"metrics": metrics, "cost": cost}


def build_glai_head(selector: MLPHead, x_train: torch.Tensor, keep: int, estimator: str = "sparse",
                    backend: str = "auto", cache: tuple[torch.Tensor, ...] = ()):
    """Convert a trained reduced MLP into a GLAI head pruned to ``keep`` paths (paper 3.3, SPEC 2-3).

    Args:
        selector: the trained reduced MLP (frozen by this call).
        x_train: float32 [N, n0], Omega for the path norms.
        keep: path weights to keep (``ParamBudget.kept_paths``).
        estimator: "sparse" (:class:`SparseEstimator`) or "dense" (paper Listing 1).
        backend: sparse estimator backend, "auto" | "triton" | "torch".
        cache: more inputs whose gates to compute once now (SPEC 2: never run the selector in the loop).

    Returns:
        ``(GLAIHead, KeptPaths, gates)``: gates is a tuple of uint8 [N_k, n_gates], for ``x_train`` and then
        each ``cache`` entry.
    """
    selector.eval()
    expansion = mlp_to_glai(selector)
    gates = [expansion.gates(selector, x) for x in (x_train, *cache)]
    x_tilde = torch.cat([x_train, x_train.new_ones(x_train.shape[0], 1)], dim=1)
    kept = prune(expansion, x_tilde, gates[0], keep)
    gate_idx, gate_fn = kept.gate_idx, None
    if selector.num_hidden > 1:
        # L > 1: keep only the gate columns (routes) that a kept path uses.
        used, gate_idx = torch.unique(kept.gate_idx, return_inverse=True)
        gates = [g[:, used] for g in gates]

        def gate_fn(patterns, _e=expansion, _u=used):
            return _e.gates_from_patterns(patterns)[:, _u]

    dims = dict(n_in=expansion.n_in, n_gates=gates[0].shape[1], n_out=expansion.n_out)
    if estimator == "dense":
        est = DenseEstimator.from_paths(kept.out_idx, kept.in_idx, gate_idx, kept.values, expansion.bias, **dims)
    else:
        est = SparseEstimator.from_paths(kept.out_idx, kept.in_idx, gate_idx, kept.values, expansion.bias,
                                         backend=backend, **dims)
    head = GLAIHead(selector, est.to(x_train.device), gate_fn)
    return head, kept, tuple(gates)


def _episodes(cfg, pool: EmbeddingSplit, device) -> dict[str, Any]:
    """Family C: train a fresh head on each episode's support set, validate on its query set."""
    exp = cfg.experiment
    results = []
    for e in range(cfg.episodes):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + e)
        sx, sy, qx, qy = draw_episode(pool.x.cpu(), pool.y.cpu(), exp.n_way, exp.k_shot, exp.q_query, gen)
        results.append(train_head(cfg, EmbeddingSplit(sx.to(device), sy.to(device)),
                                  EmbeddingSplit(qx.to(device), qy.to(device)), cfg.seed * 100_003 + e))
    if len(results) == 1:
        return results[0]
    from scipy import stats

    bvs = [r["metrics"]["bvs"] for r in results]
    n = len(bvs)
    mean = sum(bvs) / n
    sem = stats.sem(bvs) if n > 1 else math.nan
    out = results[0]
    out["metrics"] = {**out["metrics"], "bvs": mean,
                      "epochs": sum(r["metrics"]["epochs"] for r in results) / n,
                      "episodes": {"n": n, "bvs": bvs, "mean": mean,
                                   "ci95": float(stats.t.ppf(0.975, n - 1) * sem) if n > 1 else math.nan,
                                   "epochs": [r["metrics"]["epochs"] for r in results],
                                   "total_s": [r["cost"]["total_s"] for r in results]}}
    for key in out["cost"]["time_s"]:
        out["cost"]["time_s"][key] = sum(r["cost"]["time_s"][key] for r in results) / n
    out["cost"]["total_s"] = sum(r["cost"]["total_s"] for r in results) / n
    return out


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one (experiment, head, seed, rho) job and write its record.

    A record already "done" is kept (and returned) unless ``overwrite=true``. A NaN loss ends the run with
    status "failed" and the reason in the record; any other error is recorded the same way, then re-raised.

    Raises:
        ConfigError: a bad config value, before any work starts.
    """
    validate(cfg)
    exp = cfg.experiment
    path = record_path(cfg.results_dir, exp.name, cfg.head.name, cfg.rho, cfg.seed, cfg.tag)
    existing = read_record(path) if not cfg.overwrite else None
    if existing is not None and existing.get("status") == "done":
        print(f"[glai] {path} is done; skipping (pass overwrite=true to run it again)")
        return existing
    device = resolve_device(cfg.device)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "status": "running", "error": None,
        "experiment": exp.name, "head": cfg.head.name, "tag": cfg.tag, "seed": cfg.seed, "rho": cfg.rho,
        "family": exp.family, "overrides": _overrides(), "config": OmegaConf.to_container(cfg, resolve=True),
        "deviations": list(exp.deviations), "environment": environment(device.type),
    }
    write_record(path, record)
    try:
        t0 = time.perf_counter()
        splits = {k: EmbeddingSplit(v.x.to(device), None if v.y is None else v.y.to(device))
                  for k, v in load_data(cfg).items()}
        record["data_s"] = time.perf_counter() - t0
        if exp.family == "C":
            result = _episodes(cfg, splits["pool"], device)
        else:
            result = train_head(cfg, splits["train"], splits["val"], cfg.seed)
        record.update(result)
        monitor = build_task(exp).monitor
        record["metrics"].update(monitor=monitor, mode=MONITORS[monitor])
        record["status"] = "done"
    except NonFiniteLossError as err:
        record.update(status="failed", error=f"NonFiniteLossError: {err}")
        write_record(path, record)
        print(f"[glai] run FAILED ({err}); record: {path}")
        return record
    except BaseException as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        write_record(path, record)
        raise
    write_record(path, record)
    if cfg.wandb.enabled:
        _log_wandb(cfg, record)
    if cfg.verbose:
        print(summary(record, path))
    return record


def _log_wandb(cfg, record: dict[str, Any]) -> None:
    """Log a finished run to Weights & Biases (offline by default), after training: no cost on the clock."""
    try:
        import wandb
    except ImportError as err:
        raise ConfigError("wandb.enabled=true but wandb is not installed. Fix: pip install wandb") from err
    name = f"{record['experiment']}-{record['head']}{'-' + cfg.tag if cfg.tag else ''}-rho{cfg.rho:g}-seed{cfg.seed}"
    run_ = wandb.init(project=cfg.wandb.project, mode=cfg.wandb.mode, name=name, config=record["config"])
    curves = record["metrics"]["curves"]
    for epoch in range(len(curves["train_loss"])):
        run_.log({k: v[epoch] for k, v in curves.items() if v[epoch] is not None}, step=epoch + 1)
    run_.summary.update({"bvs": record["metrics"]["bvs"], "total_s": record["cost"]["total_s"]})
    run_.finish()


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # not running under @hydra.main (tests, scripts)
        return []


def summary(record: dict[str, Any], path=None) -> str:
    """A short human-readable summary of a finished run."""
    m, c = record["metrics"], record["cost"]
    unit = "%" if m["monitor"] == "val_acc" else ""
    lines = [f"[glai] {record['experiment']} head={record['head']} seed={record['seed']} rho={record['rho']}",
             f"  BVS ({m['monitor']}): {m['bvs']:.4g}{unit}   epochs: {m['epochs']:g}"
             + (f" (+{m['reduced_epochs']} reduced-MLP epochs)" if "reduced_epochs" in m else "")]
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in c["time_s"].items())
    lines.append(f"  time: {c['total_s']:.2f}s ({phases})")
    p = c["params"]
    if "O" in p:
        lines.append(f"  params: O={p['O']:,} R={p['R']:,} E={p['E']:,} mu={p['mu']:.4f} kept={p['kept']:,}"
                     + (" (mu >= 1: nothing pruned)" if p["mu_clipped"] else ""))
    else:
        lines.append(f"  params: {p['trainable']:,} trainable")
    if path is not None:
        lines.append(f"  record: {path}")
    return "\n".join(lines)
