"""experiment=rejudge end to end: the completions come from the dataset, nothing is generated (the server's log
says so), the judge's agreement with the reference ratings lands in summary.json as worked by hand, and a
2-judge sweep's compare table shows agreement and $ per 1,000 judged items."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import compose_config
from tests.helpers.fake_openai import FakeJudge
from tests.helpers.tiny_demo import cache_copy
from tests.helpers.uf_fixture import EXPECTED, MARKERS, write_uf
from tests.unit.metrics.test_agreement import ASPECTS, rounded
from uf_experiments.pipeline.run import run

REPO = Path(__file__).resolve().parents[2]


def test_rejudging_ultrafeedback_sends_only_judge_requests_and_reports_agreement(tmp_path, monkeypatch):
    data = write_uf(tmp_path / "uf.parquet")
    with FakeJudge() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        cfg = compose_config(["experiment=rejudge", f"dataset.path={data}", f"aspect=[{','.join(ASPECTS)}]",
                              "judge=served", "judge.model.path=fake-judge", "judge.output=text",
                              "judge.model.price.input_per_1m=2", "judge.model.price.output_per_1m=8",
                              "tracking=none", f"cache.path={tmp_path / 'c.sqlite'}"])
        summary = run(cfg, tmp_path / "run")
    # 3 prompts x (4 side-by-side aspects + 4 critiques): every request the server saw was a judge request
    assert len(server.spans) == 3 * 4 + 3 * 4 and {kind for *_, kind in server.spans} == {"judge"}
    assert {m for _, _, m, _ in server.spans} == {"fake-judge"}
    assert summary["generation"]["requests"] == 0 and summary["exit_code"] == 0
    assert summary["metrics"]["agreement"] == {a: rounded(EXPECTED[a]) for a in ASPECTS}
    judged = summary["counts"]["judged"]
    assert judged == 3 * 5
    per_1k = round(1000 * summary["cost_usd"]["judge"]["total"] / judged, 6)
    assert summary["metrics"]["usd_per_1k_judged"] == per_1k > 0
    rated = pq.read_table(tmp_path / "run" / "rated.parquet").to_pylist()
    assert [r for row in rated for r in row["ratings"]["honesty"]] == MARKERS  # the judge's, per completion
    assert all(set(row["reference_ratings"]) == set(ASPECTS) for row in rated)  # beside the references
    assert rated[0]["generation_models"] == ["alpaca-7b", "gpt-4", "llama-2-13b-chat", "wizardlm-7b"]
    assert summary["counts"]["pairs"] > 0 and (tmp_path / "run" / "preferences").is_dir()


@pytest.mark.slow
def test_a_two_judge_sweep_compares_agreement_and_dollars_per_1k(tmp_path):
    data = write_uf(tmp_path / "uf.parquet")
    with FakeJudge() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        proc = subprocess.run(
            [sys.executable, "-m", "uf_experiments", "-m", "experiment=rejudge", f"dataset.path={data}",
             "aspect=[instruction_following,honesty]", "judge=served", "judge.model.path=judge-a,judge-b",
             "judge.output=text,json", "judge.model.price.input_per_1m=2", "judge.model.price.output_per_1m=8",
             "tracking=none", f"cache.path={tmp_path / 'c.sqlite'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "sweep" / "compare" / "compare.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    assert {row["judge.model.path"] for row in table} == {"judge-a", "judge-b"}
    for row in table:  # the fake judge rates by content, whoever asks: the agreement is the hand-worked one
        assert float(row["agree_instruction_following_kappa"]) == pytest.approx(
            EXPECTED["instruction_following"]["kappa_quadratic"], abs=1e-4)
        assert float(row["agree_honesty_exact"]) == pytest.approx(EXPECTED["honesty"]["exact"], abs=1e-4)
        assert float(row["usd_per_1k_judged"]) > 0
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert all(s["generation"]["requests"] == 0 for s in summaries)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.xdist_group("ray")  # where the suite's tiny demo run is built (tests/helpers/tiny_demo.py)
def test_rejudging_an_earlier_demo_run_with_its_own_judge_agrees_with_it(tiny_demo_run, tmp_path):
    """The demo run on tiny models, then its own judge over that run's rated.parquet: the requests are the ones the
    demo sent, so they come from the cache (no engine is loaded) and every rating agrees (aspects without world
    knowledge)."""
    cache = f"cache.path={cache_copy(tiny_demo_run, tmp_path / 'c.sqlite')}"
    again = run(compose_config(["experiment=rejudge", f"dataset.path={tiny_demo_run}", "judge=tiny",
                                "aspect=[instruction_following,honesty]", "seed=7", "tracking=none", cache]),
                tmp_path / "rejudge")  # the demo run's seed: the judge's seeds and orders, so the same requests
    before = pq.read_table(tiny_demo_run / "rated.parquet").to_pylist()
    assert len(before) == 6 and again["generation"]["requests"] == 0
    assert again["judge"]["cache_hits"] == 6 * 2 and again["judge"]["engine_calls"] == 0  # 6 rows x 2 aspects
    assert again["cost_usd"]["paid"] == 0
    agreement = again["metrics"]["agreement"]["instruction_following"]
    assert agreement["n"] == sum(len(r["generations"]) for r in before) == 12
    assert agreement["exact"] == 1.0
    after = pq.read_table(tmp_path / "rejudge" / "rated.parquet").to_pylist()
    assert [r["generations"] for r in after] == [r["generations"] for r in before]
    assert [r["reference_ratings"]["honesty"] for r in after] == [r["ratings"]["honesty"] for r in before]
