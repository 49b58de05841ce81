"""The streaming scheduler against a real HTTP server on 127.0.0.1, read through the server's log (order and
concurrency, never wall-time bounds): the judge starts right behind the generators, API models run side by side,
rate limits hold across re-asks, too-few-completion prompts are counted, and parallel jobs' claims are taken over
once they lapse."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import compose_config
from tests.helpers.fake_openai import FakeJudge
from uf_experiments.pipeline.run import run

SOURCES = ["sharegpt", "flan", "evol_instruct", "truthful_qa", "false_qa", "ultra_chat"]


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"prompt_id": f"p{i:02d}", "source": SOURCES[i % 6],
                                        "instruction": f"Question {i}."}) + "\n" for i in range(n)))
    return path


def served(tmp_path: Path, data: Path, *extra: str) -> object:
    return compose_config(["pool=served", "pool.models=[gen-a,gen-b]", "judge=served", "judge.model.path=judge-x",
                           "judge.output=text", "aspect=[instruction_following]", "dataset=local",
                           f"dataset.path={data}", "tracking=none", f"cache.path={tmp_path / 'cache.sqlite'}",
                           *extra])


@pytest.fixture
def env(monkeypatch):
    def set_server(server: FakeJudge) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    return set_server


def test_judge_starts_before_generation_ends_and_models_overlap(tmp_path, env):
    data = write_prompts(tmp_path / "p.jsonl", 12)
    with FakeJudge(latency_s=0.1) as server:
        env(server)
        cfg = served(tmp_path, data, "pool.engine.max_in_flight=2", "judge.model.engine.max_in_flight=4",
                     "sampling.n=2")
        summary = run(cfg, tmp_path / "run")
    spans = server.spans
    gen = [s for s in spans if s[3] == "generation"]
    judge = [s for s in spans if s[3] == "judge"]
    assert len(gen) == 24 and len(judge) == 12 and summary["exit_code"] == 0
    # the judge's first request was sent while generation still had requests to answer
    assert min(s for s, _, _, _ in judge) < max(e for _, e, _, _ in gen)
    # API pool models side by side: some gen-a request was in flight while a gen-b request was
    a = [(s, e) for s, e, m, _ in gen if m == "gen-a"]
    b = [(s, e) for s, e, m, _ in gen if m == "gen-b"]
    assert any(sa < eb and sb < ea for sa, ea in a for sb, eb in b)
    # every model kept within its own limit, and used it
    for model, limit in (("gen-a", 2), ("gen-b", 2), ("judge-x", 4)):
        mine = [(s, e) for s, e, m, _ in spans if m == model]
        peak = max(sum(s2 <= s < e2 for s2, e2 in mine) for s, _ in mine)
        assert peak <= limit, model
    assert max(sum(s2 <= s < e2 for s2, e2, m, _ in gen if m == "gen-a") for s, _, m, _ in gen if m == "gen-a") == 2


def test_rpm_holds_across_re_asks(tmp_path, env):
    """Every prompt's first judge reply is garbled, so each is re-asked at once: the judge's 4-per-second limit
    holds over initial asks and re-asks together (one limiter for the whole run)."""
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt_id": f"p{i}", "source": "flan", "instruction": f"Q{i} GARBLE_ONCE"})
                            + "\n" for i in range(6)))
    with FakeJudge() as server:
        env(server)
        cfg = served(tmp_path, data, "sampling.n=2", "judge.model.engine.requests_per_minute=4",
                     "judge.model.engine.rate_window_s=1.0")
        summary = run(cfg, tmp_path / "run")
    starts = sorted(s for s, _, _, kind in server.spans if kind == "judge")
    assert summary["counts"]["judged"] == 6 and len(starts) == 12  # 6 asks + 6 re-asks
    for i in range(len(starts) - 4):
        # any 5 consecutive judge requests span at least the 1 s window (0.2 s of slack for the network)
        assert starts[i + 4] - starts[i] >= 0.8, starts


def test_a_prompt_with_too_few_completions_is_counted_not_judged(tmp_path, env, caplog):
    data = tmp_path / "p.jsonl"
    rows = [{"prompt_id": "ok1", "source": "flan", "instruction": "Fine question one"},
            {"prompt_id": "bad", "source": "flan", "instruction": "Half fails FAIL_MODEL=gen-b;"},
            {"prompt_id": "ok2", "source": "flan", "instruction": "Fine question two"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeJudge() as server, caplog.at_level(logging.INFO, logger="uf_experiments.pipeline.progress"):
        env(server)
        summary = run(served(tmp_path, data, "sampling.n=2"), tmp_path / "run")
    # the judge's progress total was settled to what was judged (it assumed every completion would arrive)
    assert [r.getMessage() for r in caplog.records][-1].startswith("progress: generation 6/6  judge 2/2 ")
    c = summary["counts"]
    assert c["prompts_too_few_completions"] == 1 and c["generation_failures"] == 1 and c["completions"] == 5
    assert c["judge_items"] == 2 and c["not_judged"] == 1 and summary["exit_code"] == 0
    rated = pq.read_table(tmp_path / "run" / "rated.parquet").to_pylist()
    assert [r["prompt_id"] for r in rated] == ["ok1", "bad", "ok2"]  # the completion it has is kept
    assert rated[1]["parse_status"]["instruction_following"] == "not judged: only 1 of 2 completions"
    assert rated[1]["ratings"]["instruction_following"] == [None]
    judged_prompts = [s for s in server.spans if s[3] == "judge"]
    assert len(judged_prompts) == 2


def test_a_lapsed_claim_of_another_job_is_taken_over(tmp_path, env):
    """Another job claimed every request and died without answering (a host we cannot probe): this job waits,
    then takes the requests over once the claims lapse, and pays each once."""
    data = write_prompts(tmp_path / "p.jsonl", 3)
    with FakeJudge() as server:
        env(server)
        cfg = served(tmp_path, data, "sampling.n=2", "cache.claim_ttl_s=1.0")
        from uf_experiments.config import resolve, typed, validate
        from uf_experiments.data.sources import load_prompts
        from uf_experiments.engines.build import resolve_model_path
        from uf_experiments.engines.cache import RequestCache, cache_key
        from uf_experiments.generation.requests import generation_requests
        from uf_experiments.pipeline.worker import model_identity

        validate(resolve(cfg))
        config = typed(cfg)
        reqs = [r for rs in generation_requests(config, load_prompts(config.dataset).prompts) for r in rs]
        RequestCache(config.cache.path).close()
        with sqlite3.connect(config.cache.path) as db:
            for r in reqs:
                model = config.pool.models[r.model]
                key = cache_key(model_identity(model, resolve_model_path(model)), r)
                db.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", (key, "elsewhere:1:x", "other-host", 1,
                                                                        time.time()))
        summary = run(cfg, tmp_path / "run")
    gen_paid = [b for b in server.paid if "<text" not in b["messages"][-1]["content"]]
    assert len(gen_paid) == len(reqs) == 6
    assert summary["counts"]["completions"] == 6 and summary["generation"]["engine_calls"] == 6
    with sqlite3.connect(cfg.cache.path) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_a_clear_rating_without_its_type_line_is_kept_and_the_missing_field_counted(tmp_path, env):
    data = tmp_path / "p.jsonl"
    rows = [{"prompt_id": "plain", "source": "flan", "instruction": "An ordinary question"},
            {"prompt_id": "untyped", "source": "flan", "instruction": "A question NO_TYPE"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeJudge() as server:
        env(server)
        summary = run(served(tmp_path, data, "sampling.n=2", "aspect=[helpfulness,truthfulness]"), tmp_path / "run")
    assert summary["counts"]["parse_failures"] == 0 and summary["counts"]["judged"] == 4
    assert summary["judge"]["missing_fields"] == {"helpfulness": {"type": 2}, "truthfulness": {"type": 2}}
    rated = pq.read_table(tmp_path / "run" / "rated.parquet").to_pylist()
    assert all(r is not None for row in rated for r in row["ratings"]["helpfulness"])
    assert rated[1]["types"]["truthfulness"] == [[], []]
