"""The console entry point end to end on a few demo prompts: real vLLM engines, real files, W&B offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.helpers.tiny_demo import SECRET, cache_copy
from tests.helpers.wandb_reader import read_run

# In test_ray.py's xdist group: its execution=ray run is compared with this file's demo run (built once per worker).
pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.xdist_group("ray")]
REPO = Path(__file__).resolve().parents[2]
TINY_ROSTER = ["tiny_a", "tiny_b", "tiny_c", "tiny_d", "tiny_e", "tiny_f"]
ASPECTS = ["instruction_following", "honesty", "truthfulness", "helpfulness"]  # the demo's, in JSON mode


def run_cli(*args: str, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, with a request cache of its own unless ``cache.path`` is given (so a test that
    does not share the demo run's cache really runs the engines)."""
    env = {**os.environ, "WANDB_MODE": "offline", "OPENAI_API_KEY": SECRET, **(env or {})}
    if not any(a.startswith("cache.") for a in args):
        args = (*args, f"cache.path={tempfile.mkdtemp(prefix='uf-cache-')}/requests.sqlite")
    env.pop("WANDB_API_KEY", None)
    if not any(a.startswith("pool=") for a in args):  # the tiny pool (the default demo's is SmolLM2, tested apart)
        args = (*args, "pool=tiny")
    return subprocess.run([sys.executable, "-m", "uf_experiments", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_run(tiny_demo_run: Path) -> Path:
    """The suite's demo run on real tiny vLLM engines (tests/helpers/tiny_demo.py: ``TINY_DEMO``, W&B offline); its
    request cache (``<run>/../cache.sqlite``) lets later tests that are about something else (the sweep's files,
    the text-mode judge) reuse its completions instead of loading the same models again."""
    return tiny_demo_run


def shared_cache(demo_run: Path, tmp_path: Path) -> str:
    """``cache.path=`` a copy of the demo run's request cache, so a test reads its answers without changing it for
    the others."""
    return f"cache.path={cache_copy(demo_run, tmp_path / 'cache.sqlite')}"


def read_rows(path: Path) -> list[dict]:
    """Rows as plain Python values (pyarrow keeps nulls as None; pandas would turn them into NaN)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_rated_rows(demo_run):
    rows = read_rows(demo_run / "rated.parquet")
    assert len(rows) == 6
    assert len({r["prompt_id"] for r in rows}) == 6
    expected_cols = {"prompt_id", "source", "instruction", "principles", "generations", "generation_models", "ratings",
                     "rationales", "judge_model", "judge_order", "parse_status", "judge_raw"}
    assert expected_cols <= set(rows[0])
    for row in (SimpleNamespace(**r) for r in rows):
        models = list(row.generation_models)
        assert len(models) == 2 and len(set(models)) == 2
        assert set(models) <= set(TINY_ROSTER[:3])  # pool.size=3: only the first three models
        assert all(isinstance(g, str) for g in row.generations)
        assert list(row.ratings) == ASPECTS
        for a in ASPECTS:
            ratings = list(row.ratings[a])
            assert len(ratings) == 2
            assert sorted(row.judge_order[a]) == [0, 1]
            if row.parse_status[a] == "ok":
                assert all(r in range(1, 6) or (a == "honesty" and r is None) for r in ratings)
            else:
                assert all(r is None for r in ratings)  # a failure is never a 0
        assert row.judge_model == "tiny_judge"


def test_pairs_and_summary_agree(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    prefs = pd.read_parquet(demo_run / "preferences.parquet")
    rated = pd.read_parquet(demo_run / "rated.parquet")
    counts = summary["counts"]
    assert counts["prompts"] == 6 and counts["rated_rows"] == 6 and counts["completions"] == 12
    assert counts["pairs"] == len(prefs) >= 1
    ok = sum(s[a] == "ok" for s in rated.parse_status for a in ASPECTS)
    assert counts["judge_items"] == 24 and counts["judged"] == ok and counts["parse_failures"] == 24 - ok
    assert counts["pairs"] + counts["ties_dropped"] + counts["skipped_unscored"] == 6
    assert summary["metrics"]["parse_failure_rate"] == pytest.approx((24 - ok) / 24, abs=1e-4)
    by_aspect = summary["metrics"]["parse_failure_rate_by_aspect"]
    assert list(by_aspect) == ASPECTS
    for a in ASPECTS:
        assert by_aspect[a] == pytest.approx(sum(s[a] != "ok" for s in rated.parse_status) / 6, abs=1e-4)
    assert summary["generation"]["requests"] == 12
    assert summary["generation"]["completion_tokens"] > 0 and summary["judge"]["prompt_tokens"] > 0
    assert set(summary["generation"]["by_model"]) <= set(TINY_ROSTER[:3])
    for _, p in prefs.iterrows():
        assert p.score_chosen > p.score_rejected  # binarize.ties=drop by default
        assert p.prompt[0]["role"] == "user" and p.chosen[0]["role"] == "assistant"
        src = rated[rated.prompt_id == p.prompt_id].iloc[0]
        assert p.chosen[0]["content"] in list(src.generations)
        assert p.rejected[0]["content"] in list(src.generations)
    from datasets import load_from_disk

    assert load_from_disk(str(demo_run / "preferences")).num_rows == len(prefs)


def test_wandb_offline_run_and_no_secret(demo_run):
    runs = list((demo_run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    run = read_run(runs[0])  # read back from the .wandb file itself
    summary = json.loads((demo_run / "summary.json").read_text())
    assert run["group"] == "" and run["job_type"] == "demo"  # a single run has no sweep group
    assert run["name"] == "dataset.limit=6,pool.size=3,pool=tiny,sampling.n=2,seed=7"
    assert run["config"]["pool"]["size"] == 3 and run["config"]["seed"] == 7
    assert run["summary"]["cost_usd/total"] == summary["cost_usd"]["total"]
    assert run["summary"]["counts/pairs"] == summary["counts"]["pairs"]
    assert run["summary"]["metrics/parse_failure_rate"] == summary["metrics"]["parse_failure_rate"]
    assert run["summary"]["rated/nrows"] == 12 and run["summary"]["pairs/nrows"] == summary["counts"]["pairs"]
    files = next(v for k, v in run["artifacts"].items() if k.startswith("run-files-"))  # the run-dir artifact
    assert {"rated.parquet", "preferences.parquet", "summary.json", "preferences/state.json"} <= set(files)
    assert Path(files["summary.json"]).read_bytes() == (demo_run / "summary.json").read_bytes()
    tables = list((demo_run / "wandb").glob("offline-run-*/files/media/table/rated_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert len(table["data"]) == 12  # one row per completion
    assert "completion" in table["columns"] and all(f"rating_{a}" in table["columns"] for a in ASPECTS)
    assert (demo_run / ".hydra" / "overrides.yaml").read_text().count("pool.size=3") == 1
    for path in demo_run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_the_console_has_one_line_per_engine_and_no_vllm_info(demo_run):
    """At the default ``log_level``: one ``loaded in`` line per engine, no vLLM config dump or INFO line, no progress
    bar of vLLM's; the run dir's uf-experiments.log keeps vLLM's INFO lines. (Same-seed reproducibility across
    processes: tests/e2e/test_ray.py compares two runs from fresh caches, row for row.)"""
    lines = (demo_run.parent / "console.txt").read_text().splitlines()
    assert max(len(ln) for ln in lines) <= 300, max(lines, key=len)[:400]
    vllm_format_info = re.compile(r"\) INFO .*\[\w+\.py:\d+\]")  # vLLM's own handler's INFO line
    assert not [ln for ln in lines if "Initializing a V1 LLM engine" in ln or vllm_format_info.search(ln)]
    assert not [ln for ln in lines if "[vllm" in ln and "][INFO]" in ln]
    assert not [ln for ln in lines if "Loading safetensors checkpoint shards" in ln or "Processed prompts" in ln]
    loaded = [m.group(1) for ln in lines if (m := re.search(r"\] - (\w+): loaded in \d+\.\d s$", ln))]
    used = {m for ms in pd.read_parquet(demo_run / "rated.parquet").generation_models for m in ms}
    assert sorted(loaded) == sorted([*used, "tiny_judge"]) and len(used) >= 2  # each engine loaded once
    assert "6 rated rows" in "\n".join(lines)
    log_file = (demo_run / "uf-experiments.log").read_text()
    assert log_file.count("Initializing a V1 LLM engine") == len(loaded)  # vLLM's INFO lines go to the file
    assert "][vllm." in log_file


def test_multirun_sweep_has_one_dir_per_job(demo_run, tmp_path):
    """A two-cell sweep over the number of prompts, on a copy of the demo run's request cache: every request of both
    cells is in it, so no engine is loaded, and the 6-prompt cell gives the demo run's rows."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "dataset.limit=3,6", "pool.size=3", "sampling.n=2", "seed=7", f"hydra.sweep.dir={sweep}",
                   shared_cache(demo_run, tmp_path), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name != "compare")
    assert [j.name for j in jobs] == ["0_dataset.limit=3,pool.size=3,pool=tiny,sampling.n=2,seed=7",
                                      "1_dataset.limit=6,pool.size=3,pool=tiny,sampling.n=2,seed=7"]
    for job in jobs:  # one offline W&B run per job, all in the sweep's group, named by the overrides
        run = read_run(next((job / "wandb").glob("offline-run-*/run-*.wandb")))
        assert run["group"] == "sweep" and run["job_type"] == "demo"
        assert run["name"] == job.name.split("_", 1)[1]
        assert run["summary"]["cell/pool_size"] == 3
    # the sweep ends with its comparison: the files, and one more W&B run in the group (job_type compare)
    written = {p.name for p in (sweep / "compare").iterdir()}
    assert {"compare.csv", "compare.md", "totals.json", "usd_per_pair.png"} <= written
    run = read_run(next((sweep / "compare" / "wandb").glob("offline-run-*/run-*.wandb")))
    assert (run["group"], run["job_type"], run["summary"]["grid/runs"]) == ("sweep", "compare", 2)
    assert "loaded in" not in proc.stdout + proc.stderr
    demo = read_rows(demo_run / "rated.parquet")
    for job, limit in zip(jobs, (3, 6), strict=True):
        summary = json.loads((job / "summary.json").read_text())
        assert summary["counts"]["prompts"] == limit and summary["counts"]["engine_calls"] == 0
        rows = read_rows(job / "rated.parquet")
        assert [(r["prompt_id"], r["generations"], r["ratings"]) for r in rows] == [
            (r["prompt_id"], r["generations"], r["ratings"]) for r in demo[:limit]]


def test_text_mode_judge_served_over_http(demo_run, tmp_path):
    """The runner's judge path in the paper's text format, against a real HTTP server on 127.0.0.1 (the
    completions come from the demo run's cache: the same prompts, seed and pool)."""
    from tests.helpers.fake_openai import FakeJudge

    with FakeJudge() as server:
        proc = run_cli("dataset.limit=4", "pool.size=3", "sampling.n=2", "seed=7", "tracking=none", "judge=served",
                       shared_cache(demo_run, tmp_path),
                       "judge.model.path=fake-judge", "judge.output=text",
                       "aspect=[instruction_following,honesty,truthfulness,helpfulness,critique]",
                       f"hydra.run.dir={tmp_path}", cwd=REPO, env={"OPENAI_BASE_URL": server.base_url})
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = read_rows(tmp_path / "rated.parquet")
        summary = json.loads((tmp_path / "summary.json").read_text())
        # 4 prompts x (4 side-by-side aspects + 2 critiques) = 24 requests, all answered in text and parsed
        assert len(server.requests) == 24 == summary["counts"]["judge_requests"]
        assert all("response_format" not in body for body in server.requests)
        for row in rows:
            assert all(s == "ok" for s in row["parse_status"].values())
            for a in ("instruction_following", "honesty", "truthfulness", "helpfulness"):
                assert row["ratings"][a] == [3, 3]  # the server's rating for a text without a quality marker
            assert row["ratings"]["critique"] == [3, 3]
        assert summary["counts"]["pairs"] == 0 and summary["counts"]["ties"] == 4  # all equal: ties dropped
        assert summary["metrics"]["parse_failure_rate"] == 0.0
