"""One model's engine behind the request cache, as the scheduler sees it: ``submit`` requests, get each answer
delivered once.

- Cache hits are delivered at once; a fully cached model is never loaded.
- Misses are claimed in the cache (parallel sweep cells pay for a request once); a request another live job has
  claimed is waited for and read from the cache when it lands, or taken over once that claim has lapsed.
- The engine is loaded on the first miss (in a thread: API work goes on meanwhile) and fed batches of at most
  ``max_batch`` requests, at most ``concurrency`` batches at a time. An engine that holds the accelerator
  (``exclusive_device``) first takes the device slot, so a whole pool runs on one GPU model after model; it is
  freed as soon as it is idle and another model waits for the device, or when no more requests will come.
- Each answer is priced (its attributed cost), committed to the cache, counted and delivered as it arrives.
- Budget: a request reserves its upper-bound cost while in flight and is charged its actual cost when it lands.
- When the run stops (a signal, an endpoint down, the budget), nothing more is sent; what is in flight settles
  (up to a grace period) and every request not sent is delivered as a failure whose error says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from uf_experiments.config.schema import ModelConfig
from uf_experiments.core.records import Completion, Request
from uf_experiments.core.status import EXIT_BUDGET, EXIT_CONFIG, NOT_SENT, not_sent
from uf_experiments.engines.base import EngineDown
from uf_experiments.engines.build import is_api_engine, resolve_model_path
from uf_experiments.engines.cache import engine_identity
from uf_experiments.metrics.pricing import completion_usd
from uf_experiments.metrics.summary import StageStats
from uf_experiments.pipeline.budget import budget_reason, refusal_stops, reserve_batch
from uf_experiments.pipeline.context import RunContext

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 512  # requests looked up in the cache at once


def model_identity(model: ModelConfig, path: str) -> str:
    """The request cache's identity of a model's engine (see engines/cache.py)."""
    return engine_identity(model.engine, path)


class DeviceSlot:
    """One ``exclusive_device`` engine loaded at a time; waiters are served in the order they asked."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.waiters = 0
        self.wanted = asyncio.Event()  # set when someone starts waiting

    async def acquire(self) -> None:
        self.waiters += 1
        self.wanted.set()
        try:
            await self._lock.acquire()
        finally:
            self.waiters -= 1

    def release(self) -> None:
        self._lock.release()


class ModelWorker:
    def __init__(self, ctx: RunContext, model: ModelConfig, stats: StageStats, slot: DeviceSlot,
                 deliver: Callable[[Completion], None], poll_s: float = 0.5) -> None:
        self.model, self.cache, self.stats, self.meter = model, ctx.cache, stats, ctx.meter
        self.slot, self.stop, self._deliver_to, self.poll_s = slot, ctx.stop, deliver, poll_s
        self.name = model.name
        self.path = resolve_model_path(model)
        self.identity = model_identity(model, self.path)
        self.is_api = is_api_engine(model.engine)
        self.execution = ctx.execution  # where the engine runs: in this process, or in Ray actors
        self.gpus = self.execution.gpus(model)  # GPUs one copy of the engine holds (GPU time is charged x this)
        self.inbox: deque[Request] = deque()
        self.unlooked: deque[Request] = deque()  # submitted, not yet looked up in the cache
        self.waiting: dict[str, Request] = {}  # claimed by another live job: read from the cache when answered
        self.sealed = False
        self.engine: Any = None
        self.holds_slot = False
        self.in_flight = 0
        self.loaded_s = 0.0  # wall time the engine was loaded (GPU engines: what the device was held)
        self._loaded_at = 0.0
        self._changed = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------------ the scheduler's side

    def submit(self, requests: Sequence[Request]) -> None:
        """Ask for ``requests``: each one's completion is delivered exactly once (possibly before this returns
        to the loop; never synchronously inside this call). A large submission (a pool model's every request)
        is looked up in the cache a chunk at a time by the worker's loop, so cached answers flow through the
        judge and into the files while the rest is still being read: memory stays flat at any size."""
        if len(requests) > LOOKUP_CHUNK:
            self.unlooked.extend(requests)
            self._changed.set()
        else:
            self._lookup(requests)

    def _lookup(self, requests: Sequence[Request]) -> None:
        if not requests:
            return
        if self.cache is None:
            misses: list[Request] = list(requests)
        else:
            hits = self.cache.get_many(self.identity, requests)
            misses = []
            for r in requests:
                hit = hits.get(r.key)
                if hit is None:
                    misses.append(r)
                else:
                    self._settle(hit, 0.0)
        if not misses:
            return
        if self.stop.stopped:
            for r in misses:
                self._settle(Completion(r, None, error=NOT_SENT + self.stop.reason), 0.0)  # type: ignore[operator]
            return
        self._claim(misses)
        self._changed.set()

    def seal(self) -> None:
        """No more requests will be submitted."""
        self.sealed = True
        self._changed.set()

    def _claim(self, misses: list[Request]) -> None:
        if self.cache is None:
            self.inbox.extend(misses)
            return
        mine, theirs = self.cache.claim(self.identity, misses)
        self.inbox.extend(mine)
        for r in theirs:
            self.waiting[r.key] = r
        taken = {r.key for r in mine} | {r.key for r in theirs}
        answered = [r for r in misses if r.key not in taken]  # committed by another job meanwhile
        if answered:
            found = self.cache.get_many(self.identity, answered)
            for r in answered:
                self._settle(found[r.key], 0.0) if r.key in found else self.inbox.append(r)

    # ------------------------------------------------------------------ delivery

    def _settle(self, c: Completion, reserved: float) -> None:
        """Price, commit, count and deliver one answer (fresh, cached or not sent)."""
        cost = 0.0
        if not c.cached and not not_sent(c.error):
            cost = completion_usd(self.model, c, gpus=self.gpus)
            c = dataclasses.replace(c, cost_usd=cost)
            if self.cache is not None and c.text is not None:
                self.cache.put(self.identity, c)
        self.meter.settle(reserved, c, cost)
        self.stats.record(c, self.model)
        self._loop.call_soon(self._deliver_to, c)

    # ------------------------------------------------------------------ the engine's side

    async def run(self) -> None:
        """Feed the engine until sealed and everything is settled, or until the run stops."""
        try:
            await self._dispatch()
            await self._drain()
        finally:
            self._refuse_rest()
            await self._unload()

    async def _wait(self, timeout: float | None) -> None:
        self._changed.clear()
        waits = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(self.stop.event.wait())]
        if self.holds_slot and self.in_flight == 0:  # only an idle holder can give the device up; with a batch in
            # flight, `wanted` (set while another model waits) would wake this loop at once, again and again: a
            # busy loop holding the GIL that slowed the batch itself ~10x (the end of a batch sets `_changed`)
            waits.append(asyncio.ensure_future(self.slot.wanted.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _dispatch(self) -> None:
        last_poll = time.monotonic()
        while not self.stop.stopped:
            if self.unlooked:  # (before any send: a vLLM model gets every miss in its first batches)
                chunk = [self.unlooked.popleft() for _ in range(min(LOOKUP_CHUNK, len(self.unlooked)))]
                self._lookup(chunk)
                await asyncio.sleep(0)  # let the answers found so far move on (judge, files)
                continue
            if self.waiting and time.monotonic() - last_poll >= self.poll_s:
                self._poll_waiting()
                last_poll = time.monotonic()
            if not self.inbox:
                if self.sealed and not self.waiting and self.in_flight == 0:
                    return
                if self.engine is not None and self.in_flight == 0 and self.holds_slot and (
                        self.sealed or self.slot.waiters):
                    await self._unload()  # idle: give the device to the model that waits for it
                    continue
                if self.holds_slot and self.slot.waiters == 0:
                    self.slot.wanted.clear()
                await self._wait(self.poll_s if self.waiting else None)
                continue
            if self.engine is None:
                try:
                    loaded = await self._load()
                except Exception as exc:  # noqa: BLE001 - reported as the reason the run stopped
                    log.exception("%s: the engine could not be loaded", self.name)
                    self.stop.stop(f"{self.name} could not be loaded: {type(exc).__name__}: {exc}", EXIT_CONFIG)
                    return
                if not loaded:
                    continue
            engine = self.engine
            if self.in_flight >= max(1, engine.concurrency):
                await self._wait(None)
                continue
            if engine.linger_s and len(self.inbox) < engine.max_batch and not self.sealed:
                await asyncio.sleep(engine.linger_s)
            batch = [self.inbox.popleft() for _ in range(min(len(self.inbox), max(1, engine.max_batch)))]
            reserved = self._reserve(batch)
            if reserved is None:  # wait for answers in flight (here or in another model) to free budget
                if not self.stop.stopped:
                    await self._wait(None if self.in_flight else 0.05)
                continue
            self.in_flight += 1
            task = asyncio.create_task(self._call(batch, reserved))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    def _reserve(self, batch: list[Request]) -> list[float] | None:
        """Each request's budget reservation, or None (the batch went back to the inbox) when the budget cannot
        take it now: the run stops if nothing is in flight whose landing could free room."""
        reserved = reserve_batch(self.meter, self.model, self.path, batch, self.is_api)
        if reserved is None:
            self.inbox.extendleft(reversed(batch))
            if refusal_stops(self.meter, self.is_api):
                self.stop.stop(budget_reason(self.meter, self.name), EXIT_BUDGET)
        return reserved

    async def _load(self) -> bool:
        """Load the engine (taking the device slot first if it needs one). False if the run stopped meanwhile."""
        if self.meter.budget is not None and not self.is_api and self.meter.exhausted():
            self.stop.stop(budget_reason(self.meter, self.name), EXIT_BUDGET)
            return False
        if self.execution.exclusive(self.model) and not self.holds_slot:
            await self.slot.acquire()
            self.holds_slot = True
            if self.stop.stopped:
                return False
        t0 = time.perf_counter()
        try:
            self.engine = await asyncio.to_thread(self.execution.build, self.model, self.path)
        except Exception:
            if self.holds_slot:
                self.slot.release()
                self.holds_slot = False
            raise
        self._loaded_at = t0
        if not getattr(self.engine, "lazy_load", False):  # Ray actors load on their first batch and say so
            log.info("%s: loaded in %.1f s", self.name, time.perf_counter() - t0)
        return True

    async def _call(self, batch: list[Request], reserved: list[float]) -> None:
        pending = {id(r): i for i, r in enumerate(batch)}

        def emit(c: Completion) -> None:
            i = pending.pop(id(c.request), None)
            if i is None:
                log.error("%s: the engine answered a request it was not given (or twice); ignored", self.name)
                return
            self._settle(c, reserved[i])

        try:
            await self.engine.complete(batch, emit)
        except EngineDown as exc:  # an endpoint down; under Ray, a model whose replicas are all lost
            self.stop.stop(exc.stop_reason(), exc.exit_code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken engine call fails its own requests, not the run
            log.exception("%s: engine call on %d requests failed", self.name, len(batch))
            for r in batch:
                if id(r) in pending:
                    emit(Completion(r, None, error=f"{type(exc).__name__}: {exc}"))
        finally:
            for i in list(pending.values()):  # never answered: the run stopped, or the engine lost them
                r = batch[i]
                why = NOT_SENT + self.stop.reason if self.stop.stopped else "the engine gave no answer"
                self._settle(Completion(r, None, error=why), reserved[i])
            pending.clear()
            if self.cache is not None:
                self.cache.release(self.identity, batch)
            self.in_flight -= 1
            self._changed.set()

    async def _drain(self) -> None:
        """Let the calls in flight settle; after a stop, for at most the grace period."""
        if not self._calls:
            return
        timeout = self.stop.grace_s if self.stop.stopped else None
        done, late = await asyncio.wait(set(self._calls), timeout=timeout)
        if late and self.stop.stopped:
            log.warning("%s: %d calls still in flight after %.0f s: abandoned (their answers, if any arrive, are "
                        "not kept)", self.name, len(late), timeout)
            for t in late:
                t.cancel()
            await asyncio.wait(late, timeout=5)
        elif late:
            await asyncio.wait(late)

    def _poll_waiting(self) -> None:
        """Requests another job claimed: take the answers it committed; claim again what it gave up."""
        if self.cache is None or not self.waiting:
            return
        reqs = list(self.waiting.values())
        found = self.cache.get_many(self.identity, reqs)
        for r in reqs:
            if r.key in found:
                del self.waiting[r.key]
                self._settle(found[r.key], 0.0)
        rest = [r for r in reqs if r.key not in found]
        if rest:
            self.waiting = {}
            self._claim(rest)

    def _refuse_rest(self) -> None:
        while self.unlooked:  # a stopped run still answers what the cache holds
            self._lookup([self.unlooked.popleft() for _ in range(min(LOOKUP_CHUNK, len(self.unlooked)))])
        why = NOT_SENT + (self.stop.reason or "the run ended")
        while self.inbox:
            self._settle(Completion(self.inbox.popleft(), None, error=why), 0.0)
        for r in list(self.waiting.values()):
            self._settle(Completion(r, None, error=why), 0.0)
        self.waiting.clear()

    async def _unload(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            try:
                release = getattr(engine, "release", None)
                if release is not None:
                    await release()
                await asyncio.to_thread(engine.close)
            finally:
                self.loaded_s += time.perf_counter() - self._loaded_at
        if self.holds_slot:
            self.holds_slot = False
            self.slot.release()

