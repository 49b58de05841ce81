"""The OpenAI-compatible engine against a real HTTP server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.fake_openai import FakeJudge, body_key
from uf_experiments.core.records import Completion, Request
from uf_experiments.engines.openai.engine import OpenAIEngine, RateLimiter


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def req(content: str, seed: int = 0, model: str = "m") -> Request:
    return Request(model, ({"role": "user", "content": content},), 32, 1.0, 1.0, seed)


def key_of(r: Request, model: str = "m") -> str:
    return body_key({"model": model, "messages": list(r.messages), "seed": r.seed})


def test_faults_are_retried_and_every_request_answered_once():
    faults = ["", "FAULTS=429;", "FAULTS=500;", "FAULTS=hang;", "FAULTS=drop;", "FAULTS=429,500,drop;",
              "FAULTS=503,hang;"]
    requests = [req(f"question {i} {faults[i % len(faults)]}", seed=i) for i in range(21)]
    # a hang outlasts the client's timeout by far, and a normal reply (milliseconds) never comes near it
    with FakeJudge(hang_s=8.0, retry_after_s=0.1) as server:
        engine = OpenAIEngine("m", base_url=server.base_url, max_in_flight=8, timeout_s=3.0, max_retries=4)
        seen = []
        out = engine.generate(requests, on_result=seen.append)
    assert [c.request for c in out] == requests  # one completion per request, in order
    assert all(c.text is not None and c.error is None for c in out), [c.error for c in out if c.error]
    assert len(seen) == 21  # each completion reported once as it arrived
    paid = [body_key(b) for b in server.paid]
    assert len(paid) == len(set(paid)) == 21  # the server was paid exactly once per unique request
    for r in requests:
        n_faults = r.messages[0]["content"].count(",") + 1 if "FAULTS=" in r.messages[0]["content"] else 0
        assert [o for _, o in server.attempts_of(key_of(r))][-1] == "ok"
        assert len(server.attempts_of(key_of(r))) == n_faults + 1


def test_retry_after_is_honoured():
    r = req("slow down FAULTS=429;")
    with FakeJudge(retry_after_s=1.2) as server:
        out = OpenAIEngine("m", base_url=server.base_url, max_retries=2).generate([r])
    assert out[0].text is not None
    (t0, first), (t1, second) = server.attempts_of(key_of(r))
    assert (first, second) == ("429", "ok")
    assert t1 - t0 >= 1.1  # waited as told, not the SDK's own 0.5 s first backoff


def test_client_errors_are_not_retried_and_do_not_hurt_neighbours():
    bad, exhausted = req("bad FAULTS=400;", 1), req("down FAULTS=500,500,500,500;", 2)
    good = [req(f"fine {i}", 10 + i) for i in range(5)]
    with FakeJudge() as server:
        out = OpenAIEngine("m", base_url=server.base_url, max_retries=2).generate([bad, *good, exhausted])
    assert out[0].text is None and out[0].error.startswith("HTTP 400")
    assert len(server.attempts_of(key_of(bad))) == 1  # a 4xx other than 429 is not retried
    assert out[-1].text is None and out[-1].error.startswith("HTTP 500")
    assert len(server.attempts_of(key_of(exhausted))) == 3  # 1 + max_retries
    assert all(c.text is not None for c in out[1:-1])


def test_usage_is_recorded_per_request():
    with FakeJudge() as server:
        out = OpenAIEngine("m", base_url=server.base_url).generate([req("abcd" * 10 + " CACHED=5", 3)])
    u = out[0].usage
    content = out[0].request.messages[0]["content"]
    assert u.prompt_tokens == len(content) // 4 + 10
    assert u.completion_tokens == len(out[0].text) // 4 + 1
    assert u.cached_tokens == 5
    assert server.paid[0]["seed"] == 3 and server.paid[0]["max_tokens"] == 32


def test_in_flight_limit_is_held_and_used():
    latency, limit, n = 0.2, 8, 40
    with FakeJudge(latency_s=latency) as server:
        engine = OpenAIEngine("m", base_url=server.base_url, max_in_flight=limit)
        out = engine.generate([req(f"q{i}", i) for i in range(n)])
    assert all(c.text for c in out)
    assert server.max_in_flight <= limit
    assert server.max_in_flight >= limit - 2  # the limit was actually used


def test_one_client_and_limiter_for_the_whole_run():
    """Within one event loop every call shares the client and the rate limiter (per-minute windows hold across
    stages and re-asks)."""
    import asyncio

    async def main() -> tuple[object, object]:
        engine = OpenAIEngine("m", base_url="http://127.0.0.1:9/v1")
        first = engine._ensure()
        second = engine._ensure()
        await engine.release()
        return first, second

    first, second = asyncio.run(main())
    assert first[0] is second[0] and first[1] is second[1]


def test_a_dead_endpoint_opens_the_breaker():
    """Connection refused on every attempt: after the breaker's window the engine stops retrying and reports the
    endpoint down (a run-level fault), instead of failing request after request."""
    import asyncio
    import socket

    from uf_experiments.engines.base import EngineDown

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = OpenAIEngine("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=50, breaker_failures=3,
                          breaker_window_s=0.3)
    got = []

    async def main() -> None:
        try:
            await engine.complete([req("q", 1)], got.append)
        finally:
            await engine.release()

    with pytest.raises(EngineDown) as info:
        asyncio.run(main())
    assert got == []  # not a verdict on the request: it is asked again when the run resumes
    assert f"127.0.0.1:{port}" in str(info.value) and "Connect" in info.value.reason


class FakeClock:
    """A monotonic clock that moves only when the limiter sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other waiters run, as a real sleep would


def admitted(limiter: RateLimiter, clock: FakeClock, tokens: list[int], gaps: list[float] | None = None) -> list[float]:
    """The (fake) times at which ``len(tokens)`` back-to-back requests were let through, ``gaps[i]`` seconds of
    other work before the i-th asks."""

    async def main() -> list[float]:
        out = []
        for i, n in enumerate(tokens):
            clock.now += (gaps or [0.0] * len(tokens))[i]
            await limiter.acquire(n)
            out.append(clock.now)
        return out

    return asyncio.run(main())


def test_rate_limiter_holds_requests_per_window():
    clock = FakeClock()
    limiter = RateLimiter(rpm=5, tpm=None, window_s=60.0, clock=clock, sleep=clock.sleep)
    assert admitted(limiter, clock, [1] * 12) == [0.0] * 5 + [60.0] * 5 + [120.0] * 2  # the 6th waits a window


def test_rate_limiter_window_slides():
    """Any window, not fixed minutes: a start is let through as soon as the oldest start in the window ages out."""
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, tpm=None, window_s=10.0, clock=clock, sleep=clock.sleep)
    assert admitted(limiter, clock, [1] * 4, gaps=[0.0, 4.0, 1.0, 0.0]) == [0.0, 4.0, 10.0, 14.0]
    assert clock.sleeps == [5.0, 4.0]


def test_rate_limiter_holds_tokens_per_window():
    clock = FakeClock()
    limiter = RateLimiter(rpm=None, tpm=100, window_s=60.0, clock=clock, sleep=clock.sleep)
    assert admitted(limiter, clock, [40] * 4) == [0.0, 0.0, 60.0, 60.0]  # 3 x 40 tokens > 100 per window
    clock = FakeClock()
    limiter = RateLimiter(rpm=None, tpm=100, window_s=60.0, clock=clock, sleep=clock.sleep)
    assert admitted(limiter, clock, [150, 150]) == [0.0, 60.0]  # one request over the limit alone still starts


def test_rate_limiter_lets_concurrent_waiters_through_in_order():
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, tpm=None, window_s=60.0, clock=clock, sleep=clock.sleep)
    order: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        await limiter.acquire(1)
        order.append((i, clock.now))

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(5)))

    asyncio.run(main())
    assert order == [(0, 0.0), (1, 0.0), (2, 60.0), (3, 60.0), (4, 120.0)]


def test_rate_limiter_without_limits_never_waits():
    clock = FakeClock()
    limiter = RateLimiter(rpm=None, tpm=None, clock=clock, sleep=clock.sleep)
    assert admitted(limiter, clock, [10**9] * 3) == [0.0] * 3 and clock.sleeps == []


def test_the_engine_sends_through_its_limiter():
    """Against the real server, with the limiter on a fake clock: every request is sent once, in order, each
    at the (fake) time the limiter let it through."""
    clock = FakeClock()
    requests = [req(f"limited {i}", i) for i in range(7)]
    got: list[tuple[float, Completion]] = []

    async def main(engine: OpenAIEngine) -> None:
        engine._ensure()
        engine._limiter = RateLimiter(3, None, 60.0, clock=clock, sleep=clock.sleep)
        try:
            for r in requests:
                await engine.complete([r], lambda c: got.append((clock.now, c)))
        finally:
            await engine.release()

    with FakeJudge() as server:
        asyncio.run(main(OpenAIEngine("m", base_url=server.base_url, requests_per_minute=3)))
    assert [c.request for _, c in got] == requests and all(c.text for _, c in got)
    assert [t for t, _ in got] == [0.0] * 3 + [60.0] * 3 + [120.0]
    assert [k for _, k, _ in server.attempts] == [key_of(r) for r in requests]  # in order, each once


def test_missing_key_is_a_config_problem(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    assert "OPENAI_API_KEY is not set" in OpenAIEngine.check_config({})
