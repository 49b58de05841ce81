"""A device-kind engine with no model behind it, for Ray tests that need real actors but not vLLM's load time: it
answers each request with a text derived from (path, messages, seed) after ``delay_s`` per call, and says which
process answered (``pid=N`` in the text), so a test can tell replicas apart."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Sequence

from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.base import Emit


class EchoEngine:
    kind = "device"
    cache_name = "tests.helpers.echo_engine.EchoEngine"
    exclusive_device = True
    concurrency = 1
    linger_s = 0.0

    def __init__(self, path: str, delay_s: float = 0.0, chunk_size: int = 64, **ignored: object) -> None:
        """``ignored``: a vLLM model config's other kwargs (llm_kwargs, ...), so a command line can swap this
        engine in for a tiny model's (``pool.models.tiny_a.engine._target_=tests.helpers.echo_engine.EchoEngine``)."""
        self.path, self.delay_s, self.max_batch = path, delay_s, chunk_size

    def complete_sync(self, requests: Sequence[Request]) -> list[Completion]:
        t0 = time.perf_counter()
        time.sleep(self.delay_s)
        out = []
        for r in requests:
            digest = hashlib.sha256(f"{self.path}|{r.messages}|{r.seed}".encode()).hexdigest()[:12]
            out.append(Completion(r, f"echo {digest} pid={os.getpid()}", Usage(10, 5), "stop"))
        share = (time.perf_counter() - t0) / max(1, len(out))
        return [Completion(c.request, c.text, c.usage, c.finish_reason, engine_s=share) for c in out]

    async def complete(self, requests: Sequence[Request], emit: Emit) -> None:
        for c in await asyncio.to_thread(self.complete_sync, list(requests)):
            emit(c)

    def close(self) -> None:
        return None
