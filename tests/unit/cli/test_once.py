"""A single run is composed once (cli/once.py): the check and the run share the composition, and ``.hydra/``
records the run as ``@hydra.main`` did (``hydra.mode=RUN`` among the hydra overrides)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # the CLI in a subprocess

COUNTING = (
    "import sys\n"
    "from hydra._internal.config_loader_impl import ConfigLoaderImpl\n"
    "real = ConfigLoaderImpl.load_configuration\n"
    "calls = []\n"
    "def counted(self, *a, **k):\n"
    "    calls.append(k.get('run_mode'))\n"
    "    return real(self, *a, **k)\n"
    "ConfigLoaderImpl.load_configuration = counted\n"
    "sys.argv = ['uf-experiments', *sys.argv[1:]]\n"
    "from uf_experiments.cli.app import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print('COMPOSED', len(calls))\n"
)
SERVED = ["pool=served", "pool.models=[gen-a,gen-b]", "judge=served", "judge.model.path=judge-x", "plan=true"]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    return subprocess.run([sys.executable, "-c", COUNTING, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_single_run_is_composed_once_and_recorded_as_before(tmp_path):
    run_dir = tmp_path / "run"
    proc = run(tmp_path, *SERVED, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "COMPOSED 1" in proc.stdout
    hydra = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["mode"] == "RUN"
    assert hydra["overrides"]["hydra"] == [f"hydra.run.dir={run_dir}", "hydra.mode=RUN"]
    assert hydra["overrides"]["task"] == SERVED
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == SERVED
    assert (run_dir / "plan.json").is_file()


@pytest.mark.parametrize("args, line", [
    (["pool.size=abc"], "error: Error merging override pool.size=abc"),
    ([*SERVED, "sampling.n=5"], "error: sampling.n=5 must be between 1 and pool.size=2"),
])
def test_bad_input_is_one_line_before_the_run_dir(tmp_path, args, line):
    run_dir = tmp_path / "run"
    proc = run(tmp_path, *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")] == [proc.stderr.strip()]
    assert proc.stderr.startswith(line)
    assert "COMPOSED 1" in proc.stdout and not run_dir.exists()
