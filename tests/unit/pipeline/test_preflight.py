"""Preflight: each distinct API endpoint is probed once, before any spend, against real sockets."""

from __future__ import annotations

import logging
import socket

import pytest

from tests.helpers.fake_openai import FakeJudge
from uf_experiments.config import ConfigError, RunConfig, resolve, typed, validate
from uf_experiments.pipeline.preflight import check_endpoints, endpoints, preflight

KEY = "test-only-not-a-key-preflight-123"
SERVED = ["pool=served", "pool.models=[gen-a,gen-b]", "judge=served", "judge.model.path=judge-x", "tracking=none"]


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def config(compose, *overrides: str) -> RunConfig:
    cfg = compose(list(overrides))
    validate(resolve(cfg))
    return typed(cfg)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connecting to it is refused


def test_closed_port_names_the_model_the_url_and_the_fix(compose, api_key):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    cfg = config(compose, "judge=gpt-4o")
    assert preflight(cfg, env={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": KEY}) == [
        f"judge.model gpt-4o-2024-08-06 at {url}: connection refused — start the server or fix "
        "OPENAI_BASE_URL / judge.model.engine.base_url"]


def test_one_line_for_a_served_pool_and_judge_on_one_dead_endpoint(compose, api_key):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    cfg = config(compose, *SERVED)
    assert preflight(cfg, env={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": KEY}) == [
        f"pool.models gen-a, gen-b and judge.model judge-x at {url}: connection refused — start the server or fix "
        "OPENAI_BASE_URL / pool.base_url / judge.model.engine.base_url"]


def test_unresolvable_host(compose, api_key):
    cfg = config(compose, *SERVED, "judge.model.engine.base_url=http://nonexistent.invalid/v1")
    with FakeJudge() as server:
        problems = preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY})
        assert len(server.gets) == 1  # the pool's endpoint, probed and fine
    assert problems == ["judge.model judge-x at http://nonexistent.invalid/v1: cannot resolve host nonexistent.invalid "
                        "— check the spelling in judge.model.engine.base_url, and the network"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_named_but_never_shown(compose, api_key, caplog, status):
    caplog.set_level(logging.DEBUG)
    cfg = config(compose, *SERVED)
    with FakeJudge(status=status) as server:
        problems = preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY})
    assert server.gets == [("/v1/models", True)]  # the key was sent, once
    assert problems == [f"pool.models gen-a, gen-b and judge.model judge-x at {server.base_url}: the key was refused "
                        f"(HTTP {status}) — check OPENAI_API_KEY (any non-empty value for a local server without auth)"]
    assert KEY not in " ".join(problems) + caplog.text


def test_an_endpoint_without_models_is_reachable(compose, api_key):
    cfg = config(compose, *SERVED)
    with FakeJudge() as server:  # no /v1/models route: 404
        assert preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}) == []
        assert server.gets == [("/v1/models", True)]
        assert server.requests == []  # a probe, not a completion: nothing paid


def probes(server: FakeJudge) -> list[tuple[str, int, list[dict]]]:
    """The chat requests the server saw: (model, max_tokens, messages), by model."""
    return sorted((b["model"], b.get("max_tokens"), b["messages"]) for b in server.requests)


@pytest.mark.parametrize("unknown_model", ["404", "vllm"])  # OpenAI's 404 model_not_found; vLLM's 400 "does not exist"
def test_a_pool_member_the_endpoint_does_not_serve(compose, api_key, caplog, unknown_model):
    caplog.set_level(logging.DEBUG)
    cfg = config(compose, "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "judge=served", "judge.model.path=judge-x")
    with FakeJudge(models=["gen-a", "judge-x", "gen-c"], unknown_model=unknown_model) as server:
        problems = preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY})
    assert problems == [f"pool.models: gen-b is not served by {server.base_url} (it serves: gen-a, gen-c, judge-x) "
                        "— fix the name in pool.models=[...], or point pool.base_url at the server that has it"]
    assert probes(server) == [("gen-b", 1, [{"role": "user", "content": "Hi"}])]  # one probe, for the unlisted name
    assert [outcome for _, _, outcome in server.attempts] == ["no such model"] and server.paid == []
    assert server.gets == [("/v1/models", True)]
    assert KEY not in caplog.text and "not listed" not in caplog.text


def test_a_server_that_lists_its_alias_and_answers_any_name(compose, api_key, caplog):
    caplog.set_level(logging.INFO, logger="uf_experiments.pipeline.preflight")
    cfg = config(compose, "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "judge=served", "judge.model.path=judge-x")
    with FakeJudge(models=["gen-a"]) as server:  # like text-generation-inference / llama.cpp: one alias listed
        problems = preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY})
    assert problems == []
    # one max_tokens=1 request per unlisted name (pool members and the judge); none for gen-a (listed)
    assert probes(server) == [(name, 1, [{"role": "user", "content": "Hi"}]) for name in ("gen-b", "gen-c", "judge-x")]
    assert server.gets == [("/v1/models", True)]
    notes = sorted(r.getMessage() for r in caplog.records if "not listed" in r.getMessage())
    assert notes == [f"preflight: {name} is not listed by {server.base_url} (it lists: gen-a) but answers requests; "
                     "going on" for name in ("gen-b", "gen-c", "judge-x")]
    assert KEY not in caplog.text


@pytest.mark.parametrize("unknown_model", ["404", "vllm"])
def test_a_judge_the_endpoint_does_not_serve(compose, api_key, unknown_model):
    cfg = config(compose, "pool=served", "pool.models=[gen-a,gen-b]", "judge=served", "judge.model.path=judge-y")
    with FakeJudge(models=["gen-a", "gen-b", "judge-x"], unknown_model=unknown_model) as server:
        problems = preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY})
    assert problems == [f"judge.model: judge-y is not served by {server.base_url} (it serves: gen-a, gen-b, judge-x) "
                        "— fix judge.model.path=..., or point judge.model.engine.base_url at the server that has it"]
    assert probes(server) == [("judge-y", 1, [{"role": "user", "content": "Hi"}])]  # one probe: the judge's name
    assert server.paid == []


def test_a_probe_whose_key_is_refused_says_so(compose, api_key, monkeypatch):
    import httpx

    real_request = httpx.request

    def request(method, url, **kwargs):  # the key is good for /models, refused for chat requests (a scoped key)
        reply = real_request(method, url, **kwargs)
        if method == "GET":
            return reply
        return httpx.Response(403, json={"error": {"message": "forbidden"}}, request=reply.request)

    monkeypatch.setattr(httpx, "request", request)
    cfg = config(compose, "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "judge=served", "judge.model.path=judge-x")
    with FakeJudge(models=["gen-a"]) as server:
        problems = preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY})
    assert len(server.requests) == 3  # gen-b, gen-c and the judge are not listed: one probe each
    assert problems == [f"pool.models gen-a, gen-b, gen-c and judge.model judge-x at {server.base_url}: the key was "
                        "refused (HTTP 403) — check OPENAI_API_KEY (any non-empty value for a local server without "
                        "auth)"]


def test_only_the_members_that_take_part_are_checked(compose, api_key):
    cfg = config(compose, "pool=served", "pool.models=[gen-a,gen-b,gen-z]", "pool.size=2", "judge=served",
                 "judge.model.path=judge-x")
    with FakeJudge(models=["gen-a", "gen-b", "judge-x"]) as server:
        assert preflight(cfg, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}) == []


def test_each_distinct_endpoint_is_probed_once(compose, api_key):
    with FakeJudge(models=["gen-a", "gen-b", "gen-c"]) as pool_server, FakeJudge() as judge_server:
        cfg = config(compose, "pool=served", "pool.models=[gen-a,gen-b,gen-c]",
                     f"pool.base_url={pool_server.base_url}/", "judge=served", "judge.model.path=judge-x")
        eps = endpoints(cfg, env={"OPENAI_BASE_URL": judge_server.base_url})
        assert [(e.base_url, e.source, [c.where for c in e.callers]) for e in eps] == [
            (pool_server.base_url, "config", ["pool.models.gen-a", "pool.models.gen-b", "pool.models.gen-c"]),
            (judge_server.base_url, "env", ["judge.model"])]
        assert preflight(cfg, env={"OPENAI_BASE_URL": judge_server.base_url, "OPENAI_API_KEY": KEY}) == []
        assert len(pool_server.gets) == 1 and len(judge_server.gets) == 1


def test_a_server_that_never_answers_times_out(compose, api_key):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        cfg = config(compose, "judge=gpt-4o-mini", f"judge.model.engine.base_url={url}")
        problems = preflight(cfg, timeout_s=0.5, env={"OPENAI_API_KEY": KEY})
    assert problems == [f"judge.model gpt-4o-mini-2024-07-18 at {url}: no answer within 0.5 s — check that the server "
                        "is up and reachable, or fix judge.model.engine.base_url"]


def test_the_default_endpoint_unreachable_says_to_check_the_network(compose, api_key, monkeypatch):
    import httpx

    def offline(*args, **kwargs):  # this machine has no internet: make the failure the same everywhere
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution") from socket.gaierror(-3, "x")

    monkeypatch.setattr(httpx, "get", offline)
    cfg = config(compose, "judge=gpt-4o")
    assert preflight(cfg, env={"OPENAI_API_KEY": KEY}) == [
        "judge.model gpt-4o-2024-08-06 at https://api.openai.com/v1: cannot resolve host api.openai.com — check the "
        "network, or set OPENAI_BASE_URL / judge.model.engine.base_url to your endpoint"]


def test_local_models_are_not_probed(compose):
    cfg = config(compose)  # the tiny vLLM pool and judge
    assert endpoints(cfg, env={}) == [] and preflight(cfg, env={}) == []


def test_check_endpoints_raises_the_first_problem(compose, api_key, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    cfg = config(compose, "judge=gpt-4o")
    with pytest.raises(ConfigError, match=r"^judge.model gpt-4o-2024-08-06 at .*: connection refused — start the"):
        check_endpoints(cfg)
