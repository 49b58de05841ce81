"""The request cache: keys, hits, failures not stored, and several processes writing one cache at once; every
cache test runs on both backends (a SQLite file, and a real PostgreSQL database: tests/helpers/postgres.py)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.cache import RequestCache, cache_key, engine_identity


def req(i: int, **kw) -> Request:
    base = dict(model="m", messages=({"role": "user", "content": f"q{i}"},), max_tokens=8, temperature=1.0, top_p=1.0,
                seed=i)
    return Request(**{**base, **kw})


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path) -> str:
    """The cache's location: a SQLite file, or a fresh database on the test PostgreSQL server."""
    return str(tmp_path / "c.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")


VLLM = {"_target_": "uf_experiments.engines.vllm_engine.VLLMEngine", "llm_kwargs": {"dtype": "float32",
                                                                                   "gpu_memory_utilization": 0.9}}


def test_key_covers_what_changes_the_answer():
    ident = engine_identity(VLLM, "/models/a")
    base = cache_key(ident, req(1))
    for changed in (req(1, seed=2), req(1, temperature=0.5), req(1, top_p=0.9), req(1, max_tokens=9),
                    req(1, response_format={"type": "object"}), req(2), req(1, model="n")):
        assert cache_key(ident, changed) != base
    assert cache_key(engine_identity(VLLM, "/models/b"), req(1)) != base  # another model
    other_dtype = {**VLLM, "llm_kwargs": {"dtype": "bfloat16"}}
    assert cache_key(engine_identity(other_dtype, "/models/a"), req(1)) != base
    more_memory = {**VLLM, "llm_kwargs": {"dtype": "float32", "gpu_memory_utilization": 0.5}}
    assert cache_key(engine_identity(more_memory, "/models/a"), req(1)) == base  # does not change answers
    assert cache_key(ident, req(1, tag="routing only")) == base


def test_openai_identity_includes_the_endpoint(monkeypatch):
    api = {"_target_": "uf_experiments.engines.openai.engine.OpenAIEngine", "base_url": None, "max_in_flight": 4}
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    a = engine_identity(api, "gpt")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:2/v1")
    assert engine_identity(api, "gpt") != a
    assert engine_identity({**api, "max_in_flight": 64}, "gpt") == engine_identity(api, "gpt")


def test_hits_misses_and_failures(where):
    cache = RequestCache(where)
    ok = Completion(req(1), "answer", Usage(3, 4, 1), "stop")
    cache.put("e", ok)
    cache.put("e", Completion(req(2), None, error="HTTP 500"))  # failures are asked again next time
    cache.close()
    cache = RequestCache(where)  # durable across processes / runs
    got = cache.get_many("e", [req(1), req(2), req(3)])
    assert list(got) == [req(1).key]
    hit = got[req(1).key]
    got = (hit.text, hit.usage, hit.finish_reason, hit.cached, hit.request)
    assert got == ("answer", Usage(3, 4, 1), "stop", True, req(1))
    assert cache.get_many("other-engine", [req(1)]) == {}
    assert len(cache) == 1


def _writer(path: str, worker: int, n: int) -> None:
    cache = RequestCache(path)
    for i in range(n):
        cache.put("e", Completion(req(worker * 10_000 + i), f"w{worker}-{i}"))
        if i % 20 == 0:
            cache.get_many("e", [req(i) for i in range(50)])
    cache.close()


def test_parallel_processes_share_one_cache(where):
    path = where
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = RequestCache(path)
    assert len(cache) == 600
    got = cache.get_many("e", [req(3 * 10_000 + 149)])
    assert next(iter(got.values())).text == "w3-149"


def test_claims_make_parallel_jobs_wait_instead_of_paying_twice(where):
    path = where
    a, b = RequestCache(path), RequestCache(path)  # two jobs (distinct owners) on one file
    reqs = [req(i) for i in range(4)]
    mine, theirs = a.claim("e", reqs[:3])
    assert (mine, theirs) == (reqs[:3], [])
    mine, theirs = b.claim("e", reqs)
    assert mine == [reqs[3]] and theirs == reqs[:3]  # b waits for a's three
    a.put("e", Completion(reqs[0], "done"))
    a.release("e", reqs[:3])  # reqs[1], reqs[2] released unanswered (e.g. failed)
    mine, theirs = b.claim("e", reqs[:3])
    assert mine == reqs[1:3] and theirs == []  # answered keys are in neither list; released ones are b's now
    a.close()
    b.close()


def test_claims_of_dead_or_stale_owners_are_taken_over(where):
    import socket
    import time

    cache = RequestCache(where, claim_ttl_s=60)
    key = cache_key("e", req(1))
    dead_pid = 2**22 + 12345  # above pid_max on this kind of machine: no such process
    cache._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)",
                      (key, "other", socket.gethostname(), dead_pid, time.time()))
    assert cache.claim("e", [req(1)]) == ([req(1)], [])
    cache._db.execute("UPDATE claims SET owner = 'remote', host = 'elsewhere', claimed = ?", (time.time() - 120,))
    assert cache.claim("e", [req(1)]) == ([req(1)], [])  # older than claim_ttl_s
    cache._db.execute("UPDATE claims SET owner = 'remote', host = 'elsewhere', claimed = ?", (time.time(),))
    assert cache.claim("e", [req(1)]) == ([], [req(1)])  # a fresh claim on another host is respected
    cache.close()


def test_a_live_owner_keeps_its_claims_fresh(where):
    """The heartbeat (``beat_once``, which the owner's background thread calls every claim_ttl_s / 4) keeps a claim
    fresh; without it the claim goes stale and another job takes the request over. Tested by calling the beat
    and ageing the claim in the file, not by sleeping against the TTL."""
    import time

    owner = RequestCache(where, claim_ttl_s=60)
    other = RequestCache(where, claim_ttl_s=60)
    assert owner.claim("e", [req(1)]) == ([req(1)], [])

    def age(seconds: float) -> None:
        other._db.execute("UPDATE claims SET claimed = ?", (time.time() - seconds,))

    age(120)  # older than the TTL ...
    assert owner.beat_once() == 1  # ... until its owner's heartbeat refreshes it
    assert other.claim("e", [req(1)]) == ([], [req(1)])  # respected: the owner is alive and beating
    age(120)  # no beat since: stale (same host and pid here, so staleness is what frees it)
    assert other._db.execute("SELECT owner FROM claims").fetchone()[0] == owner.owner
    assert other.claim("e", [req(1)]) == ([req(1)], [])
    assert owner.beat_once() == 0  # the claim is the other job's now
    owner.close()
    other.close()
