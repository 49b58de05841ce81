"""``uf-experiments-merge OUT SHARD_DIRS_OR_SWEEP_DIR...``: merge the run dirs of one sharded run into one (see
``uf_experiments.report.merge``). Also ``python -m uf_experiments.cli.merge``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from uf_experiments.report.merge import MergeError, merge
from uf_experiments.report.runs import CompareError, find_runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="uf-experiments-merge",
                                     description=sys.modules[merge.__module__].__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the merged run dir to write")
    parser.add_argument("paths", nargs="+", help="shard run dirs, or a sweep dir holding them")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.paths)
        summary = merge(runs, args.out)
    except (CompareError, MergeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    c = summary["counts"]
    print(f"merged {len(runs)} shards -> {args.out}: {c['rated_rows']} rated rows, {c['pairs']} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
