"""One job's streaming part, step by step (:class:`Run`): the generation requests, the stream (the scheduler
under signal handlers, a progress ticker), the files, ``summary.json``, the dataset card, W&B and the Hub."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uf_experiments.config.schema import RunConfig, completions_given, enum_value
from uf_experiments.core.records import Prompt, Request
from uf_experiments.core.status import EXIT_ENDPOINT_DOWN, EXIT_SIGINT, EXIT_SIGTERM, StopState
from uf_experiments.data.prompts import LoadReport
from uf_experiments.engines.cache import RequestCache
from uf_experiments.execution import Execution, LocalExecution
from uf_experiments.generation.requests import generation_requests
from uf_experiments.judge.judging import item_count
from uf_experiments.metrics.agreement import reference_field
from uf_experiments.outputs.card import CARD, write_card
from uf_experiments.outputs.hub import push_to_hub
from uf_experiments.outputs.writer import DatasetSaver, OutputWriter, rated_schema
from uf_experiments.pipeline.budget import Meter
from uf_experiments.pipeline.context import RunContext
from uf_experiments.pipeline.progress import Progress
from uf_experiments.pipeline.rows import Tables
from uf_experiments.pipeline.scheduler import Finished, Scheduler
from uf_experiments.pipeline.tally import RunTally, Timing

log = logging.getLogger(__name__)


def judge_items(config: RunConfig, prompts: Sequence[Prompt], requests: Sequence[Sequence[Request]]) -> int:
    """The judge's progress total if every completion asked for arrives (the scheduler settles it)."""
    swap = bool(config.judge.swap)
    return sum(item_count(config.aspect, swap, len(p.given) or len(reqs))
               for p, reqs in zip(prompts, requests, strict=True))


class Run:
    """One job's streaming part and everything it writes."""

    def __init__(self, ctx: RunContext, loaded: LoadReport, requests: list[list[Request]], t0: float,
                 load_s: float) -> None:
        self.ctx, self.loaded, self.requests, self.t0, self.load_s = ctx, loaded, requests, t0, load_s
        config = ctx.config
        float_ratings = config.judge.swap and enum_value(config.judge.swap_combine) == "mean"
        extra = [reference_field(config.aspect)] if completions_given(config) else []
        self.writer = OutputWriter(ctx.run_dir, rated_schema(config.aspect, float_ratings, extra), DatasetSaver())
        self.tally = RunTally(config)
        self.tables = Tables(list(config.aspect), int(config.tracking.max_table_rows or 20000))

    @classmethod
    def start(cls, config: RunConfig, run_dir: Path, cache: RequestCache | None, tracker: Any,
              card_config: dict[str, Any], loaded: LoadReport, t0: float, load_s: float,
              execution: Execution | None = None) -> Run:
        """A run of ``loaded.prompts``: its requests, its context (stop state, meter, progress display, where its
        engines run: ``execution``, in this process by default)."""
        requests = generation_requests(config, loaded.prompts)
        meter = Meter(config.budget_usd)
        per_prompt = sum(len(reqs) for reqs in requests)
        progress = Progress({"generation": per_prompt, "judge": judge_items(config, loaded.prompts, requests)}, meter,
                            interval_s=config.progress_interval_s)
        ctx = RunContext(config, run_dir, cache, tracker, card_config, StopState(grace_s=config.stop_grace_s), meter,
                         progress, execution=execution or LocalExecution())
        if cache is not None:  # the cache's database stays unreachable: stop cleanly (files written, exit 3)
            cache.on_down = lambda reason: ctx.stop.stop(reason, EXIT_ENDPOINT_DOWN)
        return cls(ctx, loaded, requests, t0, load_s)

    # ------------------------------------------------------------------ the stream

    def execute(self) -> dict[str, Any]:
        ctx, prompts, requests = self.ctx, self.loaded.prompts, self.requests
        stop = ctx.stop
        t = time.perf_counter()
        try:
            asyncio.run(self._stream(prompts, requests))
        except BaseException:
            if self.writer.saver is not None:
                self.writer.saver.close()
            raise
        finally:
            ctx.progress.close()
        stream_s = time.perf_counter() - t
        t = time.perf_counter()
        rows, pairs = self.writer.close()
        write_s = time.perf_counter() - t
        summary = self.tally.summary(ctx, self.loaded, prompts, requests, self.scheduler,
                                     Timing(self.t0, self.load_s, stream_s, write_s))
        (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        write_card(ctx.run_dir, ctx.card_config, summary)
        if stop.stopped:
            log.error("run stopped: %s (exit code %d); %d rows and %d pairs written to %s; the same command "
                      "resumes it, paying nothing twice", stop.reason, stop.code, rows, pairs, ctx.run_dir)
        else:
            log.info("%d rated rows, %d pairs, $%.4f (paid $%.4f) -> %s", rows, pairs,
                     summary["cost_usd"]["total"], summary["cost_usd"]["paid"], ctx.run_dir)
        self.tables.log(ctx.tracker, summary, ctx.run_dir)
        if ctx.config.output.push_to_hub and not stop.stopped:
            self._push()
        return summary

    async def _stream(self, prompts: Sequence[Prompt], requests: Sequence[Sequence[Request]]) -> None:
        stop, progress = self.ctx.stop, self.ctx.progress
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
        scheduler = self.scheduler = Scheduler(self.ctx, prompts, requests, self._finished)
        progress.extra = scheduler.batch_status

        async def ticker() -> None:
            while True:
                await asyncio.sleep(progress.interval_s)
                progress.tick()

        ticking = asyncio.create_task(ticker())
        try:
            await scheduler.run()
        finally:
            ticking.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _finished(self, f: Finished) -> None:
        """A prompt is done: its row, its pairs, its metrics, in the files in dataset order."""
        got = self.tally.add(f)
        if got is None:
            self.writer.skip(f.position)
            return
        row, pairs = got
        self.writer.add(f.position, row, pairs)
        self.tables.add(row, pairs)

    def _push(self) -> None:
        """The two datasets as configs of ``output.push_to_hub``, then the card as its README."""
        from datasets import Dataset

        run_dir = self.ctx.run_dir
        repo, private = self.ctx.config.output.push_to_hub, self.ctx.config.output.private
        data = {name: Dataset.from_parquet(str(run_dir / f"{name}.parquet")) for name in ("rated", "preferences")}
        push_to_hub(repo, data, run_dir / CARD, private)
        log.info("pushed rated, preferences and the dataset card to %s (private=%s)", repo, private)
