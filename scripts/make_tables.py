"""Tables 2-5, the comparison with the paper, and Figures 3-5 from the run records (docs/method.md,
Statistics).

Usage: python scripts/make_tables.py [--runs results/runs] [--out results/tables] [--tag ''] [--no-figures]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glai.config import reference_configs
from glai.results.stats import load_records
from glai.results.tables import write_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="results/runs", help="run records root (default: %(default)s)")
    parser.add_argument("--out", default="results/tables", help="output folder (default: %(default)s)")
    parser.add_argument("--tag", default="", help="record tag to tabulate; '' = the paper's protocol runs")
    parser.add_argument("--conf", default="conf",
                        help="config folder: a run is the paper's X only when its settings equal "
                        "experiment=X's there (docs/method.md, Run identity)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    if not Path(args.runs).is_dir():
        print(f"make_tables: no run records: {args.runs} is not a folder. Fix: --runs <the results_dir of your runs> "
              "(run experiments/*.sh or run.py first)", file=sys.stderr)
        return 2
    pairs = {(r["experiment"], r["head"]) for r in load_records(args.runs) if r.get("status") != "invalid"}
    references = reference_configs(pairs, args.conf)
    written = write_all(args.runs, args.out, tag=args.tag, conf_dir=args.conf, figures=not args.no_figures,
                        references=references, echo=print)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
