"""The Batch API engine's bookkeeping, in the request cache's database (a SQLite file or ``cache.url``'s
PostgreSQL; its own connection, through ``engines/db.py``): ``batches`` (every uploaded input file and the batch
made from it), ``batch_requests`` (the requests, by cache key, each batch holds) and ``batch_results`` (paid lines
not emitted yet). A batch is recorded before it is created, so a re-run after a stop or a ``kill -9`` re-attaches
to it instead of paying again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uf_experiments.core.records import Usage
from uf_experiments.engines.db import ensure_schema, open_db
from uf_experiments.engines.openai.batch_format import LineResult

STATE_VERSION = 1
STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    input_file_id TEXT PRIMARY KEY,   -- one uploaded input file = one batch
    id TEXT,                          -- the batch id; null while it is being created
    engine TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    total INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    output_file_id TEXT,
    error_file_id TEXT,
    reason TEXT,
    consumed INTEGER NOT NULL DEFAULT 0   -- 1 once its lines are in batch_results (or it can never answer)
);
CREATE TABLE IF NOT EXISTS batch_requests (
    input_file_id TEXT NOT NULL,
    key TEXT NOT NULL,                -- cache_key(engine identity, request): also the line's custom_id
    PRIMARY KEY (input_file_id, key)
);
CREATE INDEX IF NOT EXISTS batch_requests_key ON batch_requests(key);
CREATE TABLE IF NOT EXISTS batch_results (
    key TEXT PRIMARY KEY,             -- a paid answer not emitted yet
    batch_id TEXT NOT NULL,
    text TEXT,
    finish_reason TEXT,
    error TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    created REAL NOT NULL
);
"""


# what "INSERT OR REPLACE" of a batch / a result line set (ON CONFLICT: the rest of the row as given)
BATCH_COLUMNS = ("id", "engine", "model", "status", "created", "updated", "total", "completed", "failed",
                 "output_file_id", "error_file_id", "reason", "consumed")
RESULT_COLUMNS = ("batch_id", "text", "finish_reason", "error", "prompt_tokens", "completion_tokens", "cached_tokens",
                  "created")


@dataclass(frozen=True)
class Submitted:
    """A batch as recorded in the state file."""

    input_file_id: str
    id: str | None
    status: str
    created: float


class BatchState:
    """The engine's tables in the request cache's database (own connection)."""

    def __init__(self, location: str | Path, timeout_s: float = 60.0) -> None:
        self._lock = threading.Lock()  # the engine's event loop and worker threads share the connection
        self._db = open_db(location, timeout_s, check_same_thread=False)
        ensure_schema(self._db, "batch_state", STATE_VERSION, STATE_SCHEMA)

    def _select(self, head: str, column: str, keys: Sequence[str], tail: str = "") -> list[tuple]:
        with self._lock:
            return self._db.select_in(head, keys, column, tail)

    def results(self, keys: Sequence[str]) -> dict[str, LineResult]:
        """Paid answers not emitted yet."""
        rows = self._select("SELECT key, text, finish_reason, error, prompt_tokens, completion_tokens, "
                            "cached_tokens FROM batch_results", "key", list(keys))
        return {k: LineResult(text, Usage(pt, ct, cached), finish, error, retry=False)
                for k, text, finish, error, pt, ct, cached in rows}

    def drop_results(self, keys: Sequence[str]) -> None:
        with self._lock:
            self._db.in_chunks("DELETE FROM batch_results WHERE key IN ({keys})", keys)

    def live(self, keys: Sequence[str]) -> dict[Submitted, set[str]]:
        """Batches not consumed yet that hold any of ``keys``, newest first, with the keys each holds."""
        rows = self._select("SELECT b.input_file_id, b.id, b.status, b.created, r.key FROM batch_requests r "
                            "JOIN batches b USING (input_file_id)", "r.key", list(keys),
                            " AND b.consumed = 0 ORDER BY b.created DESC")
        out: dict[Submitted, set[str]] = {}
        for fid, bid, status, created, key in rows:
            out.setdefault(Submitted(fid, bid, status, created), set()).add(key)
        return out

    def keys_of(self, input_file_id: str) -> list[str]:
        with self._lock:
            return [k for (k,) in self._db.execute("SELECT key FROM batch_requests WHERE input_file_id = ?",
                                                   (input_file_id,))]

    def record(self, input_file_id: str, engine: str, model: str, keys: Sequence[str]) -> Submitted:
        """Before the batch is created: the uploaded file and the requests it holds."""
        now = time.time()
        with self._lock, self._db.transaction() as db:
            db.execute("INSERT INTO batches (input_file_id, id, engine, model, status, created, updated, total) "
                       "VALUES (?, NULL, ?, ?, 'creating', ?, ?, ?) ON CONFLICT (input_file_id) DO UPDATE SET "
                       + ", ".join(f"{c} = excluded.{c}" for c in BATCH_COLUMNS),
                       (input_file_id, engine, model, now, now, len(keys)))
            db.executemany("INSERT INTO batch_requests VALUES (?, ?) ON CONFLICT DO NOTHING",
                           [(input_file_id, k) for k in keys])
        return Submitted(input_file_id, None, "creating", now)

    def update(self, input_file_id: str, **fields: Any) -> None:
        fields["updated"] = time.time()
        with self._lock:
            self._db.execute(f"UPDATE batches SET {', '.join(f'{k} = ?' for k in fields)} WHERE input_file_id = ?",
                             [*fields.values(), input_file_id])

    def consume(self, input_file_id: str, batch_id: str, lines: Mapping[str, LineResult], **fields: Any) -> None:
        """In one transaction: every paid line of the batch into batch_results, the batch marked read."""
        now = time.time()
        with self._lock, self._db.transaction() as db:
            db.executemany(
                "INSERT INTO batch_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in RESULT_COLUMNS),
                [(k, batch_id, r.text, r.finish_reason, r.error, r.usage.prompt_tokens, r.usage.completion_tokens,
                  r.usage.cached_tokens, now) for k, r in lines.items() if r.paid])
            sets = {**fields, "consumed": 1, "updated": now}
            db.execute(f"UPDATE batches SET {', '.join(f'{k} = ?' for k in sets)} WHERE input_file_id = ?",
                       [*sets.values(), input_file_id])

    def close(self) -> None:
        with self._lock:
            self._db.close()
