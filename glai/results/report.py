"""What a finished run tells its user: the console summary and the optional Weights & Biases log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glai.errors import ConfigError

__all__ = ["log_wandb", "study_summary", "summary"]


def study_summary(record: dict[str, Any], path: str | Path | None = None) -> str:
    """The console summary of a method-family study record (``metrics.study``: retrain or combine)."""
    st = record["metrics"]["study"]
    lines = [f"[glai] {record['experiment']} study={st['name']} seed={record['seed']} rho={record['rho']}: "
             f"{record['cost']['total_s']:.1f}s"]
    if st["name"] == "retrain":
        lines.append(f"  rows {st['rows']}; new rows with an activation pattern no old row has: "
                     f"{100 * st['unseen_pattern_fraction']:.1f}%; nearest old pattern: new rows "
                     f"{100 * st['pattern_distance']['new']:.1f}% of the units, old val rows "
                     f"{100 * st['pattern_distance']['old_val']:.1f}%")
        for arm, v in {**{f"{k}_old": v for k, v in st["old"].items()}, **st["arms"]}.items():
            lines.append(f"  {arm:<10} old {v['acc_old']:6.2f}%  new {v['acc_new']:6.2f}%  all {v['acc_all']:6.2f}%"
                         f"  {v['time_s']:7.2f}s  {v['epochs']} epochs")
    else:
        for model in ("glai", "mlp"):
            v = st[model]
            shards = ", ".join(f"{s['acc']:.1f}" for s in v["shards"])
            lines.append(f"  {model:<5} all data {v['all']:6.2f}%  combined {v['combined']:6.2f}%  shards [{shards}]")
    if path is not None:
        lines.append(f"  record: {path}")
    return "\n".join(lines)


def summary(record: dict[str, Any], path: str | Path | None = None) -> str:
    """A short human-readable summary of a finished run record (BVS, epochs, seconds per phase, parameters)."""
    m, c = record["metrics"], record["cost"]
    if "study" in m:
        return study_summary(record, path)
    unit = "%" if m["monitor"] == "val_acc" else ""
    from glai.results.identity import reads_rho

    rho = f" rho={record['rho']}" if reads_rho(str(record["head"])) else ""
    # what ran, named: the data set, the tag, and the head's optimiser and step
    config = record.get("config") or {}
    head = config.get("head") or {}
    what = f" data={(config.get('dataset') or {}).get('name')}" + (f" tag={record['tag']}" if record.get("tag") else "")
    if head.get("lr") is not None:
        what += f" {head.get('optimizer')} lr={float(head['lr']):g}"
    lines = [f"[glai] {record['experiment']} head={record['head']} seed={record['seed']}{rho}{what}",
             f"  BVS ({m['monitor']}): {m['bvs']:.4g}{unit}   epochs: {m['epochs']:g}"
             + (f" (+{m['reduced_epochs']} reduced-MLP epochs)" if "reduced_epochs" in m else "")]
    if "tokens_per_s" in m:  # family T
        lines.append(f"  tokens/s (training step): {m['tokens_per_s']:,.0f}" + (
            f"   converted BVS before any estimator step: {m['converted_bvs']:.4g}{unit}   active paths per "
            f"token: {m['active_paths_per_token']:,.0f} of {m['kept_paths']:,} kept"
            + (f"   output error vs the ReLU block: {m['conversion_error']:.2%}"
               if m.get("conversion_error") is not None else "")
            if m.get("converted_bvs") is not None else ""))
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in c["time_s"].items())
    lines.append(f"  time: {c['total_s']:.2f}s ({phases})")
    p = c["params"]
    if "O" in p:
        lines.append(f"  params: O={p['O']:,} R={p['R']:,} E={p['E']:,} mu={p['mu']:.4f} kept={p['kept']:,}"
                     + (" (mu >= 1: nothing pruned)" if p["mu_clipped"] else ""))
        if "gate_columns" in p:
            lines.append(f"  routes: {p['gate_columns_used']:,} of {p['gate_columns']:,} gate columns kept "
                         f"(L = {p['hidden_layers']}); estimator step {m.get('step_ms', float('nan')):.3f} ms")
    else:
        lines.append(f"  params: {p['trainable']:,} trainable")
    if path is not None:
        lines.append(f"  record: {path}")
    return "\n".join(lines)


def log_wandb(record: dict[str, Any], project: str, mode: str = "offline") -> None:
    """Log a finished run to Weights & Biases (offline by default), after training: no cost on the clock.

    Raises:
        ConfigError: wandb is not installed.
    """
    try:
        import wandb
    except ImportError as err:
        raise ConfigError("wandb.enabled=true but wandb is not installed. Fix: pip install wandb") from err
    tag = f"-{record['tag']}" if record.get("tag") else ""
    name = f"{record['experiment']}-{record['head']}{tag}-rho{record['rho']:g}-seed{record['seed']}"
    run_ = wandb.init(project=project, mode=mode, name=name, config=record["config"])
    curves = record["metrics"]["curves"]
    for epoch in range(len(curves["train_loss"])):
        run_.log({k: v[epoch] for k, v in curves.items() if v[epoch] is not None}, step=epoch + 1)
    run_.summary.update({"bvs": record["metrics"]["bvs"], "total_s": record["cost"]["total_s"]})
    run_.finish()
