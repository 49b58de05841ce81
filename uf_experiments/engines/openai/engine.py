"""OpenAI-compatible engine (chat completions, one request per call): OpenAI, any compatible provider, or a local
``python -m vllm.entrypoints.openai.api_server``. Its HTTP path is ``chat.py`` (``aiohttp`` + ``tenacity``, the
``openai`` SDK's retry policy without its per-request cost); the SDK is not imported.

- One client and one rate limiter for the whole run (per event loop): request starts and estimated tokens stay
  under the per-minute limits across stages and judge re-asks; at most ``max_in_flight`` requests at once (the
  scheduler's worker runs that many single-request ``complete`` calls).
- The SDK's retry policy (exponential backoff with jitter, honouring ``Retry-After``; ``chat.py``) on 429, 5xx,
  timeouts and dropped connections; other 4xx are not retried and are recorded on that request.
- One failed request never fails its neighbours: the failure is on its Completion (``text=None``, ``error``).
- A circuit breaker watches every HTTP attempt: when the endpoint fails at the connection level (refused, reset,
  DNS, connect/read timeouts) for ``breaker_window_s`` with at least ``breaker_failures`` failed attempts and no
  answer in between, it opens: attempts in progress fail at once (no more retries), and ``complete`` raises
  ``EngineDown`` so the run stops cleanly instead of retrying request by request for days. Any HTTP answer
  (even a 429 or 500) shows the endpoint is alive and resets it.
- Usage (prompt, completion, cached prompt tokens) from every response.

The API key comes only from ``OPENAI_API_KEY``; the base URL from the model config or ``OPENAI_BASE_URL``. The
limiter, breaker, request body and connection settings are in ``client.py`` (shared with the Batch API engine).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.base import Emit, EngineDown, run_sync
from uf_experiments.engines.openai.chat import APIStatusError, ChatClient, ChatError
from uf_experiments.engines.openai.client import (
    Breaker,
    Endpoint,
    EndpointEngine,
    RateLimiter,
    chat_body,
    estimate_tokens,
)

log = logging.getLogger(__name__)


class OpenAIEngine(EndpointEngine):
    """Args mirror conf/model/gpt_*.yaml; ``path`` is the model name the endpoint serves.

    ``requests_per_minute`` / ``tokens_per_minute`` hold over any ``rate_window_s`` window (60: per minute; a
    provider that counts per 10 s wants 10 and limits scaled to it). ``connect_timeout_s`` bounds connecting;
    ``timeout_s`` a whole reply. ``breaker_failures`` / ``breaker_window_s``: the circuit breaker (module doc).
    """

    kind = "api"  # an OpenAI-compatible endpoint, priced per token (engines.build)
    batch_variant = "uf_experiments.engines.openai.batch.OpenAIBatchEngine"  # its twin for batch=true
    cache_name = "uf_experiments.engines.openai_engine.OpenAIEngine"  # cache keys made before 0.2 still match
    max_batch = 1
    exclusive_device = False
    linger_s = 0.0

    def __init__(
        self,
        path: str,
        base_url: str | None = None,
        max_in_flight: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 6,
        connect_timeout_s: float = 10.0,
        breaker_failures: int = 8,
        breaker_window_s: float = 20.0,
        rate_window_s: float = 60.0,
    ) -> None:
        self.model = path
        self.endpoint = Endpoint.of(base_url, timeout_s, max_retries, connect_timeout_s)
        self.concurrency = max_in_flight
        self.rpm, self.tpm, self.rate_window_s = requests_per_minute, tokens_per_minute, rate_window_s
        self.breaker_failures, self.breaker_window_s = breaker_failures, breaker_window_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._limiter: RateLimiter | None = None
        self._breaker: Breaker | None = None

    def _ensure(self) -> tuple[Any, RateLimiter, Breaker]:
        """The client, limiter and breaker of the running event loop (one set for the whole run)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._breaker = Breaker(self.breaker_failures, self.breaker_window_s)
            self._client = ChatClient(self.endpoint, self._breaker)
            self._limiter = RateLimiter(self.rpm, self.tpm, self.rate_window_s)
            self._loop = loop
        return self._client, self._limiter, self._breaker  # type: ignore[return-value]

    async def _one(self, client: ChatClient, limiter: RateLimiter, req: Request) -> Completion:
        await limiter.acquire(estimate_tokens(req))
        try:
            resp = await client.create(chat_body(self.model, req))
        except APIStatusError as exc:
            return Completion(req, None, error=f"HTTP {exc.status_code}: {exc.message}")
        except ChatError as exc:  # timeouts, dropped connections after the retries; an open breaker
            return Completion(req, None, error=f"{type(exc).__name__}: {exc}")
        choice = resp["choices"][0]
        u = resp.get("usage")
        details = u.get("prompt_tokens_details") if u else None
        usage = Usage(
            u.get("prompt_tokens") or 0 if u else 0,
            u.get("completion_tokens") or 0 if u else 0,
            (details.get("cached_tokens") or 0) if details else 0,
        )
        text = (choice.get("message") or {}).get("content")
        finish = choice.get("finish_reason")
        error = None if text is not None else f"no content in the reply (finish_reason={finish})"
        return Completion(req, text, usage, finish, error=error)

    async def complete(self, requests: Sequence[Request], emit: Emit) -> None:
        client, limiter, breaker = self._ensure()
        for req in requests:
            if breaker.opened.is_set():
                raise EngineDown(self.model, self.where, breaker.reason)
            try:
                done = await self._one(client, limiter, req)
            except Exception as exc:  # noqa: BLE001 - any other failure stays on its own request
                log.exception("request to %s failed", self.model)
                done = Completion(req, None, error=f"{type(exc).__name__}: {exc}")
            if done.text is None and breaker.opened.is_set():
                raise EngineDown(self.model, self.where, breaker.reason)  # not a verdict on this request
            emit(done)

    def generate(self, requests: Sequence[Request], on_result: Emit | None = None) -> list[Completion]:
        """Every request answered outside any scheduler (scripts, tests), in order."""
        return run_sync(self, requests, on_result)

    async def release(self) -> None:
        """Close this loop's client (the scheduler calls it before the loop ends)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()

    def close(self) -> None:
        """Drop the client; its connections were closed by ``release`` (or go with their event loop)."""
        self._client, self._loop = None, None
