"""What ``uf-experiments-cache`` does to a request cache (a SQLite file or a ``postgresql://`` database):

- :func:`copy`: every stored answer (and the Batch API's records) from one cache into another, SQLite into
  PostgreSQL or back; each row arrives as it was (text, tokens, cost, time), and a key the target already holds
  is left as it is there;
- :func:`stats`: entries, $ stored, per model;
- :func:`prune`: delete entries by model and/or by age.

A location that does not exist yet (a SQLite file) is refused as a source instead of being created empty.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from uf_experiments.engines.cache import RequestCache
from uf_experiments.engines.db import Db, is_url, open_db, rows_of
from uf_experiments.engines.openai.batch_state import BatchState

# table -> its key columns (rows are ordered by them; a conflict on them keeps the target's row)
TABLES = {"completions": ("key",), "batches": ("input_file_id",), "batch_requests": ("input_file_id", "key"),
          "batch_results": ("key",)}
BATCH_TABLES = ("batches", "batch_requests", "batch_results")
CHUNK = 1000


class NoCache(Exception):
    """The location holds no request cache."""


def open_existing(location: str) -> Db:
    """An existing cache (a SQLite file must exist; a database must hold the ``completions`` table)."""
    if not is_url(location) and not Path(location).is_file():
        raise NoCache(f"{location}: no such cache file (pass the cache.path of your runs, or a postgresql:// URL)")
    db = open_db(location)
    if "completions" not in db.tables():
        db.close()
        raise NoCache(f"{db.where}: holds no request cache (no completions table)")
    return db


def copy(source: str, target: str) -> dict[str, dict[str, int]]:
    """Copy every row of ``source``'s tables into ``target`` (tables created there first). Per table: rows read,
    rows added (the rest were there already)."""
    src = open_existing(source)
    try:
        tables = [t for t in TABLES if t in src.tables()]
        RequestCache(target).close()  # the target's tables and schema version
        if any(t in tables for t in BATCH_TABLES):
            BatchState(target).close()
        dst = open_db(target)
        try:
            return {t: _copy_table(src, dst, t) for t in tables}
        finally:
            dst.close()
    finally:
        src.close()


def _copy_table(src: Db, dst: Db, table: str) -> dict[str, int]:
    there = set(dst.columns(table))
    columns = [c for c in src.columns(table) if c in there]
    keys = TABLES[table]
    before = dst.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
           f"ON CONFLICT ({', '.join(keys)}) DO NOTHING")
    rows = list(rows_of(src, table, columns, order=", ".join(keys)))
    with dst.transaction():
        for start in range(0, len(rows), CHUNK):
            dst.executemany(sql, rows[start : start + CHUNK])
    after = dst.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return {"read": len(rows), "added": after - before}


def stats(location: str) -> dict[str, Any]:
    """Entries, $ stored (entries written before costs were stored count as unpriced), tokens, per model."""
    db = open_existing(location)
    try:
        rows = db.execute(
            "SELECT model, COUNT(*), SUM(cost_usd), SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), "
            "SUM(prompt_tokens), SUM(completion_tokens), MIN(created), MAX(created) FROM completions GROUP BY model "
            "ORDER BY model").fetchall()
        models = {m: {"entries": int(n), "cost_usd": float(usd or 0.0), "unpriced": int(unpriced),
                      "prompt_tokens": int(pt or 0), "completion_tokens": int(ct or 0), "oldest": first,
                      "newest": last} for m, n, usd, unpriced, pt, ct, first, last in rows}
        return {"cache": db.where, "entries": sum(m["entries"] for m in models.values()),
                "cost_usd": sum(m["cost_usd"] for m in models.values()),
                "unpriced": sum(m["unpriced"] for m in models.values()), "models": models}
    finally:
        db.close()


def parse_age(text: str) -> float:
    """``30d`` / ``12h`` / ``90m`` / ``45s`` (or a bare number of days) in seconds."""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    text = text.strip().lower()
    unit = units.get(text[-1:], None)
    number = text[:-1] if unit else text
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"--older-than {text}: give an age like 30d, 12h, 90m or 45s") from None
    if value < 0:
        raise ValueError(f"--older-than {text}: an age is >= 0")
    return value * (unit or units["d"])


def prune(location: str, model: str | None = None, older_than_s: float | None = None,
          dry_run: bool = False) -> int:
    """Delete the entries of ``model`` and/or those stored more than ``older_than_s`` ago; the number deleted
    (or that would be, with ``dry_run``)."""
    if model is None and older_than_s is None:
        raise ValueError("prune needs --model NAME and/or --older-than AGE (e.g. 30d)")
    where, params = [], []
    if model is not None:
        where.append("model = ?")
        params.append(model)
    if older_than_s is not None:
        where.append("created < ?")
        params.append(time.time() - older_than_s)
    cond = " AND ".join(where)
    db = open_existing(location)
    try:
        if dry_run:
            return int(db.execute(f"SELECT COUNT(*) FROM completions WHERE {cond}", params).fetchone()[0])
        return int(db.execute(f"DELETE FROM completions WHERE {cond}", params).rowcount)
    finally:
        db.close()
