"""Benchmark (c) on PostgreSQL: framework cost per request with the request cache in PostgreSQL (``cache.url``)
side by side with the SQLite file (``cache.path``, the baseline), same checkout, same invocation.

The workload of ``benchmarks/framework_cost.py`` (4 fake models, 4 completions per prompt, a fake judge on one
aspect, tracking off), for each size: a fresh cache, the uncached run, then the same command again (every answer
a cache hit). The PostgreSQL server is a throwaway one started here (``initdb`` + ``pg_ctl`` on 127.0.0.1, as
the tests do, but with the default durability: ``fsync=on``), one fresh database per run pair.

- ms per request = the run's own wall time (``summary.json``: load through writing files) / its requests;
- process CPU ms per request = the CLI process's CPU time / its requests (start-up included);
- the PostgreSQL server's own CPU (its processes, read from ``/proc``) is reported beside it: it is not in the
  CLI's figures, and it shares the machine's cores.

Target: <= 0.5 ms per cached request on PostgreSQL (cache lookups go in chunks: one ``= ANY(array)`` query per
512 requests).

    python -m benchmarks.pg_cache --prompts 2500 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import HERE, Tree, describe, median, out_dir, ratio, save, table, uf_cli, write_prompts
from benchmarks.framework_cost import one, overrides
from tests.helpers.postgres import PASSWORD, PgServer, pg_bin

TARGET_MS = 0.5


def server_cpu_s(server: PgServer) -> float:
    """CPU seconds used so far by every process of the server (the postmaster and its backends)."""
    pid = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid or int(proc.name) == pid:  # the postmaster's children and itself
            total += (int(stat[11]) + int(stat[12]) + int(stat[13]) + int(stat[14])) / tick
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description="request cache on PostgreSQL vs SQLite (issue 20, benchmark c)")
    ap.add_argument("--prompts", default="2500", help="comma-separated prompt counts (x4 completions)")
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--n", type=int, default=4, help="completions per prompt (sampling.n)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per size (median)")
    ap.add_argument("--timeout-min", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    bindir = pg_bin()
    if bindir is None:
        raise SystemExit("error: PostgreSQL is not installed (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    out = out_dir(args, "pg_cache")
    sizes = [int(x) for x in args.prompts.split(",")]
    prompts = write_prompts(out / "prompts.jsonl", max(sizes))
    tree = Tree("current", HERE, describe(HERE))
    env = tree.env({"HF_DATASETS_CACHE": str(out / "hf-datasets"), "OPENAI_API_KEY": "sk-bench",
                    "PGPASSWORD": PASSWORD})
    server = PgServer(bindir, fsync=True)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    results: dict[str, Any] = {"rev": tree.rev, "sizes": {}}
    try:
        for n in sizes:
            per: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgres": []}
            for rep in range(args.repeat):
                for backend in ("sqlite", "postgres"):
                    base = out / backend / f"p{n}-r{rep}"
                    extra = [f"cache.url={server.create_db()}"] if backend == "postgres" else []
                    got = {}
                    for phase in ("uncached", "cached"):
                        run_dir = base / phase
                        cpu0 = server_cpu_s(server)
                        cmd = uf_cli(tree, overrides(prompts, n, run_dir, base / "cache.sqlite", args.pool,
                                                     args.n) + extra)
                        r = one(tree, cmd, run_dir, env, args.timeout_min * 60)
                        if "failed" in r:
                            raise SystemExit(f"{backend} {n} prompts {phase}: {r['failed']}; see {r['log']}")
                        r["server_cpu_s"] = round(server_cpu_s(server) - cpu0, 3) if backend == "postgres" else 0.0
                        r["process_cpu_ms_per_request"] = round(r["cpu_s"] / r["requests"] * 1000, 4)
                        got[phase] = r
                        print(f"{backend} {n} prompts run {rep} {phase}: {r['requests']} requests, "
                              f"{r['ms_per_request']:.3f} ms/req, process CPU {r['process_cpu_ms_per_request']:.3f} "
                              f"ms/req, server CPU {r['server_cpu_s']:.2f} s, load {r['loadavg']:.1f}", flush=True)
                    per[backend].append(got)
            entry = {b: {phase: {k: median([g[phase][k] for g in runs]) for k in
                                 ("ms_per_request", "process_cpu_ms_per_request", "server_cpu_s", "stage_wall_s")}
                         for phase in ("uncached", "cached")} for b, runs in per.items()}
            entry["requests"] = per["sqlite"][0]["cached"]["requests"]
            entry["runs"] = per
            results["sizes"][str(n)] = entry
    finally:
        server.cleanup()
    rows = []
    for n in sizes:
        e = results["sizes"][str(n)]
        for phase, key, label, target in (
            ("cached", "ms_per_request", "ms/request cached", f"<= {TARGET_MS} (postgres)"),
            ("uncached", "ms_per_request", "ms/request uncached", "-"),
            ("cached", "process_cpu_ms_per_request", "process CPU ms/request cached", "-"),
            ("uncached", "process_cpu_ms_per_request", "process CPU ms/request uncached", "-"),
            ("uncached", "server_cpu_s", "PostgreSQL server CPU s, uncached run", "-"),
        ):
            pg, lite = e["postgres"][phase][key], e["sqlite"][phase][key]
            rows.append([f"{n * args.n / 1000:g}k compl. {label}", pg, lite, ratio(pg, lite), target])
    title = (f"(c) on PostgreSQL: request cache in PostgreSQL (cache.url, fsync on, 127.0.0.1) vs the SQLite file, "
             f"fake engine, pool {args.pool}, {args.n} completions/prompt; rev {tree.rev}; median of {args.repeat}; "
             "ratio = postgres / sqlite")
    print(table(title, rows, ["", "postgres", "sqlite", "ratio", "target"]))
    print(f"results: {save(out, 'results', {'benchmark': 'pg_cache', 'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    main()
