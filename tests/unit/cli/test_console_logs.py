"""``log_level``: the console shows our lines and third parties' warnings; the run dir's uf-experiments.log keeps
every INFO line. A served run (pool and judge behind FakeJudge) through the CLI logs one HTTP INFO line per
request: in the log file always, on the console only with ``log_level=debug`` or ``hydra.verbose=true``."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.fake_openai import FakeJudge
from uf_experiments.core import logs

REPO = Path(__file__).resolve().parents[3]
# the online engine's aiohttp client logs as httpx did (engines/openai/chat.py); httpx2: the openai SDK's client
HTTP_LINE = re.compile(r"\[(httpx2?|aiohttp\.client)\]\[INFO\] - HTTP Request: POST ")


def served_run(tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.CompletedProcess, str, int]:
    """A served run on 2 prompts, W&B offline: (the process, its uf-experiments.log, the requests FakeJudge
    answered)."""
    run_dir = tmp_path / name
    with FakeJudge() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        proc = subprocess.run(
            [sys.executable, "-m", "uf_experiments", "pool=served", "pool.models=[gen-a,gen-b]", "judge=served",
             "judge.model.path=judge-x", "aspect=[honesty]", "dataset.limit=2", "tracking.mode=offline",
             f"cache.path={tmp_path / name / 'cache.sqlite'}", f"hydra.run.dir={run_dir}", *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        answered = len(server.paid)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, (run_dir / "uf-experiments.log").read_text(), answered


@pytest.mark.slow
def test_a_served_run_keeps_http_lines_off_the_console_and_in_the_log_file(tmp_path):
    proc, log_file, answered = served_run(tmp_path, "quiet")
    console = proc.stdout + proc.stderr
    assert answered == 2 * 2 + 2  # 2 completions and 1 judge call per prompt
    assert "HTTP Request" not in console
    assert len(HTTP_LINE.findall(log_file)) >= answered  # every POST in the file
    assert "72 prompts" not in console and "2 prompts (2 rows read" in console  # our INFO lines stay
    assert "gen-a: loaded in" in console and "judge-x: loaded in" in console
    assert "Run summary:" not in console and "Run data is saved locally in" in console  # W&B's quiet mode


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["log_level=debug", "hydra.verbose=true"])
def test_log_level_debug_or_hydra_verbose_bring_the_http_lines_back(tmp_path, flag):
    proc, log_file, answered = served_run(tmp_path, "loud", flag)
    assert len(HTTP_LINE.findall(proc.stdout + proc.stderr)) >= answered
    assert "Run summary:" in proc.stdout + proc.stderr  # W&B says everything too
    assert len(HTTP_LINE.findall(log_file)) >= answered


@pytest.fixture
def console(monkeypatch):
    """A console handler on the root logger as Hydra's job logging makes one (a plain StreamHandler), removed
    afterwards with whatever configure() set; the environment configure() writes is a copy."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    # earlier tests in this process (other files on this worker) may have left these loggers disabled (a logging
    # dictConfig, as Hydra's job logging does, disables the loggers that exist) or with vLLM's own handler
    for name in ("vllm", "vllm.v1", "vllm.v1.worker", "httpx", "uf_experiments", "uf_experiments.pipeline",
                 "uf_experiments.pipeline.worker", "uf_experiments.engines", "uf_experiments.engines.vllm_engine"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "disabled", False)
        monkeypatch.setattr(logger, "propagate", True)
        if name.startswith("vllm"):
            monkeypatch.setattr(logger, "handlers", [])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)
    logs.configure("debug")  # no filter left on other handlers; our logger back to DEBUG -> reset below
    logging.getLogger("uf_experiments").setLevel(logging.NOTSET)


def test_the_console_filter_passes_ours_and_third_party_warnings_once(console):
    os.environ.pop("VLLM_CONFIGURE_LOGGING", None)
    os.environ["VLLM_LOGGING_LEVEL"] = "INFO"  # vLLM's logging is the user's: left alone
    logs.configure("info")
    assert logs.quiet()
    logging.getLogger("uf_experiments.pipeline.worker").info("tiny_a: loaded in 1.0 s")
    logging.getLogger("httpx").info("HTTP Request: POST http://x/v1/chat/completions")
    for _ in range(3):
        logging.getLogger("vllm.v1.worker").warning("CPU backend doesn't allow %s", "this")
    logging.getLogger("vllm.v1.worker").error("the engine died")
    assert console.getvalue().splitlines() == ["tiny_a: loaded in 1.0 s", "CPU backend doesn't allow this",
                                               "the engine died"]
    assert "VLLM_CONFIGURE_LOGGING" not in os.environ
    del os.environ["VLLM_LOGGING_LEVEL"]
    logs.configure("info")  # nothing said about vLLM's logging: it logs through our handlers
    assert os.environ["VLLM_CONFIGURE_LOGGING"] == "0"


def test_debug_removes_the_filter_and_shows_our_debug_lines(console):
    logging.getLogger("httpx").setLevel(logging.WARNING)  # what importing vLLM does, for the whole process
    logs.configure("info")
    logs.configure("debug")
    assert not logs.quiet()
    logging.getLogger("httpx").info("HTTP Request: POST http://x/v1/chat/completions")
    logging.getLogger("uf_experiments.engines.vllm_engine").debug("loading /m into vLLM ({})")
    assert console.getvalue().splitlines() == ["HTTP Request: POST http://x/v1/chat/completions",
                                               "loading /m into vLLM ({})"]


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="log_level=loud is not one of info, debug"):
        logs.configure("loud")
