"""The online engine's HTTP path: ``POST {base_url}/chat/completions`` on one ``aiohttp`` session, with the
``openai`` SDK's retry policy done by ``tenacity`` and the circuit breaker fed by every attempt.

Why not the SDK here: it spends milliseconds of client CPU per request (options, headers, its httpx layer, a
pydantic model per reply; ~3 ms on its aiohttp transport at 64 in flight on the 2-core benchmark machine) and
~0.8 s to import; this path spends under half a millisecond (``benchmarks/client_cpu.py`` measures them side by
side). The SDK stays for the Batch API (files, batches), where requests are few.

What it keeps of the SDK, so a run behaves as before:

- the same retries: ``max_retries`` after the first attempt, on 408, 409, 429, 5xx, timeouts and dropped
  connections; ``x-should-retry: true|false`` obeyed; other 4xx not retried; a ``Retry-After`` (``-ms``, seconds,
  or an HTTP date) of up to 120 s honoured, a longer one not retried; otherwise exponential backoff from 0.5 s
  (doubling, at most 8 s) less up to 25 % jitter;
- the same timeouts: ``connect_timeout_s`` to connect, ``timeout_s`` for each wait on the reply;
- the same errors, by name and text: :class:`APIStatusError` (``Error code: 400 - <message>``),
  :class:`APIConnectionError` (``Connection error.``), :class:`APITimeoutError` (``Request timed out.``), and
  :class:`CircuitOpen` (``endpoint down: ...``) once the breaker is open (not retried);
- the breaker told of every attempt: a connection-level failure (refused, reset, DNS, a timeout) before the reply's
  headers is a failure, any HTTP answer (even a 429 or 500) shows the endpoint is alive;
- the headers the SDK sends from the environment: ``Authorization: Bearer $OPENAI_API_KEY``, and
  ``OpenAI-Organization`` / ``OpenAI-Project`` from ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``;
- one INFO line per request (``HTTP Request: POST <url> "HTTP/1.1 200 OK"``) on the ``aiohttp.client`` logger,
  as the SDK's httpx logged it: in the run dir's log file, on the console only with ``log_level=debug``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import time
from collections.abc import Mapping
from typing import Any

from uf_experiments.engines.openai.client import NO_KEY, Breaker, Endpoint

log = logging.getLogger(__name__)
http_log = logging.getLogger("aiohttp.client")  # the HTTP client's own logger: kept off the console (core.logs)

INITIAL_RETRY_DELAY, MAX_RETRY_DELAY, MAX_RETRY_AFTER = 0.5, 8.0, 120.0  # the openai SDK's constants


class ChatError(Exception):
    """A request that failed after its retries (the SDK's error of the same name and text)."""


class APIStatusError(ChatError):
    """An HTTP 4xx/5xx answer: ``status_code``, ``message`` (the SDK's: ``Error code: N - <error.message>``),
    ``body`` (the decoded JSON, else the text), ``headers``."""

    def __init__(self, status_code: int, body: Any, headers: Mapping[str, str]) -> None:
        message = f"Error code: {status_code}"
        error = body.get("error", body) if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
        super().__init__(message)
        self.status_code, self.message, self.body, self.headers = status_code, message, body, headers


class APIConnectionError(ChatError):
    def __init__(self, message: str = "Connection error.") -> None:
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    def __init__(self) -> None:
        super().__init__("Request timed out.")


class CircuitOpen(ChatError):
    """The breaker is open: the endpoint is down; not retried."""


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a reply asks to wait (``retry-after-ms``, then ``retry-after`` as seconds or an HTTP date), or None;
    as the SDK reads it."""
    for header, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in ("inf", "+inf", "infinity", "+infinity"):
            return MAX_RETRY_AFTER + 1
        return delay / divisor
    try:
        parsed = email.utils.parsedate_tz(headers.get("retry-after"))  # type: ignore[arg-type]
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def should_retry(exc: BaseException) -> bool:
    """The SDK's rule: timeouts and dropped connections; 408, 409, 429 and 5xx unless the server says otherwise
    (``x-should-retry``) or asks for a wait over 120 s; never an open breaker or another 4xx."""
    if isinstance(exc, APIStatusError):
        wait = retry_after(exc.headers)
        if wait is not None and math.isfinite(wait) and wait > MAX_RETRY_AFTER:
            return False
        told = exc.headers.get("x-should-retry")
        if told in ("true", "false"):
            return told == "true"
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, APIConnectionError)


def backoff(attempts: int, exc: BaseException | None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: the server's ``Retry-After`` when it gives
    one of (0, 120] s, else 0.5 s doubling (at most 8 s) less up to 25 % jitter."""
    if isinstance(exc, APIStatusError):
        wait = retry_after(exc.headers)
        if wait is not None and math.isfinite(wait) and 0 < wait <= MAX_RETRY_AFTER:
            return wait
    return min(INITIAL_RETRY_DELAY * 2.0 ** min(attempts - 1, 1000), MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


def env_headers(api_key: str, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", "Accept": "application/json"}
    for var, header in (("OPENAI_ORG_ID", "OpenAI-Organization"), ("OPENAI_PROJECT_ID", "OpenAI-Project")):
        if env.get(var):
            headers[header] = env[var]
    return headers


class ChatClient:
    """One endpoint's chat completions: ``await create(body)`` is the reply's JSON, or raises a :class:`ChatError`
    after the retries. Built inside the event loop that uses it; ``await close()`` before the loop ends."""

    def __init__(self, endpoint: Endpoint, breaker: Breaker, api_key: str | None = None) -> None:
        import aiohttp
        import tenacity
        import yarl

        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ChatError(NO_KEY)
        self.url = endpoint.where.rstrip("/") + "/chat/completions"
        self._url = yarl.URL(self.url)  # parsed once, not per request
        self.breaker = breaker
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(endpoint.connect_timeout_s, endpoint.timeout_s),
                                        sock_read=endpoint.timeout_s)
        self.session = aiohttp.ClientSession(timeout=timeout, headers=env_headers(api_key),
                                             connector=aiohttp.TCPConnector(limit=0), skip_auto_headers=("User-Agent",),
                                             cookie_jar=aiohttp.DummyCookieJar(),
                                             trust_env=True)  # HTTP(S)_PROXY / NO_PROXY, as the SDK's httpx honours
        self._client_errors = (aiohttp.ClientError, OSError)
        self._retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(endpoint.max_retries + 1),
            retry=tenacity.retry_if_exception(should_retry),
            wait=lambda state: backoff(state.attempt_number, state.outcome.exception() if state.outcome else None),
            before_sleep=self._log_retry, reraise=True)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON of a 2xx reply to ``body`` (retried as the module says).

        The first attempt is made directly: most requests need no retry, and tenacity's machinery costs ~0.2 ms
        of CPU a call. A failed first attempt goes to tenacity as its attempt 1 (its outcome replayed, not sent
        again), so tenacity alone decides whether, when and how often to retry."""
        data = json.dumps(body).encode()
        try:
            return await self._attempt(data)
        except ChatError as exc:
            first: list[BaseException] = [exc]

        async def attempt() -> dict[str, Any]:
            if first:
                raise first.pop()
            return await self._attempt(data)

        return await self._retrying.copy()(attempt)  # a copy per request: tenacity keeps its state per call

    async def _attempt(self, data: bytes) -> dict[str, Any]:
        breaker = self.breaker
        if breaker.opened.is_set():
            raise CircuitOpen(f"endpoint down: {breaker.reason}")
        try:
            resp = await self.session.post(self._url, data=data)
        except self._client_errors as exc:
            breaker.fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise (APITimeoutError() if isinstance(exc, asyncio.TimeoutError) else APIConnectionError()) from exc
        breaker.ok()
        try:
            raw = await resp.read()
        except self._client_errors as exc:  # the answer started, then the connection failed: retried
            raise (APITimeoutError() if isinstance(exc, asyncio.TimeoutError) else APIConnectionError()) from exc
        finally:
            resp.release()
        status = resp.status
        if http_log.isEnabledFor(logging.INFO):
            http_log.info('HTTP Request: POST %s "HTTP/%s.%s %d %s"', self.url, resp.version.major,
                          resp.version.minor, status, resp.reason)
        if status >= 400:
            try:
                err: Any = json.loads(raw)
            except ValueError:
                err = raw.decode(errors="replace").strip()
            raise APIStatusError(status, err, resp.headers)
        return json.loads(raw)

    @staticmethod
    def _log_retry(state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        http_log.info("Retrying request to /chat/completions in %f seconds (%s)", state.upcoming_sleep,
                      type(exc).__name__)

    async def close(self) -> None:
        await self.session.close()
