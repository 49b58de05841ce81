"""The SQLite plumbing the request cache (``engines/cache.py``) and the Batch API's bookkeeping
(``engines/openai/batch_state.py``) share: one way to open the shared file, the chunked ``... WHERE key IN (...)``
and the ``BEGIN IMMEDIATE ... COMMIT`` block.

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
