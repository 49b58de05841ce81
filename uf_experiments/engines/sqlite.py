"""The SQLite backend (:class:`SqliteDb`, see ``engines/db.py``) of the request cache (``engines/cache.py``) and the
Batch API's bookkeeping (``engines/openai/batch_state.py``): one way to open the shared file, the chunked ``...
WHERE key IN (...)`` and the ``BEGIN IMMEDIATE ... COMMIT`` block; and :func:`network_fs`, which tells a file on
NFS, Lustre, GPFS or CIFS (where WAL and SQLite's locks break) from a local one.

Every connection is in autocommit mode (``isolation_level=None``: a statement commits by itself unless it runs
inside :func:`immediate`), with WAL and a busy timeout so parallel jobs (joblib, SLURM array) share one file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHUNK = 500  # keys per statement: well under SQLite's limit on host parameters (999 in old builds)
KEYS = "{keys}"  # where the key list goes in the SQL given to in_chunks


def connect(path: str | Path, timeout_s: float = 60.0, check_same_thread: bool = True) -> sqlite3.Connection:
    """An autocommit connection to ``path`` (its directory made if missing): WAL, a busy timeout of ``timeout_s``,
    ``synchronous=NORMAL`` (durable at each checkpoint, never corrupt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=check_same_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def in_chunks(db: sqlite3.Connection, sql: str, keys: Sequence[Any], params: Sequence[Any] = ()) -> list[tuple]:
    """Run ``sql`` once per chunk of at most :data:`CHUNK` keys and return every row. ``sql`` holds ``{keys}``
    where the chunk's placeholders go (``DELETE FROM t WHERE owner = ? AND key IN ({keys})``); ``params`` are
    bound before the chunk's keys."""
    rows: list[tuple] = []
    for start in range(0, len(keys), CHUNK):
        chunk = list(keys[start : start + CHUNK])
        rows += db.execute(sql.replace(KEYS, ",".join("?" * len(chunk))), [*params, *chunk]).fetchall()
    return rows


def select_in(db: sqlite3.Connection, head: str, keys: Sequence[Any], column: str = "key",
              tail: str = "") -> list[tuple]:
    """Every row of ``{head} WHERE {column} IN (keys){tail}``, asked in chunks (no row is lost past the chunk
    size; ``tail``, e.g. an ``ORDER BY``, applies within each chunk)."""
    return in_chunks(db, f"{head} WHERE {column} IN ({KEYS}){tail}", keys)


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (takes the write lock at once, so a read-then-write cannot be overtaken), ``COMMIT`` at
    the end of the block, ``ROLLBACK`` and re-raise on any exception (KeyboardInterrupt too)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class SqliteDb:
    """The SQLite backend of :class:`~uf_experiments.engines.db.Db`: one file on this machine."""

    kind = "sqlite"

    def __init__(self, path: str | Path, timeout_s: float = 60.0, check_same_thread: bool = True) -> None:
        self.path = Path(path)
        self.where = str(path)
        self.timeout_s = timeout_s
        self.conn = connect(self.path, timeout_s, check_same_thread=check_same_thread)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def create(self, ddl: str) -> None:
        self.conn.executescript(ddl)

    def in_chunks(self, sql: str, keys: Sequence[Any], params: Sequence[Any] = ()) -> list[tuple]:
        return in_chunks(self.conn, sql, keys, params)

    def select_in(self, head: str, keys: Sequence[Any], column: str = "key", tail: str = "") -> list[tuple]:
        return select_in(self.conn, head, keys, column, tail)

    @contextmanager
    def transaction(self) -> Iterator[SqliteDb]:
        with immediate(self.conn):
            yield self

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")]

    def tables(self) -> set[str]:
        return {name for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def reopen(self) -> SqliteDb:
        return SqliteDb(self.path, self.timeout_s)

    def lost(self, exc: BaseException) -> bool:
        return False  # a local file does not go away between statements

    def reconnect(self, window_s: float | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.conn.close()


# statfs(2) f_type of the filesystems where SQLite's WAL (shared memory on one host) and locks break.
NETWORK_FS = {0x6969: "nfs", 0x0BD00BD0: "lustre", 0x47504653: "gpfs", 0xFF534D42: "cifs", 0xFE534D42: "smb2",
              0x517B: "smb", 0x00C36400: "ceph", 0x5346414F: "afs", 0x19830326: "beegfs"}


def statfs_type(path: str | Path) -> int | None:
    """The ``f_type`` statfs(2) reports for ``path``'s nearest existing ancestor (Linux), or None."""
    import ctypes
    import ctypes.util
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return None
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct statfs (120 bytes on 64-bit Linux); f_type is its first long
    if libc.statfs(os.fsencode(str(p)), buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def network_fs(path: str | Path) -> str | None:
    """The network filesystem ``path`` is on (``"nfs"``, ``"lustre"``, ...), or None for a local one."""
    return NETWORK_FS.get(statfs_type(path) or 0)
