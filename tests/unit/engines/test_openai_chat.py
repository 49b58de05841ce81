"""The online engine's HTTP path (engines/openai/chat.py): the openai SDK's retry rules, error texts and headers,
without the SDK. The engine-level behaviour (faults, Retry-After, breaker, usage) is in test_openai_engine.py."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from pathlib import Path

import pytest

from tests.helpers.fake_openai import FakeJudge, body_key
from uf_experiments.core.records import Request
from uf_experiments.engines.openai.chat import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    backoff,
    env_headers,
    retry_after,
    should_retry,
)
from uf_experiments.engines.openai.engine import OpenAIEngine


@pytest.mark.parametrize("headers, want", [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after": "2"}, 2.0),
    ({"retry-after": "0.25"}, 0.25),
    ({"retry-after-ms": "x", "retry-after": "3"}, 3.0),  # a bad -ms falls back to the seconds
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_after_is_read_as_the_sdk_reads_it(headers, want):
    assert retry_after(headers) == want


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after({"retry-after": when}) <= 30


def status(code: int, **headers: str) -> APIStatusError:
    return APIStatusError(code, {"error": {"message": "m"}}, headers)


@pytest.mark.parametrize("exc, retried", [
    (status(429), True), (status(500), True), (status(503), True), (status(408), True), (status(409), True),
    (status(400), False), (status(401), False), (status(404), False), (status(422), False),
    (status(400, **{"x-should-retry": "true"}), True),  # the server says so
    (status(500, **{"x-should-retry": "false"}), False),
    (status(429, **{"retry-after": "121"}), False),  # a wait over 120 s is not waited for
    (status(429, **{"retry-after": "120"}), True),
    (APIConnectionError(), True), (APITimeoutError(), True),
])
def test_what_is_retried(exc, retried):
    assert should_retry(exc) is retried


def test_backoff_honours_retry_after_else_doubles_with_jitter():
    assert backoff(1, status(429, **{"retry-after": "7"})) == 7.0
    for attempts, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        waits = [backoff(attempts, APIConnectionError()) for _ in range(50)]
        assert all(0.75 * base <= w <= base for w in waits), (attempts, min(waits), max(waits))
    assert backoff(1, status(429, **{"retry-after": "0"})) <= 0.5  # a zero wait is not a wait: the backoff


@pytest.mark.parametrize("body, message", [
    ({"error": {"message": "bad thing", "type": "x"}}, "Error code: 400 - bad thing"),  # OpenAI's shape
    ({"object": "error", "message": "The model `m` does not exist.", "code": 400},
     "Error code: 400 - The model `m` does not exist."),  # vLLM's flat shape
    ("plain text", "Error code: 400"),
    ({"error": "no dict"}, "Error code: 400"),
])
def test_status_error_text_is_the_sdks(body, message):
    exc = APIStatusError(400, body, {})
    assert exc.message == str(exc) == message and exc.status_code == 400 and exc.body == body


def test_headers_from_the_environment():
    assert env_headers("sk-1", {}) == {"Authorization": "Bearer sk-1", "Content-Type": "application/json",
                                       "Accept": "application/json"}
    got = env_headers("sk-1", {"OPENAI_ORG_ID": "org-2", "OPENAI_PROJECT_ID": "proj-3"})
    assert got["OpenAI-Organization"] == "org-2" and got["OpenAI-Project"] == "proj-3"


def req(content: str, seed: int = 0) -> Request:
    return Request("m", ({"role": "user", "content": content},), 32, 1.0, 1.0, seed)


def test_a_long_retry_after_is_not_waited_for(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    r = req("busy FAULTS=429;")
    with FakeJudge(retry_after_s=600) as server:
        out = OpenAIEngine("m", base_url=server.base_url, max_retries=3).generate([r])
    assert out[0].text is None and out[0].error == "HTTP 429: Error code: 429 - injected 429"
    assert len(server.attempts) == 1


def test_errors_after_the_retries_carry_the_sdks_names(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    dropped, hung = req("gone FAULTS=drop,drop;", 1), req("slow FAULTS=hang,hang;", 2)
    with FakeJudge(hang_s=3.0) as server:
        out = OpenAIEngine("m", base_url=server.base_url, max_retries=1, timeout_s=1.0).generate([dropped, hung])
    assert out[0].error == "APIConnectionError: Connection error."
    assert out[1].error == "APITimeoutError: Request timed out."
    for r in (dropped, hung):
        assert len(server.attempts_of(body_key({"model": "m", "messages": list(r.messages), "seed": r.seed}))) == 2


def test_one_http_line_per_request_and_the_key_sent(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-9")
    seen: list[dict[str, str]] = []

    class Recording(FakeJudge):
        def _handler(self):
            base = super()._handler()

            class H(base):  # type: ignore[misc, valid-type]
                def do_POST(self) -> None:  # noqa: N802
                    seen.append(dict(self.headers))
                    super().do_POST()

            return H

    with caplog.at_level(logging.INFO, logger="aiohttp.client"), Recording() as server:
        out = OpenAIEngine("m", base_url=server.base_url).generate([req("a", 1), req("b", 2)])
    assert all(c.text for c in out)
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.client"]
    assert lines == [f'HTTP Request: POST {server.base_url}/chat/completions "HTTP/1.1 200 OK"'] * 2
    assert [h["Authorization"] for h in seen] == ["Bearer sk-test"] * 2
    assert [h["OpenAI-Organization"] for h in seen] == ["org-9"] * 2


def test_the_sdk_is_not_imported_by_the_online_engine(monkeypatch):
    import subprocess
    import sys

    code = ("import sys; from tests.helpers.fake_openai import FakeJudge; "
            "from uf_experiments.core.records import Request; "
            "from uf_experiments.engines.openai.engine import OpenAIEngine\n"
            "with FakeJudge() as s:\n"
            "    out = OpenAIEngine('m', base_url=s.base_url).generate("
            "[Request('m', ({'role': 'user', 'content': 'q'},), 8, 1.0, 1.0, 0)])\n"
            "print(out[0].text is not None, 'openai' in sys.modules)")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    repo = Path(__file__).resolve().parents[3]
    got = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                         check=True).stdout.split()
    assert got == ["True", "False"]


def test_release_closes_the_session(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    async def main() -> bool:
        engine = OpenAIEngine("m", base_url="http://127.0.0.1:9/v1")
        client, _, _ = engine._ensure()
        await engine.release()
        return client.session.closed

    assert asyncio.run(main())
