"""OpenAI-compatible engine on ``openai.AsyncOpenAI``: OpenAI, any compatible provider, or a local
``python -m vllm.entrypoints.openai.api_server``.

- at most ``max_in_flight`` requests at once, and request starts / tokens kept under the per-minute limits;
- the SDK's own retry (exponential backoff with jitter, honouring ``Retry-After``) on 429, 5xx, timeouts and
  dropped connections; other 4xx are not retried and are recorded on that request;
- one failed request never fails its neighbours: the failure is on its Completion (``text=None``, ``error``);
- usage (prompt, completion, cached prompt tokens) from every response.

The API key comes only from ``OPENAI_API_KEY``; the base URL from the model config or ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from uf_experiments.records import Completion, Request, Usage

log = logging.getLogger(__name__)


class RateLimiter:
    """Keeps request starts under ``rpm`` and estimated tokens under ``tpm`` over any 60 s window."""

    def __init__(self, rpm: float | None, tpm: float | None, window_s: float = 60.0) -> None:
        self.rpm, self.tpm, self.window = rpm, tpm, window_s
        self._events: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._events and now - self._events[0][0] >= self.window:
                    self._events.popleft()
                used = sum(t for _, t in self._events)
                rpm_ok = self.rpm is None or len(self._events) < self.rpm
                tpm_ok = self.tpm is None or used + tokens <= self.tpm or not self._events
                if rpm_ok and tpm_ok:
                    self._events.append((now, tokens))
                    return
                await asyncio.sleep(max(0.01, self.window - (now - self._events[0][0])))


def estimate_tokens(req: Request) -> int:
    """A cheap upper-ish estimate for the TPM limiter: ~4 characters a token, plus the output budget."""
    return sum(len(m["content"]) for m in req.messages) // 4 + req.max_tokens


class OpenAIEngine:
    """Args mirror conf/model/gpt_*.yaml; ``path`` is the model name the endpoint serves."""

    def __init__(
        self,
        path: str,
        base_url: str | None = None,
        max_in_flight: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 6,
    ) -> None:
        self.model = path
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.max_in_flight = max_in_flight
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self.timeout_s, self.max_retries = timeout_s, max_retries

    @staticmethod
    def check_config(engine_cfg: Any) -> str | None:
        """Before any spend: the reason this engine cannot start, or None."""
        if not os.environ.get("OPENAI_API_KEY"):
            return "OPENAI_API_KEY is not set: export it (use any non-empty value for a local server without auth)"
        return None

    def _body(self, req: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
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

    async def _one(self, client: Any, sem: asyncio.Semaphore, limiter: RateLimiter, req: Request) -> Completion:
        import openai

        async with sem:
            await limiter.acquire(estimate_tokens(req))
            try:
                resp = await client.chat.completions.create(**self._body(req))
            except openai.APIStatusError as exc:
                return Completion(req, None, error=f"HTTP {exc.status_code}: {exc.message}")
            except openai.APIError as exc:  # timeouts, dropped connections after the SDK's retries
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

    async def _run(self, requests: Sequence[Request], on_result: Callable[[Completion], None] | None) -> list[Completion]:
        import openai

        client = openai.AsyncOpenAI(base_url=self.base_url, timeout=self.timeout_s, max_retries=self.max_retries)
        sem = asyncio.Semaphore(self.max_in_flight)
        limiter = RateLimiter(self.rpm, self.tpm)

        async def tracked(req: Request) -> Completion:
            try:
                done = await self._one(client, sem, limiter, req)
            except Exception as exc:  # noqa: BLE001 - any other failure stays on its own request
                log.exception("request to %s failed", self.model)
                done = Completion(req, None, error=f"{type(exc).__name__}: {exc}")
            if on_result:
                on_result(done)
            return done

        try:
            return list(await asyncio.gather(*(tracked(r) for r in requests)))
        finally:
            await client.close()

    def generate(self, requests: Sequence[Request], on_result: Callable[[Completion], None] | None = None) -> list[Completion]:
        if not requests:
            return []
        return asyncio.run(self._run(requests, on_result))

    def close(self) -> None:
        """Nothing held between calls: each ``generate`` opens and closes its own client."""
