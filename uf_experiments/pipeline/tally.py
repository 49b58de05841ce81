"""What a run's finished prompts add up to, and ``summary.json`` from it: :class:`RunTally` turns each finished
prompt into its row and pairs (binarized at once) while counting rows, judge items, ties and flips and feeding the
experiment metrics and the agreement with a dataset's reference ratings; :meth:`RunTally.summary` assembles the
summary from those, the two stages' stats and the scheduler's counts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from uf_experiments import __version__
from uf_experiments.config.schema import RunConfig, completions_given, enum_value, side_by_side
from uf_experiments.core.records import Pair, Prompt, Request
from uf_experiments.core.status import judged
from uf_experiments.data.prompts import LoadReport
from uf_experiments.metrics.agreement import Agreement, usd_per_1k_judged
from uf_experiments.metrics.binarize import binarize
from uf_experiments.metrics.experiment import Metrics, flip_rates
from uf_experiments.metrics.summary import RunSummary, cost_block
from uf_experiments.pipeline.context import RunContext
from uf_experiments.pipeline.rows import build_row
from uf_experiments.pipeline.scheduler import Finished, Scheduler


@dataclass(frozen=True)
class Timing:
    """When the run started (``time.perf_counter``) and how long its steps took, in seconds."""

    t0: float
    load_s: float
    stream_s: float = 0.0
    write_s: float = 0.0


class RunTally:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.aspects = list(config.aspect)
        self.mean_over = side_by_side(config.aspect)
        self.recipe, self.ties = enum_value(config.binarize.recipe), enum_value(config.binarize.ties)
        self.score, self.seed, self.judge_name = config.binarize.score, int(config.seed), config.judge.model.name
        self.metrics = Metrics(self.aspects, config.binarize.score, self.mean_over)
        self.agreement = Agreement(self.aspects, config.aspect)
        self.counts = dict(rated_rows=0, completions=0, generation_failures=0, judge_items=0, judged=0,
                           parse_failures=0, not_judged=0, pairs=0, ties=0,
                           ties_dropped=0, skipped_unscored=0)
        self.flips = {a: [0, 0] for a in self.aspects}

    def add(self, f: Finished) -> tuple[dict[str, Any], list[Pair]] | None:
        """Count a finished prompt; its row and pairs, or None when it has no completions (no row)."""
        c = self.counts
        c["completions"] += len(f.completions)
        c["generation_failures"] += f.generation_failures
        if not f.completions:
            return None
        row = build_row(f, self.judge_name)
        report = binarize([row], self.recipe, self.score, self.ties, self.seed, self.mean_over)
        self.metrics.add_row(row)
        self.agreement.add_row(row)
        self.metrics.add_pairs(report.pairs, report)
        for a, o in f.outcomes.items():
            if judged(o.status):
                c["judge_items"] += 1
                c["judged"] += o.ok
                c["parse_failures"] += not o.ok
            else:
                c["not_judged"] += 1
            self.flips[a][0] += o.flips
            self.flips[a][1] += o.compared
        c["rated_rows"] += 1
        c["pairs"] += len(report.pairs)
        c["ties"] += report.ties
        c["ties_dropped"] += report.ties_dropped
        c["skipped_unscored"] += report.skipped_unscored
        return row, report.pairs

    def summary(self, ctx: RunContext, loaded: LoadReport, prompts: Sequence[Prompt],
                requests: Sequence[Sequence[Request]], scheduler: Scheduler, timing: Timing) -> dict[str, Any]:
        """``summary.json``."""
        config = self.config
        generation, judging = ctx.gen_stats.to_dict(), ctx.judge_stats.to_dict()
        judging["missing_fields"] = scheduler.missing_fields
        costs = cost_block(generation, judging)
        metrics = self.metrics.result()
        if config.judge.swap:
            metrics["flip_rate_by_aspect"] = flip_rates(self.flips)
        pairs = self.counts["pairs"]
        metrics["usd_per_pair"] = round(costs["total"] / pairs, 6) if pairs else None
        agreement = self.agreement.result()
        counts = {
            "rows_read": loaded.rows,
            "skipped_empty": loaded.skipped_empty,
            "skipped_duplicate": loaded.skipped_duplicate,
            "prompts": len(prompts),
            "generation_requests": sum(len(r) for r in requests),
            **self.counts,
            "prompts_too_few_completions": scheduler.prompts_too_few,
            "not_sent": generation["not_sent"] + judging["not_sent"],
            "judge_requests": judging["requests"] - judging["not_sent"],
            "engine_calls": generation["engine_calls"] + judging["engine_calls"],
            "cache_hits": generation["cache_hits"] + judging["cache_hits"],
        }
        if config.judge.swap:
            counts["flips_by_aspect"] = self.flips
        if completions_given(config):
            counts["skipped_few_completions"] = loaded.skipped_few_completions
            counts["dropped_empty_completions"] = loaded.dropped_empty_completions
        if agreement:
            metrics["agreement"] = agreement
            metrics["usd_per_1k_judged"] = usd_per_1k_judged({"cost_usd": costs, "counts": counts})
        stop = ctx.stop
        return RunSummary(
            experiment=config.experiment, run_dir=str(ctx.run_dir), stopped=stop.reason, exit_code=stop.code,
            version=__version__,  # the uf-experiments version that made this run
            counts=counts, generation=generation, judge=judging, cost_usd=costs,
            wall_time_s={"load": round(timing.load_s, 3), "stream": round(timing.stream_s, 3),
                         "write": round(timing.write_s, 3), "total": round(time.perf_counter() - timing.t0, 3)},
            metrics=metrics, placement=ctx.execution.placement(),
        ).to_dict()
