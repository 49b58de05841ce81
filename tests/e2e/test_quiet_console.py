"""The demo's console at the default ``log_level``: one ``loaded in`` line per engine, no vLLM config dump or INFO
line, no progress bar of vLLM's; the run dir's uf-experiments.log keeps vLLM's INFO lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_cli_e2e import REPO, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_the_demo_console_has_one_line_per_engine_and_no_vllm_info(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = run_cli("dataset.limit=2", "pool.size=2", "sampling.n=2", "tracking=none", f"hydra.run.dir={run_dir}",
                   cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    assert max(len(ln) for ln in lines) <= 300, max(lines, key=len)[:400]
    vllm_format_info = re.compile(r"\) INFO .*\[\w+\.py:\d+\]")  # vLLM's own handler's INFO line
    assert not [ln for ln in lines if "Initializing a V1 LLM engine" in ln or vllm_format_info.search(ln)]
    assert not [ln for ln in lines if "[vllm" in ln and "][INFO]" in ln]
    assert not [ln for ln in lines if "Loading safetensors checkpoint shards" in ln or "Processed prompts" in ln]
    loaded = [m.group(1) for ln in lines if (m := re.search(r"\] - (\w+): loaded in \d+\.\d s$", ln))]
    assert sorted(loaded) == ["tiny_a", "tiny_b", "tiny_judge"]
    assert "2 rated rows" in proc.stdout + proc.stderr
    log_file = (run_dir / "uf-experiments.log").read_text()
    assert log_file.count("Initializing a V1 LLM engine") == 3  # vLLM's INFO lines go to the file
    assert "][vllm." in log_file
