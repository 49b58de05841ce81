"""The engine seam: every engine answers requests asynchronously and streams each completion as it exists.

An engine serves one model for the whole run: it holds one client and one rate limiter (so per-minute windows
hold across stages and re-asks). The scheduler's per-model worker (``pipeline/worker.py``) sits in front of it:
it answers cache hits, claims requests for parallel jobs, reserves budget, loads the engine on the first miss,
feeds it batches of at most ``max_batch`` requests, at most ``concurrency`` batches at a time, and commits every
completion to the request cache as it is emitted.

- An API engine (``openai_engine``): ``max_batch=1``, ``concurrency=max_in_flight``.
- vLLM (``vllm_engine``): ``max_batch`` = a large chunk, ``concurrency=1``, ``exclusive_device=True``: the worker
  holds the device slot while the model is loaded, so a whole pool runs on one GPU model after model; the
  blocking ``LLM.chat`` runs in a thread so API work goes on meanwhile.
- A batch engine (OpenAI Batch API): ``max_batch`` = lines per file, ``concurrency`` = batches alive at once,
  ``linger_s`` > 0 so requests arriving close together share a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from uf_experiments.core.records import Completion, Request

Emit = Callable[[Completion], None]


class CacheDown(RuntimeError):
    """The request cache's database cannot be reached (after reconnecting for its backend's window)."""


class EngineDown(RuntimeError):
    """The endpoint stopped answering at the connection level (refused, reset, DNS, timeouts), persistently:
    a run-level fault, not a per-request failure. Raised from ``complete`` after the engine has emitted what it
    could; the run stops sending to this engine, writes what it has and exits non-zero (resumable)."""

    label = "endpoint down"  # how summary.json's ``stopped`` names the fault
    exit_code = 3  # EXIT_ENDPOINT_DOWN (README, "Exit codes")

    def __init__(self, model: str, where: str, reason: str) -> None:
        super().__init__(f"{model} at {where}: {reason}")
        self.model, self.where, self.reason = model, where, reason

    def stop_reason(self) -> str:
        return f"{self.label}: {self}"


class Engine(Protocol):
    """Serves one model. Engines never raise for one bad request: the failure is on its Completion."""

    max_batch: int  # most requests in one ``complete`` call
    concurrency: int  # ``complete`` calls that may run at once
    exclusive_device: bool  # holds an accelerator: one such engine loaded at a time
    linger_s: float  # wait this long for more requests before sending a batch smaller than max_batch

    async def complete(self, requests: Sequence[Request], emit: Emit) -> None:
        """Answer every request: ``emit`` exactly one completion per request as soon as it exists (a failed
        request gets one with ``text=None`` and ``error``). Raises only for a run-level fault (``EngineDown``)."""
        ...

    def close(self) -> None:
        """Release the model (GPU/CPU memory, processes, clients). Safe to call twice. An engine holding
        per-event-loop resources also has ``async release()``, awaited before its loop ends."""
        ...


def run_sync(engine: Engine, requests: Sequence[Request], emit: Emit | None = None) -> list[Completion]:
    """Every request answered by ``engine`` outside any scheduler (tests, scripts), in request order."""
    import asyncio  # here: resolving a config imports the engine classes, and plan=true needs no event loop

    got: dict[int, Completion] = {}
    index = {id(r): i for i, r in enumerate(requests)}

    def keep(c: Completion) -> None:
        got[index[id(c.request)]] = c
        if emit is not None:
            emit(c)

    async def main() -> None:
        sem = asyncio.Semaphore(max(1, engine.concurrency))
        step = max(1, engine.max_batch)

        async def one(batch: Sequence[Request]) -> None:
            async with sem:
                await engine.complete(batch, keep)

        try:
            await asyncio.gather(*(one(requests[i : i + step]) for i in range(0, len(requests), step)))
        finally:
            release = getattr(engine, "release", None)  # per-loop resources (an HTTP client) end with the loop
            if release is not None:
                await release()

    if requests:
        asyncio.run(main())
    return [got[i] for i in range(len(requests))]
