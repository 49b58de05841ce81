"""``--help``, ``--version`` and ``plan=true`` (the demo's tiny models and a served pool) import none of the heavy
optional packages: each command runs in a fresh interpreter that lists, at exit, which of them it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("openai", "datasets", "wandb", "vllm", "torch", "pyarrow", "transformers")
pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess

WRAPPER = (
    "import atexit, json, sys\n"
    f"atexit.register(lambda: print('IMPORTED ' + json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules))))\n"
    "sys.argv = ['uf-experiments', *sys.argv[1:]]\n"
    "from uf_experiments.cli.app import main\n"
    "main()\n"
)


def imported(tmp_path: Path, *args: str) -> list[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("IMPORTED ")][-1]
    return json.loads(line.removeprefix("IMPORTED "))


@pytest.mark.parametrize("args", [
    ("--help",),
    ("--version",),
    ("plan=true", "pool=served", "pool.models=[gen-a,gen-b]", "judge=served", "judge.model.path=judge-x"),
])
def test_nothing_heavy(tmp_path, args):
    assert imported(tmp_path, *args, f"hydra.run.dir={tmp_path / 'run'}") == []


def test_plan_on_the_demo_imports_nothing_heavy(tmp_path):
    imported(tmp_path, "plan=true", f"hydra.run.dir={tmp_path / 'first'}")  # builds the tiny models if missing
    assert imported(tmp_path, "plan=true", f"hydra.run.dir={tmp_path / 'run'}") == []
    assert json.loads((tmp_path / "run" / "plan.json").read_text())  # the plan was made
