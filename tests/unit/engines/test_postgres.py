"""The PostgreSQL request cache against a real server (tests/helpers/postgres.py): what it says about a database it
cannot use, passwords, a connection lost and found again, a server that stays away; and the SQLite file on a
network filesystem."""

from __future__ import annotations

import logging

import pytest

from tests.helpers.postgres import PASSWORD, PgServer
from uf_experiments.config import ConfigError, SetupError, resolve, typed, validate
from uf_experiments.config.schema import CacheConfig
from uf_experiments.core.dburl import has_password, redact
from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.cache import RequestCache, spill_file
from uf_experiments.pipeline.caches import open_cache, open_database


def req(i: int) -> Request:
    return Request(model="m", messages=({"role": "user", "content": f"q{i}"},), max_tokens=8, temperature=1.0,
                   top_p=1.0, seed=i)


def answer(i: int) -> Completion:
    return Completion(req(i), f"answer {i} ✓", Usage(3, 4, 0), "stop", cost_usd=0.001 * i)


def problem_line(url: str, port: int) -> str:
    with pytest.raises(ConfigError) as info:
        open_database(CacheConfig(url=url))
    return str(info.value).replace(f":{port}/", ":5432/")


def test_a_database_the_run_cannot_use_is_one_line_with_the_fix(pg_server: PgServer, pg_url: str, monkeypatch):
    port = pg_server.port
    db = pg_url.rsplit("/", 1)[1]
    with pg_server.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS reader")
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
    cases = [
        ("postgresql://uf@127.0.0.1:9/uf", PASSWORD,
         "cache.url=postgresql://uf@127.0.0.1:9/uf: cannot connect (Connection refused): start the server or fix the "
         "host and port in cache.url (or drop cache.url to use the SQLite file cache.path on one machine)"),
        (pg_url, "wrong",
         f"cache.url=postgresql://uf@127.0.0.1:5432/{db}: the server refused the login (password authentication "
         'failed for user "uf"): put the password in PGPASSWORD or ~/.pgpass (never in cache.url), or fix the user '
         "name"),
        (pg_url, None,
         f"cache.url=postgresql://uf@127.0.0.1:5432/{db}: the server refused the login (fe_sendauth: no password "
         "supplied): put the password in PGPASSWORD or ~/.pgpass (never in cache.url), or fix the user name"),
        (pg_url.rsplit("/", 1)[0] + "/nodb", PASSWORD,
         'cache.url=postgresql://uf@127.0.0.1:5432/nodb: database "nodb" does not exist: create it (createdb -O USER '
         "DB) or fix the database name in cache.url"),
        (pg_url.replace("uf@", "reader@"), "reader-pw",
         f"cache.url=postgresql://reader@127.0.0.1:5432/{db}: no rights to create or write the cache tables "
         "(permission denied for schema public): GRANT CREATE ON SCHEMA public (and ALL ON its tables) TO the "
         "user, or use a database it owns"),
    ]
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")  # no ~/.pgpass of the machine's
    for url, password, line in cases:
        if password is None:
            monkeypatch.delenv("PGPASSWORD", raising=False)
        else:
            monkeypatch.setenv("PGPASSWORD", password)
        assert problem_line(url, port) == line
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    open_database(CacheConfig(url=pg_url)).close()  # the right password: usable, and writable


def test_tables_are_owned_by_a_version_and_a_newer_one_is_refused(pg_url: str):
    RequestCache(pg_url).close()
    cache = RequestCache(pg_url)
    assert cache._db.tables() >= {"completions", "claims", "schema_version"}
    assert cache._db.execute("SELECT component, version FROM schema_version").fetchall() == [("request_cache", 1)]
    cache._db.execute("UPDATE schema_version SET version = 99")
    cache.close()
    with pytest.raises(RuntimeError, match="schema version 99, newer than this uf-experiments knows"):
        RequestCache(pg_url)


def test_a_password_in_the_url_is_refused_and_never_shown(compose):
    url = "postgresql://uf:s3cret@db-host:5432/uf"
    assert has_password(url) and has_password("postgresql://uf@h/db?password=s3cret")
    assert redact(url) == "postgresql://uf@db-host:5432/uf"
    assert redact("postgresql://uf@h/db?sslmode=require&password=s3cret") == "postgresql://uf@h/db?sslmode=require"
    with pytest.raises(SetupError) as info:  # a SetupError: a sweep fails as a whole, before any cell
        validate(resolve(compose([f"cache.url={url}"])))
    assert str(info.value) == ("cache.url=postgresql://uf@db-host:5432/uf (password removed) carries a password: drop "
                               "it from the URL and export PGPASSWORD or put it in ~/.pgpass")
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="^cache.url must be a PostgreSQL URL"):
        validate(resolve(compose(["cache.url=mysql://uf@h/db"])))


def test_a_sqlite_cache_on_a_network_filesystem_is_refused(compose, tmp_path, monkeypatch):
    from uf_experiments.engines import sqlite

    assert sqlite.network_fs(tmp_path) is None and isinstance(sqlite.statfs_type(tmp_path / "not" / "yet"), int)
    path = tmp_path / "requests.sqlite"
    monkeypatch.setattr(sqlite, "statfs_type", lambda p: 0x6969)  # what statfs(2) says on NFS
    with pytest.raises(ConfigError) as info:
        open_cache(typed(compose([f"cache.path={path}"])))
    assert str(info.value) == (
        f"cache.path={path} is on a network filesystem (nfs), where SQLite's locks and WAL break (a request can be "
        "paid twice, the file corrupted): share a PostgreSQL cache instead, cache.url=postgresql://USER@HOST:PORT/DB "
        "(or cache.allow_network_fs=true at your own risk)")
    assert not path.exists()
    monkeypatch.setattr(sqlite, "statfs_type", lambda p: 0x0BD00BD0)
    assert sqlite.network_fs(path) == "lustre"
    open_cache(typed(compose([f"cache.path={path}", "cache.allow_network_fs=true"]))).close()
    assert path.exists()


def test_a_restarted_server_is_reconnected_and_nothing_is_lost(pg_server: PgServer, pg_url: str):
    cache = RequestCache(pg_url, claim_ttl_s=60)
    cache.put("e", answer(1))
    assert cache.claim("e", [req(2), req(3)]) == ([req(2), req(3)], [])
    pg_server.stop()
    pg_server.start()  # every connection the cache held is gone
    cache.put("e", answer(2))  # the lost connection is found at once, reopened, and the answer stored
    assert cache.down is None
    assert sorted(c.text for c in cache.get_many("e", [req(1), req(2), req(3)]).values()) == ["answer 1 ✓",
                                                                                              "answer 2 ✓"]
    other = RequestCache(pg_url, claim_ttl_s=60)
    assert other.claim("e", [req(3)]) == ([], [req(3)])  # the claim made before the restart still holds
    other.close()
    cache.close()


def test_a_server_that_stays_away_stops_the_run_and_its_answers_wait_on_this_machine(
        pg_server: PgServer, pg_url: str, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = RequestCache(pg_url, reconnect_s=0.5)
    told: list[str] = []
    cache.on_down = told.append
    cache.put("e", answer(1))
    pg_server.stop()
    try:
        cache.put("e", answer(2))  # paid, arrives while the server is away
        assert len(told) == 1 and told[0].startswith(f"the request cache {pg_url} is unreachable (")
        assert cache.get_many("e", [req(1)]) == {}  # down: lookups miss, the run has been told to stop
        assert cache.claim("e", [req(5)]) == ([], [])
        cache.put("e", answer(3))
        with caplog.at_level(logging.WARNING, logger="uf_experiments.engines.cache"):
            cache.close()  # still away: the two answers are kept on this machine
        assert spill_file(pg_url).is_file()
        assert "2 answers kept in" in caplog.text
    finally:
        pg_server.start()
    again = RequestCache(pg_url)  # the next run with the same cache.url stores them first
    assert not spill_file(pg_url).exists()
    got = again.get_many("e", [req(1), req(2), req(3)])
    assert sorted((c.text, c.cost_usd) for c in got.values()) == [("answer 1 ✓", 0.001), ("answer 2 ✓", 0.002),
                                                                   ("answer 3 ✓", 0.003)]
    again.close()


def test_the_batch_apis_state_goes_to_the_same_database(compose, pg_url: str, monkeypatch):
    """``batch=true`` with ``cache.url``: the Batch API engine keeps its batches in cache.url's database."""
    from uf_experiments.engines.build import build_engine
    from uf_experiments.engines.openai.batch import OpenAIBatchEngine

    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    cfg = resolve(compose(["batch=true", "judge=gpt-4o", f"cache.url={pg_url}"]))
    validate(cfg)
    model = typed(cfg).judge.model
    assert model.engine["state_path"] == pg_url
    engine = build_engine(model, model.path)
    assert isinstance(engine, OpenAIBatchEngine)
    state = engine._db()
    state.record("file-1", "engine-id", model.path, ["k1"])
    engine.close()
    cache = RequestCache(pg_url)
    assert cache._db.execute("SELECT input_file_id, model, status FROM batches").fetchall() == [
        ("file-1", model.path, "creating")]
    cache.close()
