"""What ends a ``-m`` sweep, and what ``uf-experiments-compare`` does: compare run dirs (``compare_dirs``: the
table, the grid's totals and the plots into one out dir), log the comparison to W&B (``sweep_end``), and say the
grid's totals in one line (``describe_totals``).

Every $ figure is the attributed cost of the run's work (``cost_usd.total``: cached requests count at what they
cost when they were paid), so cells compare on what their work costs, not on what the cache spared them;
``usd_paid`` is what the run spent.

Writes into the out dir (default ``SWEEP_DIR/compare``): ``compare.csv``, ``compare.md``, ``totals.json`` (the
grid's totals), ``usd_per_pair.png``, ``pairs_per_usd.png``, ``rating_distribution.png``,
``margin_histogram.png``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uf_experiments.core.rundir import SUMMARY
from uf_experiments.report.numbers import grid_totals
from uf_experiments.report.plots import plot_all
from uf_experiments.report.runs import Row, collect, default_out, find_runs, find_skipped, ran, sort_value, varying_keys
from uf_experiments.report.table import table, write_table

TOTALS = "totals.json"


@dataclass(frozen=True)
class Comparison:
    """What ``compare_dirs`` wrote: the rows, the markdown, the grid's totals and the plot files."""

    rows: list[Row]
    markdown: str
    totals: dict[str, Any]
    plots: list[Path]
    out: Path


def compare_dirs(paths: Sequence[str | Path], out: Path | None = None) -> Comparison:
    """Compare the runs in ``paths`` (sweep dirs or run dirs) and write every file into ``out`` (default:
    ``default_out(paths)``). Raises CompareError on unusable inputs."""
    runs = find_runs(paths)
    out = out or default_out(paths)
    rows = collect(runs, find_skipped(paths))
    md = write_table(rows, out)
    totals = grid_totals(rows)
    (out / TOTALS).write_text(json.dumps(totals, indent=2))
    return Comparison(rows, md, totals, plot_all(rows, out), out)


def sweep_end(sweep: Path, tracking: Any = None, group: str | None = None) -> tuple[Comparison, Any] | None:
    """What the end of a ``-m`` sweep does: compare its run dirs into ``SWEEP/compare/`` and, given the tracking
    config (None: no W&B), log the comparison as one more W&B run in ``group`` (``tracking.log_comparison``).
    Returns ``(comparison, W&B run or None)``, or None when no cell wrote a ``summary.json`` (a ``plan=true``
    sweep)."""
    if not any((c / SUMMARY).is_file() for c in sweep.iterdir() if c.is_dir()):
        return None
    result = compare_dirs([sweep])
    run = None
    if tracking is not None:
        from uf_experiments.tracking.wandb import log_comparison

        done = ran(result.rows)
        keys = varying_keys(result.rows)
        config = {
            "sweep_dir": str(sweep),
            "cells": result.totals["cells"],
            "grid": {k: sorted({r["overrides"].get(k) for r in result.rows if k in r["overrides"]}, key=sort_value)
                     for k in keys},
            "same": {k: v for k, v in (done[0]["overrides"].items() if done else ()) if k not in keys},
        }
        header, records = table(result.rows)
        images = {f"plots/{p.stem}": p for p in result.plots}
        run = log_comparison(tracking, result.out, header, records, images, result.totals, group or sweep.name,
                             config)
    return result, run


def describe_totals(totals: dict[str, Any]) -> str:
    """One line: runs, skipped cells, pairs and $ of the grid."""
    usd = ("$ unknown for " + str(totals["runs_cost_unknown"]) + " runs" if totals["usd_total"] is None
           else f"${totals['usd_total']:.4f} attributed")
    paid = "" if totals["usd_paid"] is None else f", ${totals['usd_paid']:.4f} paid"
    bad = [f"{totals[k]} {k}" for k in ("stopped", "failed") if totals.get(k)]
    stopped = f" ({', '.join(bad)})" if bad else ""
    skipped = f", {totals['skipped']} cell{'s' * (totals['skipped'] != 1)} skipped" if totals["skipped"] else ""
    return f"{totals['runs']} runs{stopped}{skipped}: {totals['pairs']} pairs, {usd}{paid}"
