"""What a finished run tells its user: the console summary and the optional Weights & Biases log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glai.errors import ConfigError

__all__ = ["log_wandb", "summary"]


def summary(record: dict[str, Any], path: str | Path | None = None) -> str:
    """A short human-readable summary of a finished run record (BVS, epochs, seconds per phase, parameters)."""
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
