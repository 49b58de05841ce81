"""``uf-experiments-compare SWEEP_DIR [--out DIR]``: compare the runs of a sweep (or several run dirs) into a table
(``compare.csv``, ``compare.md``, also printed), the grid's totals (``totals.json``) and PNG plots; see
``uf_experiments.report.sweep``. Also ``python -m uf_experiments.cli.compare``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from uf_experiments.report.plots import PLOTS
from uf_experiments.report.runs import CompareError
from uf_experiments.report.sweep import TOTALS, compare_dirs, describe_totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="uf-experiments-compare",
        description="Turn a sweep (or several run dirs) into a table (compare.csv, compare.md) and PNG plots.")
    parser.add_argument("paths", nargs="+", metavar="SWEEP_DIR_OR_RUN_DIR",
                        help="a sweep dir (its subdirs with a summary.json are the runs), or run dirs")
    parser.add_argument("--out", type=Path, help="where to write (default: SWEEP_DIR/compare; required otherwise)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        result = compare_dirs(args.paths, args.out)
    except CompareError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(result.markdown, end="")
    print(f"\n{describe_totals(result.totals)} -> {result.out}/ (compare.csv, compare.md, {TOTALS}, "
          f"{', '.join(PLOTS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
