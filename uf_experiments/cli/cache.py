"""``uf-experiments-cache``: look after a request cache (a SQLite file, or a ``postgresql://USER@HOST:PORT/DB``
database; the password from PGPASSWORD or ~/.pgpass). Also ``python -m uf_experiments.cli.cache``.

    uf-experiments-cache copy outputs/cache/requests.sqlite postgresql://uf@db-host:5432/uf   # and back
    uf-experiments-cache stats postgresql://uf@db-host:5432/uf
    uf-experiments-cache prune outputs/cache/requests.sqlite --model gpt-4o --older-than 30d
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

from uf_experiments.core.dburl import has_password, redact
from uf_experiments.core.status import EXIT_CONFIG

DEFAULT = "outputs/cache/requests.sqlite"


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def format_stats(s: dict) -> str:
    lines = [f"{s['cache']}: {s['entries']} entries, ${s['cost_usd']:.4f} stored"
             + (f" ({s['unpriced']} entries from before costs were stored: unpriced)" if s["unpriced"] else "")]
    width = max([len("model"), *(len(m) for m in s["models"])])
    lines.append(f"  {'model':<{width}}  {'entries':>8}  {'$ stored':>10}  {'prompt tok':>11}  {'output tok':>11}  "
                 "newest")
    for model, m in s["models"].items():
        lines.append(f"  {model:<{width}}  {m['entries']:>8}  {m['cost_usd']:>10.4f}  {m['prompt_tokens']:>11}  "
                     f"{m['completion_tokens']:>11}  {_when(m['newest'])}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uf-experiments-cache", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("copy", help="copy every entry (and Batch API record) from one cache into another")
    c.add_argument("source", help="a cache file or postgresql:// URL to read")
    c.add_argument("target", help="a cache file or postgresql:// URL to write (created if missing)")
    s = sub.add_parser("stats", help="entries, $ stored, per model")
    s.add_argument("cache", nargs="?", default=DEFAULT, help=f"a cache file or postgresql:// URL (default {DEFAULT})")
    r = sub.add_parser("prune", help="delete entries by model and/or by age")
    r.add_argument("cache", help="a cache file or postgresql:// URL")
    r.add_argument("--model", help="delete this model's entries (the name the runs used, e.g. gpt-4o)")
    r.add_argument("--older-than", help="delete entries stored longer ago than this: 30d, 12h, 90m, 45s")
    r.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    return p


def run(args: argparse.Namespace) -> str:
    from uf_experiments.engines import cache_admin

    if args.command == "copy":
        got = cache_admin.copy(args.source, args.target)
        rows = ", ".join(f"{t}: {n['added']} added of {n['read']}" for t, n in got.items())
        return f"copied {redact(args.source)} -> {redact(args.target)} ({rows})"
    if args.command == "stats":
        return format_stats(cache_admin.stats(args.cache))
    age = cache_admin.parse_age(args.older_than) if args.older_than else None
    n = cache_admin.prune(args.cache, args.model, age, args.dry_run)
    what = " and ".join(x for x in (f"of model {args.model}" if args.model else "",
                                    f"older than {args.older_than}" if args.older_than else "") if x)
    return f"{'would delete' if args.dry_run else 'deleted'} {n} entries {what} from {redact(args.cache)}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    locations = [getattr(args, k) for k in ("source", "target", "cache") if getattr(args, k, None)]
    for loc in locations:
        if has_password(loc):
            print(f"error: {redact(loc)} (password removed) carries a password: drop it from the URL and export "
                  "PGPASSWORD or put it in ~/.pgpass", file=sys.stderr)
            return EXIT_CONFIG
    try:
        print(run(args))
    except Exception as exc:  # noqa: BLE001 - one line: a missing cache, an unreachable server, a bad age
        from uf_experiments.engines.cache_admin import NoCache

        if isinstance(exc, (NoCache, ValueError, ImportError)):  # ImportError: psycopg missing (says what to install)
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        url = next((loc for loc in locations if loc.startswith(("postgresql://", "postgres://"))), None)
        if url is None or not type(exc).__module__.startswith("psycopg"):
            raise
        from uf_experiments.engines.postgres import problem

        print(f"error: {problem(url, exc, key='')}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
