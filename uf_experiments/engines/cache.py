"""The durable request cache: one SQLite file (one machine) or one PostgreSQL database (``cache.url``: jobs on
several machines) shared by every run, resumed run and sweep cell. One implementation over both backends
(``engines/db.py``).

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
(joblib launcher) share the file; on PostgreSQL (``engines/postgres.py``) a claim is made in a transaction holding
an advisory lock, and a lost connection is reopened (for ``reconnect_s``) and the statement run again. If the
server stays away, :attr:`RequestCache.on_down` is told (the run stops, exit 3); answers that arrive meanwhile are
kept in memory and written when the connection is back, at the latest when the cache is closed; if it is still
away then, they go to a local file (:func:`spill_file`) that the next run on this machine with the same
``cache.url`` moves into the database first: nothing paid for is asked again.

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
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from uf_experiments.core.records import Completion, Request, Usage
from uf_experiments.engines.build import cache_name
from uf_experiments.engines.db import CacheDown, Db, ensure_schema, open_db

log = logging.getLogger(__name__)

# Engine settings that change what a model answers (everything else, e.g. concurrency or memory, does not).
SEMANTIC_ENGINE_KEYS = ("base_url", "dtype", "quantization", "revision", "tokenizer", "tokenizer_revision")

SCHEMA_VERSION = 1
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


COLUMNS = ("key", "engine", "model", "text", "finish_reason", "prompt_tokens", "completion_tokens", "cached_tokens",
           "created", "cost_usd")
PUT = (f"INSERT INTO completions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT (key) "
       f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[1:])}")
CLAIM = ("INSERT INTO claims (key, owner, host, pid, claimed) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
         "owner = excluded.owner, host = excluded.host, pid = excluded.pid, claimed = excluded.claimed")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def spill_file(where: str) -> Path:
    """Where answers that could not reach the database ``where`` wait for the next run on this machine."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uf-experiments" / "cache-pending"
    return root / f"{hashlib.sha256(where.encode()).hexdigest()[:16]}.sqlite"


class RequestCache:
    def __init__(self, location: str | Path, timeout_s: float = 60.0, claim_ttl_s: float = 600.0,
                 reconnect_s: float = 60.0) -> None:
        self._db: Db = open_db(location, timeout_s, reconnect_s)
        self.where = self._db.where  # the file, or the URL without a password
        ensure_schema(self._db, "request_cache", SCHEMA_VERSION, SCHEMA)
        if "cost_usd" not in self._db.columns("completions"):  # written before costs were stored: entries keep NULL
            self._db.execute("ALTER TABLE completions ADD COLUMN cost_usd REAL")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.claim_ttl_s = claim_ttl_s
        self.timeout_s = timeout_s
        self._db_reconnect_s = reconnect_s
        self.on_down: Callable[[str], None] | None = None  # told once when the database stays unreachable
        self.down: str | None = None
        self._pending: list[tuple] = []  # answers not committed yet (the database was unreachable)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if self._db.kind != "sqlite" and spill_file(self.where).exists():
            self._unspill(spill_file(self.where))

    # ------------------------------------------------------------------ a lost connection

    def _guarded(self, fn: Callable[[], Any], default: Any) -> Any:
        """``fn()``; if the connection is lost, reconnect and run it again. Once the database stays unreachable:
        ``default`` (after telling :attr:`on_down`; :class:`CacheDown` if nobody listens)."""
        if self.down is not None:
            return default
        try:
            return fn()
        except Exception as exc:
            if not self._db.lost(exc):
                raise
            log.warning("request cache %s: connection lost (%s); reconnecting", self.where, _first_line(exc))
        try:
            self._db.reconnect()
            self._flush()
            return fn()
        except CacheDown as exc:
            reason = str(exc)
        except Exception as exc:
            if not self._db.lost(exc):
                raise
            reason = f"the request cache {self.where} is unreachable ({_first_line(exc)})"
        self.down = reason
        if self.on_down is None:
            raise CacheDown(reason)
        self.on_down(reason)
        return default

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany(PUT, self._pending)
            log.info("request cache %s: %d answers kept while it was unreachable are stored", self.where,
                     len(self._pending))
            self._pending = []

    # ------------------------------------------------------------------ claims' heartbeat

    def beat_once(self, db: Db | None = None) -> int:
        """Refresh every claim this owner holds (now); the number refreshed."""
        db = db or self._db
        return db.execute("UPDATE claims SET claimed = ? WHERE owner = ?", (time.time(), self.owner)).rowcount

    def _beat(self) -> None:
        """Refresh this owner's claims until closed (its own connection: a connection stays in its thread)."""
        db: Db | None = None
        try:
            while not self._stop.wait(self.claim_ttl_s / 4):
                try:
                    db = db or self._db.reopen()
                    self.beat_once(db)
                except Exception as exc:  # noqa: BLE001 - a missed beat is retried (on a new connection) next time
                    log.warning("could not refresh request-cache claims (%s)", _first_line(exc))
                    if db is not None:
                        db.close()
                        db = None
        finally:
            if db is not None:
                db.close()

    # ------------------------------------------------------------------ lookups, answers, claims

    def get_many(self, identity: str, requests: Iterable[Request]) -> dict[str, Completion]:
        """Cached completions by request key (``request.key``), marked ``cached=True``."""
        by_cache_key = {cache_key(identity, r): r for r in requests}
        rows = self._guarded(lambda: self._db.select_in(
            "SELECT key, text, finish_reason, prompt_tokens, completion_tokens, cached_tokens, cost_usd FROM "
            "completions", list(by_cache_key)), [])
        found: dict[str, Completion] = {}
        for key, text, finish, pt, ct, cached, cost in rows:
            req = by_cache_key[key]
            found[req.key] = Completion(req, text, Usage(pt, ct, cached), finish, cached=True, cost_usd=cost)
        return found

    def put(self, identity: str, completion: Completion) -> None:
        """Commit one successful completion (failures are not cached)."""
        if completion.text is None or completion.cached:
            return
        u = completion.usage
        row = (cache_key(identity, completion.request), identity, completion.request.model, completion.text,
               completion.finish_reason, u.prompt_tokens, u.completion_tokens, u.cached_tokens, time.time(),
               completion.cost_usd)
        if self._guarded(lambda: self._db.execute(PUT, row), False) is False:
            self._pending.append(row)

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
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name="cache-claims", daemon=True)
            self._heartbeat.start()
        return self._guarded(lambda: self._claim(keys), ([], []))

    def _claim(self, keys: dict[str, Request]) -> tuple[list[Request], list[Request]]:
        mine, theirs, rows = [], [], []
        with self._db.transaction() as db:
            done = {k for (k,) in db.select_in("SELECT key FROM completions", list(keys))}
            held = {k: (o, h, p, c) for k, o, h, p, c in
                    db.select_in("SELECT key, owner, host, pid, claimed FROM claims", list(keys))}
            now, host, pid = time.time(), socket.gethostname(), os.getpid()
            for key, req in keys.items():
                if key in done:
                    continue
                if key in held and held[key][0] != self.owner and self._alive(*held[key][1:]):
                    theirs.append(req)
                    continue
                rows.append((key, self.owner, host, pid, now))
                mine.append(req)
            if rows:
                db.executemany(CLAIM, rows)
        return mine, theirs

    def release(self, identity: str, requests: list[Request]) -> None:
        """Drop this process's claims on ``requests`` (answered or not)."""
        keys = [cache_key(identity, r) for r in requests]
        self._guarded(lambda: self._db.in_chunks("DELETE FROM claims WHERE owner = ? AND key IN ({keys})", keys,
                                                 [self.owner]), None)

    def check_writable(self) -> None:
        """Raise if this user cannot write the cache's tables (a claim and an answer written, then rolled back)."""
        class Probed(Exception):
            pass

        try:
            with self._db.transaction() as db:
                db.execute(CLAIM, ("uf-write-check", self.owner, socket.gethostname(), os.getpid(), time.time()))
                db.execute(PUT, ("uf-write-check", "", "", "", None, 0, 0, 0, time.time(), None))
                raise Probed
        except Probed:
            pass

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self._pending:  # one more try for answers kept while the database was unreachable
            try:
                if self.down is not None:
                    self._db.reconnect(min(5.0, self._db_reconnect_s))
                self._flush()
            except Exception:  # noqa: BLE001 - kept on this machine instead
                self._spill()
        self._db.close()

    def _spill(self) -> None:
        path = spill_file(self.where)
        local = open_db(path)
        try:
            ensure_schema(local, "request_cache", SCHEMA_VERSION, SCHEMA)
            local.executemany(PUT, self._pending)
        finally:
            local.close()
        log.warning("request cache %s still unreachable: %d answers kept in %s; the next run on this machine with "
                    "the same cache.url stores them there first (none is paid for twice)", self.where,
                    len(self._pending), path)
        self._pending = []

    def _unspill(self, path: Path) -> None:
        """Store the answers an earlier run on this machine kept locally while the database was unreachable."""
        local = open_db(path)
        try:
            rows = local.execute(f"SELECT {', '.join(COLUMNS)} FROM completions").fetchall()
        finally:
            local.close()
        self._db.executemany(PUT, rows)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        log.info("request cache %s: %d answers kept in %s while it was unreachable are stored", self.where,
                 len(rows), path)
