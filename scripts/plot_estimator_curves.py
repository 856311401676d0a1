"""The estimator diagnosis figure: validation score per estimator epoch of every GLAI variant.

Usage: python scripts/plot_estimator_curves.py [--runs results/diagnosis] [--out results/diagnosis/estimator_curves.png]
Writes the PNG and a CSV beside it (per variant: first-epoch, best and final score, the epoch of the best).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glai.results.figures import estimator_curves
from glai.results.records import atomic_write_text
from glai.results.stats import load_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="results/diagnosis", help="run records root (default: %(default)s)")
    parser.add_argument("--out", default=None, help="PNG path (default: <runs>/estimator_curves.png)")
    args = parser.parse_args(argv)
    out = Path(args.out or Path(args.runs) / "estimator_curves.png")
    result = estimator_curves(load_records(args.runs), out)
    if result is None:
        print(f"no done GLAI record under {args.runs} (run experiments/estimator_diagnosis.sh first)",
              file=sys.stderr)
        return 1
    path, table = result
    atomic_write_text(out.with_suffix(".csv"), table.to_csv(index=False))
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
