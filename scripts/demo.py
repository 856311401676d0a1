"""``make demo``: the heads on the embedded digits experiment (seed 0), then one comparison table.

The MLP runs twice, with the paper's SGD and with Adam (the optimiser GLAI's estimator uses), so that the
table separates GLAI's gain from the optimiser's (docs/method.md, Heads and optimisers). Records go to
``results/demo/`` (re-running the demo re-trains; ``results/runs/`` is left alone). Extra Hydra overrides are
passed through: ``python scripts/demo.py seed=1 experiment.max_epochs=30``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glai.config import compose_config  # noqa: E402
from glai.runner import run  # noqa: E402

# label -> overrides
HEADS = {
    "mlp": ["head=mlp"],
    "mlp (adam)": ["head=mlp", "head.optimizer=adam", "tag=adam"],
    "mlp_reduced": ["head=mlp_reduced"],
    "glai": ["head=glai"],
    "linear": ["head=linear"],
}


def _optimizer(rec) -> str:
    head = rec["config"]["head"]
    if rec["head"] == "glai":
        return f"{head['reduced_optimizer']}+{head['optimizer']}"
    return head["optimizer"]


def _verdict(glai, sgd, adam) -> str:
    """One line on what the comparison shows, from the numbers themselves."""
    def versus(ref, name):
        gap = glai["metrics"]["bvs"] - ref["metrics"]["bvs"]
        speed = ref["cost"]["total_s"] / glai["cost"]["total_s"]
        better = "more" if gap > 0 else "less"
        faster = f"{speed:.2f}x faster" if speed >= 1 else f"{1 / speed:.2f}x slower"
        return f"{abs(gap):.2f} pp {better} accurate and {faster} than the {name}"
    return f"GLAI is {versus(sgd, 'SGD MLP')}; {versus(adam, 'Adam MLP')}."


def main(argv: list[str]) -> None:
    records = {}
    for label, overrides in HEADS.items():
        cfg = compose_config(["results_dir=results/demo", "overwrite=true", *overrides, *argv])
        records[label] = run(cfg)
    mlp = records["mlp"]
    t_mlp, t_adam = mlp["cost"]["total_s"], records["mlp (adam)"]["cost"]["total_s"]
    monitor = mlp["metrics"]["monitor"]
    print(f"\nGLAI demo: experiment={mlp['experiment']} seed={mlp['seed']} rho={records['glai']['rho']} "
          f"(BVS = best {monitor}; * = stopped by the epoch cap, not early stopping)")
    header = (f"{'head':<12} {'optimizer':<10} {'BVS':>7} {'epochs':>9} {'time [s]':>9} {'vs SGD MLP':>11} "
              f"{'vs Adam MLP':>12} {'params':>20}")
    print(header)
    print("-" * len(header))
    for label, rec in records.items():
        m, c = rec["metrics"], rec["cost"]
        epochs = f"{m['reduced_epochs']}+{m['epochs']}" if rec["head"] == "glai" else f"{m['epochs']}"
        epochs += "*" if m.get("stopped_by") == "max_epochs" else " "
        p = c["params"]
        params = f"{p['R'] + p['kept']:,} (R+kept)" if "O" in p else f"{p['trainable']:,}"
        print(f"{label:<12} {_optimizer(rec):<10} {m['bvs']:>7.2f} {epochs:>9} {c['total_s']:>9.2f} "
              f"{t_mlp / c['total_s']:>10.2f}x {t_adam / c['total_s']:>11.2f}x {params:>20}")
    g = records["glai"]["cost"]
    print("\nGLAI phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in g["time_s"].items())
          + f"; O={g['params']['O']:,} R={g['params']['R']:,} E={g['params']['E']:,} "
          f"mu={g['params']['mu']:.4f} kept={g['params']['kept']:,}")
    print(_verdict(records["glai"], mlp, records["mlp (adam)"]))


if __name__ == "__main__":
    main(sys.argv[1:])
