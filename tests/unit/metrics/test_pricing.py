"""Costs against a real HTTP server's reported usage, plans before spending, and the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers.fake_openai import FakeJudge

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
PRICE = {"input": 1000.0, "output": 2000.0, "cached": 500.0}  # $ per 1M tokens: big, so cents are visible
JUDGE_PRICE = {"input": 3000.0, "output": 6000.0}


def base(tmp_path: Path, run: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uf_experiments", "pool=served", "pool.models=[gen-a,gen-b,gen-c]",
            f"pool.price.input_per_1m={PRICE['input']}", f"pool.price.output_per_1m={PRICE['output']}",
            f"pool.price.cached_input_per_1m={PRICE['cached']}", "judge=served", "judge.model.path=judge-x",
            f"judge.model.price.input_per_1m={JUDGE_PRICE['input']}",
            f"judge.model.price.output_per_1m={JUDGE_PRICE['output']}", "judge.output=json",
            "aspect=[instruction_following,honesty]", "dataset.limit=6", "tracking=none",
            f"cache.path={tmp_path / 'cache.sqlite'}", *extra, f"hydra.run.dir={tmp_path / run}"]


def call(cmd: list[str], server: FakeJudge, code: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr[-3000:]
    return proc


def expected_usd(usages) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for model, prompt, completion, cached in usages:
        if model == "judge-x":
            out[model] += (prompt * JUDGE_PRICE["input"] + completion * JUDGE_PRICE["output"]) / 1e6
        else:
            out[model] += ((prompt - cached) * PRICE["input"] + cached * PRICE["cached"]
                           + completion * PRICE["output"]) / 1e6
    return out


def test_costs_match_the_servers_usage_and_cache_hits_cost_their_work_but_nothing_is_paid(tmp_path):
    with FakeJudge() as server:
        call(base(tmp_path, "first"), server)
        usages = list(server.usages)
        call(base(tmp_path, "second"), server)
        assert len(server.usages) == len(usages)  # the second run was served by the cache
    first = json.loads((tmp_path / "first" / "summary.json").read_text())
    second = json.loads((tmp_path / "second" / "summary.json").read_text())
    want = expected_usd(usages)
    assert first["cost_usd"]["total"] > 1.0  # dollars, so "exact to the cent" means something
    for name, usd in want.items():
        stage = "judge" if name == "judge-x" else "generation"
        assert first[stage]["by_model"][name]["cost_usd"] == pytest.approx(usd, abs=1e-6)
        assert first[stage]["by_model"][name]["paid_usd"] == pytest.approx(usd, abs=1e-6)
        # fully cached: the same attributed cost, nothing paid
        assert second[stage]["by_model"][name]["cost_usd"] == pytest.approx(usd, abs=1e-6)
        assert second[stage]["by_model"][name]["paid_usd"] == 0.0
    assert first["cost_usd"]["total"] == pytest.approx(sum(want.values()), abs=0.005)
    assert first["cost_usd"]["paid"] == first["cost_usd"]["total"]
    assert first["generation"]["prompt_tokens"] == sum(u[1] for u in usages if u[0] != "judge-x")
    assert second["cost_usd"]["paid"] == 0.0 and second["cost_usd"]["total"] == first["cost_usd"]["total"]
    assert second["cost_usd"]["saved_by_cache"] == pytest.approx(first["cost_usd"]["total"], abs=1e-6)


def test_plan_counts_what_the_run_sends_and_then_what_the_cache_holds(tmp_path):
    with FakeJudge() as server:
        call(base(tmp_path, "plan", "plan=true"), server)
        assert server.requests == []  # a plan calls no model
        call(base(tmp_path, "run"), server)
        sent = len(server.requests)
        call(base(tmp_path, "plan-after", "plan=true"), server)
        assert len(server.requests) == sent
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for stage in ("generation", "judge"):
        for name, entry in plan["stages"][stage].items():
            assert entry["requests"] == summary[stage]["by_model"][name]["requests"]
    assert plan["total"]["requests"] == sent == 6 * 2 + 6 * 2
    assert plan["total"]["cached"] == 0 and plan["total"]["est_usd"] > 0
    after = json.loads((tmp_path / "plan-after" / "plan.json").read_text())
    assert after["total"]["requests"] == sent and after["total"]["cached"] == sent
    assert after["total"]["to_send"] == 0 and after["total"]["est_usd"] == 0.0


def test_sweep_plan_total_is_the_sum_of_the_cells(tmp_path):
    with FakeJudge() as server:
        cmd = [c for c in base(tmp_path, "x") if not c.startswith("hydra.run.dir")]
        proc = call([*cmd[:3], "-m", *cmd[3:], "pool.size=2,3", "sampling.n=1,2", "plan=true",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}"], server)
        assert server.requests == []
        single = base(tmp_path, "single", "pool.size=3", "sampling.n=2", "plan=true")
        call(single, server)
    cells = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/plan.json"))]
    grid = json.loads((tmp_path / "sweep" / "plan_total.json").read_text())
    assert len(cells) == 4 and grid["jobs"] == 4
    for key in ("requests", "to_send", "est_prompt_tokens", "est_output_tokens"):
        assert grid["total"][key] == sum(c["total"][key] for c in cells)
    assert grid["total"]["est_usd"] == pytest.approx(sum(c["total"]["est_usd"] for c in cells), abs=1e-6)
    assert [c["total"]["requests"] for c in cells] == [6 + 12, 12 + 12, 6 + 12, 12 + 12]  # n completions + 2 aspects
    alone = json.loads((tmp_path / "single" / "plan.json").read_text())
    assert alone["total"] == cells[3]["total"]  # a cell's plan is the plan of that run on its own
    assert "sweep total over 4 jobs" in proc.stdout


def test_budget_stops_cleanly_and_keeps_the_files(tmp_path):
    with FakeJudge() as server:
        call(base(tmp_path, "full"), server)
        full = json.loads((tmp_path / "full" / "summary.json").read_text())["cost_usd"]["total"]
        budget = round(full / 3, 2)
        (tmp_path / "cache.sqlite").unlink()
        call(base(tmp_path, "capped", f"budget_usd={budget}"), server, code=4)  # 4: the budget cap was reached
    summary = json.loads((tmp_path / "capped" / "summary.json").read_text())
    assert summary["stopped"].startswith(f"budget_usd={budget} reached") and summary["exit_code"] == 4
    assert summary["cost_usd"]["paid"] <= budget
    assert summary["counts"]["not_sent"] > 0
    for name in ("rated.parquet", "preferences.parquet", "summary.json"):
        assert (tmp_path / "capped" / name).exists()
