"""The PostgreSQL backend (:class:`PgDb`, see ``engines/db.py``) of the request cache and the Batch API's
bookkeeping, for jobs on several machines (``cache.url=postgresql://USER@HOST:PORT/DB``). psycopg 3.

- The password comes from ``PGPASSWORD`` or ``~/.pgpass`` (libpq reads both); a URL carrying one is refused by
  the config check, and every message names the URL without it (:func:`~uf_experiments.engines.db.redact`).
- Autocommit: each statement commits by itself, visible to every other job at once. ``synchronous_commit=off``:
  the commit does not wait for the WAL to reach the disk (the server flushes it within a fraction of a second),
  the same promise as the SQLite file's ``synchronous=NORMAL``: a killed client loses nothing, the database is
  never corrupt, only a crash of the database server can drop the last instants of answers (asked again then).
  With it a stored answer costs ~0.2 ms instead of a disk flush (3.6 ms on the benchmark machine).
- :meth:`transaction` is a transaction holding one advisory lock, so claims and batch records are read and
  written by one job at a time, as SQLite's ``BEGIN IMMEDIATE`` does.
- A lost connection (the server restarted, a network blip) is reopened for up to ``reconnect_s``
  (:meth:`reconnect`); the caller re-runs what failed (``engines/cache.py``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from uf_experiments.core.dburl import redact
from uf_experiments.engines.base import CacheDown

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("cache.url=postgresql://... needs psycopg 3: pip install 'psycopg[binary]>=3.1' "
                      "(or pip install 'uf-experiments[postgres]')") from exc

LOCK_ID = 0x75662D6578  # "uf-ex": the advisory lock every cache transaction holds
CHUNK = 5000  # keys per ``= ANY(%s)`` array


@lru_cache(maxsize=256)
def pg_sql(sql: str) -> str:
    """The common dialect (``engines/db.py``) in PostgreSQL's: placeholders, column types, key lists."""
    sql = sql.replace("IN ({keys})", "= ANY(?)").replace("%", "%%").replace("?", "%s")
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", re.sub(r"\bINTEGER\b", "BIGINT", sql))


class PgDb:
    """One autocommit psycopg connection to the cache database."""

    kind = "postgres"

    def __init__(self, url: str, timeout_s: float = 60.0, reconnect_s: float = 60.0) -> None:
        self.url = url
        self.where = redact(url)
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(2, int(min(self.timeout_s, 10))),
                               application_name="uf-experiments")
        conn.execute(f"SET lock_timeout = {int(self.timeout_s * 1000)}")
        conn.execute("SET synchronous_commit = off")  # see the module's docstring
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.conn.execute(pg_sql(sql), list(params) or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(pg_sql(sql), rows)

    def create(self, ddl: str) -> None:
        with self.transaction():  # concurrent CREATE TABLE IF NOT EXISTS can collide: one creator at a time
            self.conn.execute(pg_sql(ddl))

    def in_chunks(self, sql: str, keys: Sequence[Any], params: Sequence[Any] = ()) -> list[tuple]:
        rows: list[tuple] = []
        for start in range(0, len(keys), CHUNK):
            cur = self.execute(sql, [*params, list(keys[start : start + CHUNK])])
            if cur.description is not None:  # a SELECT (a DELETE returns no rows)
                rows += cur.fetchall()
        return rows

    def select_in(self, head: str, keys: Sequence[Any], column: str = "key", tail: str = "") -> list[tuple]:
        return self.in_chunks(f"{head} WHERE {column} IN ({{keys}}){tail}", keys)

    @contextmanager
    def transaction(self) -> Iterator[PgDb]:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            yield self

    def columns(self, table: str) -> list[str]:
        return [c for (c,) in self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND "
            "table_name = %s ORDER BY ordinal_position", (table,))]

    def tables(self) -> set[str]:
        return {t for (t,) in self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}

    def reopen(self) -> PgDb:
        return PgDb(self.url, self.timeout_s, self.reconnect_s)

    def lost(self, exc: BaseException) -> bool:
        """True if ``exc`` means the connection is gone (not a bad statement)."""
        return isinstance(exc, psycopg.OperationalError) and (self.conn.closed or self.conn.broken)

    def reconnect(self, window_s: float | None = None) -> None:
        """Reopen the connection, trying for up to ``window_s`` (default ``reconnect_s``); :class:`CacheDown` if the
        server stays away."""
        window_s = self.reconnect_s if window_s is None else window_s
        deadline = time.monotonic() + window_s
        last: Exception | None = None
        while True:
            try:
                self.conn.close()
                self.conn = self._connect()
                return
            except psycopg.OperationalError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise CacheDown(f"the request cache {self.where} is unreachable ({first_line(last)}) after "
                                f"{window_s:.0f} s of reconnecting") from last
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def close(self) -> None:
        self.conn.close()


def first_line(exc: BaseException | None) -> str:
    """libpq's reason, without its ``connection failed: connection to server at ..., port N failed:`` and
    ``FATAL:`` prefixes (the URL already says where)."""
    text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else type(exc).__name__
    text = re.sub(r"^connection failed: connection to server at .*? failed: ", "", text)
    return re.sub(r"^(FATAL|ERROR):\s+", "", text)


def problem(url: str, exc: BaseException, key: str = "cache.url") -> str:
    """One line for a cache database that cannot be used: what is wrong with ``url`` (shown without a password,
    as ``key=URL``, or alone with ``key=""``) and the fix."""
    where = f"{key}={redact(url)}" if key else redact(url)
    fix_in = key or "the URL"
    state = getattr(getattr(exc, "diag", None), "sqlstate", None) or ""
    text = first_line(exc)
    if state in ("28P01", "28000") or "password" in text or "authentication" in text:
        return (f"{where}: the server refused the login ({text}): put the password in PGPASSWORD or ~/.pgpass "
                f"(never in {fix_in}), or fix the user name")
    if state == "3D000" or re.match(r'database ".*" does not exist', text):
        return f"{where}: {text}: create it (createdb -O USER DB) or fix the database name in {fix_in}"
    if state == "42501" or "permission denied" in text:
        return (f"{where}: no rights to create or write the cache tables ({text}): GRANT CREATE ON SCHEMA public "
                "(and ALL ON its tables) TO the user, or use a database it owns")
    return (f"{where}: cannot connect ({text}): start the server or fix the host and port in {fix_in}"
            + (" (or drop cache.url to use the SQLite file cache.path on one machine)" if key == "cache.url" else ""))
