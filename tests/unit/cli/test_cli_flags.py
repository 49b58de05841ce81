"""The flags handled before or by Hydra: --version, and the --help page (conf/hydra/help/uf.yaml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[3]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uf_experiments", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def test_version(tmp_path):
    from uf_experiments import __version__, package_version

    assert __version__ == package_version() == VERSION
    proc = cli("--version", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"uf-experiments {VERSION}\n", "")
    assert not (tmp_path / "outputs").exists()


def test_help_puts_what_it_does_the_knobs_and_examples_before_the_groups(tmp_path):
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = proc.stdout
    sections = ["uf-experiments: UltraFeedback-style preference data.", "== The knobs used most ==", "== Examples ==",
                "== Where things go ==", "== Configuration groups ==", "Docs: README.md"]
    at = [page.index(s) for s in sections]
    assert at == sorted(at) and at[0] == 0
    knobs = page[at[1]:at[2]]
    for knob in ("seed=", "dataset.limit=", "pool.size=", "sampling.n=", "judge=", "aspect=[", "plan=true",
                 "log_level="):
        assert f"\n  {knob}" in knobs, knob
    examples = page[at[2]:at[3]]
    assert "\n  uf-experiments  " in examples  # the demo
    assert "uf-experiments -m pool=tiny pool.size=2,4 sampling.n=2,3" in examples
    assert "uf-experiments experiment=rejudge dataset.path=" in examples
    assert "outputs/runs/DATE/TIME_EXPERIMENT/" in page[at[3]:at[4]]
    groups = page[at[4]:at[5]]
    assert "\npool: none, openai, paper_open, seed, served, smollm2, tiny\n" in groups
    assert "\nexperiment: api_quickstart, demo," in groups
    assert "== Config ==" not in page  # Hydra's default page dumps the whole config; `--cfg job` does that
    assert not (tmp_path / "outputs").exists()


def test_help_lists_the_groups_of_a_user_config_dir(tmp_path):
    proc = cli("--config-dir", str(REPO / "examples" / "my_conf"), "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\npool: my_pool, none, openai, paper_open, seed, served, smollm2, tiny\n" in proc.stdout
    assert "experiment: api_quickstart, demo, demo_tiny, my_experiment," in proc.stdout
