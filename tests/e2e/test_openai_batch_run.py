"""``batch=true`` end to end: the whole run (a served pool and the gpt-4o judge) through the Batch API of a local
fake (tests/helpers/fake_batch.py), then a ``kill -9`` while the judge's batch is in flight and a re-run that
re-attaches."""

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
from omegaconf import OmegaConf

from tests.helpers.fake_batch import FakeBatchAPI
from tests.helpers.fake_openai import body_key
from uf_experiments.core.records import Usage
from uf_experiments.metrics.pricing import api_usd

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
JUDGE = "gpt-4o-2024-08-06"


def command(run_dir: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "uf_experiments", "batch=true", "pool=served", "pool.models=[gen-a,gen-b,gen-c]",
            "sampling.n=2", "judge=gpt-4o", "judge.output=text", "aspect=[instruction_following,honesty]",
            "dataset.limit=6", "tracking=none", f"cache.path={cache}", f"hydra.run.dir={run_dir}",
            "+pool.engine.poll_initial_s=0.05", "+pool.engine.poll_max_s=0.2",
            "+judge.model.engine.poll_initial_s=0.05",
            "+judge.model.engine.poll_max_s=0.2"]


def env(fake: FakeBatchAPI) -> dict[str, str]:
    return {**os.environ, "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test"}


def judge_usd_at_full_price(fake: FakeBatchAPI) -> float:
    price = OmegaConf.load(REPO / "conf/model/gpt_4o.yaml").price
    return sum(api_usd(price, Usage(p, c, cached)) for m, p, c, cached in fake.usages if m == JUDGE)


def rated(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "rated.parquet").to_pylist()


def test_a_batch_run_rates_every_row_pays_each_request_once_at_the_batch_rate(tmp_path):
    with FakeBatchAPI() as fake:
        proc = subprocess.run(command(tmp_path / "run", tmp_path / "cache.sqlite"), cwd=REPO, env=env(fake),
                              capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fake.count("POST", "/v1/chat/completions") == 0 and fake.count("POST", "/v1/batches") >= 2
    paid = [body_key(b) for b in fake.paid]
    assert len(paid) == len(set(paid)) == 6 * 2 + 6 * 2  # 2 completions and 2 aspects per prompt
    rows = rated(tmp_path / "run")
    assert len(rows) == 6
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["counts"]["judged"] == 12 and summary["counts"]["parse_failures"] == 0
    full = judge_usd_at_full_price(fake)
    assert full > 0 and summary["cost_usd"]["judge"]["paid"] == pytest.approx(full / 2, abs=1e-6)


def test_kill_9_while_the_judge_batch_is_in_flight_then_the_rerun_reattaches(tmp_path):
    cache = tmp_path / "cache.sqlite"
    with FakeBatchAPI() as fake:
        fake.hold, fake.hold_model = True, JUDGE  # generation goes through; the judge's batches stay in_progress
        proc = subprocess.Popen(command(tmp_path / "killed", cache), cwd=REPO, env=env(fake),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300

        def judge_batches() -> list[dict]:
            return [b for b in fake.created if b["bodies"][0]["model"] == JUDGE]

        while not (judge_batches() and all(fake.polls.get(b["id"], 0) >= 2 for b in judge_batches())):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never waited on a judge batch"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        held = [cid for b in judge_batches() for cid in b["custom_ids"]]
        fake.hold = False

        rerun = subprocess.run(command(tmp_path / "rerun", cache), cwd=REPO, env=env(fake), capture_output=True,
                               text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # the re-run re-attached: no request (of the held judge batches or any other) was submitted twice
    submitted = [cid for b in fake.created for cid in b["custom_ids"]]
    assert held and len(submitted) == len(set(submitted)) == 24
    paid = [body_key(b) for b in fake.paid]
    assert len(paid) == len(set(paid)) == 24  # nothing paid twice
    summary = json.loads((tmp_path / "rerun" / "summary.json").read_text())
    assert summary["counts"]["judged"] == 12 and len(rated(tmp_path / "rerun")) == 6
    assert summary["cost_usd"]["judge"]["paid"] == pytest.approx(judge_usd_at_full_price(fake) / 2, abs=1e-6)
