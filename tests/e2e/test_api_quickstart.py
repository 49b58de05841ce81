"""experiment=api_quickstart and pool=openai: OpenAI models only. The README's quickstart runs end to end from the
installed wheel, in a venv with no vLLM, torch or transformers, against a real HTTP fake of the OpenAI API."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tomllib

from tests.helpers.fake_openai import TEXT_BLOCK, FakeJudge
from tests.helpers.wandb_reader import read_run
from uf_experiments.cli.app import precheck
from uf_experiments.config import resolve, validate
from uf_experiments.core.records import Usage
from uf_experiments.metrics.pricing import api_usd

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
OPENAI_POOL = ["gpt_4_1_nano", "gpt_4o_mini", "gpt_4_1_mini", "gpt_4o"]
KEY = "test-only-not-a-key-quickstart-3b1e9d"


def test_the_quickstart_is_cheap_openai_models_on_the_demo_prompts(compose, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = compose(["experiment=api_quickstart"])
    validate(resolve(cfg))
    assert (cfg.experiment, cfg.dataset.name, cfg.dataset.limit) == ("api_quickstart", "demo", 12)
    assert list(cfg.pool.models) == OPENAI_POOL and cfg.pool.size == 3 and cfg.sampling.n == 2
    assert cfg.judge.model.path == "gpt-4o-mini-2024-07-18" and cfg.judge.output.value == "text"
    assert list(cfg.aspect) == ["instruction_following", "honesty", "truthfulness", "helpfulness"]
    for model in [*cfg.pool.models.values(), cfg.judge.model]:
        assert model.engine._target_ == "uf_experiments.engines.openai.engine.OpenAIEngine"
        assert model.price.input_per_1m > 0 and model.price.output_per_1m > 0 and model.price.read_on
    prices = [m.price.input_per_1m + m.price.output_per_1m for m in cfg.pool.models.values()]
    assert prices == sorted(prices)  # cheapest first: pool.size=k takes the k cheapest
    assert cfg.budget_usd == 1.0


def test_the_quickstart_needs_only_openai_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    problem = precheck(["experiment=api_quickstart"])
    assert problem is not None and "OPENAI_API_KEY is not set" in problem
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert precheck(["experiment=api_quickstart"]) is None


@pytest.mark.slow
def test_the_quickstart_end_to_end_from_the_installed_wheel(installed, tmp_path, compose):
    with FakeJudge() as server:
        proc = subprocess.run(
            [installed.cli, "experiment=api_quickstart"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
            env=installed.env(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=server.base_url, WANDB_MODE="offline"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = tmp_path.glob("outputs/runs/*/*_api_quickstart")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = pq.read_table(run_dir / "rated.parquet").to_pylist()

    judge_bodies = [b for b in server.paid if TEXT_BLOCK.search(b["messages"][-1]["content"])]
    generation_bodies = [b for b in server.paid if b not in judge_bodies]
    assert len(generation_bodies) == 12 * 2 and len(judge_bodies) == 12 * 4  # 2 completions, 4 aspects per prompt
    assert {b["model"] for b in generation_bodies} <= {
        "gpt-4.1-nano-2025-04-14", "gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14"}  # pool.size=3: no gpt-4o
    assert {(b["temperature"], b["max_tokens"]) for b in generation_bodies} == {(1.0, 512)}
    assert {(b["model"], b["temperature"]) for b in judge_bodies} == {("gpt-4o-mini-2024-07-18", 0.0)}

    assert len(rows) == 12
    for row in rows:
        assert len(set(row["generation_models"])) == 2 and set(row["generation_models"]) <= set(OPENAI_POOL[:3])
        assert all(status == "ok" for status in row["parse_status"].values())
    counts = summary["counts"]
    assert (counts["prompts"], counts["completions"], counts["judged"], counts["parse_failures"]) == (12, 24, 48, 0)
    assert counts["pairs"] == len(pq.read_table(run_dir / "preferences.parquet")) == 12 - counts["ties_dropped"]

    cfg = compose(["experiment=api_quickstart"])  # the prices the run used, from the shipped model files
    price = {m.path: m.price for m in [*cfg.pool.models.values(), cfg.judge.model]}
    billed = sum(api_usd(price[model], Usage(p, c, cached)) for model, p, c, cached in server.usages)
    assert summary["cost_usd"]["total"] == pytest.approx(billed, abs=1e-5) and billed > 0

    assert summary["version"] == VERSION  # which code made the result
    run = read_run(next((run_dir / "wandb").glob("offline-run-*/run-*.wandb")))
    assert run["config"]["version"] == VERSION and run["job_type"] == "api_quickstart"
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
