"""Your own configs without forking: a directory of model/, pool/, judge/ and experiment/ YAMLs
(examples/my_conf) added with ``--config-dir DIR`` or ``hydra.searchpath=[file://DIR]``. Its files use ours and
ours use its; the precheck that composes every job before Hydra runs sees the same search path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.fake_openai import FakeJudge
from uf_experiments.cli.app import hydra_search_args, precheck
from uf_experiments.config import resolve, validate

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "my_conf"


@pytest.fixture
def my_conf(tmp_path: Path) -> Path:
    """The example directory, copied far from the clone (nothing in it may depend on where it lives)."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "my_conf"))


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-only-not-a-key")


def test_a_user_experiment_uses_our_models_and_its_own(compose, my_conf):
    cfg = compose([f"hydra.searchpath=[file://{my_conf}]", "experiment=my_experiment"])
    validate(resolve(cfg))
    assert cfg.experiment == "my_experiment" and cfg.dataset.name == "demo" and cfg.dataset.limit == 6
    assert list(cfg.pool.models) == ["gpt_4o_mini", "my_llama"] and cfg.pool.size == 2
    assert cfg.pool.models.gpt_4o_mini.path == "gpt-4o-mini-2024-07-18"  # conf/model/gpt_4o_mini.yaml, ours
    assert cfg.pool.models.gpt_4o_mini.price.input_per_1m == 0.15
    assert cfg.pool.models.my_llama.path == "my-llama-3-8b" and cfg.pool.models.my_llama.gpu_hour_usd == 1.2
    assert cfg.judge.model.path == "gpt-4.1-mini-2025-04-14" and cfg.judge.output.value == "json"
    assert cfg.judge.max_parse_retries == 1
    assert list(cfg.aspect) == ["helpfulness", "honesty"] and cfg.principles.name == "paper_code"


def test_our_experiment_uses_a_user_pool_and_judge(compose, my_conf):
    cfg = compose([f"hydra.searchpath=[file://{my_conf}]", "experiment=api_quickstart", "pool=my_pool",
                   "judge=my_judge"])
    validate(resolve(cfg))
    assert (cfg.experiment, cfg.dataset.limit, cfg.sampling.n) == ("api_quickstart", 12, 2)  # ours
    assert cfg.pool.name == "my_pool" and cfg.judge.model.path == "gpt-4.1-mini-2025-04-14"  # theirs


@pytest.mark.parametrize(("argv", "expected"), [
    (["pool.size=2"], (["pool.size=2"], "config")),
    (["-m", "pool.size=2,3"], (["pool.size=2,3"], "config")),
    (["--config-dir", "{d}", "x=1"], (["x=1", "hydra.searchpath=[file://{d}]"], "config")),
    (["-cd={d}", "-cn", "mine"], (["hydra.searchpath=[file://{d}]"], "mine")),
    (["--config-dir={d}", "hydra.searchpath=[file:///other]"],
     (["hydra.searchpath=[file://{d},file:///other]"], "config")),
    (["--help"], None),
    (["--cfg", "job"], None),
    (["--config-dir", "{d}/nope"], None),  # Hydra itself names the missing directory
])
def test_hydra_search_args(tmp_path, argv, expected):
    fill = lambda s: s.replace("{d}", str(tmp_path))  # noqa: E731
    got = hydra_search_args([fill(a) for a in argv])
    assert got == (None if expected is None else ([fill(a) for a in expected[0]], expected[1]))


def test_precheck_sees_the_user_configs(my_conf):
    assert precheck(["experiment=my_experiment"]).startswith(
        "In 'config': Could not find 'experiment/my_experiment'")  # unknown without the directory
    assert precheck(["--config-dir", str(my_conf), "experiment=my_experiment"]) is None
    assert precheck([f"hydra.searchpath=[file://{my_conf}]", "experiment=my_experiment"]) is None
    assert precheck([f"--config-dir={my_conf}", "experiment=my_experiment", "pool.size=3"]) == (
        "pool.size=3 must be between 1 and 2 (the roster of pool 'my_pool')")  # validated with the user's pool


def run_cli(*args: str, cwd: Path, base_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "uf_experiments", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_a_user_experiment_runs_against_an_openai_compatible_server(my_conf, tmp_path):
    with FakeJudge() as server:
        proc = run_cli("--config-dir", str(my_conf), "experiment=my_experiment", f"hydra.run.dir={tmp_path / 'run'}",
                       cwd=tmp_path, base_url=server.base_url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    judge_bodies = [b for b in server.paid if "response_format" in b]
    generation_bodies = [b for b in server.paid if "response_format" not in b]
    assert sorted(b["model"] for b in generation_bodies) == ["gpt-4o-mini-2024-07-18"] * 6 + ["my-llama-3-8b"] * 6
    assert len(judge_bodies) == 6 * 2 and {b["model"] for b in judge_bodies} == {"gpt-4.1-mini-2025-04-14"}
    rows = pq.read_table(tmp_path / "run" / "rated.parquet").to_pylist()
    assert len(rows) == 6 and all(sorted(r["generation_models"]) == ["gpt_4o_mini", "my_llama"] for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["generation"]["by_model"]) == {"gpt_4o_mini", "my_llama"}
    assert summary["counts"]["judged"] == 12 and summary["counts"]["parse_failures"] == 0


@pytest.mark.slow
def test_our_experiment_plans_with_a_user_pool_via_hydra_searchpath(my_conf, tmp_path):
    proc = run_cli(f"hydra.searchpath=[file://{my_conf}]", "experiment=api_quickstart", "pool=my_pool", "plan=true",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, base_url="http://127.0.0.1:9/v1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["prompts"] == 12
    assert {m: s["requests"] for m, s in plan["stages"]["generation"].items()} == {"gpt_4o_mini": 12, "my_llama": 12}
