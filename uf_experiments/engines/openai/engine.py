"""OpenAI-compatible engine on ``openai.AsyncOpenAI``: OpenAI, any compatible provider, or a local
``python -m vllm.entrypoints.openai.api_server``.

- One client and one rate limiter for the whole run (per event loop): request starts and estimated tokens stay
  under the per-minute limits across stages and judge re-asks; at most ``max_in_flight`` requests at once (the
  scheduler's worker runs that many single-request ``complete`` calls).
- The SDK's own retry (exponential backoff with jitter, honouring ``Retry-After``) on 429, 5xx, timeouts and
  dropped connections; other 4xx are not retried and are recorded on that request.
- One failed request never fails its neighbours: the failure is on its Completion (``text=None``, ``error``).
- A circuit breaker watches every HTTP attempt: when the endpoint fails at the connection level (refused, reset,
  DNS, connect/read timeouts) for ``breaker_window_s`` with at least ``breaker_failures`` failed attempts and no
  answer in between, it opens: attempts in progress fail at once (no more retries), and ``complete`` raises
  ``EngineDown`` so the run stops cleanly instead of retrying request by request for days. Any HTTP answer
  (even a 429 or 500) shows the endpoint is alive and resets it.
- Usage (prompt, completion, cached prompt tokens) from every response.

The API key comes only from ``OPENAI_API_KEY``; the base URL from the model config or ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.base import Emit, EngineDown, run_sync

log = logging.getLogger(__name__)


class RateLimiter:
    """Keeps request starts under ``rpm`` and estimated tokens under ``tpm`` over any 60 s window."""

    def __init__(self, rpm: float | None, tpm: float | None, window_s: float = 60.0) -> None:
        self.rpm, self.tpm, self.window = rpm, tpm, window_s
        self._events: deque[tuple[float, int]] = deque()
        self._used = 0
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if self.rpm is None and self.tpm is None:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._events and now - self._events[0][0] >= self.window:
                    self._used -= self._events.popleft()[1]
                rpm_ok = self.rpm is None or len(self._events) < self.rpm
                tpm_ok = self.tpm is None or self._used + tokens <= self.tpm or not self._events
                if rpm_ok and tpm_ok:
                    self._events.append((now, tokens))
                    self._used += tokens
                    return
                await asyncio.sleep(max(0.01, self.window - (now - self._events[0][0])))


def estimate_tokens(req: Request) -> int:
    """A cheap upper-ish estimate for the TPM limiter: ~4 characters a token, plus the output budget."""
    return sum(len(m["content"]) for m in req.messages) // 4 + req.max_tokens


class Breaker:
    """Connection-level health of one endpoint, fed by every HTTP attempt."""

    def __init__(self, failures: int, window_s: float) -> None:
        self.failures, self.window_s = failures, window_s
        self.count = 0
        self.first_failure: float | None = None
        self.reason = ""
        self.opened = asyncio.Event()

    def ok(self) -> None:
        self.count, self.first_failure = 0, None

    def fail(self, reason: str) -> None:
        now = time.monotonic()
        self.count += 1
        self.first_failure = self.first_failure if self.first_failure is not None else now
        self.reason = reason
        if self.count >= self.failures and now - self.first_failure >= self.window_s:
            if not self.opened.is_set():
                log.error("endpoint down: %d connection failures over %.0f s (%s)", self.count,
                          now - self.first_failure, reason)
            self.opened.set()


def _transport(breaker: Breaker) -> Any:
    """An HTTP transport that reports every attempt to ``breaker`` and fails at once while it is open. It is the
    SDK's aiohttp transport (``openai.DefaultAioHttpClient``'s: half the client CPU per request of the default
    httpx one, which matters at hundreds of requests in flight), or the httpx one where aiohttp is missing."""
    import httpx2
    import openai

    try:
        from openai._vendor.httpx_aiohttp import AiohttpTransport as Base
    except ImportError:  # an SDK without the aiohttp transport
        Base = httpx2.AsyncHTTPTransport

    class CircuitOpen(openai.OpenAIError):  # an OpenAIError: the SDK re-raises it without retrying
        pass

    class BreakerTransport(Base):  # type: ignore[misc, valid-type]
        async def handle_async_request(self, request: Any) -> Any:
            if breaker.opened.is_set():
                raise CircuitOpen(f"endpoint down: {breaker.reason}")
            try:
                response = await super().handle_async_request(request)
            except (httpx2.TransportError, OSError) as exc:
                breaker.fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                raise
            breaker.ok()
            return response

    return BreakerTransport()


def chat_body(model: str, req: Request) -> dict[str, Any]:
    """The chat-completions body of one request (the Batch API engine writes the same body into its files)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(req.messages),
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "seed": req.seed,
    }
    if req.response_format is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "ratings", "schema": req.response_format, "strict": False},
        }
    return body


class OpenAIEngine:
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
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.concurrency = max_in_flight
        self.rpm, self.tpm, self.rate_window_s = requests_per_minute, tokens_per_minute, rate_window_s
        self.timeout_s, self.max_retries, self.connect_timeout_s = timeout_s, max_retries, connect_timeout_s
        self.breaker_failures, self.breaker_window_s = breaker_failures, breaker_window_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._limiter: RateLimiter | None = None
        self._breaker: Breaker | None = None

    @property
    def where(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    @staticmethod
    def check_config(engine_cfg: Any) -> str | None:
        """Before any spend: the reason this engine cannot start, or None."""
        if not os.environ.get("OPENAI_API_KEY"):
            return "OPENAI_API_KEY is not set: export it (use any non-empty value for a local server without auth)"
        return None

    def _ensure(self) -> tuple[Any, RateLimiter, Breaker]:
        """The client, limiter and breaker of the running event loop (one set for the whole run)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            import openai

            self._breaker = Breaker(self.breaker_failures, self.breaker_window_s)
            http = openai.DefaultAsyncHttpxClient(transport=_transport(self._breaker))
            import httpx2

            timeout = httpx2.Timeout(self.timeout_s, connect=min(self.connect_timeout_s, self.timeout_s))
            self._client = openai.AsyncOpenAI(base_url=self.base_url, timeout=timeout, max_retries=self.max_retries,
                                              http_client=http)
            self._limiter = RateLimiter(self.rpm, self.tpm, self.rate_window_s)
            self._loop = loop
        return self._client, self._limiter, self._breaker  # type: ignore[return-value]

    async def _one(self, client: Any, limiter: RateLimiter, req: Request) -> Completion:
        import openai

        await limiter.acquire(estimate_tokens(req))
        try:
            resp = await client.chat.completions.create(**chat_body(self.model, req))
        except openai.APIStatusError as exc:
            return Completion(req, None, error=f"HTTP {exc.status_code}: {exc.message}")
        except openai.OpenAIError as exc:  # timeouts, dropped connections after the SDK's retries; an open breaker
            return Completion(req, None, error=f"{type(exc).__name__}: {exc}")
        choice = resp.choices[0]
        u = resp.usage
        details = getattr(u, "prompt_tokens_details", None) if u else None
        usage = Usage(
            u.prompt_tokens if u else 0,
            u.completion_tokens if u else 0,
            (getattr(details, "cached_tokens", 0) or 0) if details else 0,
        )
        text = choice.message.content
        error = None if text is not None else f"no content in the reply (finish_reason={choice.finish_reason})"
        return Completion(req, text, usage, choice.finish_reason, error=error)

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
