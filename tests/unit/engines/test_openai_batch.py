"""The Batch API engine against a real HTTP fake of the Files and Batches endpoints on 127.0.0.1
(tests/helpers/fake_batch.py): everything through batches at the batch rate, failed lines and expired or failed batches
resubmitted, inputs split at the limits, and a ``kill -9`` mid-batch followed by a re-run that re-attaches."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.helpers.fake_batch import FakeBatchAPI, judge_request
from tests.helpers.fake_openai import FakeJudge, body_key
from uf_experiments.config import AspectConfig
from uf_experiments.core.records import Completion, Usage
from uf_experiments.engines.base import EngineDown, run_sync
from uf_experiments.engines.cache import cache_key
from uf_experiments.engines.openai.batch import OpenAIBatchEngine, format_status
from uf_experiments.engines.openai.batch_format import input_line
from uf_experiments.engines.openai.client import chat_body
from uf_experiments.judge.parse import parse_reply
from uf_experiments.metrics.pricing import api_usd, completion_usd

OPENAI_ENGINE = "uf_experiments.engines.openai.engine.OpenAIEngine"
BATCH_ENGINE = "uf_experiments.engines.openai.batch.OpenAIBatchEngine"
REPO = Path(__file__).resolve().parents[3]
ASPECT = AspectConfig(name="overall_rating", template="overall_rating.md")


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def engine(fake: FakeBatchAPI, state: Path, **kw) -> OpenAIBatchEngine:
    kw = {"poll_initial_s": 0.02, "poll_max_s": 0.1, **kw}
    return OpenAIBatchEngine("gpt-x", base_url=fake.base_url, state_path=str(state), **kw)


def complete_once(eng: OpenAIBatchEngine, requests) -> list[Completion]:
    """One ``complete`` call over all of ``requests`` (run_sync would cut them at max_batch first)."""
    got: list[Completion] = []
    asyncio.run(eng.complete(requests, got.append))
    return got


def expected_ratings(r) -> list[int]:
    i = r.seed - 1000
    return [1 + i % 5, 1 + (i + 2) % 5]


def paid_keys(fake: FakeBatchAPI) -> list[str]:
    return [body_key(b) for b in fake.paid]


def test_every_request_through_batches_paid_once_at_the_batch_rate(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="uf_experiments.engines.openai.batch")
    requests = [judge_request(i, json_mode=i % 2 == 1) for i in range(12)]
    model = compose_config(["judge=gpt-4o"]).judge.model  # the shipped YAML, composed with its base
    price = model.price
    assert price.batch_discount == 0.5
    with FakeBatchAPI(delay_polls=2) as fake:
        eng = engine(fake, tmp_path / "state.sqlite", max_lines_per_file=5)
        seen: list[Completion] = []
        out = run_sync(eng, requests, emit=seen.append)
        status = eng.status()
        eng.close()
    assert [c.request for c in out] == requests and len(seen) == 12
    for c in out:
        assert c.batch and c.error is None
        parsed = parse_reply(c.text, 2, ASPECT, "json" if c.request.response_format else "text")
        assert [r.rating for r in parsed.ratings] == expected_ratings(c.request)
    assert fake.count("POST", "/v1/chat/completions") == 0
    assert sorted(b["lines"] for b in fake.created) == [2, 5, 5] and not any(b["problems"] for b in fake.created)
    assert sorted(paid_keys(fake)) == sorted({body_key(chat_body("gpt-x", r)) for r in requests})  # each once
    # usage is read from each line; $ = usage x price x 0.5
    assert sorted((c.usage.prompt_tokens, c.usage.completion_tokens) for c in out) == sorted(
        (p, q) for _, p, q, _ in fake.usages)
    total = sum(completion_usd(model, c) for c in out)
    full = sum(api_usd(price, Usage(p, q, cached)) for _, p, q, cached in fake.usages)
    assert total > 0 and total == pytest.approx(0.5 * full)
    assert sorted(s["batch_id"] for s in status) == ["batch-1", "batch-2", "batch-3"]
    assert all(s["status"] == "completed" and s["done"] and s["completed"] == s["total"] for s in status)
    assert format_status(status) == ""  # nothing open any more
    open_one = {**status[0], "status": "in_progress", "done": False, "completed": 1, "failed": 2, "waited_s": 3725}
    assert format_status([open_one]) == f"batches: gpt-x {open_one['batch_id']} in_progress 1/{open_one['total']} " \
                                        "lines (2 failed), waited 1h02m"
    progress = [r.getMessage() for r in caplog.records if " batch batch-" in r.getMessage()]
    for bid, n in ((b["id"], b["lines"]) for b in fake.created):
        assert any(m.startswith(f"gpt-x batch {bid}: in_progress, 0/{n} lines done (0 failed), waited ")
                   for m in progress), progress
        assert any(m.startswith(f"gpt-x batch {bid}: completed, {n}/{n} lines done (0 failed), waited ")
                   for m in progress), progress


def test_the_batch_body_is_what_the_openai_engine_sends():
    from uf_experiments.engines.openai.engine import OpenAIEngine

    requests = [judge_request(0), judge_request(1, json_mode=True)]
    with FakeJudge() as server:
        run_sync(OpenAIEngine("gpt-x", base_url=server.base_url), requests)
    sent = sorted(server.requests, key=lambda b: b["seed"])
    assert sent == [chat_body("gpt-x", r) for r in requests]


def test_failed_lines_are_retried_in_follow_up_batches_then_fail_with_their_reason(tmp_path):
    """A 5xx line goes into the next batch, up to max_batch_retries; a 4xx line fails at once."""
    marks = {1: "LINEFAIL=1;", 3: "LINEFAIL=1;", 4: "LINEFAIL=9;", 5: "LINE400;"}
    requests = [judge_request(i, extra=marks.get(i, "")) for i in range(7)]
    with FakeBatchAPI() as fake:
        eng = engine(fake, tmp_path / "state.sqlite", max_batch_retries=2)
        out = complete_once(eng, requests)
        eng.close()
    by_seed = {c.request.seed: c for c in out}
    assert len(out) == 7
    assert all(by_seed[1000 + i].text is not None for i in (0, 1, 2, 3, 6))
    bad = by_seed[1004]
    assert bad.text is None and bad.error == "HTTP 500: injected line failure (after 3 batches)"
    refused = by_seed[1005]  # a client error would fail again: not resubmitted
    assert refused.text is None and refused.error == "HTTP 400: injected client error"
    key = {r.seed: cache_key(eng.identity, r) for r in requests}
    batches = [sorted(b["custom_ids"]) for b in fake.created]
    assert batches == [sorted(key.values()), sorted([key[1001], key[1003], key[1004]]), [key[1004]]]
    assert len(paid_keys(fake)) == len(set(paid_keys(fake))) == 5


@pytest.mark.parametrize(("outcome", "resubmitted"), [("expire:2", 3), ("expire", 5), ("fail", 5)])
def test_an_expired_or_failed_batch_is_resubmitted(tmp_path, outcome, resubmitted):
    requests = [judge_request(i) for i in range(5)]
    with FakeBatchAPI(outcomes=[outcome]) as fake:
        eng = engine(fake, tmp_path / "state.sqlite")
        out = complete_once(eng, requests)
        eng.close()
    assert all(c.text is not None for c in out) and len(out) == 5
    assert [b["lines"] for b in fake.created] == [5, resubmitted]
    answered_first = set(fake.created[0]["custom_ids"]) - set(fake.created[1]["custom_ids"])
    assert len(answered_first) == 5 - resubmitted  # the lines an expired batch did answer are not asked again
    assert len(paid_keys(fake)) == len(set(paid_keys(fake))) == 5


def test_a_batch_that_keeps_expiring_ends_as_failures_with_the_reason(tmp_path):
    with FakeBatchAPI(outcomes=["expire", "expire"]) as fake:
        eng = engine(fake, tmp_path / "state.sqlite", max_batch_retries=1)
        out = complete_once(eng, [judge_request(i) for i in range(3)])
        eng.close()
    assert len(fake.created) == 2 and not fake.paid
    assert {c.error for c in out} == {"batch_expired: This request could not be executed before the completion "
                                      "window expired. (after 2 batches)"}


def test_input_files_are_split_at_the_line_and_byte_limits(tmp_path):
    requests = [judge_request(i) for i in range(10)]
    with FakeBatchAPI(max_lines=4) as fake:
        out = complete_once(engine(fake, tmp_path / "a.sqlite", max_lines_per_file=4), requests)
    assert sorted(b["lines"] for b in fake.created) == [2, 4, 4] and all(c.text for c in out)

    size = max(len(input_line("k" * 64, chat_body("gpt-x", r)).encode()) + 1 for r in requests)
    limit = int(size * 2.5)  # two lines a file
    huge = judge_request(99, extra="x" * limit)
    with FakeBatchAPI(max_bytes=limit) as fake:
        out = complete_once(engine(fake, tmp_path / "b.sqlite", max_bytes_per_file=limit), [*requests, huge])
    assert [b["lines"] for b in fake.created] == [2, 2, 2, 2, 2]
    assert all(b["bytes"] <= limit and not b["problems"] for b in fake.created)
    too_big = [c for c in out if c.request is huge]
    assert len(too_big) == 1 and too_big[0].text is None and "max_bytes_per_file" in too_big[0].error
    assert sum(1 for c in out if c.text) == 10


KILLED_RUN = textwrap.dedent("""
    import sys
    from tests.helpers.fake_batch import judge_request
    from uf_experiments.engines.base import run_sync
    from uf_experiments.engines.openai.batch import OpenAIBatchEngine
    base_url, state, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    eng = OpenAIBatchEngine("gpt-x", base_url=base_url, state_path=state, poll_initial_s=0.05, poll_max_s=0.2)
    run_sync(eng, [judge_request(i) for i in range(n)])
    print("finished")  # never reached: killed while it waits
""")


def start_killed_run(fake: FakeBatchAPI, state: Path, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", KILLED_RUN, fake.base_url, str(state), str(n)], cwd=REPO,
                            env={**os.environ, "OPENAI_API_KEY": "sk-test"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for(check, proc: subprocess.Popen, what: str, deadline_s: float = 300) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what}: run exited {proc.poll()}: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_kill_9_while_a_batch_is_in_flight_then_a_rerun_reattaches_and_pays_nothing_twice(tmp_path):
    state, n = tmp_path / "requests.sqlite", 6
    requests = [judge_request(i) for i in range(n)]
    with FakeBatchAPI(delay_polls=1) as fake:
        fake.hold = True  # the batch stays in_progress while the first run waits on it
        proc = start_killed_run(fake, state, n)
        wait_for(lambda: fake.polls.get("batch-1", 0) >= 3, proc, "the first run never polled its batch")
        kill9(proc)
        assert fake.count("POST", "/v1/batches") == 1
        fake.hold = False  # the batch finishes while no run watches it

        # the re-run asks for half of them, in two calls at once: both re-attach to the one batch (no new file,
        # no new batch, one watcher: the output file is downloaded once) and get their answers
        rerun = engine(fake, state, max_lines_per_file=2)
        first = run_sync(rerun, requests[:3])
        rerun.close()
        assert all(c.text is not None and c.batch for c in first)
        assert fake.count("POST", "/v1/files") == 1 and fake.count("POST", "/v1/batches") == 1
        assert fake.count("GET", "/v1/files/") == 1
        calls = len(fake.calls)

        # the paid lines nobody asked for yet were kept: a later run gets them without any call
        later = engine(fake, state)
        rest = run_sync(later, requests[3:])
        later.close()
        assert all(c.text is not None for c in rest) and len(fake.calls) == calls
    assert len(paid_keys(fake)) == len(set(paid_keys(fake))) == n
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT id, status, consumed FROM batches").fetchall() == [("batch-1", "completed", 1)]
        assert db.execute("SELECT COUNT(*) FROM batch_results").fetchone() == (0,)  # all emitted


def test_kill_9_while_the_batch_is_being_created_then_the_rerun_finds_it(tmp_path):
    state, n = tmp_path / "requests.sqlite", 4
    with FakeBatchAPI() as fake:
        fake.create_gate = threading.Event()  # the batch exists, its id never reaches the first run
        proc = start_killed_run(fake, state, n)
        wait_for(lambda: len(fake.created) == 1, proc, "the first run never created its batch")
        kill9(proc)
        fake.create_gate.set()
        eng = engine(fake, state)
        out = run_sync(eng, [judge_request(i) for i in range(n)])
        eng.close()
    assert all(c.text is not None for c in out)
    assert fake.count("POST", "/v1/batches") == 1 and fake.count("GET", "/v1/batches") >= 1
    assert ("GET", "/v1/batches") in [(m, p) for _, m, p in fake.calls]  # found through the batch list
    assert len(paid_keys(fake)) == len(set(paid_keys(fake))) == n


def test_an_unreachable_endpoint_is_engine_down(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    eng = OpenAIBatchEngine("gpt-x", base_url=f"http://127.0.0.1:{port}/v1", state_path=str(tmp_path / "s.sqlite"),
                            max_retries=0)
    with pytest.raises(EngineDown, match="uploading a batch input file"):
        run_sync(eng, [judge_request(0)])
    eng.close()


# ---------------------------------------------------------------- batch=true in the config


def test_batch_true_switches_every_openai_model_keeping_its_settings(compose):
    from uf_experiments.config import resolve, uses_batch, validate
    from uf_experiments.engines.build import build_engine

    cfg = compose(["batch=true", "judge=gpt-4o", "pool=served", "pool.models=[m-a,m-b]",
                   "pool.base_url=http://127.0.0.1:9/v1", "cache.path=/tmp/x/requests.sqlite"])
    validate(resolve(cfg))
    validate(resolve(cfg))  # idempotent
    assert uses_batch(cfg)
    for model in cfg.pool.models.values():
        assert dict(model.engine) == {"_target_": BATCH_ENGINE, "base_url": "http://127.0.0.1:9/v1", "timeout_s": 300,
                                      "connect_timeout_s": 10, "max_retries": 6, "state_path": "/tmp/x/requests.sqlite"}
    assert dict(cfg.judge.model.engine) == {"_target_": BATCH_ENGINE, "base_url": None, "timeout_s": 120,
                                            "connect_timeout_s": 10, "max_retries": 6,
                                            "state_path": "/tmp/x/requests.sqlite"}
    eng = build_engine(cfg.judge.model)
    assert isinstance(eng, OpenAIBatchEngine) and eng.model == "gpt-4o-2024-08-06" and eng.timeout_s == 120
    assert str(eng.state_path) == "/tmp/x/requests.sqlite" and eng.max_batch == 50_000 and eng.linger_s > 0


def test_engine_batch_switches_one_model_and_vllm_models_are_left_alone(compose):
    from uf_experiments.config import ConfigError, resolve, uses_batch, validate
    from uf_experiments.engines.build import is_batch_engine

    cfg = compose(["judge=gpt-4o", "judge.model.engine.batch=true"])
    validate(resolve(cfg))
    assert is_batch_engine(cfg.judge.model) and cfg.judge.model.engine._target_ == BATCH_ENGINE
    assert all("VLLMEngine" in m.engine._target_ for m in cfg.pool.models.values())  # the tiny pool

    cfg = compose(["judge=gpt-4o"])
    validate(resolve(cfg))
    assert not uses_batch(cfg) and cfg.judge.model.engine._target_ == OPENAI_ENGINE
    assert "batch" not in cfg.judge.model.engine  # the switch never reaches the engine's kwargs

    cfg = compose(["batch=true"])  # a tiny vLLM pool and judge: nothing to switch
    validate(resolve(cfg))
    assert not uses_batch(cfg)
    only = (r"^judge.model.engine.batch=true: only an OpenAI-compatible engine can go through the Batch API, not "
            r"uf_experiments.engines.vllm_engine.VLLMEngine; drop the override$")
    with pytest.raises(ConfigError, match=only):
        validate(resolve(compose(["+judge.model.engine.batch=true"])))


def test_the_batch_engine_shares_the_request_cache_with_the_plain_engine(compose, tmp_path, monkeypatch):
    from uf_experiments.config import resolve, validate
    from uf_experiments.engines.cache import RequestCache, engine_identity

    for base_url in (None, "http://127.0.0.1:9/v1"):
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")
        over = [f"judge.model.engine.base_url={base_url}"] if base_url else []
        plain, batch = compose(["judge=gpt-4o", *over]), compose(["judge=gpt-4o", "batch=true", *over])
        validate(resolve(plain))
        validate(resolve(batch))
        path = plain.judge.model.path
        plain_id = engine_identity(OmegaConf.to_container(plain.judge.model.engine), path)
        batch_id = engine_identity(OmegaConf.to_container(batch.judge.model.engine), path)
        assert plain_id == batch_id == OpenAIBatchEngine(path, base_url=base_url).identity
        assert (base_url or "http://127.0.0.1:8/v1") in plain_id
    plain = {"_target_": "uf_experiments.engines.openai.engine.OpenAIEngine", "base_url": None}
    other = engine_identity(plain, "gpt-y")
    assert other != plain_id  # another model is another identity

    r = judge_request(0)
    cache = RequestCache(tmp_path / "requests.sqlite")
    cache.put(batch_id, Completion(r, "from a batch", Usage(10, 5, 0), "stop", batch=True))
    assert cache.get_many(plain_id, [r])[r.key].text == "from a batch"
    cache.close()


def test_plan_prices_at_the_batch_rate_when_batch_is_on(compose):
    from uf_experiments.config import resolve, validate
    from uf_experiments.engines.build import is_batch_engine
    from uf_experiments.metrics.pricing import usd_at_rate

    usage = Usage(1_000_000, 1_000_000, 0)
    for batch, expected in ((False, 12.5), (True, 6.25)):  # gpt-4o: $2.5 in + $10 out per 1M, halved in batches
        cfg = compose(["judge=gpt-4o", *(["batch=true"] if batch else [])])
        validate(resolve(cfg))
        model = cfg.judge.model
        assert usd_at_rate(model.price, usage, batch=is_batch_engine(model)) == pytest.approx(expected)
