"""What both OpenAI-compatible engines share (the online ``engine.py`` and the Batch API's ``batch.py``):

- :class:`Endpoint`: where and how they connect (base URL, timeouts, the SDK's retries) and the ``AsyncOpenAI``
  client built from it; :class:`EndpointEngine`: the base class that holds one and the pre-run key check
  (``check_config``);
- :func:`chat_body`: the chat-completions body of one request (the Batch API writes the same body into its files);
- :class:`RateLimiter` and :func:`estimate_tokens`: request starts and estimated tokens under per-minute limits;
- :class:`Breaker`: the circuit breaker the online engine's HTTP path (``chat.py``) feeds with every attempt.

The API key comes only from ``OPENAI_API_KEY``; the base URL from the model config or ``OPENAI_BASE_URL``. The
``openai`` SDK is imported only when a client is built.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from uf_experiments.core.records import Request

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "OPENAI_API_KEY is not set: export it (use any non-empty value for a local server without auth)"


@dataclass(frozen=True)
class Endpoint:
    """The connection settings both engines take under the same keyword names (``base_url``, ``timeout_s`` for
    a whole reply, ``max_retries`` for the SDK's retries, ``connect_timeout_s`` for connecting)."""

    base_url: str | None = None  # None: the SDK's default (api.openai.com)
    timeout_s: float = 120.0
    max_retries: int = 6
    connect_timeout_s: float = 10.0

    @classmethod
    def of(cls, base_url: str | None, timeout_s: float, max_retries: int, connect_timeout_s: float) -> Endpoint:
        """The endpoint a model config names, ``OPENAI_BASE_URL`` when it names none."""
        return cls(base_url or os.environ.get("OPENAI_BASE_URL") or None, timeout_s, max_retries, connect_timeout_s)

    @property
    def where(self) -> str:
        """The URL requests go to (for messages)."""
        return self.base_url or DEFAULT_BASE_URL

    def client(self, http_client: Any = None) -> Any:
        """A new ``openai.AsyncOpenAI`` for this endpoint (``http_client``: the SDK's default when None)."""
        import httpx2  # the SDK's HTTP client
        import openai

        timeout = httpx2.Timeout(self.timeout_s, connect=min(self.connect_timeout_s, self.timeout_s))
        return openai.AsyncOpenAI(base_url=self.base_url, timeout=timeout, max_retries=self.max_retries,
                                  http_client=http_client)


class EndpointEngine:
    """Base of both OpenAI engines: the :class:`Endpoint` they were built with (``self.endpoint``), read through
    the attributes the engines always had, and the key check run before any spend."""

    endpoint: Endpoint

    @property
    def base_url(self) -> str | None:
        return self.endpoint.base_url

    @property
    def where(self) -> str:
        return self.endpoint.where

    @property
    def timeout_s(self) -> float:
        return self.endpoint.timeout_s

    @property
    def max_retries(self) -> int:
        return self.endpoint.max_retries

    @property
    def connect_timeout_s(self) -> float:
        return self.endpoint.connect_timeout_s

    @staticmethod
    def check_config(engine_cfg: Any) -> str | None:
        """Before any spend: the reason this engine cannot start, or None."""
        return None if os.environ.get("OPENAI_API_KEY") else NO_KEY


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


class RateLimiter:
    """Keeps request starts under ``rpm`` and estimated tokens under ``tpm`` over any ``window_s`` window.

    ``clock`` (seconds, monotonic) and ``sleep`` (an awaitable pause) are injectable, so its schedule can be
    checked without waiting for it."""

    def __init__(self, rpm: float | None, tpm: float | None, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.rpm, self.tpm, self.window = rpm, tpm, window_s
        self.clock, self.sleep = clock, sleep
        self._events: deque[tuple[float, int]] = deque()
        self._used = 0
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        """Return once a request estimated at ``tokens`` may start (a request over ``tpm`` alone starts when the
        window is empty)."""
        if self.rpm is None and self.tpm is None:
            return
        async with self._lock:
            while True:
                now = self.clock()
                while self._events and now - self._events[0][0] >= self.window:
                    self._used -= self._events.popleft()[1]
                rpm_ok = self.rpm is None or len(self._events) < self.rpm
                tpm_ok = self.tpm is None or self._used + tokens <= self.tpm or not self._events
                if rpm_ok and tpm_ok:
                    self._events.append((now, tokens))
                    self._used += tokens
                    return
                await self.sleep(max(0.01, self.window - (now - self._events[0][0])))


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
