"""Benchmark (c): framework cost per request, uncached and cached, and peak RSS, with an in-process fake engine.

Workload: a pool of 4 fake models (``benchmarks.fake_engine.FakeEngine``, answers at once), 4 completions per
prompt, a fake judge on one aspect (overall_rating) in JSON mode, prompts from a generated jsonl, tracking off, a
fresh request cache. For each size (``--prompts 2500,16000,64000`` = 10k / 64k / 256k completions):

- uncached: the first run on a fresh cache; cached: the same command again on that cache (every answer a hit);
- ms per request = the run's own wall time (``summary.json`` ``wall_time_s.total``: load through writing the
  files; interpreter and Hydra start-up excluded) / (generation + judge requests); the process wall time is
  reported too;
- CPU ms per request = (CPU time of the process - CPU time of the same command on 1 prompt, the start-up and
  teardown) / (its requests - that run's requests): the marginal framework cost, robust when other work shares
  the cores (wall figures are not: compare them only between runs made at the same time);
- peak RSS of the CLI process (``wait4`` rusage after it exits).

Targets: <= 0.2 ms per cached request; peak RSS < 2 GiB at 256k completions. A run longer than
``--timeout-min`` is stopped, and that tree skips the larger sizes.

    python -m benchmarks.framework_cost --ref bac9a1c --prompts 2500,16000,64000
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_tree_args,
    median,
    out_dir,
    ratio,
    read_summary,
    run_measured,
    save,
    stage_wall,
    table,
    total_requests,
    trees,
    uf_cli,
    write_prompts,
)

FAKE = "benchmarks.fake_engine.FakeEngine"
TARGET_MS, TARGET_RSS_MIB, RSS_AT_COMPLETIONS = 0.2, 2048, 256_000


def overrides(prompts: Path, n: int, run_dir: Path, cache: Path, pool: int, per_prompt: int) -> list[str]:
    models = ",".join(f"fake-{chr(ord('a') + i)}" for i in range(pool))
    return [
        "pool=served", f"pool.models=[{models}]", f"pool.size={pool}", f"sampling.n={per_prompt}",
        f"pool.engine._target_={FAKE}", "principles=none",
        "judge=served", "judge.model.path=fake-judge", f"judge.model.engine._target_={FAKE}", "judge.output=json",
        "aspect=[overall_rating]",
        "dataset=local", f"dataset.path={prompts}", f"dataset.limit={n}",
        "tracking=none", f"cache.path={cache}", f"hydra.run.dir={run_dir}",
    ]


def one(tree: Any, cmd: list[str], run_dir: Path, env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    proc = run_measured(cmd, tree.root, env, run_dir.with_suffix(".log"), timeout_s)
    if proc.returncode:
        return {"failed": f"exit {proc.returncode} after {proc.wall_s:.0f} s (timeout {timeout_s:.0f} s?)",
                "log": str(proc.log), "peak_rss_mib": round(proc.maxrss_mib)}
    s = read_summary(run_dir)
    reqs = total_requests(s)
    wall = stage_wall(s)
    return {
        "requests": reqs, "completions": s["counts"]["completions"], "judged": s["counts"]["judged"],
        "cache_hits": s["counts"]["cache_hits"], "engine_calls": s["counts"]["engine_calls"],
        "stage_wall_s": round(wall, 3), "process_wall_s": round(proc.wall_s, 3), "cpu_s": round(proc.cpu_s, 3),
        "ms_per_request": round(wall / reqs * 1000, 4),
        "process_ms_per_request": round(proc.wall_s / reqs * 1000, 4),
        "peak_rss_mib": round(proc.maxrss_mib), "wall_time_s": s.get("wall_time_s"), "loadavg": proc.loadavg,
    }


def startup(tree: Any, prompts: Path, base: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """The same command on 1 prompt (uncached, then cached): what a run costs besides its requests."""
    got = {}
    for phase in ("uncached", "cached"):
        runs = []
        for rep in range(args.repeat):
            run_dir = base / f"r{rep}" / phase
            cmd = uf_cli(tree, overrides(prompts, 1, run_dir, base / f"r{rep}" / "cache.sqlite", args.pool, args.n))
            r = one(tree, cmd, run_dir, env, args.timeout_min * 60)
            if "failed" in r:
                raise SystemExit(f"{tree.label}: the 1-prompt run failed ({r['failed']}); see {r['log']}")
            runs.append(r)
        got[phase] = {"cpu_s": median([r["cpu_s"] for r in runs]), "requests": runs[0]["requests"],
                      "process_wall_s": median([r["process_wall_s"] for r in runs]),
                      "peak_rss_mib": median([r["peak_rss_mib"] for r in runs])}
    return got


def marginal_cpu_ms(run: dict[str, Any], base: dict[str, Any]) -> float:
    return round((run["cpu_s"] - base["cpu_s"]) / (run["requests"] - base["requests"]) * 1000, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description="framework cost per request and peak RSS (issue 9, benchmark c)")
    add_tree_args(ap)
    ap.add_argument("--prompts", default="2500,16000,64000", help="comma-separated prompt counts")
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--n", type=int, default=4, help="completions per prompt (sampling.n)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of sizes up to --repeat-max-prompts (median)")
    ap.add_argument("--repeat-max-prompts", type=int, default=2500)
    ap.add_argument("--timeout-min", type=float, default=15.0, help="per run; a tree skips larger sizes after one")
    args = ap.parse_args()
    out = out_dir(args, "framework_cost")
    sizes = [int(x) for x in args.prompts.split(",")]
    prompts = write_prompts(out / "prompts.jsonl", max(sizes))
    env_extra = {"HF_DATASETS_CACHE": str(out / "hf-datasets"), "OPENAI_API_KEY": "sk-bench"}
    results: dict[str, Any] = {}
    for tree in trees(args):
        per_size: dict[str, Any] = {}
        boot = startup(tree, prompts, out / tree.label / "p1", tree.env(env_extra), args)
        print(f"{tree.label} 1 prompt: CPU {boot['uncached']['cpu_s']:.2f} s uncached, {boot['cached']['cpu_s']:.2f} s "
              f"cached, process {boot['cached']['process_wall_s']:.1f} s (start-up and teardown)", flush=True)
        results[tree.label] = {"rev": tree.rev, "startup": boot, "sizes": per_size}
        for n in sizes:
            reps = args.repeat if n <= args.repeat_max_prompts else 1
            runs = []
            for rep in range(reps):
                base = out / tree.label / f"p{n}-r{rep}"
                cache = base / "cache.sqlite"
                got = {}
                for phase in ("uncached", "cached"):
                    run_dir = base / phase
                    cmd = uf_cli(tree, overrides(prompts, n, run_dir, cache, args.pool, args.n))
                    got[phase] = one(tree, cmd, run_dir, tree.env(env_extra), args.timeout_min * 60)
                    r = got[phase]
                    if "failed" not in r:
                        r["cpu_ms_per_request"] = marginal_cpu_ms(r, boot[phase])
                    print(f"{tree.label} {n} prompts run {rep} {phase}: "
                          + (r["failed"] if "failed" in r else
                             f"{r['requests']} requests, {r['stage_wall_s']:.2f} s stages, "
                             f"{r['ms_per_request']:.3f} ms/req, {r['cpu_ms_per_request']:.3f} CPU ms/req, "
                             f"process {r['process_wall_s']:.1f} s, load {r['loadavg']:.1f}, "
                             f"peak RSS {r['peak_rss_mib']} MiB"), flush=True)
                    if "failed" in r:
                        break
                runs.append(got)
                if any("failed" in v for v in got.values()):
                    break
            ok = [r for r in runs if not any("failed" in v for v in r.values())]
            entry: dict[str, Any] = {"runs": runs}
            if ok:
                for phase in ("uncached", "cached"):
                    entry[phase] = {key: median([r[phase][key] for r in ok]) for key in
                                    ("ms_per_request", "cpu_ms_per_request", "process_ms_per_request",
                                     "stage_wall_s", "peak_rss_mib")}
                    entry[phase]["requests"] = ok[0][phase]["requests"]
                entry["completions"] = ok[0]["uncached"]["completions"]
            per_size[str(n)] = entry
            if not ok:
                print(f"{tree.label}: stopping at {n} prompts (a run failed or took longer than "
                      f"{args.timeout_min} min); larger sizes skipped", flush=True)
                break
    rows = []
    for n in sizes:
        def get(label: str, phase: str, key: str, n: int = n) -> Any:
            e = results.get(label, {}).get("sizes", {}).get(str(n), {})
            return e.get(phase, {}).get(key)

        comp = n * args.n
        for phase, key, label, target in (
            ("uncached", "ms_per_request", "ms/request uncached", "-"),
            ("cached", "ms_per_request", "ms/request cached", f"<= {TARGET_MS}"),
            ("uncached", "cpu_ms_per_request", "CPU ms/request uncached", "-"),
            ("cached", "cpu_ms_per_request", "CPU ms/request cached", f"<= {TARGET_MS}"),
            ("uncached", "peak_rss_mib", "peak RSS MiB (uncached)",
             f"< {TARGET_RSS_MIB}" if comp >= RSS_AT_COMPLETIONS else "-"),
            ("cached", "peak_rss_mib", "peak RSS MiB (cached)",
             f"< {TARGET_RSS_MIB}" if comp >= RSS_AT_COMPLETIONS else "-"),
        ):
            cur, ref = get("current", phase, key), get("ref", phase, key)
            rows.append([f"{comp / 1000:g}k compl. {label}", cur, ref, ratio(ref, cur), target])
    revs = {k: v["rev"] for k, v in results.items()}
    title = (f"(c) framework cost, fake engine: pool {args.pool}, {args.n} completions/prompt, judge overall_rating "
             f"JSON; {', '.join(map(str, sizes))} prompts\n    {revs}; ratio = ref / current (higher: current "
             f"better); sizes <= {args.repeat_max_prompts} prompts: median of {args.repeat}")
    print(table(title, rows, ["", "current", "ref", "ratio", "target"]))
    print(f"results: {save(out, 'results', {'benchmark': 'framework_cost', 'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    main()
