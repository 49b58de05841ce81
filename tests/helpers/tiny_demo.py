"""The suite's one CLI demo run on real tiny vLLM engines (a pytest plugin: ``tests/conftest.py`` loads it).

``tiny_demo_run`` (session): ``uf-experiments`` in a subprocess with ``pool=tiny``, 6 demo prompts, a pool of 3,
2 completions each, seed 7, W&B offline, its own request cache (``<run>/../cache.sqlite``); the console it printed
is kept in ``<run>/../console.txt``. test_cli_e2e.py reads its files, console and W&B run; test_ray.py compares its
``execution=ray`` run with it (same overrides, a fresh cache), which is also the suite's same-seed
reproducibility check; a rejudge (test_rejudge.py) and a fully cached rerun (test_attribution.py) read its cache.
They are all in the xdist group ``ray``, so one worker builds it once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "fake-key-must-not-be-logged-7f3a9c"  # in the run's environment; no file of the run may contain it
# The run's overrides (the demo's judge, tiny_judge); test_ray.py adds execution=ray to the same ones.
TINY_DEMO = ["pool=tiny", "dataset.limit=6", "pool.size=3", "sampling.n=2", "seed=7"]


@pytest.fixture(scope="session")
def tiny_demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny-demo") / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "OPENAI_API_KEY": SECRET}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run([sys.executable, "-m", "uf_experiments", *TINY_DEMO, f"hydra.run.dir={run_dir}",
                           f"cache.path={run_dir.parent / 'cache.sqlite'}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir.parent / "console.txt").write_text(proc.stdout + proc.stderr)  # what the user saw
    return run_dir


def cache_copy(run_dir: Path, dest: Path) -> Path:
    """A copy of the tiny demo run's request cache at ``dest``, so a test reads its answers without changing them for
    the others."""
    with sqlite3.connect(run_dir.parent / "cache.sqlite") as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    return dest
