"""The numbers a run (one cell of a sweep) is compared on, read from its ``summary.json``: the judge metrics,
agreement with reference ratings, and the attributed and paid $ (``Costs``). ``uf-experiments-compare``'s columns,
W&B's ``cell/`` metrics and the dataset card's $ figures all come from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JUDGE_METRICS = ("pairs", "tie_rate", "mean_margin", "parse_failure_rate", "flip_rate")
COST_COLUMNS = ("usd_total", "usd_paid", "usd_per_pair", "pairs_per_usd", "usd_per_1k_judged")
# The metric columns every table has; ``agree_<aspect>_*`` columns go between the two groups when a run has them.
METRIC_COLUMNS = (*JUDGE_METRICS, *COST_COLUMNS)
AGREEMENT = {"kappa": "kappa_quadratic", "exact": "exact", "pairwise": "pairwise_accuracy"}  # column -> summary key


@dataclass(frozen=True)
class Costs:
    """A run's $: ``total`` attributed (None when unknown), ``paid`` spent by the run, the judge stage's total."""

    total: float | None
    paid: float | None
    judge_total: float | None
    saved: float | None
    note: str | None = None


def costs(summary: dict[str, Any]) -> Costs:
    """The attributed and paid $ of a ``summary.json``.

    Current summaries carry ``cost_usd.{total, paid, saved_by_cache}`` and per stage dicts. A summary written
    before costs were attributed has numbers per stage and a ``total`` that is what the run paid, with cache hits
    at $0: its attributed total is known only when nothing came from the cache, and is left unknown (None, with a
    note) otherwise.
    """
    cost = summary.get("cost_usd") or {}
    judge = cost.get("judge")
    if isinstance(judge, dict) or "paid" in cost:
        judge_total = judge.get("total") if isinstance(judge, dict) else None
        return Costs(cost.get("total"), cost.get("paid"), judge_total, cost.get("saved_by_cache"))
    paid = cost.get("total")
    counts = summary.get("counts") or {}
    hits = counts.get("cache_hits", 0) or 0
    judge_hits = (summary.get("judge") or {}).get("cache_hits", hits) or 0
    note = None
    if hits:
        note = (f"summary.json predates attributed costs and {hits} of its requests came from the cache: what its "
                "work costs is unknown (usd_total, usd_per_pair, pairs_per_usd left empty; usd_paid is what it spent)")
    return Costs(None if hits else paid, paid, None if judge_hits else judge, None, note)


def summary_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The compared numbers of one ``summary.json``: ``JUDGE_METRICS``, the ``agree_<aspect>_*`` columns the
    summary has, and ``COST_COLUMNS`` (attributed $, see ``costs``)."""
    metrics = summary.get("metrics") or {}
    counts = summary.get("counts") or {}
    flips = [v for v in (metrics.get("flip_rate_by_aspect") or {}).values() if v is not None]
    cost = costs(summary)
    pairs = counts.get("pairs")
    per_pair = metrics.get("usd_per_pair") if cost.total is not None else None
    if per_pair is None and cost.total is not None and pairs:
        per_pair = round(cost.total / pairs, 6)
    judged = counts.get("judged")
    agreement = {f"agree_{aspect}_{column}": (values or {}).get(key)
                 for aspect, values in (metrics.get("agreement") or {}).items() for column, key in AGREEMENT.items()}
    return {
        "pairs": pairs,
        "tie_rate": metrics.get("tie_rate"),
        "mean_margin": metrics.get("mean_margin"),
        "parse_failure_rate": metrics.get("parse_failure_rate"),
        "flip_rate": round(sum(flips) / len(flips), 4) if flips else None,
        **agreement,
        "usd_total": cost.total,
        "usd_paid": cost.paid,
        "usd_per_pair": per_pair,
        "pairs_per_usd": round(pairs / cost.total, 4) if pairs is not None and cost.total else None,
        "usd_per_1k_judged": (round(cost.judge_total * 1000 / judged, 6)
                              if cost.judge_total is not None and judged else None),
    }
