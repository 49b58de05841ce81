"""The bad-input table of docs/bad-input.md, one test per row: what the user gives, the exact line they see, what
was spent.

Rows whose line comes from the command line itself run the real CLI in a subprocess (``slow``); the others call
the check that produces the line (preflight, check_inputs, the sweeper's cell filter) in-process, and the CLI
prints it as ``error: <message>``. docs/bad-input.md must show exactly this table (``test_the_docs_show_the_table``;
``python -m tests.e2e.test_bad_input`` prints it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = "http://127.0.0.1:8000/v1"  # how docs/bad-input.md writes the fake server's address
NOTHING = "nothing: it stops before any model is loaded or called"
PG, PG_DOWN = "postgresql://uf@127.0.0.1:5432/uf", "postgresql://uf@127.0.0.1:9/uf"  # how the docs write the URLs
PG_READER = "postgresql://reader@127.0.0.1:5432/uf"


@dataclass(frozen=True)
class Row:
    id: str
    given: str  # docs/bad-input.md: the input
    sees: str  # docs/bad-input.md: the exact line on stderr
    spent: str = NOTHING  # docs/bad-input.md: whether anything was spent
    cli: list[str] = field(default_factory=list)  # run as `uf-experiments <cli>` (a slow test) when set
    env: dict[str, str | None] = field(default_factory=dict)  # the CLI's environment changes (None: unset)


ROWS = [
    Row("missing-key", "`uf-experiments judge=gpt-4o` without `OPENAI_API_KEY`",
        "error: judge.model (gpt-4o-2024-08-06): OPENAI_API_KEY is not set: export it (use any non-empty value for "
        "a local server without auth)", cli=["judge=gpt-4o"], env={"OPENAI_API_KEY": None}),
    Row("closed-port", "`OPENAI_BASE_URL=http://127.0.0.1:9/v1 uf-experiments judge=gpt-4o` (nothing listens there)",
        "error: judge.model gpt-4o-2024-08-06 at http://127.0.0.1:9/v1: connection refused — start the server or "
        "fix OPENAI_BASE_URL / judge.model.engine.base_url", "nothing: the endpoint is probed before any request"),
    Row("unresolvable-host", "`judge=gpt-4o judge.model.engine.base_url=http://nonexistent.invalid/v1`",
        "error: judge.model gpt-4o-2024-08-06 at http://nonexistent.invalid/v1: cannot resolve host "
        "nonexistent.invalid — check the spelling in judge.model.engine.base_url, and the network",
        "nothing: the endpoint is probed before any request"),
    Row("key-refused", f"`judge=served judge.model.path=judge-x`, a server at {SERVER} that answers 401",
        f"error: judge.model judge-x at {SERVER}: the key was refused (HTTP 401) — check OPENAI_API_KEY (any "
        "non-empty value for a local server without auth)", "nothing: the endpoint is probed before any request"),
    Row("unknown-served-model", "`pool=served pool.models=[gen-a,gen-z]`, a server that lists gen-a and judge-x and "
        "answers a request for gen-z with 404 `model_not_found`",
        f"error: pool.models: gen-z is not served by {SERVER} (it serves: gen-a, judge-x) — fix the name in "
        "pool.models=[...], or point pool.base_url at the server that has it",
        "one `max_tokens: 1` request, for gen-z (the name /models leaves out); nothing else"),
    Row("bad-dataset-path", "`dataset=local dataset.path=/data/nope.jsonl` (no such file)",
        "error: dataset.path=/data/nope.jsonl does not exist: pass an existing .jsonl/.json/.parquet/.csv file"),
    Row("unreadable-file", "`dataset=local dataset.path=prompts.jsonl`, a line of it is not JSON",
        "error: dataset.path=prompts.jsonl cannot be read as jsonl (line 2: Expecting property name enclosed in "
        "double quotes): fix the file or pass another"),
    Row("missing-column", "`dataset=local dataset.path=prompts.jsonl`, rows `{\"prompt\": ..., \"source\": ...}`",
        "error: dataset.path=prompts.jsonl has no column 'instruction' for the instruction (columns: prompt, "
        "source); map yours with dataset.columns.instruction=NAME"),
    Row("empty-prompts", "`dataset=local dataset.path=prompts.jsonl`, every instruction empty or blank",
        "error: dataset.path=prompts.jsonl: all 3 rows have an empty 'instruction', nothing to run: check the data, "
        "or map another column with dataset.columns.instruction=NAME"),
    Row("hub-offline", "`dataset=hub dataset.repo_id=nobody/no-such-dataset` with `HF_HUB_OFFLINE=1 "
        "HF_DATASETS_OFFLINE=1`, not in the local cache",
        "error: dataset.repo_id=nobody/no-such-dataset is not in the local Hugging Face cache and the Hub is switched "
        "off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set): unset it to download the dataset, or check the spelling "
        "of dataset.repo_id"),
    Row("hub-typo", "`dataset=hub dataset.repo_id=HuggingFaceH4/instruction-datset` (a typo; the Hub answers 404)",
        "error: dataset.repo_id=HuggingFaceH4/instruction-datset was not found on the Hugging Face Hub: check the "
        "spelling (OWNER/NAME); a private or gated dataset needs HF_TOKEN with access",
        cli=["dataset=hub", "dataset.repo_id=HuggingFaceH4/instruction-datset", "tracking=none"]),
    Row("bad-override", "`uf-experiments pool.size=abc`",
        "error: Error merging override pool.size=abc; Value 'abc' of type 'str' could not be converted to Integer",
        cli=["pool.size=abc"]),
    Row("unknown-key", "`uf-experiments pool.sizee=3` (a typo in a key)",
        "error: Could not override 'pool.sizee'.; To append to your config use +pool.sizee=3; Key 'sizee' not in "
        "'PoolConfig'", cli=["pool.sizee=3"]),
    Row("bad-sweep-value", "`uf-experiments -m pool.size=2,abc`",
        "error: Error merging override pool.size=abc; Value 'abc' of type 'str' could not be converted to Integer",
        "nothing: every value of the sweep is composed before any job starts", cli=["-m", "pool.size=2,abc"]),
    Row("sweep-invalid-cell", "`uf-experiments -m pool=tiny pool.size=2,3 sampling.n=2,3` (the cell pool.size=2, "
        "sampling.n=3 cannot run)",
        "skipped sweep cell pool.size=2 sampling.n=3: sampling.n=3 must be between 1 and pool.size=2 (n distinct "
        "models per prompt)",
        "nothing for that cell: the other 3 run; it is listed in `skipped_cells.json` and by the compare command"),
    Row("sweep-no-valid-cell", "`uf-experiments -m pool.size=2 sampling.n=3,4`",
        "error: none of the 2 sweep cells can run; the first: sampling.n=3 must be between 1 and pool.size=2 "
        "(n distinct models per prompt) (in the sweep cell sampling.n=3)",
        cli=["-m", "pool.size=2", "sampling.n=3,4"]),
    Row("n-above-pool-size", "`uf-experiments sampling.n=5 pool.size=4`",
        "error: sampling.n=5 must be between 1 and pool.size=4 (n distinct models per prompt)",
        cli=["sampling.n=5", "pool.size=4"]),
    Row("unknown-aspect", "`uf-experiments aspect=[nope]`",
        "error: In 'config': Could not load 'aspect/nope'. (available: critique, helpfulness, honesty, "
        "instruction_following, overall_rating, truthfulness)", cli=["aspect=[nope]"]),
    Row("budget-not-a-number", "`uf-experiments budget_usd=abc`",
        "error: Error merging override budget_usd=abc; Value 'abc' of type 'str' could not be converted to Float",
        cli=["budget_usd=abc"]),
    Row("budget-negative", "`uf-experiments budget_usd=-1`",
        "error: budget_usd=-1.0 must be a number of dollars >= 0, e.g. budget_usd=5 (or null for no budget)",
        cli=["budget_usd=-1"]),
    Row("cache-unwritable", "`uf-experiments cache.path=/proc/x/requests.sqlite`",
        "error: cache.path=/proc/x/requests.sqlite cannot be written (No such file or directory): pass a writable "
        "cache.path=DIR/requests.sqlite (or cache.enabled=false)"),
    Row("cache-url-password", "`uf-experiments cache.url=postgresql://uf:s3cret@db-host:5432/uf`",
        "error: cache.url=postgresql://uf@db-host:5432/uf (password removed) carries a password: drop it from the URL "
        "and export PGPASSWORD or put it in ~/.pgpass", "nothing: it stops before Hydra writes the run dir",
        cli=["cache.url=postgresql://uf:s3cret@db-host:5432/uf"]),
    Row("cache-network-fs", "`uf-experiments cache.path=/shared/requests.sqlite`, /shared on NFS (statfs says so)",
        "error: cache.path=/shared/requests.sqlite is on a network filesystem (nfs), where SQLite's locks and WAL "
        "break (a request can be paid twice, the file corrupted): share a PostgreSQL cache instead, "
        "cache.url=postgresql://USER@HOST:PORT/DB (or cache.allow_network_fs=true at your own risk)"),
    Row("cache-db-unreachable", f"`uf-experiments cache.url={PG_DOWN}` (nothing listens there)",
        f"error: cache.url={PG_DOWN}: cannot connect (Connection refused): start the server or fix the host and "
        "port in cache.url (or drop cache.url to use the SQLite file cache.path on one machine)"),
    Row("cache-db-login-refused", f"`uf-experiments cache.url={PG}` with a wrong `PGPASSWORD`",
        f'error: cache.url={PG}: the server refused the login (password authentication failed for user "uf"): put '
        "the password in PGPASSWORD or ~/.pgpass (never in cache.url), or fix the user name"),
    Row("cache-db-no-rights", f"`uf-experiments cache.url={PG_READER}`, a user who may not create tables there",
        f"error: cache.url={PG_READER}: no rights to create or write the cache tables (permission denied for schema "
        "public): GRANT CREATE ON SCHEMA public (and ALL ON its tables) TO the user, or use a database it owns"),
    Row("push-without-token", "`uf-experiments output.push_to_hub=me/prefs` without `HF_TOKEN` or a login",
        "error: output.push_to_hub=me/prefs needs a Hugging Face token: set HF_TOKEN or run `hf auth login`",
        cli=["output.push_to_hub=me/prefs"], env={"HF_TOKEN": None, "HF_TOKEN_PATH": None}),
    Row("prompt-too-long", "a prompt (or a judge prompt) longer than a vLLM model's `max_model_len`",
        "no error line: that request fails alone with `prompt too long: N tokens > limit L (max_model_len M - "
        "max_tokens K)` (counted in `summary.json`); the others complete",
        "nothing for that request: it is never sent to the engine"),
]
BY_ID = {r.id: r for r in ROWS}


def bad_input_table() -> str:
    lines = ["| input | what you see | spent |", "| --- | --- | --- |"]
    lines += [f"| {r.given} | {_code(r.sees)} | {r.spent} |" for r in ROWS]
    return "\n".join(lines) + "\n"


def _code(line: str) -> str:
    if line.startswith("no error line"):
        return line
    return f"`` {line} ``" if "`" in line else f"`{line}`"


def test_the_docs_show_the_table():
    assert len(ROWS) >= 15
    assert bad_input_table() in (REPO / "docs" / "bad-input.md").read_text(), \
        "print it with: python -m tests.e2e.test_bad_input"


# ----------------------------------------------------------------------------------------------- the CLI rows

CLI_ROWS = [r for r in ROWS if r.cli]


@pytest.fixture(scope="module")
def fake_hub():
    """A Hugging Face Hub that knows no repository (every request: 404 RepoNotFound), on 127.0.0.1."""

    class NotFound(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            data = json.dumps({"error": "Repository not found"}).encode()
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = _answer  # noqa: N815 - http.server's API

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("row", CLI_ROWS, ids=[r.id for r in CLI_ROWS])
def test_cli_row(row: Row, tmp_path: Path, fake_hub: str):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home")}  # no stored token, no cached dataset
    if row.id == "hub-typo":  # the Hub is reachable (the fake one) and says: no such dataset
        env.update({"HF_ENDPOINT": fake_hub, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"})
    for key, value in row.env.items():
        env.pop(key, None) if value is None else env.__setitem__(key, value)
    proc = subprocess.run(
        [sys.executable, "-m", "uf_experiments", *row.cli, *([] if any(a.startswith("pool=") for a in row.cli)
                                                             else ["pool=tiny"]), f"hydra.run.dir={tmp_path / 'run'}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", f"cache.path={tmp_path / 'cache.sqlite'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2  # bad configuration or input (docs/stopping-and-resuming.md, exit codes)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [row.sees], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "s3cret" not in proc.stdout + proc.stderr  # a password is never shown
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "cache.sqlite").exists()  # no model was asked
    if row.id == "hub-typo":  # the job started and stopped on its input: its summary.json says why
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert (summary["stopped"], summary["exit_code"]) == (row.sees.removeprefix("error: "), 2)
    else:  # stopped by the command line's check, before Hydra made a run dir
        assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ in-process rows


def _compose(*overrides: str):
    from tests.conftest import compose_config
    from uf_experiments.config import resolve, validate

    cfg = compose_config(list(overrides))
    validate(resolve(cfg))
    return cfg


def _preflight_line(cfg: Any, env: dict[str, str], server: str | None = None) -> str:
    from uf_experiments.pipeline.preflight import preflight

    problems = preflight(cfg, env=env)
    assert len(problems) == 1, problems
    line = f"error: {problems[0]}"
    return line.replace(server, SERVER) if server else line


def _inputs_line(cfg: Any) -> str:
    from uf_experiments.config import ConfigError
    from uf_experiments.data.sources import check_inputs

    with pytest.raises(ConfigError) as info:
        check_inputs(cfg)
    return f"error: {info.value}"


def closed_port(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    cfg = _compose("judge=gpt-4o")
    return _preflight_line(cfg, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-x"})


def unresolvable_host(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    cfg = _compose("judge=gpt-4o", "judge.model.engine.base_url=http://nonexistent.invalid/v1")
    return _preflight_line(cfg, {"OPENAI_API_KEY": "sk-x"})


def key_refused(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    from tests.helpers.fake_openai import FakeJudge

    cfg = _compose("judge=served", "judge.model.path=judge-x")
    with FakeJudge(status=401) as server:
        return _preflight_line(cfg, {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-wrong"},
                               server.base_url)


def unknown_served_model(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    from tests.helpers.fake_openai import FakeJudge

    cfg = _compose("pool=served", "pool.models=[gen-a,gen-z]", "judge=served", "judge.model.path=judge-x")
    with FakeJudge(models=["gen-a", "judge-x"], unknown_model="404") as server:
        line = _preflight_line(cfg, {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-x"}, server.base_url)
        assert [(b["model"], b["max_tokens"]) for b in server.requests] == [("gen-z", 1)] and server.paid == []
        return line


def _local(tmp: Path, mp: pytest.MonkeyPatch, text: str) -> Any:
    mp.chdir(tmp)
    (tmp / "prompts.jsonl").write_text(text)
    return _compose("dataset=local", "dataset.path=prompts.jsonl", f"cache.path={tmp / 'c.sqlite'}")


def bad_dataset_path(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    return _inputs_line(_compose("dataset=local", "dataset.path=/data/nope.jsonl", f"cache.path={tmp / 'c.sqlite'}"))


def unreadable_file(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    return _inputs_line(_local(tmp, mp, '{"instruction": "a"}\n{instruction: "b"}\n'))


def missing_column(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    return _inputs_line(_local(tmp, mp, '{"prompt": "a", "source": "s"}\n'))


def empty_prompts(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    return _inputs_line(_local(tmp, mp, '{"instruction": ""}\n{"instruction": "   "}\n{"instruction": null}\n'))


def hub_offline(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("HF_HOME", str(tmp / "hf-home"))
    return _inputs_line(_compose("dataset=hub", "dataset.repo_id=nobody/no-such-dataset",
                                 f"cache.path={tmp / 'c.sqlite'}"))


def cache_unwritable(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    return _inputs_line(_compose("cache.path=/proc/x/requests.sqlite"))


def cache_network_fs(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    from uf_experiments.config import ConfigError, typed
    from uf_experiments.engines import sqlite
    from uf_experiments.pipeline.caches import open_cache

    mp.setattr(sqlite, "statfs_type", lambda path: 0x6969)  # NFS's f_type
    with pytest.raises(ConfigError) as info:
        open_cache(typed(_compose("cache.path=/shared/requests.sqlite")))
    return f"error: {info.value}"


def _cache_db_line(url: str, shown: str) -> str:
    from uf_experiments.config import ConfigError, typed
    from uf_experiments.pipeline.caches import open_cache

    with pytest.raises(ConfigError) as info:
        open_cache(typed(_compose(f"cache.url={url}")))
    return f"error: {info.value}".replace(url, shown)


def cache_db_unreachable(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    return _cache_db_line(PG_DOWN, PG_DOWN)


def cache_db_login_refused(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    mp.setenv("PGPASSWORD", "wrong")
    return _cache_db_line(PG_SERVER["server"].create_db(), PG)


def cache_db_no_rights(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    server = PG_SERVER["server"]
    with server.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS reader")
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
    mp.setenv("PGPASSWORD", "reader-pw")
    return _cache_db_line(server.create_db().replace("uf@", "reader@"), PG_READER)


PG_SERVER: dict[str, Any] = {}  # the test PostgreSQL server, for the rows that need one


def sweep_invalid_cell(mp: pytest.MonkeyPatch, tmp: Path) -> str:
    import contextlib
    import io

    from tests.conftest import compose_config
    from uf_experiments.config.cells import only_valid, swept_keys

    cells = [[f"pool.size={s}", f"sampling.n={n}"] for s in (2, 3) for n in (2, 3)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        batches = only_valid([cells], lambda cell: compose_config(["pool=tiny", *cell]), tmp, swept_keys(cells))
    assert batches == [[cells[0], cells[2], cells[3]]]
    assert [c["overrides"] for c in json.loads((tmp / "skipped_cells.json").read_text())] == [cells[1]]
    (line,) = err.getvalue().splitlines()
    return line


IN_PROCESS: dict[str, Callable[[pytest.MonkeyPatch, Path], str]] = {
    "closed-port": closed_port, "unresolvable-host": unresolvable_host, "key-refused": key_refused,
    "unknown-served-model": unknown_served_model, "bad-dataset-path": bad_dataset_path,
    "unreadable-file": unreadable_file, "missing-column": missing_column, "empty-prompts": empty_prompts,
    "hub-offline": hub_offline, "cache-unwritable": cache_unwritable, "sweep-invalid-cell": sweep_invalid_cell,
    "cache-network-fs": cache_network_fs, "cache-db-unreachable": cache_db_unreachable,
    "cache-db-login-refused": cache_db_login_refused, "cache-db-no-rights": cache_db_no_rights,
}


def test_every_row_has_a_test():
    assert {r.id for r in ROWS} == {r.id for r in CLI_ROWS} | set(IN_PROCESS) | {"prompt-too-long"}
    assert not {r.id for r in CLI_ROWS} & set(IN_PROCESS)


@pytest.mark.parametrize("row_id", list(IN_PROCESS))
def test_in_process_row(row_id: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")  # validate() wants one for API models; nothing is sent with it
    if row_id in ("cache-db-login-refused", "cache-db-no-rights"):
        monkeypatch.setitem(PG_SERVER, "server", request.getfixturevalue("pg_server"))
    assert IN_PROCESS[row_id](monkeypatch, tmp_path) == BY_ID[row_id].sees


# ----------------------------------------------------------------------------------- a prompt that cannot fit


@pytest.mark.slow
@pytest.mark.vllm
def test_prompt_too_long_fails_alone(monkeypatch: pytest.MonkeyPatch):
    import re

    from uf_experiments.core.records import Request
    from uf_experiments.engines.base import run_sync
    from uf_experiments.engines.vllm_engine import VLLMEngine
    from uf_experiments.tiny import TinySpec, build_tiny_model

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    engine = VLLMEngine(str(build_tiny_model(TinySpec(seed=11))), {"dtype": "float32", "max_model_len": 512,
                                                                   "enforce_eager": True,
                                                                   "enable_chunked_prefill": False})
    try:
        texts = ["Say hi.", "word " * 2000, "Name a colour.", "Count to three."]
        requests = [Request("tiny", ({"role": "user", "content": t},), 16, 1.0, 1.0, i) for i, t in enumerate(texts)]
        got = run_sync(engine, requests)
    finally:
        engine.close()
    assert got[1].text is None
    assert re.fullmatch(r"prompt too long: \d+ tokens > limit 496 \(max_model_len 512 - max_tokens 16\)", got[1].error)
    assert [c.text is not None for c in got] == [True, False, True, True]  # the others keep their completions


if __name__ == "__main__":
    print(bad_input_table(), end="")
