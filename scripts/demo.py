"""``make demo``: the four heads on the embedded digits experiment (seed 0), then one comparison table.

Records go to ``results/demo/`` (re-running the demo re-trains; ``results/runs/`` is left alone).
Extra Hydra overrides are passed through: ``python scripts/demo.py seed=1 experiment.max_epochs=30``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glai.config import compose_config  # noqa: E402
from glai.runner import run  # noqa: E402

HEADS = ("mlp", "mlp_reduced", "glai", "linear")


def main(argv: list[str]) -> None:
    records = {}
    for head in HEADS:
        cfg = compose_config(["results_dir=results/demo", "overwrite=true", f"head={head}", *argv])
        records[head] = run(cfg)
    t_mlp = records["mlp"]["cost"]["total_s"]
    monitor = records["mlp"]["metrics"]["monitor"]
    print(f"\nGLAI demo: experiment={records['mlp']['experiment']} seed={records['mlp']['seed']} "
          f"rho={records['glai']['rho']} (BVS = best {monitor})")
    header = f"{'head':<12} {'BVS':>8} {'epochs':>10} {'time [s]':>9} {'speedup':>8} {'params':>22}"
    print(header)
    print("-" * len(header))
    for head, rec in records.items():
        m, c = rec["metrics"], rec["cost"]
        epochs = f"{m['epochs']}" if head != "glai" else f"{m['reduced_epochs']}+{m['epochs']}"
        p = c["params"]
        params = f"{p['R'] + p['kept']:,} (R+kept)" if "O" in p else f"{p['trainable']:,}"
        speedup = t_mlp / c["total_s"]
        print(f"{head:<12} {m['bvs']:>8.2f} {epochs:>10} {c['total_s']:>9.2f} {speedup:>7.2f}x {params:>22}")
    g = records["glai"]["cost"]
    print("\nGLAI phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in g["time_s"].items())
          + f"; O={g['params']['O']:,} R={g['params']['R']:,} E={g['params']['E']:,} "
          f"mu={g['params']['mu']:.4f} kept={g['params']['kept']:,}")
    gap = records["glai"]["metrics"]["bvs"] - records["mlp"]["metrics"]["bvs"]
    print(f"GLAI - MLP validation accuracy: {gap:+.2f} pp")


if __name__ == "__main__":
    main(sys.argv[1:])
