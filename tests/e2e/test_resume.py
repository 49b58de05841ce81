"""Kill a run with SIGKILL midway; the re-run pays for nothing that was answered before the kill and ends with
the files an uninterrupted run writes. Pool and judge are served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.fake_openai import FakeJudge, body_key

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def command(run_dir: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "uf_experiments", "pool=served", "pool.models=[gen-a,gen-b,gen-c]",
            "pool.engine.max_in_flight=2", "sampling.n=2", "judge=served", "judge.model.path=judge-x",
            "judge.model.engine.max_in_flight=2",
            "judge.output=text", "aspect=[instruction_following,honesty]", "dataset.limit=10", "tracking=none",
            f"cache.path={cache}", f"hydra.run.dir={run_dir}"]


def env(server: FakeJudge) -> dict[str, str]:
    return {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}


def cached_keys(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]


def comparable(run_dir: Path) -> tuple[list[dict], list[dict]]:
    rated = pq.read_table(run_dir / "rated.parquet").to_pylist()
    prefs = pq.read_table(run_dir / "preferences.parquet").to_pylist()
    return rated, prefs


def test_sigkill_then_rerun_pays_nothing_twice(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with FakeJudge(latency_s=0.15) as server:
        proc = subprocess.Popen(command(tmp_path / "killed", cache), cwd=REPO, env=env(server),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(server.paid) < 12 and time.monotonic() < deadline:  # 20 generation requests in all
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        before = {body_key(b) for b in server.paid}
        committed = cached_keys(cache)
        # midway: some, not all, were answered; up to 8 (2 in flight for each of 3 models and the judge) were
        # paid by the server but not yet received when the kill came
        assert 12 - 8 <= committed < 20 + 20

        first_attempts = len(server.requests)
        rerun = subprocess.run(command(tmp_path / "resumed", cache), cwd=REPO, env=env(server),
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        again = [body_key(b) for b in server.requests[first_attempts:]]
        # Nothing committed before the kill is asked again; at most the requests in flight at the kill
        # (answered by the server but not yet received) are: 2 in flight for each model and the judge at most.
        assert len(set(again) & before) <= 8
        summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
        assert summary["counts"]["cache_hits"] >= committed
        assert summary["counts"]["engine_calls"] == len(again)

        clean = subprocess.run(command(tmp_path / "clean", tmp_path / "fresh-cache.sqlite"), cwd=REPO,
                               env=env(server), capture_output=True, text=True, timeout=300)
        assert clean.returncode == 0, clean.stderr[-3000:]
    assert comparable(tmp_path / "resumed") == comparable(tmp_path / "clean")
    assert len(comparable(tmp_path / "clean")[0]) == 10


def test_rerun_of_a_finished_run_calls_nothing(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with FakeJudge() as server:
        first = subprocess.run(command(tmp_path / "a", cache), cwd=REPO, env=env(server), capture_output=True,
                               text=True, timeout=300)
        assert first.returncode == 0, first.stderr[-3000:]
        calls = len(server.requests)
        second = subprocess.run(command(tmp_path / "b", cache), cwd=REPO, env=env(server), capture_output=True,
                                text=True, timeout=300)
        assert second.returncode == 0, second.stderr[-3000:]
        assert len(server.requests) == calls  # zero new calls
    s1 = json.loads((tmp_path / "a" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s1["counts"]["engine_calls"] == calls and s1["counts"]["cache_hits"] == 0
    assert s2["counts"]["engine_calls"] == 0 and s2["counts"]["cache_hits"] == calls
    assert s2["generation"]["by_model"]["gen-a"]["cache_hits"] == s1["generation"]["by_model"]["gen-a"]["engine_calls"]
    assert comparable(tmp_path / "a") == comparable(tmp_path / "b")


def test_a_run_through_faults_pays_each_request_once(tmp_path):
    """Prompts that make the server answer 429 / 500 / hang / drop first: the run completes, every request is
    answered once from the run's view, and the server is paid once per unique request."""
    faults = ["FAULTS=429;", "FAULTS=500,503;", "FAULTS=hang;", "FAULTS=drop;", "", "FAULTS=429,drop;"]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt_id": f"p{i}", "source": "sharegpt",
                                        "instruction": f"Question {i} {faults[i]}"}) + "\n" for i in range(6)))
    with FakeJudge(hang_s=8.0, retry_after_s=0.1) as server:  # a hang far outlasts the timeout below
        cmd = command(tmp_path / "run", tmp_path / "cache.sqlite")
        cmd = [c for c in cmd if not c.startswith("dataset.")] + [
            "dataset=local", f"dataset.path={data}", "pool.engine.timeout_s=3", "pool.engine.max_retries=4"]
        proc = subprocess.run(cmd, cwd=REPO, env=env(server), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        paid = [body_key(b) for b in server.paid]
        retried = sum(1 for _, _, outcome in server.attempts if outcome != "ok")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["counts"]["generation_failures"] == 0 and summary["counts"]["completions"] == 12
    # every injected fault was hit: per prompt 2 generation requests (2 models) and 2 judge requests (2 aspects;
    # the judge prompt carries the instruction, and so its markers)
    assert retried == (2 + 2) * (1 + 2 + 1 + 1 + 0 + 2)
    assert len(paid) == len(set(paid)) == summary["counts"]["engine_calls"] == 12 + summary["counts"]["judge_requests"]
