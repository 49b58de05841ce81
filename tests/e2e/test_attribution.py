"""Attributed costs: a sweep cell's $ is what its work costs, whichever cell or run paid for it first.

Two cells run in both orders, each order on a fresh request cache, then one cell again fully cached: every
cell's ``cost_usd.total`` is the same each time (API prices, exact), ``paid`` is 0 when everything came from the
cache, and ``total = paid + saved_by_cache``. For the tiny vLLM models, the GPU $ a cached cell attributes to its
completions equals what the cell that generated them recorded.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.helpers.fake_openai import FakeJudge
from tests.helpers.tiny_demo import TINY_DEMO, cache_copy
from uf_experiments.pipeline.run import run

PRICED = ["pool=served", "pool.models=[gen-a,gen-b,gen-c]", "pool.price.input_per_1m=10",
          "pool.price.output_per_1m=30", "judge=served", "judge.model.path=judge-x",
          "judge.model.price.input_per_1m=5", "judge.model.price.output_per_1m=15", "judge.output=json",
          "aspect=[instruction_following]", "sampling.n=2", "dataset.limit=8", "tracking=none"]
CELLS = {"small": ["pool.size=2"], "large": ["pool.size=3"]}


def cell(name: str, cache: Path, out: Path) -> dict:
    return run(compose_config([*PRICED, *CELLS[name], f"cache.path={cache}"]), out)


def test_a_cells_total_does_not_depend_on_which_cell_paid_first(tmp_path, monkeypatch):
    with FakeJudge() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        one = {n: cell(n, tmp_path / "one.sqlite", tmp_path / f"one-{n}") for n in ("small", "large")}
        two = {n: cell(n, tmp_path / "two.sqlite", tmp_path / f"two-{n}") for n in ("large", "small")}
        again = cell("small", tmp_path / "two.sqlite", tmp_path / "again-small")
    for name in CELLS:
        first, second = one[name]["cost_usd"], two[name]["cost_usd"]
        assert first["total"] == second["total"] > 0, name
        assert first["generation"]["total"] == second["generation"]["total"]
        assert first["judge"]["total"] == second["judge"]["total"]
    # the cell that ran second in each order paid less than its total: some of its work was cached
    assert one["large"]["cost_usd"]["paid"] < one["large"]["cost_usd"]["total"]
    assert two["small"]["cost_usd"]["paid"] < two["small"]["cost_usd"]["total"]
    cached = again["cost_usd"]
    assert cached["total"] == one["small"]["cost_usd"]["total"] and cached["paid"] == 0
    assert cached["saved_by_cache"] == cached["total"] and again["counts"]["engine_calls"] == 0
    assert again["metrics"]["usd_per_pair"] == one["small"]["metrics"]["usd_per_pair"] > 0
    for s in [*one.values(), *two.values(), again]:
        c = s["cost_usd"]
        assert c["total"] == pytest.approx(c["paid"] + c["saved_by_cache"], abs=2e-6)
        assert c["priced_from_tokens"] == 0 and c["notes"] == []


def test_cache_entries_without_a_stored_cost_are_priced_from_their_tokens_and_said_so(tmp_path, monkeypatch):
    """A cache written before costs were stored: its answers are priced from their tokens, and counted."""
    with FakeJudge() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        first = cell("small", tmp_path / "c.sqlite", tmp_path / "first")
        with sqlite3.connect(tmp_path / "c.sqlite") as db:
            legacy = db.execute("UPDATE completions SET cost_usd = NULL").rowcount
        second = cell("small", tmp_path / "c.sqlite", tmp_path / "second")
    c = second["cost_usd"]
    assert c["priced_from_tokens"] == legacy == first["counts"]["engine_calls"] > 0
    assert c["total"] == pytest.approx(first["cost_usd"]["total"], abs=1e-6) and c["paid"] == 0
    assert "priced from their stored tokens" in c["notes"][0]
    assert json.loads((tmp_path / "second" / "summary.json").read_text())["cost_usd"] == c


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.xdist_group("ray")  # where the suite's tiny demo run is built (tests/helpers/tiny_demo.py)
def test_tiny_vllm_gpu_cost_of_a_cached_cell_equals_what_the_generating_cell_recorded(tiny_demo_run, tmp_path):
    """The tiny demo run generated and judged on vLLM; the same cell again on a copy of its cache is all cache hits,
    and attributes to each model the GPU $ the generating run recorded."""
    first = json.loads((tiny_demo_run / "summary.json").read_text())
    cache = cache_copy(tiny_demo_run, tmp_path / "c.sqlite")
    second = run(compose_config([*TINY_DEMO, "tracking=none", f"cache.path={cache}"]), tmp_path / "second")
    assert second["counts"]["engine_calls"] == 0 and second["cost_usd"]["paid"] == 0
    for stage in ("generation", "judge"):
        assert first[stage]["by_model"]
        for model, stats in first[stage]["by_model"].items():
            assert stats["paid_usd"] > 0 and stats["engine_s"] > 0
            assert second[stage]["by_model"][model]["cost_usd"] == stats["cost_usd"] == stats["paid_usd"], model
    assert second["cost_usd"]["total"] == first["cost_usd"]["total"] > 0


def test_a_piloted_plan_estimates_the_runs_output_tokens_within_25_percent(tmp_path, monkeypatch):
    """Reply lengths differ 20x between models: a plan from a 10-prompt pilot lands within 25% of what the run
    then produces, where the upper-bound plan is far off."""
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt_id": f"p{i}", "source": "flan", "instruction": f"Question {i}?"})
                            + "\n" for i in range(40)))
    common = ["pool=served", "pool.models=[gen-a,gen-b,gen-c]", "sampling.n=2", "judge=served",
              "judge.model.path=judge-x", "judge.output=text", "aspect=[instruction_following]", "dataset=local",
              f"dataset.path={data}", "tracking=none", f"cache.path={tmp_path / 'c.sqlite'}",
              "sampling.max_new_tokens=1024"]
    with FakeJudge(words_by_model={"gen-a": 10, "gen-b": 100, "gen-c": 200}) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        bound = run(compose_config([*common, "plan=true"]), tmp_path / "bound")
        plan = run(compose_config([*common, "plan=true", "planning.pilot=10"]), tmp_path / "plan")
        paid_by_pilot = len(server.paid)
        actual = run(compose_config(common), tmp_path / "run")
    pilot = plan["pilot"]
    assert pilot["prompts"] == 10 and pilot["paid_usd"] == 0 and paid_by_pilot == 10 * 2 + 10
    assert set(pilot["lengths"]["generation"]) == {"gen-a", "gen-b", "gen-c"}
    assert plan["total"]["cached"] == 30 and plan["total"]["to_send"] == 30 * 2 + 30
    produced = actual["generation"]["completion_tokens"] + actual["judge"]["completion_tokens"]
    estimated = plan["total"]["est_output_tokens"]
    assert abs(estimated - produced) <= 0.25 * produced, (estimated, produced)
    assert plan["total"]["est_output_sd"] > 0
    assert bound["total"]["est_output_tokens"] > 3 * produced  # the upper bound, for contrast
    for stage in ("generation", "judge"):  # what was planned is what was sent
        for model, e in plan["stages"][stage].items():
            assert e["to_send"] == actual[stage]["by_model"][model]["engine_calls"], model
