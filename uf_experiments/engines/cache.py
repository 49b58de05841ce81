"""The durable request cache: one SQLite file shared by every run, resumed run and sweep cell.

Parallel jobs (joblib, SLURM array) that need the same request pay for it once: before sending, a job *claims*
the keys it will generate (a row in ``claims``); another job that needs a claimed key waits for the answer
instead of asking again, and takes the key over if the claim is released unanswered (the request failed) or its
owner died (same host: the process is gone; any host: the claim was not refreshed for ``claim_ttl_s``; a live
owner refreshes its claims every ``claim_ttl_s / 4`` from a background thread).

A completion is stored under a hash of everything that changes its answer: the engine's identity (engine
class, resolved model path or served model name, endpoint, and the engine settings that change outputs) and the
request (messages, max tokens, temperature, top_p, seed, response format). Only successful completions are
stored; a failed request is asked again next time. Each completion is committed as it arrives, so a killed run
loses nothing it was answered. WAL mode and a busy timeout (``engines/sqlite.py``) let parallel Hydra jobs
(joblib launcher) share the file.

Each completion is stored with its attributed cost (``cost_usd``: API tokens x the price in force when it was paid,
or its share of a self-hosted engine's measured time x ``gpu_hour_usd``), so a run that reads it from the cache
reports what its work costs, not what it happened to pay. Entries written before costs were stored have
``cost_usd`` NULL: the reader prices them from their stored tokens and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.build import cache_name
from uf_experiments.engines.sqlite import connect, immediate, in_chunks, select_in

log = logging.getLogger(__name__)

# Engine settings that change what a model answers (everything else, e.g. concurrency or memory, does not).
SEMANTIC_ENGINE_KEYS = ("base_url", "dtype", "quantization", "revision", "tokenizer", "tokenizer_revision")

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    engine TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    created REAL NOT NULL,
    cost_usd REAL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed REAL NOT NULL
);
"""


def engine_identity(engine_cfg: Mapping[str, Any], path: str) -> str:
    """What makes two engines answer the same request the same way."""
    kwargs = dict(engine_cfg.get("llm_kwargs") or {})
    kwargs.update({k: v for k, v in engine_cfg.items() if k != "llm_kwargs"})
    semantic = {k: kwargs[k] for k in SEMANTIC_ENGINE_KEYS if kwargs.get(k) is not None}
    if "base_url" in kwargs and not kwargs["base_url"]:  # an API engine on the default endpoint
        semantic["base_url"] = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    # the engine class's cache_name: the same for the Batch API as for the plain API, and stable across renames
    return json.dumps({"engine": cache_name(engine_cfg), "path": path, **semantic}, sort_keys=True)


def cache_key(identity: str, request: Request) -> str:
    return hashlib.sha256(f"{identity}\n{request.key}".encode()).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path, timeout_s: float = 60.0, claim_ttl_s: float = 600.0) -> None:
        self.path = Path(path)
        self._db = connect(self.path, timeout_s)
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(completions)")}
        if "cost_usd" not in columns:  # a cache written before costs were stored: its entries keep NULL
            self._db.execute("ALTER TABLE completions ADD COLUMN cost_usd REAL")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.claim_ttl_s = claim_ttl_s
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def beat_once(self, db: sqlite3.Connection | None = None) -> int:
        """Refresh every claim this owner holds (now); the number refreshed."""
        db = db or self._db
        return db.execute("UPDATE claims SET claimed = ? WHERE owner = ?", (time.time(), self.owner)).rowcount

    def _beat(self) -> None:
        """Refresh this owner's claims until closed (its own connection: sqlite3 objects stay in their thread)."""
        db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            while not self._stop.wait(self.claim_ttl_s / 4):
                self.beat_once(db)
        except sqlite3.Error:
            log.warning("could not refresh request-cache claims", exc_info=True)
        finally:
            db.close()

    def get_many(self, identity: str, requests: Iterable[Request]) -> dict[str, Completion]:
        """Cached completions by request key (``request.key``), marked ``cached=True``."""
        by_cache_key = {cache_key(identity, r): r for r in requests}
        found: dict[str, Completion] = {}
        rows = select_in(self._db, "SELECT key, text, finish_reason, prompt_tokens, completion_tokens, cached_tokens, "
                         "cost_usd FROM completions", list(by_cache_key))
        for key, text, finish, pt, ct, cached, cost in rows:
            req = by_cache_key[key]
            found[req.key] = Completion(req, text, Usage(pt, ct, cached), finish, cached=True, cost_usd=cost)
        return found

    def put(self, identity: str, completion: Completion) -> None:
        """Commit one successful completion (failures are not cached)."""
        if completion.text is None or completion.cached:
            return
        u = completion.usage
        self._db.execute(
            "INSERT OR REPLACE INTO completions (key, engine, model, text, finish_reason, prompt_tokens, "
            "completion_tokens, cached_tokens, created, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cache_key(identity, completion.request), identity, completion.request.model, completion.text,
             completion.finish_reason, u.prompt_tokens, u.completion_tokens, u.cached_tokens, time.time(),
             completion.cost_usd),
        )

    def _alive(self, host: str, pid: int, claimed: float) -> bool:
        if time.time() - claimed > self.claim_ttl_s:
            return False
        if host != socket.gethostname():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def claim(self, identity: str, requests: list[Request]) -> tuple[list[Request], list[Request]]:
        """Split uncached ``requests`` into (mine: now claimed by this process, theirs: claimed by another live
        job). A request answered meanwhile is in neither list: read it with :meth:`get_many`."""
        keys = {cache_key(identity, r): r for r in requests}
        mine, theirs = [], []
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name="cache-claims", daemon=True)
            self._heartbeat.start()
        with immediate(self._db):
            done = {k for (k,) in select_in(self._db, "SELECT key FROM completions", list(keys))}
            held = {k: (o, h, p, c) for k, o, h, p, c in
                    select_in(self._db, "SELECT key, owner, host, pid, claimed FROM claims", list(keys))}
            now = time.time()
            for key, req in keys.items():
                if key in done:
                    continue
                if key in held and held[key][0] != self.owner and self._alive(*held[key][1:]):
                    theirs.append(req)
                    continue
                self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                                 (key, self.owner, socket.gethostname(), os.getpid(), now))
                mine.append(req)
        return mine, theirs

    def release(self, identity: str, requests: list[Request]) -> None:
        """Drop this process's claims on ``requests`` (answered or not)."""
        keys = [cache_key(identity, r) for r in requests]
        in_chunks(self._db, "DELETE FROM claims WHERE owner = ? AND key IN ({keys})", keys, [self.owner])

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        self._db.close()
