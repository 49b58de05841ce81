"""Opening the request cache a run (or a plan) uses: ``cache.url``'s database, else the SQLite file ``cache.path``.
Kept apart from the streaming part so that ``plan=true`` does not import it."""

from __future__ import annotations

from pathlib import Path

from uf_experiments.config.schema import CacheConfig, ConfigError, RunConfig
from uf_experiments.engines.cache import RequestCache


def open_cache(config: RunConfig, *, read_only: bool = False) -> RequestCache | None:
    """The request cache (``cache.url``'s database, else the file ``cache.path``), or None with
    ``cache.enabled=false``. A database the run cannot use, or a file on a network filesystem (unless
    ``cache.allow_network_fs``), is a ConfigError with one line, before anything is spent.

    ``read_only`` (``plan=true``, which only looks up what is cached): no write is tried on the database, and a
    file that does not exist yet is not created (None: nothing is cached)."""
    cache: CacheConfig = config.cache
    if not cache.enabled:
        return None
    if cache.url:
        return open_database(cache, probe=not read_only)
    if read_only:
        return RequestCache(cache.path) if Path(cache.path).exists() else None
    from uf_experiments.engines.sqlite import network_fs

    fs = None if cache.allow_network_fs else network_fs(cache.path)
    if fs:
        raise ConfigError(f"cache.path={cache.path} is on a network filesystem ({fs}), where SQLite's locks and WAL "
                          "break (a request can be paid twice, the file corrupted): share a PostgreSQL cache instead, "
                          "cache.url=postgresql://USER@HOST:PORT/DB (or cache.allow_network_fs=true at your own risk)")
    try:
        return RequestCache(cache.path, claim_ttl_s=cache.claim_ttl_s)
    except Exception as exc:  # noqa: BLE001 - sqlite3 / OS errors: the path is the user's to fix
        raise ConfigError(f"cache.path={cache.path} cannot be opened for writing ({exc}): pass a writable "
                          "cache.path=DIR/requests.sqlite, or cache.enabled=false") from exc


def open_database(cache: CacheConfig, probe: bool = True) -> RequestCache:
    """The PostgreSQL cache of ``cache.url``, its tables created and (``probe``) a write tried and rolled back."""
    opened = None
    try:
        opened = RequestCache(cache.url, claim_ttl_s=cache.claim_ttl_s, reconnect_s=cache.reconnect_s)
        if probe:
            opened.check_writable()
        return opened
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, no rights: the user's to fix
        if opened is not None:
            opened.close()
        if isinstance(exc, ImportError):
            raise ConfigError(str(exc)) from exc
        from uf_experiments.engines.postgres import problem

        raise ConfigError(problem(str(cache.url), exc)) from exc
