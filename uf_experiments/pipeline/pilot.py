"""``planning.pilot=K``: before a plan, the first K prompts run for real (into ``<run dir>/pilot``, their answers
into the request cache, so the spend is not wasted) to measure the output lengths per stage and model."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from uf_experiments.config.schema import RunConfig
from uf_experiments.data.sources import load_prompts
from uf_experiments.pipeline.caches import open_cache
from uf_experiments.pipeline.stream import Run
from uf_experiments.tracking.null import NullTracker

log = logging.getLogger(__name__)


def pilot_config(config: RunConfig, card_config: dict[str, Any]) -> tuple[RunConfig, dict[str, Any]]:
    """The pilot's run config (and its dataset card's config): not a plan, the first K prompts, never pushed."""
    limit = min(config.planning.pilot, config.dataset.limit or config.planning.pilot)
    pilot = dataclasses.replace(config, plan=False, dataset=dataclasses.replace(config.dataset, limit=limit),
                                output=dataclasses.replace(config.output, push_to_hub=None))
    card = copy.deepcopy(card_config)
    card["plan"] = False
    card["dataset"]["limit"] = limit
    card["output"]["push_to_hub"] = None
    return pilot, card


def run_pilot(config: RunConfig, card_config: dict[str, Any],
              run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the pilot; returns (lengths: stage -> model -> {"n", "mean", "sd"}, what the pilot was and cost)."""
    pcfg, pcard = pilot_config(config, card_config)
    t0 = time.perf_counter()
    loaded = load_prompts(pcfg.dataset)
    cache = open_cache(pcfg)
    log.info("pilot: running the first %d prompts for real to measure output lengths", len(loaded.prompts))
    try:
        pilot_run = Run.start(pcfg, run_dir / "pilot", cache, NullTracker(), pcard, loaded, t0,
                              time.perf_counter() - t0)
        (run_dir / "pilot").mkdir(parents=True, exist_ok=True)
        summary = pilot_run.execute()
    finally:
        if cache is not None:
            cache.close()
    ctx = pilot_run.ctx
    lengths = {stage: {m: ms.output_length() for m, ms in stats.models.items() if ms.output_length()}
               for stage, stats in (("generation", ctx.gen_stats), ("judge", ctx.judge_stats))}
    pilot = {"prompts": len(loaded.prompts), "paid_usd": summary["cost_usd"]["paid"],
             "total_usd": summary["cost_usd"]["total"], "stopped": summary["stopped"], "lengths": lengths,
             "run_dir": str(run_dir / "pilot")}
    return lengths, pilot
