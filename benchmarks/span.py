"""Benchmark (a): the request span of a run against the ideal schedule, on a local server with fixed latency.

Workload: ``--models`` API models (a served pool, each prompt answered by all of them: pool.size = sampling.n =
models) on ``--prompts`` prompts, then the judge on ``--aspects`` (one request per prompt and aspect), every
model with its own ``max_in_flight`` = ``--k`` (the judge: ``--judge-k``); the server sleeps ``--latency-ms``
per request and logs when each request starts and ends.

- span = last request end - first request start (from the server's log, so process start-up is excluded);
- ideal = the models side by side, each within its own max_in_flight, then the judge after them:
  ``max_m ceil(requests_m / k) * L + ceil(judge_requests / k_judge) * L``;
- average in flight = the sum of request durations / span. Target: span <= 1.1 x ideal.

    python -m benchmarks.span --ref bac9a1c            # current checkout and the pre-streaming core
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_tree_args,
    fmt,
    median,
    out_dir,
    ratio,
    read_summary,
    run_measured,
    save,
    table,
    trees,
    uf_cli,
    write_prompts,
)
from benchmarks.server import LatencyServer, Logged

TARGET = 1.1


def overrides(models: list[str], judge: str, prompts: Path, n: int, k: int, kj: int, aspects: list[str],
              run_dir: Path, cache: Path) -> list[str]:
    return [
        "pool=served", f"pool.models=[{','.join(models)}]", f"pool.size={len(models)}", f"sampling.n={len(models)}",
        f"pool.engine.max_in_flight={k}", "principles=none",
        "judge=served", f"judge.model.path={judge}", f"judge.model.engine.max_in_flight={kj}", "judge.output=text",
        f"aspect=[{','.join(aspects)}]",
        "dataset=local", f"dataset.path={prompts}", f"dataset.limit={n}",
        "tracking=none", f"cache.path={cache}", f"hydra.run.dir={run_dir}",
    ]


def analyse(log: list[Logged], judge: str, k: int, kj: int, latency_s: float) -> dict[str, Any]:
    if not log:
        raise RuntimeError("the server saw no requests")
    t0 = min(r.start for r in log)
    span = max(r.end for r in log) - t0
    gen = Counter(r.model for r in log if r.model != judge)
    judged = sum(r.model == judge for r in log)
    ideal = max((math.ceil(c / k) for c in gen.values()), default=0) * latency_s + math.ceil(judged / kj) * latency_s
    busy = sum(r.end - r.start for r in log)
    events = sorted([(r.start, 1) for r in log] + [(r.end, -1) for r in log])
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    windows = {m: (round(min(r.start for r in log if r.model == m) - t0, 3),
                   round(max(r.end for r in log if r.model == m) - t0, 3)) for m in sorted({r.model for r in log})}
    gen_log = [r for r in log if r.model != judge]
    judge_log = [r for r in log if r.model == judge]
    overlap = (max(r.end for r in gen_log) - min(r.start for r in judge_log)) if gen_log and judge_log else None
    return {
        "requests": len(log), "generation_requests": dict(gen), "judge_requests": judged,
        "span_s": round(span, 3), "ideal_s": round(ideal, 3), "span_over_ideal": round(span / ideal, 3),
        "avg_in_flight": round(busy / span, 2), "peak_in_flight": peak,
        "judge_overlaps_generation_s": None if overlap is None else round(overlap, 3),
        "windows_s": windows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="request span vs the ideal schedule (issue 9, benchmark a)")
    add_tree_args(ap)
    ap.add_argument("--latency-ms", type=float, default=200)
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--k", type=int, default=16, help="max_in_flight of every pool model")
    ap.add_argument("--judge-k", type=int, default=16, help="max_in_flight of the judge")
    ap.add_argument("--aspects", default="overall_rating,instruction_following")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tree (the median is reported)")
    args = ap.parse_args()
    out = out_dir(args, "span")
    models = [f"gen-{chr(ord('a') + i)}" for i in range(args.models)]
    judge, aspects, latency = "judge-x", args.aspects.split(","), args.latency_ms / 1000
    prompts = write_prompts(out / "prompts.jsonl", args.prompts)
    results: dict[str, Any] = {}
    with LatencyServer(latency, [*models, judge]) as server:
        env_extra = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
                     "HF_DATASETS_CACHE": str(out / "hf-datasets")}
        for tree in trees(args):
            runs = []
            for rep in range(args.repeat):
                run_dir = out / tree.label / f"run{rep}"
                cmd = uf_cli(tree, overrides(models, judge, prompts, args.prompts, args.k, args.judge_k, aspects,
                                             run_dir, out / tree.label / f"cache{rep}.sqlite"))
                server.reset()
                proc = run_measured(cmd, tree.root, tree.env(env_extra), run_dir.with_suffix(".log"))
                if proc.returncode:
                    raise SystemExit(f"{tree.label} run {rep} failed (exit {proc.returncode}); see {proc.log}")
                summary = read_summary(run_dir)
                got = analyse(server.snapshot(), judge, args.k, args.judge_k, latency)
                got.update(process_wall_s=round(proc.wall_s, 3), loadavg=proc.loadavg,
                           wall_time_s=summary.get("wall_time_s"),
                           failures=summary["generation"]["failures"] + summary["judge"]["failures"])
                runs.append(got)
                print(f"{tree.label} run {rep}: span {got['span_s']:.2f} s, ideal {got['ideal_s']:.2f} s, "
                      f"x{got['span_over_ideal']:.2f}, {got['avg_in_flight']:.1f} in flight on average "
                      f"(peak {got['peak_in_flight']}), process {proc.wall_s:.1f} s", flush=True)
            results[tree.label] = {
                "rev": tree.rev, "runs": runs,
                "span_over_ideal": median([r["span_over_ideal"] for r in runs]),
                "span_s": median([r["span_s"] for r in runs]),
                "ideal_s": runs[0]["ideal_s"],
                "avg_in_flight": median([r["avg_in_flight"] for r in runs]),
                "peak_in_flight": median([r["peak_in_flight"] for r in runs]),
            }
    cur, ref = results.get("current"), results.get("ref")
    g = lambda d, key: d[key] if d else None  # noqa: E731
    rows = [
        ["span (s)", g(cur, "span_s"), g(ref, "span_s"), ratio(g(ref, "span_s"), g(cur, "span_s")), "-"],
        ["ideal (s)", g(cur, "ideal_s"), g(ref, "ideal_s"), None, "-"],
        ["span / ideal", g(cur, "span_over_ideal"), g(ref, "span_over_ideal"),
         ratio(g(ref, "span_over_ideal"), g(cur, "span_over_ideal")), f"<= {TARGET}"],
        ["avg in flight", g(cur, "avg_in_flight"), g(ref, "avg_in_flight"),
         ratio(g(cur, "avg_in_flight"), g(ref, "avg_in_flight")), "-"],
        ["peak in flight", g(cur, "peak_in_flight"), g(ref, "peak_in_flight"), None, "-"],
    ]
    title = (f"(a) request span: {args.models} models x {args.prompts} prompts (k={args.k}) + judge on "
             f"{len(aspects)} aspects (k={args.judge_k}), {args.latency_ms:.0f} ms/request, median of {args.repeat}"
             f"\n    current={fmt(g(cur, 'rev'))} ref={fmt(g(ref, 'rev'))}; ratio = improvement of current over ref")
    print(table(title, rows, ["", "current", "ref", "ratio", "target"]))
    if cur:
        print(f"target span/ideal <= {TARGET}: {'met' if cur['span_over_ideal'] <= TARGET else 'NOT met'}")
    print(f"results: {save(out, 'results', {'benchmark': 'span', 'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    main()
