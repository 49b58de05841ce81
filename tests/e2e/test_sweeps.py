"""Fair, cheap sweeps: nested cells, n-growth, the experiments' grids, launchers, and a real joblib sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from hydra.utils import get_class

from uf_experiments.config import ConfigError, resolve, validate
from uf_experiments.data.sources import load_prompts
from uf_experiments.generation.requests import generation_requests

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def compose():
    """These tests are about the tiny roster the demo used before it moved to SmolLM2: pool=tiny unless a test picks
    its pool or experiment."""
    from tests.conftest import compose_config

    def tiny(overrides=(), **kwargs):
        own = any(o.lstrip("+~").startswith(("pool=", "experiment=")) for o in overrides)
        return compose_config([*([] if own else ["pool=tiny"]), *overrides], **kwargs)
    return tiny


def requests_for(compose, *overrides: str):
    cfg = compose(["experiment=demo_tiny", *overrides])  # all 72 demo prompts, the tiny roster, paper_code
    validate(resolve(cfg))
    return cfg, [r for reqs in generation_requests(cfg, load_prompts(cfg.dataset).prompts) for r in reqs]


def test_growing_n_adds_completions_and_keeps_the_earlier_ones(compose):
    _, two = requests_for(compose, "pool.size=6", "sampling.n=2")
    _, three = requests_for(compose, "pool.size=6", "sampling.n=3")
    assert len(two) == 72 * 2 and len(three) == 72 * 3
    assert {r.key for r in two} < {r.key for r in three}  # same model, principle, messages and seed


def test_a_smaller_pool_reuses_the_larger_pools_requests_where_they_nest(compose):
    _, small = requests_for(compose, "pool.size=3", "sampling.n=2")
    _, large = requests_for(compose, "pool.size=6", "sampling.n=2")
    by_prompt_large: dict[str, set[str]] = {}
    for r in large:
        by_prompt_large.setdefault(r.tag, set()).add(r.model)
    roster3 = {"tiny_a", "tiny_b", "tiny_c"}
    nested = [pid for pid, models in by_prompt_large.items() if models <= roster3]
    assert nested  # the property is exercised
    large_keys = {r.key for r in large}
    for r in small:
        if r.tag in nested:
            assert r.key in large_keys


def test_pool_sweep_experiment_carries_a_valid_grid(compose):
    cfg = compose(["experiment=pool_sweep"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    sizes = [int(v) for v in params["pool.size"].split(",")]
    ns = [int(v) for v in params["sampling.n"].split(",")]
    assert sizes == [3, 4, 6] and ns == [2, 3]
    for size in sizes:
        for n in ns:
            validate(resolve(compose(["experiment=pool_sweep", f"pool.size={size}", f"sampling.n={n}"])))


def test_paper_replication_is_the_papers_recipe(compose, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = compose(["experiment=paper_replication"])
    validate(resolve(cfg))
    sampling = cfg.sampling
    assert (sampling.n, sampling.temperature, sampling.top_p, sampling.max_new_tokens) == (4, 1.0, 1.0, 1024)
    assert list(cfg.aspect) == ["instruction_following", "honesty", "truthfulness", "helpfulness", "critique"]
    assert cfg.judge.temperature == 0.0 and cfg.judge.model.path == "gpt-4-0613"
    assert cfg.principles.name == "paper_code"
    assert cfg.dataset.repo_id == "openbmb/UltraFeedback"
    assert (cfg.dataset.columns.instruction, cfg.dataset.columns.source) == ("instruction", "source")
    assert len(cfg.pool.models) == 10 and cfg.pool.size == 10
    assert len({m.path for m in cfg.pool.models.values()}) == 10


@pytest.mark.parametrize(("launcher", "target"), [
    ("joblib_local", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("slurm_gpu", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
])
def test_launcher_configs_compose(compose, launcher, target):
    cfg = compose([f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target
    assert get_class(target)  # the plugin is installed and importable
    if launcher == "slurm_gpu":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.tasks_per_node == 1
    else:
        assert cfg.hydra.launcher.n_jobs == 2


@pytest.mark.slow
def test_parallel_joblib_sweep_generates_each_distinct_completion_once(tmp_path):
    """Three cells side by side (joblib, 2 processes) sharing one request cache: every distinct (prompt, model,
    index) completion is asked of the server once, whichever cell asks first (the server's log is the witness;
    the cache's claims are engine-agnostic, so a served pool proves what a vLLM pool would, without loading one)."""
    from tests.helpers.fake_openai import FakeJudge, body_key

    sweep = tmp_path / "sweep"
    with FakeJudge(latency_s=0.05) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        proc = subprocess.run(
            [sys.executable, "-m", "uf_experiments", "-m", "hydra/launcher=joblib_local", "pool=served",
             "pool.models=[gen-a,gen-b,gen-c,gen-d]", "pool.size=2,3,4", "sampling.n=2", "judge=served",
             "judge.model.path=judge-x", "dataset.limit=8", "tracking=none", f"cache.path={tmp_path / 'cache.sqlite'}",
             f"hydra.sweep.dir={sweep}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        generation_bodies = [b for b in server.requests if b["model"].startswith("gen-")]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    triples: dict[tuple[str, str, int], str] = {}
    engine_calls = 0
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name != "compare")  # compare/: the sweep's report
    assert len(jobs) == 3 and (sweep / "compare" / "compare.csv").is_file()
    for job in jobs:
        engine_calls += json.loads((job / "summary.json").read_text())["generation"]["engine_calls"]
        for row in pq.read_table(job / "rated.parquet").to_pylist():
            for model, text in zip(row["generation_models"], row["generations"], strict=True):
                key = (row["prompt_id"], model, 0)
                assert triples.setdefault(key, text) == text  # a completion is the same in every cell
    assert len(triples) > 16  # the cells overlap (8 prompts x 2 completions each) and also differ
    assert engine_calls == len(triples) == len(generation_bodies)  # each distinct completion asked exactly once
    assert len({body_key(b) for b in generation_bodies}) == len(generation_bodies)


# ------------------------------------------------------------------------------- cells that can never run


def test_precheck_leaves_invalid_cells_to_the_sweeper_and_refuses_a_grid_with_none_valid():
    from uf_experiments.cli.app import precheck

    assert precheck(["pool=tiny", "-m", "pool.size=2,3", "sampling.n=2,3"]) is None  # (2, 3) is skipped by the sweeper
    assert precheck(["-m", "experiment=pool_sweep", "pool.size=2"]) is None  # the experiment's grid: n=2,3
    assert precheck(["pool=tiny", "-m", "pool.size=2", "sampling.n=3,4"]) == (
        "none of the 2 sweep cells can run; the first: sampling.n=3 must be between 1 and pool.size=2 "
        "(n distinct models per prompt) (in the sweep cell sampling.n=3)")
    assert precheck(["-m", "experiment=pool_sweep", "sampling.n=4,5", "pool.size=3"]) == (
        "none of the 2 sweep cells can run; the first: sampling.n=4 must be between 1 and pool.size=3 "
        "(n distinct models per prompt) (in the sweep cell sampling.n=4)")
    assert precheck(["-m", "pool.size=2", "sampling.n=3"]) == (
        "the sweep's only cell cannot run: sampling.n=3 must be between 1 and pool.size=2 (n distinct models per "
        "prompt) (in the sweep cell pool.size=2 sampling.n=3)")
    # a single run is refused as before, and so is a composition error in any cell
    assert precheck(["pool=tiny", "pool.size=2", "sampling.n=3"]).startswith(
        "sampling.n=3 must be between 1 and pool.size=2")
    assert precheck(["pool=tiny", "-m", "pool.size=2,abc"]).startswith("Error merging override pool.size=abc")


def test_a_missing_key_fails_the_whole_sweep_not_one_cell(monkeypatch):
    from uf_experiments.cli.app import precheck

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert precheck(["-m", "judge=tiny,gpt-4o"]) == (
        "judge.model (gpt-4o-2024-08-06): OPENAI_API_KEY is not set: export it (use any non-empty value for a local "
        "server without auth)")


def test_split_cells_and_the_skipped_file(compose, tmp_path):
    from uf_experiments.config.cells import SkippedCell, only_valid, read_skipped, split_cells

    cells = [[f"pool.size={s}", f"sampling.n={n}"] for s in (2, 3) for n in (2, 3)]
    valid, skipped = split_cells(cells, compose)
    assert valid == [cells[0], cells[2], cells[3]]
    reason = "sampling.n=3 must be between 1 and pool.size=2 (n distinct models per prompt)"
    assert skipped == [SkippedCell(["pool.size=2", "sampling.n=3"], reason)]
    batches = only_valid([cells[:2], cells[2:]], compose, tmp_path)
    assert batches == [[cells[0]], cells[2:]]
    assert json.loads((tmp_path / "skipped_cells.json").read_text()) == [
        {"overrides": ["pool.size=2", "sampling.n=3"], "reason": reason}]
    assert read_skipped(tmp_path) == skipped
    with pytest.raises(ConfigError, match=r"^none of the 2 sweep cells can run; the first: sampling.n=3 "):
        only_valid([[cells[1], ["pool.size=2", "sampling.n=4"]]], compose, tmp_path / "none")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib_local", "submitit_local"])
def test_a_sweep_runs_its_valid_cells_and_lists_the_skipped_ones(tmp_path, launcher):
    from tests.helpers.fake_openai import FakeJudge

    sweep = tmp_path / "sweep"
    given = ["pool=served", "pool.models=[gen-a,gen-b,gen-c]", "pool.size=2,3", "sampling.n=2,3", "judge=served",
             "judge.model.path=judge-x", "dataset.limit=3", "tracking=none", f"cache.path={tmp_path / 'c.sqlite'}"]
    launch = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    with FakeJudge() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        proc = subprocess.run([sys.executable, "-m", "uf_experiments", "-m", *launch, *given,
                               f"hydra.sweep.dir={sweep}"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reason = "sampling.n=3 must be between 1 and pool.size=2 (n distinct models per prompt)"
    assert [ln for ln in proc.stderr.splitlines() if "skipped" in ln] == [
        f"skipped sweep cell pool.size=2 sampling.n=3: {reason}"]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())  # not compare/, .submitit/
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1", "2"]  # the valid cells only, numbered from 0
    ran = set()
    for job in jobs:
        assert (job / "summary.json").is_file()
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        ran.add((cfg["pool"]["size"], cfg["sampling"]["n"]))
    assert ran == {(2, 2), (3, 2), (3, 3)}
    cell = [o.replace("pool.size=2,3", "pool.size=2").replace("sampling.n=2,3", "sampling.n=3") for o in given]
    assert json.loads((sweep / "skipped_cells.json").read_text()) == [{"overrides": cell, "reason": reason}]
    # the sweep's comparison (run by its callback) shows the cell as skipped, with the reason
    assert "compare: 3 runs, 1 cell skipped:" in proc.stdout
    md = (sweep / "compare" / "compare.md").read_text()
    rows = [ln.split(" | ")[1:4] for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert sorted(rows) == [["2", "2", "done"], ["2", "3", "skipped"], ["3", "2", "done"], ["3", "3", "done"]]
    assert f"- skipped cell pool.size=2, sampling.n=3: {reason}" in md.splitlines()
