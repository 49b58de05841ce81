"""The backend seam under the request cache (``engines/cache.py``) and the Batch API's bookkeeping
(``engines/openai/batch_state.py``): one implementation of each over a small :class:`Db`, which is a SQLite file
(``engines/sqlite.py``, the default: one machine) or a PostgreSQL database (``engines/postgres.py``, when
``cache.url=postgresql://USER@HOST:PORT/DB`` is set: jobs on several machines).

The callers write one SQL dialect, the common part of both: ``?`` placeholders, ``INSERT ... ON CONFLICT (key) DO
UPDATE SET col = excluded.col`` / ``DO NOTHING``, ``CREATE TABLE IF NOT EXISTS`` with ``TEXT``, ``INTEGER`` and
``REAL`` columns. The PostgreSQL backend turns placeholders into ``%s``, ``INTEGER`` into ``BIGINT`` and ``REAL``
into ``DOUBLE PRECISION`` (a float round-trips exactly), and ``IN ({keys})`` into ``= ANY(%s)`` (one array
parameter per statement instead of a chunk of placeholders). :meth:`Db.transaction` is SQLite's ``BEGIN
IMMEDIATE`` (one writer at a time) and, on PostgreSQL, a transaction holding one advisory lock: the same
read-then-write guarantee for claims and batch records.

psycopg is imported only when a ``postgresql://`` location is opened.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from uf_experiments.core.dburl import has_password, is_url, redact
from uf_experiments.engines.base import CacheDown

SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
"""
__all__ = ["CacheDown", "Db", "ensure_schema", "has_password", "is_url", "open_db", "redact", "rows_of"]


class Db(Protocol):
    kind: str  # "sqlite" | "postgres"
    where: str  # the file, or the URL without a password: safe to print

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def create(self, ddl: str) -> None: ...
    def in_chunks(self, sql: str, keys: Sequence[Any], params: Sequence[Any] = ()) -> list[tuple]: ...
    def select_in(self, head: str, keys: Sequence[Any], column: str = "key", tail: str = "") -> list[tuple]: ...
    def transaction(self) -> AbstractContextManager[Db]: ...
    def columns(self, table: str) -> list[str]: ...
    def tables(self) -> set[str]: ...
    def reopen(self) -> Db: ...
    def lost(self, exc: BaseException) -> bool: ...
    def reconnect(self, window_s: float | None = None) -> None: ...
    def close(self) -> None: ...


def open_db(location: str | Path, timeout_s: float = 60.0, reconnect_s: float = 60.0,
            check_same_thread: bool = True) -> Db:
    """A connection to the cache at ``location``: a SQLite file path, or a ``postgresql://`` URL."""
    if is_url(location):
        from uf_experiments.engines.postgres import PgDb

        return PgDb(str(location), timeout_s=timeout_s, reconnect_s=reconnect_s)
    from uf_experiments.engines.sqlite import SqliteDb

    return SqliteDb(location, timeout_s=timeout_s, check_same_thread=check_same_thread)


def ensure_schema(db: Db, component: str, version: int, ddl: str) -> None:
    """Create ``ddl``'s tables if missing and record ``component``'s schema version; refuse a database written by a
    newer version of this program (its layout is not ours)."""
    db.create(SCHEMA_VERSION_DDL + ddl)
    with db.transaction():
        row = db.execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
        if row is None:
            db.execute("INSERT INTO schema_version (component, version) VALUES (?, ?) ON CONFLICT (component) "
                       "DO NOTHING", (component, version))
        elif int(row[0]) > version:
            raise RuntimeError(f"{db.where}: its {component} tables are at schema version {row[0]}, newer than this "
                               f"uf-experiments knows ({version}): upgrade uf-experiments")


def rows_of(db: Db, table: str, columns: Sequence[str], order: str = "") -> Iterator[tuple]:
    """Every row of ``table`` (the named columns), in ``order``."""
    sql = f"SELECT {', '.join(columns)} FROM {table}" + (f" ORDER BY {order}" if order else "")
    yield from db.execute(sql).fetchall()
