"""Fair, cheap sweeps: nested cells, n-growth, the experiments' grids, launchers, and a real joblib sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hydra.utils import get_class

from uf_experiments.config import validate
from uf_experiments.data import load_prompts
from uf_experiments.requests import generation_requests

REPO = Path(__file__).resolve().parents[1]


def requests_for(compose, *overrides: str):
    cfg = compose(["principles=paper_code", *overrides])
    validate(cfg)
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
            validate(compose(["experiment=pool_sweep", f"pool.size={size}", f"sampling.n={n}"]))


def test_paper_replication_is_the_papers_recipe(compose, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = compose(["experiment=paper_replication"])
    validate(cfg)
    assert (cfg.sampling.n, cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.max_new_tokens) == (4, 1.0, 1.0, 1024)
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
@pytest.mark.vllm
def test_parallel_joblib_sweep_generates_each_distinct_completion_once(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "uf_experiments", "-m", "hydra/launcher=joblib_local", "pool.size=2,3,4",
         "sampling.n=2", "dataset.limit=8", "tracking=none", f"cache.path={tmp_path / 'cache.sqlite'}",
         f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    triples: dict[tuple[str, str, int], str] = {}
    engine_calls = 0
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name != "compare")  # compare/: the sweep's report
    assert len(jobs) == 3 and (sweep / "compare" / "compare.csv").is_file()
    for job in jobs:
        engine_calls += json.loads((job / "summary.json").read_text())["generation"]["engine_calls"]
        for row in pq.read_table(job / "rated.parquet").to_pylist():
            for model, text in zip(row["generation_models"], row["generations"]):
                key = (row["prompt_id"], model, 0)
                assert triples.setdefault(key, text) == text  # a completion is the same in every cell
    assert engine_calls == len(triples)  # each distinct (prompt, model, index) generated exactly once
