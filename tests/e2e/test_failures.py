"""A run that stops, stops cleanly, says why, and never looks finished when it isn't: the real CLI in a
subprocess against a real HTTP server on 127.0.0.1, read through files, exit codes and the server's log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.fake_openai import FakeJudge, body_key

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PRICE = ["pool.price.input_per_1m=10", "pool.price.output_per_1m=30", "judge.model.price.input_per_1m=10",
         "judge.model.price.output_per_1m=30", "sampling.max_new_tokens=256", "judge.max_new_tokens=512"]


def command(run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uf_experiments", "pool=served", "pool.models=[gen-a,gen-b,gen-c]",
            "pool.engine.max_in_flight=2", "sampling.n=2", "judge=served", "judge.model.path=judge-x",
            "judge.output=text", "aspect=[instruction_following,honesty]", "dataset.limit=12", "tracking=none",
            f"cache.path={cache}", f"hydra.run.dir={run_dir}", *extra]


def env(server: FakeJudge) -> dict[str, str]:
    return {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}


def wait_paid(server: FakeJudge, n: int, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while len(server.paid) < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the test could interrupt it"


def files_of(run_dir: Path) -> tuple[dict, list[dict]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (run_dir / "preferences.parquet").exists() and (run_dir / "preferences").is_dir()
    return summary, pq.read_table(run_dir / "rated.parquet").to_pylist()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_cleanly_and_the_rerun_pays_nothing_twice(tmp_path, sig, code):
    cache = tmp_path / "cache.sqlite"
    with FakeJudge(latency_s=0.15) as server:
        proc = subprocess.Popen(command(tmp_path / "stopped", cache), cwd=REPO, env=env(server),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_paid(server, 14, proc)  # 24 generation requests in all: stopped midway
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == code, err[-3000:]
        assert "Traceback" not in err and "Traceback" not in out
        first = {body_key(b) for b in server.paid}
        summary, rated = files_of(tmp_path / "stopped")
        assert summary["stopped"] == f"interrupted by {sig.name}" and summary["exit_code"] == code
        assert summary["counts"]["not_sent"] > 0  # it did not do all its work, and says so
        assert len(rated) == summary["counts"]["rated_rows"] and len(rated) < 12
        assert summary["counts"]["engine_calls"] == len(first)  # everything it was answered, it counted

        n = len(server.paid)
        rerun = subprocess.run(command(tmp_path / "resumed", cache), cwd=REPO, env=env(server), capture_output=True,
                               text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        again = {body_key(b) for b in server.paid[n:]}
    assert not first & again  # every answer of the stopped run came from the cache
    resumed, rows = files_of(tmp_path / "resumed")
    assert resumed["stopped"] is None and resumed["exit_code"] == 0 and len(rows) == 12
    assert resumed["counts"]["cache_hits"] == len(first)


def test_an_endpoint_that_dies_midway_stops_the_run_and_the_same_command_resumes(tmp_path):
    cache = tmp_path / "cache.sqlite"
    extra = ["pool.engine.breaker_window_s=1", "judge.model.engine.breaker_window_s=1"]
    server = FakeJudge(latency_s=0.1)
    server.__enter__()
    port = server.server.server_address[1]
    proc = subprocess.Popen(command(tmp_path / "down", cache, *extra), cwd=REPO, env=env(server),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_paid(server, 10, proc)
    server.stop()  # the endpoint dies: refused connections, dropped requests
    before = {body_key(b) for b in server.paid}
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err[-3000:]
    summary, rated = files_of(tmp_path / "down")
    assert summary["stopped"].startswith("endpoint down: ") and f"127.0.0.1:{port}" in summary["stopped"]
    assert summary["exit_code"] == 3 and len(rated) < 12
    assert summary["counts"]["engine_calls"] - summary["counts"]["generation_failures"] >= len(before) - 2

    with FakeJudge(port=port) as back:  # the endpoint is back, at the same address
        rerun = subprocess.run(command(tmp_path / "resumed", cache, *extra), cwd=REPO, env=env(back),
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        again = {body_key(b) for b in back.paid}
    assert not before & again  # nothing answered before the outage was paid again
    resumed, rows = files_of(tmp_path / "resumed")
    assert resumed["stopped"] is None and len(rows) == 12


def test_a_budget_above_the_cost_lets_the_run_finish_and_one_below_stops_it_within_it(tmp_path):
    with FakeJudge() as server:
        full = subprocess.run(command(tmp_path / "full", tmp_path / "c1.sqlite", *PRICE), cwd=REPO, env=env(server),
                              capture_output=True, text=True, timeout=300)
        assert full.returncode == 0, full.stderr[-3000:]
        actual = json.loads((tmp_path / "full" / "summary.json").read_text())["cost_usd"]["paid"]
        assert actual > 0
        # A budget above the actual spend by one request's upper bound (a judge reply of 512 tokens at $30 per 1M
        # is $0.015): a run is stopped only when the next request's upper bound no longer fits. Reserving a whole
        # batch's upper bounds at once, as the batch-stage runner did (24 judge requests: ~$0.4), stopped it.
        ok = subprocess.run(command(tmp_path / "ok", tmp_path / "c2.sqlite", *PRICE, f"budget_usd={actual + 0.03}"),
                            cwd=REPO, env=env(server), capture_output=True, text=True, timeout=300)
        assert ok.returncode == 0, ok.stderr[-3000:]
        s_ok = json.loads((tmp_path / "ok" / "summary.json").read_text())
        assert s_ok["stopped"] is None and s_ok["cost_usd"]["paid"] == pytest.approx(actual)

        cap = actual / 2
        low = subprocess.run(command(tmp_path / "low", tmp_path / "c3.sqlite", *PRICE, f"budget_usd={cap}"),
                             cwd=REPO, env=env(server), capture_output=True, text=True, timeout=300)
    assert low.returncode == 4, low.stderr[-3000:]
    s_low, rated = files_of(tmp_path / "low")
    assert s_low["stopped"].startswith(f"budget_usd={cap} reached") and s_low["exit_code"] == 4
    assert 0 < s_low["cost_usd"]["paid"] <= cap
    # what it did not send is counted; what it paid for is kept (a row per prompt with completions, some unjudged)
    assert s_low["counts"]["not_sent"] > 0 and s_low["counts"]["judged"] < 12 * 2
    assert sum(status.startswith("not judged") for r in rated for status in r["parse_status"].values()) > 0
