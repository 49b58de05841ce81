"""The numbers of a comparison: the metric columns of a set of rows and the grid's totals. Each run's own numbers
(``Costs``, ``costs``, ``summary_metrics``) are ``uf_experiments.metrics.cell``'s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uf_experiments.metrics.cell import COST_COLUMNS, JUDGE_METRICS
from uf_experiments.report.runs import DONE, FAILED, STOPPED, Row, ran


def metric_columns(rows: Sequence[Row]) -> list[str]:
    """``JUDGE_METRICS``, the agreement columns any run has (``agree_<aspect>_kappa|exact|pairwise``), then
    ``COST_COLUMNS``."""
    agreement = list(dict.fromkeys(c for r in rows for c in r["agreement"]))
    return [*JUDGE_METRICS, *agreement, *COST_COLUMNS]


def column_value(row: Row, column: str) -> Any:
    """A row's value in a metric column (the agreement columns live in its ``agreement`` dict)."""
    return row["agreement"].get(column) if column.startswith("agree_") else row[column]


def grid_totals(rows: Sequence[Row]) -> dict[str, Any]:
    """The grid's totals: cells, runs done / stopped / failed, cells skipped, and the sums over the runs of pairs,
    prompts, judged items, engine calls, cache hits and $ (attributed, paid, saved by the cache). A $ sum over runs
    whose attributed cost is unknown is None, with how many runs that is in ``runs_cost_unknown``; a job that failed
    before it ran costs nothing."""
    done = ran(rows)

    def total(values: list[Any]) -> float | int | None:
        return None if any(v is None for v in values) else (round(sum(values), 6) if values else 0)

    priced = [r for r in done if r["status"] != FAILED]  # a job that failed before it ran did no work
    unknown = sum(r["cost"].total is None for r in priced)
    usd_total = total([r["cost"].total for r in priced])
    usd_paid = total([r["cost"].paid for r in priced])
    return {
        "cells": len(rows),
        "runs": len(done),
        "done": sum(r["status"] == DONE for r in done),
        "stopped": sum(r["status"] == STOPPED for r in done),
        "failed": sum(r["status"] == FAILED for r in done),
        "skipped": len(rows) - len(done),
        "pairs": sum(r["pairs"] or 0 for r in done),
        "prompts": sum(r["counts"].get("prompts") or 0 for r in done),
        "judged": sum(r["counts"].get("judged") or 0 for r in done),
        "engine_calls": sum(r["counts"].get("engine_calls") or 0 for r in done),
        "cache_hits": sum(r["counts"].get("cache_hits") or 0 for r in done),
        "usd_total": usd_total,
        "usd_paid": usd_paid,
        "usd_saved_by_cache": (round(usd_total - usd_paid, 6) if usd_total is not None and usd_paid is not None
                               else None),
        "runs_cost_unknown": unknown,
    }
