"""The order of a run: validate -> load -> (plan) -> stream generation and judging -> rows and pairs -> summary,
W&B and the Hub. How each step works lives in its own module: ``requests`` (what to ask), ``scheduler`` and
``engines/worker`` (asking), ``judge/judging`` (rating), ``outputs`` (files), ``metrics``, ``summary``, ``plan``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uf_experiments import __version__
from uf_experiments.config import (
    ConfigError,
    completions_given,
    defines_run,
    resolve,
    side_by_side,
    uses_batch,
    validate,
)
from uf_experiments.data.given import given_row_fields
from uf_experiments.data.sources import check_inputs, load_prompts
from uf_experiments.engines.cache import RequestCache
from uf_experiments.generation.principles import name_of as principle_name
from uf_experiments.generation.requests import generation_requests
from uf_experiments.judge.judging import item_count
from uf_experiments.metrics.agreement import (
    REFERENCE_COLUMN,
    Agreement,
    reference_field,
    reference_ratings,
    usd_per_1k_judged,
)
from uf_experiments.metrics.binarize import binarize
from uf_experiments.metrics.experiment import Metrics, flip_rates, judged
from uf_experiments.metrics.pricing import Meter, format_plan
from uf_experiments.metrics.summary import RunSummary, StageStats, cost_block
from uf_experiments.outputs.card import CARD, write_card
from uf_experiments.outputs.hub import push_to_hub
from uf_experiments.outputs.writer import DatasetSaver, OutputWriter, rated_schema
from uf_experiments.pipeline.plan import plan_run
from uf_experiments.pipeline.preflight import check_endpoints
from uf_experiments.pipeline.progress import Progress
from uf_experiments.pipeline.scheduler import Finished, Scheduler
from uf_experiments.pipeline.worker import EXIT_SIGINT, EXIT_SIGTERM, StopState
from uf_experiments.tracking.wandb import start_tracker

log = logging.getLogger(__name__)


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def _hydra_context(cfg: DictConfig) -> tuple[Path, str | None, str]:
    """(run dir, W&B group, W&B name) from Hydra's runtime, or defaults outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return Path.cwd(), None, cfg.experiment
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = ",".join(sorted(o for o in hc.overrides.task if defines_run(o)))
    multirun = _enum(hc.mode) in ("MULTIRUN", "RunMode.MULTIRUN", "2")
    group = cfg.tracking.get("group") or (Path(hc.sweep.dir).name if multirun else None)
    return run_dir, group, overrides or cfg.experiment


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Run one job; returns the summary that is also written to ``summary.json`` (its ``exit_code`` is what the
    process should exit with). With ``plan=true``: the plan, written to ``plan.json``; no model is called."""
    validate(resolve(cfg))
    hydra_dir, group, name = _hydra_context(cfg)
    run_dir = Path(run_dir or hydra_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.plan:
        if cfg.planning.pilot:
            check_endpoints(cfg)  # a pilot sends requests; a plan alone calls nothing
        lengths, pilot = run_pilot(cfg, run_dir) if cfg.planning.pilot else (None, None)
        cache = RequestCache(cfg.cache.path) if cfg.cache.enabled and Path(cfg.cache.path).exists() else None
        try:
            plan = plan_run(cfg, cache, name, lengths, pilot)
        finally:
            if cache is not None:
                cache.close()
        (run_dir / "plan.json").write_text(json.dumps(plan, indent=2))
        log.info("\n%s", format_plan(plan))
        return plan
    if uses_batch(cfg):
        from uf_experiments.engines.openai.batch import BATCH_NOTICE

        log.warning("%s", BATCH_NOTICE)
    t0 = time.perf_counter()
    loaded = check_inputs(cfg)  # the dataset and the cache path, before any model is loaded or called
    load_s = time.perf_counter() - t0
    check_endpoints(cfg)  # every API endpoint answers (one probe each) before anything is spent
    log.info("%d prompts (%d rows read, %d empty and %d duplicate skipped)", len(loaded.prompts), loaded.rows,
             loaded.skipped_empty, loaded.skipped_duplicate)
    cache = open_cache(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    tracker = start_tracker(cfg.tracking, run_dir, plain, group, name)  # type: ignore[arg-type]
    exit_code = 1
    try:
        summary = Run(cfg, run_dir, tracker, cache, loaded, t0, load_s).execute()
        exit_code = summary["exit_code"]
        return summary
    finally:
        if cache is not None:
            cache.close()
        tracker.finish(exit_code)


def run_pilot(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``planning.pilot=K``: run the first K prompts for real (into ``run_dir/pilot``, answers into the cache) and
    measure the output lengths per stage and model. Returns (lengths, what the pilot was and cost)."""
    from copy import deepcopy

    from omegaconf import open_dict

    from uf_experiments.tracking.null import NullTracker

    pcfg = deepcopy(cfg)
    with open_dict(pcfg):
        pcfg.plan = False
        pcfg.dataset.limit = min(cfg.planning.pilot, cfg.dataset.limit or cfg.planning.pilot)
        pcfg.output.push_to_hub = None
    t0 = time.perf_counter()
    loaded = load_prompts(pcfg.dataset)
    cache = open_cache(pcfg)
    log.info("pilot: running the first %d prompts for real to measure output lengths", len(loaded.prompts))
    try:
        pilot_run = Run(pcfg, run_dir / "pilot", NullTracker(), cache, loaded, t0, time.perf_counter() - t0)
        (run_dir / "pilot").mkdir(parents=True, exist_ok=True)
        summary = pilot_run.execute()
    finally:
        if cache is not None:
            cache.close()
    lengths = {stage: {m: ms.output_length() for m, ms in stats.models.items() if ms.output_length()}
               for stage, stats in (("generation", pilot_run.gen_stats), ("judge", pilot_run.judge_stats))}
    pilot = {"prompts": len(loaded.prompts), "paid_usd": summary["cost_usd"]["paid"],
             "total_usd": summary["cost_usd"]["total"], "stopped": summary["stopped"], "lengths": lengths,
             "run_dir": str(run_dir / "pilot")}
    return lengths, pilot


def open_cache(cfg: DictConfig) -> RequestCache | None:
    if not cfg.cache.enabled:
        return None
    try:
        return RequestCache(cfg.cache.path, claim_ttl_s=cfg.cache.claim_ttl_s)
    except Exception as exc:  # noqa: BLE001 - sqlite3 / OS errors: the path is the user's to fix
        raise ConfigError(f"cache.path={cfg.cache.path} cannot be opened for writing ({exc}): pass a writable "
                          "cache.path=DIR/requests.sqlite, or cache.enabled=false") from exc


class Run:
    """One job's streaming part and everything it writes."""

    def __init__(self, cfg: DictConfig, run_dir: Path, tracker: Any, cache: RequestCache | None, loaded: Any,
                 t0: float, load_s: float) -> None:
        self.cfg, self.run_dir, self.tracker, self.cache, self.loaded = cfg, run_dir, tracker, cache, loaded
        self.t0, self.load_s = t0, load_s
        self.aspects = list(cfg.aspect)
        self.mean_over = side_by_side(cfg.aspect)
        self.recipe, self.ties = _enum(cfg.binarize.recipe), _enum(cfg.binarize.ties)
        self.metrics = Metrics(self.aspects, cfg.binarize.score, self.mean_over)
        float_ratings = cfg.judge.swap and _enum(cfg.judge.swap_combine) == "mean"
        self.given = completions_given(cfg)
        extra = [reference_field(cfg.aspect)] if self.given else []
        self.writer = OutputWriter(run_dir, rated_schema(cfg.aspect, float_ratings, extra), DatasetSaver())
        self.agreement = Agreement(self.aspects, cfg.aspect)
        self.counts = dict(rated_rows=0, completions=0, generation_failures=0, judge_items=0, judged=0,
                           parse_failures=0, not_judged=0, pairs=0, ties=0,
                           ties_dropped=0, skipped_unscored=0)
        self.flips = {a: [0, 0] for a in self.aspects}
        self.table_cap = int(cfg.tracking.get("max_table_rows") or 20000)
        self.judge_name, self.seed, self.score = cfg.judge.model.name, int(cfg.seed), cfg.binarize.score
        self.table: list[list[Any]] = []
        self.pair_table: list[list[Any]] = []

    # ------------------------------------------------------------------ the stream

    def execute(self) -> dict[str, Any]:
        cfg = self.cfg
        prompts = self.loaded.prompts
        requests = generation_requests(cfg, prompts)
        self.gen_stats, self.judge_stats = StageStats(), StageStats()
        self.meter = Meter(cfg.budget_usd)
        per_prompt = sum(len(reqs) for reqs in requests)
        self.progress = Progress({"generation": per_prompt, "judge": self._judge_items(prompts, requests)}, self.meter,
                                 interval_s=cfg.progress_interval_s)
        stop = StopState(grace_s=cfg.stop_grace_s)
        t = time.perf_counter()
        try:
            asyncio.run(self._stream(prompts, requests, stop))
        except BaseException:
            if self.writer.saver is not None:
                self.writer.saver.close()
            raise
        finally:
            self.progress.close()
        stream_s = time.perf_counter() - t
        t = time.perf_counter()
        rows, pairs = self.writer.close()
        write_s = time.perf_counter() - t
        summary = self._summary(stop, prompts, requests, stream_s, write_s)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        write_card(self.run_dir, cfg, summary)
        if stop.stopped:
            log.error("run stopped: %s (exit code %d); %d rows and %d pairs written to %s; the same command "
                      "resumes it, paying nothing twice", stop.reason, stop.code, rows, pairs, self.run_dir)
        else:
            log.info("%d rated rows, %d pairs, $%.4f (paid $%.4f) -> %s", rows, pairs,
                     summary["cost_usd"]["total"], summary["cost_usd"]["paid"], self.run_dir)
        self._track(summary)
        if cfg.output.push_to_hub and not stop.stopped:
            self._push()
        return summary

    def _judge_items(self, prompts: Any, requests: Any) -> int:
        """The judge's progress total if every completion asked for arrives (the scheduler settles it)."""
        swap = bool(self.cfg.judge.swap)
        return sum(item_count(self.cfg.aspect, swap, len(p.given) or len(reqs))
                   for p, reqs in zip(prompts, requests, strict=True))

    async def _stream(self, prompts: Any, requests: Any, stop: StopState) -> None:
        loop = asyncio.get_running_loop()
        signals = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}

        def on_signal(sig: signal.Signals) -> None:
            if stop.stopped and stop.code in signals.values():
                log.error("%s again: exiting now (every answer so far is in the request cache)", sig.name)
                logging.shutdown()
                os._exit(signals[sig])
            stop.stop(f"interrupted by {sig.name}", signals[sig])

        installed = []
        for sig in signals:
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread: Hydra's launcher owns it
                log.debug("cannot handle %s here", sig.name)
        scheduler = self.scheduler = Scheduler(self.cfg, prompts, requests, self.cache, self.meter, stop,
                                               self.progress, self.gen_stats, self.judge_stats, self._finished)
        self.progress.extra = scheduler.batch_status

        async def ticker() -> None:
            while True:
                await asyncio.sleep(self.progress.interval_s)
                self.progress.tick()

        ticking = asyncio.create_task(ticker())
        try:
            await scheduler.run()
        finally:
            ticking.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _finished(self, f: Finished) -> None:
        """A prompt is done: its row, its pairs, its metrics, in the files in dataset order."""
        c = self.counts
        c["completions"] += len(f.completions)
        c["generation_failures"] += f.generation_failures
        if not f.completions:
            self.writer.skip(f.position)
            return
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
        self.writer.add(f.position, row, report.pairs)
        self._table_rows(row, report.pairs)

    # ------------------------------------------------------------------ summary, W&B, Hub

    def _summary(self, stop: StopState, prompts: Any, requests: Any, stream_s: float, write_s: float) -> dict[str, Any]:
        generation, judging = self.gen_stats.to_dict(), self.judge_stats.to_dict()
        judging["missing_fields"] = self.scheduler.missing_fields
        costs = cost_block(generation, judging)
        metrics = self.metrics.result()
        if self.cfg.judge.swap:
            metrics["flip_rate_by_aspect"] = flip_rates(self.flips)
        pairs = self.counts["pairs"]
        metrics["usd_per_pair"] = round(costs["total"] / pairs, 6) if pairs else None
        c = self.counts
        agreement = self.agreement.result()
        counts = {
            "rows_read": self.loaded.rows,
            "skipped_empty": self.loaded.skipped_empty,
            "skipped_duplicate": self.loaded.skipped_duplicate,
            "prompts": len(prompts),
            "generation_requests": sum(len(r) for r in requests),
            **c,
            "prompts_too_few_completions": self.scheduler.prompts_too_few,
            "not_sent": generation["not_sent"] + judging["not_sent"],
            "judge_requests": judging["requests"] - judging["not_sent"],
            "engine_calls": generation["engine_calls"] + judging["engine_calls"],
            "cache_hits": generation["cache_hits"] + judging["cache_hits"],
        }
        if self.cfg.judge.swap:
            counts["flips_by_aspect"] = self.flips
        if self.given:
            counts["skipped_few_completions"] = getattr(self.loaded, "skipped_few_completions", 0)
            counts["dropped_empty_completions"] = getattr(self.loaded, "dropped_empty_completions", 0)
        if agreement:
            metrics["agreement"] = agreement
            metrics["usd_per_1k_judged"] = usd_per_1k_judged({"cost_usd": costs, "counts": counts})
        return RunSummary(
            experiment=self.cfg.experiment, run_dir=str(self.run_dir), stopped=stop.reason, exit_code=stop.code,
            version=__version__,  # the uf-experiments version that made this run
            counts=counts, generation=generation, judge=judging, cost_usd=costs,
            wall_time_s={"load": round(self.load_s, 3), "stream": round(stream_s, 3), "write": round(write_s, 3),
                         "total": round(time.perf_counter() - self.t0, 3)},
            metrics=metrics,
        ).to_dict()

    def _table_rows(self, row: dict[str, Any], pairs: Any) -> None:
        """W&B tables: one row per completion and one per pair, up to ``tracking.max_table_rows`` each."""
        for i, text in enumerate(row["generations"]):
            if len(self.table) >= self.table_cap:
                break
            cells = [row["prompt_id"], row["instruction"], row["source"], row["generation_models"][i],
                     row["principles"][i], text]
            for a in self.aspects:
                cells += [row["ratings"][a][i], row["rationales"][a][i]]
            self.table.append(cells)
        for p in pairs:
            if len(self.pair_table) < self.table_cap:
                self.pair_table.append([p.prompt, p.chosen, p.rejected, p.score_chosen, p.score_rejected,
                                        p.chosen_model, p.rejected_model])

    def _track(self, summary: dict[str, Any]) -> None:
        columns = ["prompt_id", "instruction", "source", "model", "principle", "completion"]
        columns += [f"{kind}_{a}" for a in self.aspects for kind in ("rating", "rationale")]
        self.tracker.log_table("rated", columns, self.table)
        self.tracker.log_table("pairs", ["prompt", "chosen", "rejected", "score_chosen", "score_rejected",
                                         "chosen_model", "rejected_model"], self.pair_table)
        self.tracker.log_summary(summary)
        self.tracker.log_files([self.run_dir / f for f in ("rated.parquet", "preferences.parquet", "summary.json",
                                                          "preferences", CARD)])

    def _push(self) -> None:
        """The two datasets as configs of ``output.push_to_hub``, then the card as its README."""
        from datasets import Dataset

        repo, private = self.cfg.output.push_to_hub, self.cfg.output.private
        data = {name: Dataset.from_parquet(str(self.run_dir / f"{name}.parquet")) for name in ("rated", "preferences")}
        push_to_hub(repo, data, self.run_dir / CARD, private)
        log.info("pushed rated, preferences and the dataset card to %s (private=%s)", repo, private)


def build_row(f: Finished, judge_model: str) -> dict[str, Any]:
    """The ``rated.parquet`` row of a finished prompt (README, "The run dir"); with the dataset's own
    completions (``experiment=rejudge``), its principles, models and reference ratings beside the judge's."""
    done = f.completions
    systems = [c.request.messages[0]["content"] if c.request.messages[0]["role"] == "system" else None for c in done]
    got = f.outcomes
    row = {
        "prompt_id": f.prompt.prompt_id,
        "prompt_index": f.prompt.index,
        "source": f.prompt.source,
        "instruction": f.prompt.instruction,
        "principles": [principle_name(s) for s in systems],
        "system_prompts": systems,
        "generations": [c.text for c in done],
        "generation_models": [c.request.model for c in done],
        "judge_model": judge_model,
        "ratings": {a: o.ratings for a, o in got.items()},
        "rationales": {a: o.rationales for a, o in got.items()},
        "types": {a: o.types for a, o in got.items()},
        "judge_order": {a: o.order for a, o in got.items()},
        "parse_status": {a: o.status for a, o in got.items()},
        "judge_raw": {a: o.raw for a, o in got.items()},
    }
    if f.prompt.given:
        row.update(given_row_fields(f.prompt))
        row[REFERENCE_COLUMN] = reference_ratings(f.prompt.given, list(got))
    return row

