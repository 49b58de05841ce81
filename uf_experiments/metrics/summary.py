"""What a run did and cost, per stage and per model: the numbers ``summary.json`` carries (and ``merge`` sums).

Costs are attributed, so sweep cells compare fairly: every request counts at the cost stored with its answer
(API tokens x the price when it was paid, or its share of a self-hosted engine's measured time x
``gpu_hour_usd``), whether this run paid for it now or read it from the request cache.

- ``cost_usd`` (per model, stage, run): the attributed total of the work;
- ``paid_usd``: what this run spent;
- ``saved_usd``: the difference (answers read from the cache).

Cache entries written before costs were stored have none: an API answer is priced from its stored tokens at the
model's current price, a self-hosted one cannot be (its engine time was not kept) and counts 0; both are counted
(``priced_from_tokens``, ``unpriced``) and named in the summary's notes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from uf_experiments.core.records import Completion, Usage
from uf_experiments.core.status import not_sent
from uf_experiments.engines.build import is_api_engine
from uf_experiments.metrics.pricing import api_usd


@dataclass
class ModelStats:
    requests: int = 0
    engine_calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    not_sent: int = 0
    usage: Usage = field(default_factory=Usage)  # tokens this run paid for
    engine_s: float = 0.0  # measured engine time of this run's own requests
    total_usd: float = 0.0
    paid_usd: float = 0.0
    priced_from_tokens: int = 0
    unpriced: int = 0
    answers: int = 0  # successful answers, fresh or cached: their output lengths (a pilot's measurement)
    out_sum: float = 0.0
    out_sq: float = 0.0

    def output_length(self) -> dict[str, float] | None:
        """Mean and standard deviation of the answers' output tokens, or None without answers."""
        if not self.answers:
            return None
        mean = self.out_sum / self.answers
        var = max(0.0, self.out_sq / self.answers - mean * mean) * self.answers / max(1, self.answers - 1)
        return {"n": self.answers, "mean": round(mean, 2), "sd": round(var**0.5, 2)}


@dataclass
class StageStats:
    """Requests, tokens, engine time and $ of one stage, in total and per model."""

    models: dict[str, ModelStats] = field(default_factory=lambda: defaultdict(ModelStats))
    wall_s: float = 0.0

    def record(self, c: Completion, model: Any) -> None:
        """Count one settled request (``c.cost_usd`` set by the worker for what it paid now)."""
        m = self.models[c.request.model]
        m.requests += 1
        if not_sent(c.error):
            m.not_sent += 1
            return
        if c.text is not None:
            m.answers += 1
            m.out_sum += c.usage.completion_tokens
            m.out_sq += c.usage.completion_tokens**2
        if c.cached:
            m.cache_hits += 1
            if c.cost_usd is not None:
                m.total_usd += c.cost_usd
            elif is_api_engine(model.engine):
                m.total_usd += api_usd(model.price, c.usage)
                m.priced_from_tokens += 1
            else:
                m.unpriced += 1
            return
        m.engine_calls += 1
        m.failures += c.text is None
        m.usage += c.usage
        m.engine_s += c.engine_s
        m.total_usd += c.cost_usd or 0.0
        m.paid_usd += c.cost_usd or 0.0

    def to_dict(self) -> dict[str, Any]:
        per_model = {}
        for name in sorted(self.models):
            m = self.models[name]
            per_model[name] = {
                "requests": m.requests,
                "engine_calls": m.engine_calls,
                "cache_hits": m.cache_hits,
                "failures": m.failures,
                "not_sent": m.not_sent,
                "prompt_tokens": m.usage.prompt_tokens,
                "completion_tokens": m.usage.completion_tokens,
                "cached_tokens": m.usage.cached_tokens,
                "engine_s": round(m.engine_s, 3),
                "cost_usd": round(m.total_usd, 6),
                "paid_usd": round(m.paid_usd, 6),
                "saved_usd": round(m.total_usd - m.paid_usd, 6),
                "priced_from_tokens": m.priced_from_tokens,
                "unpriced": m.unpriced,
            }
        out: dict[str, Any] = {k: sum(v[k] for v in per_model.values()) for k in (
            "requests", "engine_calls", "cache_hits", "failures", "not_sent", "prompt_tokens", "completion_tokens",
            "cached_tokens", "priced_from_tokens", "unpriced")}
        for k in ("engine_s", "cost_usd", "paid_usd", "saved_usd"):
            out[k] = round(sum(v[k] for v in per_model.values()), 6)
        out["wall_s"] = round(self.wall_s, 3)
        out["by_model"] = per_model
        return out


def cost_block(generation: dict[str, Any], judge: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` ``cost_usd`` from the two stages' ``to_dict()``."""

    def split(stage: dict[str, Any]) -> dict[str, float]:
        return {"total": stage["cost_usd"], "paid": stage["paid_usd"], "saved_by_cache": stage["saved_usd"]}

    g, j = split(generation), split(judge)
    block: dict[str, Any] = {k: round(g[k] + j[k], 6) for k in ("total", "paid", "saved_by_cache")}
    block.update(generation=g, judge=j,
                 priced_from_tokens=generation["priced_from_tokens"] + judge["priced_from_tokens"],
                 unpriced=generation["unpriced"] + judge["unpriced"])
    notes = []
    if block["priced_from_tokens"]:
        notes.append(f"{block['priced_from_tokens']} cached API answers had no stored cost (written by an older "
                     "version): priced from their stored tokens at today's model prices")
    if block["unpriced"]:
        notes.append(f"{block['unpriced']} cached self-hosted answers had no stored cost (written by an older "
                     "version, engine time not kept): counted as $0 in total")
    block["notes"] = notes
    return block


# Counts every shard of a sharded run reads over the whole dataset (not per-shard numbers: not summed by merge).
DATASET_COUNTS = ("rows_read", "skipped_empty", "skipped_duplicate", "skipped_few_completions",
                  "dropped_empty_completions")
SUMMED_PARTS = ("counts", "generation", "judge", "cost_usd", "wall_time_s")


@dataclass
class RunSummary:
    """``summary.json``: what a run did, cost and measured. The runner builds one per job; ``merge`` builds one
    from a sharded run's parts (:meth:`merged`) and recomputes its metrics from the merged rows."""

    experiment: str
    run_dir: str
    stopped: str | None = None  # null when the run did all its work, else why not (README, "Exit codes")
    exit_code: int = 0
    version: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    judge: dict[str, Any] = field(default_factory=dict)
    cost_usd: dict[str, Any] = field(default_factory=dict)
    wall_time_s: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    merged_from: list[str] | None = None
    # execution=ray: model -> its replicas ({node, gpus, num_gpus, busy: [[start_s, end_s], ...], ...}); else absent
    placement: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "experiment": self.experiment, "stopped": self.stopped,
                               "exit_code": self.exit_code, "run_dir": self.run_dir}
        if self.merged_from is not None:
            out["merged_from"] = self.merged_from
        out.update(counts=self.counts, generation=self.generation, judge=self.judge, cost_usd=self.cost_usd,
                   wall_time_s=self.wall_time_s, metrics=self.metrics)
        if self.placement is not None:
            out["placement"] = self.placement
        return out

    @classmethod
    def merged(cls, parts: list[dict[str, Any]], run_dir: str, merged_from: list[str]) -> RunSummary:
        """The parts' numbers summed (counts, requests, tokens, $, engine and wall seconds; flip counts element-
        wise), dataset-wide counts taken once, every reason a part stopped, the worst exit code. ``metrics`` is
        left for the caller to recompute from the merged rows (rates cannot be summed)."""
        summed: dict[str, dict[str, Any]] = {}
        for part in SUMMED_PARTS:
            merged: dict[str, Any] = {}
            for s in parts:
                _add(merged, s.get(part) or {})
            summed[part] = merged
        for key in DATASET_COUNTS:
            if key in (parts[0].get("counts") or {}):
                summed["counts"][key] = parts[0]["counts"][key]
        stopped = [s["stopped"] for s in parts if s.get("stopped")]
        return cls(experiment=parts[0]["experiment"], run_dir=run_dir, stopped="; ".join(stopped) or None,
                   exit_code=max((s.get("exit_code") or 0 for s in parts), default=0),
                   version=parts[0].get("version"), merged_from=merged_from, **summed)


def _add(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Sum numbers (recursively); lists of numbers (flip counts) element-wise; anything else is kept."""
    for key, value in other.items():
        if isinstance(value, bool) or value is None:
            into.setdefault(key, value)
        elif isinstance(value, (int, float)):
            into[key] = round(into.get(key, 0) + value, 6) if isinstance(value, float) else into.get(key, 0) + value
        elif isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        elif isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            into[key] = [a + b for a, b in zip(into.get(key, [0] * len(value)), value, strict=True)]
        else:
            into.setdefault(key, value)
