"""Runs sharing a PostgreSQL request cache (``cache.url``), against a real server the tests start
(tests/helpers/postgres.py) and a served pool on the fake OpenAI server (its log is the witness of what was paid):
a joblib sweep pays each request once; ``kill -9`` and the same command again pays nothing twice; the server
restarted mid-run is reconnected; the server gone for good stops the run cleanly and the same command resumes it.
(A password in the URL, an unreachable server, a refused login: docs/bad-input.md's table, test_bad_input.py.)"""

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
from tests.helpers.postgres import PASSWORD, PgServer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def command(url: str, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uf_experiments", "pool=served", "pool.models=[gen-a,gen-b,gen-c]",
            "pool.engine.max_in_flight=2", "sampling.n=2", "judge=served", "judge.model.path=judge-x",
            "judge.model.engine.max_in_flight=2", "judge.output=text", "aspect=[honesty]", "dataset.limit=10",
            "tracking=none", f"cache.url={url}", f"hydra.run.dir={run_dir}", *extra]


def env(server: FakeJudge, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test", "PGPASSWORD": PASSWORD,
            "XDG_CACHE_HOME": str(tmp_path / "xdg")}


def wait_paid(server: FakeJudge, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while len(server.paid) < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.paid) >= n, f"the run ended ({proc.poll()}) with {len(server.paid)} answers paid"


def stored(pg: PgServer, url: str) -> int:
    with pg.connect(url.rsplit("/", 1)[1]) as conn:
        return conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]


def paid_once(server: FakeJudge) -> None:
    keys = [body_key(b) for b in server.paid]
    assert len(keys) == len(set(keys)), "a request was paid twice"


def test_a_joblib_sweep_on_postgresql_pays_each_request_once(pg_url: str, tmp_path: Path):
    sweep = tmp_path / "sweep"
    with FakeJudge(latency_s=0.05) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "uf_experiments", "-m", "hydra/launcher=joblib_local", "pool=served",
             "pool.models=[gen-a,gen-b,gen-c,gen-d]", "pool.size=3,4", "sampling.n=2,3", "judge=served",
             "judge.model.path=judge-x", "aspect=[honesty]", "dataset.limit=6", "tracking=none",
             f"cache.url={pg_url}", f"hydra.sweep.dir={sweep}"],
            cwd=REPO, env=env(server, tmp_path), capture_output=True, text=True, timeout=900)
        generation = [b for b in server.paid if b["model"].startswith("gen-")]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 4
    completions: dict[tuple[str, str], str] = {}
    engine_calls = 0
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        engine_calls += summary["generation"]["engine_calls"] + summary["judge"]["engine_calls"]
        for row in pq.read_table(job / "rated.parquet").to_pylist():
            for model, text in zip(row["generation_models"], row["generations"], strict=True):
                assert completions.setdefault((row["prompt_id"], model), text) == text
    assert len(completions) > 6 * 3  # the cells overlap and also differ
    assert len(generation) == len(completions)  # each distinct completion paid once, by whichever cell came first
    assert engine_calls == len(server.paid)
    paid_once(server)
    assert PASSWORD not in proc.stdout + proc.stderr


def test_kill_9_then_the_same_command_pays_nothing_twice(pg_server: PgServer, pg_url: str, tmp_path: Path):
    with FakeJudge(latency_s=0.15) as server:
        proc = subprocess.Popen(command(pg_url, tmp_path / "killed"), cwd=REPO, env=env(server, tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_paid(server, 8, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        before = {body_key(b) for b in server.paid}
        committed = stored(pg_server, pg_url)
        assert 8 - 8 <= committed < 20 + 10  # some were stored; up to 8 in flight were paid but not received
        first = len(server.requests)
        rerun = subprocess.run(command(pg_url, tmp_path / "resumed"), cwd=REPO, env=env(server, tmp_path),
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        again = [body_key(b) for b in server.requests[first:]]
        assert len(set(again) & before) <= 8  # at most the requests in flight at the kill
        summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
        assert summary["counts"]["cache_hits"] >= committed
        assert summary["counts"]["engine_calls"] == len(again)
        assert summary["counts"]["completions"] == 20


def test_the_server_restarted_mid_run_is_reconnected_and_nothing_is_lost(pg_server: PgServer, pg_url: str,
                                                                         tmp_path: Path):
    with FakeJudge(latency_s=0.1) as server:
        proc = subprocess.Popen(command(pg_url, tmp_path / "run"), cwd=REPO, env=env(server, tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_paid(server, 6, proc)
        server.gate.clear()  # the run cannot finish while the database is away: its next answers wait for the restart
        pg_server.stop()  # every connection of the run is cut
        pg_server.start()
        server.gate.set()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        log = (tmp_path / "run" / "uf-experiments.log").read_text()
        lost = [line for line in log.splitlines() if f"request cache {pg_url}: connection lost (" in line]
        # psycopg names the cut as the server said it ("terminating connection due to administrator command") or as
        # the socket saw it ("server closed the connection unexpectedly"), depending on when the run next used it
        assert lost and all(line.endswith("; reconnecting") for line in lost), log[-3000:]
        assert "Traceback" not in out + err
        paid = len(server.paid)
        paid_once(server)
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["counts"]["engine_calls"] == paid and summary["counts"]["completions"] == 20
        assert stored(pg_server, pg_url) == paid  # every answer paid is in the cache
        plan = subprocess.run(command(pg_url, tmp_path / "plan", "plan=true"), cwd=REPO,
                              env=env(server, tmp_path), capture_output=True, text=True, timeout=300)
        assert plan.returncode == 0, plan.stderr[-3000:]
        total = json.loads((tmp_path / "plan" / "plan.json").read_text())["total"]
        assert (total["requests"], total["cached"], total["to_send"]) == (30, 30, 0)  # the same command: nothing to pay
        assert len(server.paid) == paid


def test_the_server_gone_stops_the_run_cleanly_and_the_same_command_resumes(pg_server: PgServer, pg_url: str,
                                                                            tmp_path: Path):
    with FakeJudge(latency_s=0.1) as server:
        cmd = command(pg_url, tmp_path / "stopped", "cache.reconnect_s=1", "stop_grace_s=10")
        proc = subprocess.Popen(cmd, cwd=REPO, env=env(server, tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_paid(server, 6, proc)
        pg_server.stop()
        try:
            out, err = proc.communicate(timeout=300)
        finally:
            pg_server.start()
        assert proc.returncode == 3, err[-3000:]  # stopped: files written, resumable
        summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
        assert summary["stopped"].startswith(f"the request cache {pg_url} is unreachable")
        assert (tmp_path / "stopped" / "rated.parquet").is_file()
        assert "Traceback" not in err
        paid = len(server.paid)
        rerun = subprocess.run(command(pg_url, tmp_path / "resumed"), cwd=REPO, env=env(server, tmp_path),
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        paid_once(server)  # what was paid before the stop (stored, or kept on this machine) is not asked again
        resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())
        assert resumed["counts"]["completions"] == 20
        assert resumed["counts"]["engine_calls"] == len(server.paid) - paid  # only what was never paid
        assert resumed["counts"]["cache_hits"] >= paid  # every answer paid before the stop came from the cache
        assert not list((tmp_path / "xdg").rglob("*.sqlite"))  # the kept answers were moved into the database
