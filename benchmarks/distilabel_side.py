"""Benchmark (b): our CLI side by side with distilabel 1.5.3 on the seed's shape, against one local server.

The seed's shape: ``--prompts`` prompts (200), a pool of 4 models, 3 completions per prompt, an overall-rating
judge in the paper's text format. Both tools talk to the same local OpenAI-compatible server
(``benchmarks/server.py``, ``--latency-ms`` per request) and each run starts from a fresh cache.

- ours: ``python -m uf_experiments pool=served pool.models=[gen-a,gen-b,gen-c,gen-d] sampling.n=3 judge=served
  judge.output=text aspect=[overall_rating] dataset=local ...`` (engine settings at their defaults unless
  ``--max-in-flight`` is given);
- distilabel: ``benchmarks/distilabel_seed.py`` in its own virtualenv (``--distilabel-venv``, created when missing
  with ``python -m venv V && V/bin/pip install "distilabel[openai]==1.5.3" requests``) at each
  ``--batch-sizes`` value (its ``input_batch_size``); its best (lowest median) is the baseline.

The figure is the wall time of the whole command (interpreter start-up included, for both tools); the server's
span and average requests in flight are shown too. Target (``--target``): distilabel's best / ours >= 4 (issue
18; issue 9's was 3).

(b2) is the same with ``--prompts 1000 --latency-sigma 1.0`` (heavy-tailed latency: lognormal around the 200 ms
median, seeded per request) at equal concurrency (``--max-in-flight 50 --batch-sizes 50``), target 6:

    python -m benchmarks.distilabel_side --ref ba06c00 --batch-sizes 50                               # (b)
    python -m benchmarks.distilabel_side --ref ba06c00 --prompts 1000 --latency-sigma 1.0 \
        --max-in-flight 50 --batch-sizes 50 --target 6                                                # (b2)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HERE,
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

TARGET = 4.0  # issue 18: (b) >= 4x at the defaults; (b2) (--prompts 1000 --latency-sigma 1 ...) >= 6x: --target 6
MODELS = ["gen-a", "gen-b", "gen-c", "gen-d"]
JUDGE = "judge-x"
DEFAULT_VENV = Path(__file__).resolve().parent.parent / "outputs" / "bench-venvs" / "distilabel-1.5.3"


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    ok = python.exists() and subprocess.run(
        [str(python), "-c", "import distilabel, openai, requests; assert distilabel.__version__ == '1.5.3'"],
        capture_output=True).returncode == 0
    if not ok:
        print(f"creating distilabel's virtualenv in {venv} (a few minutes)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "distilabel[openai]==1.5.3", "requests"], check=True)
    return python


def server_stats(log: list[Logged]) -> dict[str, Any]:
    if not log:
        return {"requests": 0}
    t0 = min(r.start for r in log)
    span = max(r.end for r in log) - t0
    return {"requests": len(log), "judge_requests": sum(r.kind == "judge" for r in log),
            "span_s": round(span, 3), "avg_in_flight": round(sum(r.end - r.start for r in log) / span, 2)}


def ours(tree: Any, server: LatencyServer, prompts: Path, n: int, run_dir: Path, max_in_flight: int | None,
         env_extra: dict[str, str]) -> dict[str, Any]:
    ov = ["pool=served", f"pool.models=[{','.join(MODELS)}]", f"pool.size={len(MODELS)}", "sampling.n=3",
          "principles=none", "judge=served", f"judge.model.path={JUDGE}", "judge.output=text",
          "aspect=[overall_rating]", "dataset=local", f"dataset.path={prompts}", f"dataset.limit={n}",
          "tracking=none", f"cache.path={run_dir}.cache.sqlite", f"hydra.run.dir={run_dir}"]
    if max_in_flight:
        ov += [f"pool.engine.max_in_flight={max_in_flight}", f"judge.model.engine.max_in_flight={max_in_flight}"]
    server.reset()
    proc = run_measured(uf_cli(tree, ov), tree.root, tree.env(env_extra), run_dir.with_suffix(".log"))
    if proc.returncode:
        raise SystemExit(f"ours ({tree.label}) failed (exit {proc.returncode}); see {proc.log}")
    s = read_summary(run_dir)
    return {"wall_s": round(proc.wall_s, 3), "loadavg": proc.loadavg,
            "stage_wall_s": s.get("wall_time_s", {}).get("total"),
            "rated_rows": s["counts"]["rated_rows"], "judged": s["counts"]["judged"], **server_stats(server.snapshot())}


def distilabel(python: Path, server: LatencyServer, prompts: Path, n: int, bs: int, work: Path) -> dict[str, Any]:
    cmd = [str(python), str(HERE / "benchmarks" / "distilabel_seed.py"), "--base-url", server.base_url,
           "--prompts", str(prompts), "--limit", str(n), "--input-batch-size", str(bs),
           "--models", ",".join(MODELS), "--judge", JUDGE, "--cache-dir", str(work / "cache")]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(work / "hf-datasets"), "OPENAI_API_KEY": "sk-bench"}
    server.reset()
    work.mkdir(parents=True, exist_ok=True)
    proc = run_measured(cmd, work, env, work / "distilabel.log")
    if proc.returncode:
        raise SystemExit(f"distilabel (input_batch_size={bs}) failed (exit {proc.returncode}); see {proc.log}")
    lines = [ln for ln in proc.log.read_text().splitlines() if ln.startswith("{")]
    inner = json.loads(lines[-1]) if lines else {}
    return {"wall_s": round(proc.wall_s, 3), "loadavg": proc.loadavg, "inner_wall_s": inner.get("wall_s"),
            "rows": inner.get("rows"),
            "ratings": inner.get("ratings"), **server_stats(server.snapshot())}


def main() -> None:
    ap = argparse.ArgumentParser(description="side by side with distilabel 1.5.3 (issue 9, benchmark b)")
    add_tree_args(ap)
    ap.add_argument("--distilabel-venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--batch-sizes", default="10,50,100", help="distilabel input_batch_size values to try")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=200)
    ap.add_argument("--max-in-flight", type=int, help="ours: max_in_flight of every model (default: the config's)")
    ap.add_argument("--latency-sigma", type=float, default=0.0,
                    help="> 0: lognormal latency per request with median --latency-ms (b2: 1.0)")
    ap.add_argument("--target", type=float, default=TARGET, help="distilabel's best wall time / ours to reach")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (each tool and setting once a round; median)")
    ap.add_argument("--server-backlog", type=int, default=1024,
                    help="the server's listen backlog (http.server's default, 5, penalises bursts of connections)")
    args = ap.parse_args()
    out = out_dir(args, "distilabel_side")
    python = ensure_venv(args.distilabel_venv.resolve())
    prompts = write_prompts(out / "prompts.jsonl", args.prompts)
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    tlist = trees(args)
    raw: dict[str, list[dict[str, Any]]] = {t.label: [] for t in tlist}
    raw.update({f"distilabel_bs{bs}": [] for bs in sizes})
    with LatencyServer(args.latency_ms / 1000, [*MODELS, JUDGE], backlog=args.server_backlog,
                       sigma=args.latency_sigma) as server:
        env_extra = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench",
                     "HF_DATASETS_CACHE": str(out / "hf-datasets")}
        for rep in range(args.repeat):
            for tree in tlist:
                got = ours(tree, server, prompts, args.prompts, out / tree.label / f"run{rep}", args.max_in_flight,
                           env_extra)
                raw[tree.label].append(got)
                print(f"round {rep} ours ({tree.label}): {got['wall_s']:.2f} s, {got['requests']} requests, span "
                      f"{got['span_s']:.2f} s, {got['avg_in_flight']:.1f} in flight", flush=True)
            for bs in sizes:
                got = distilabel(python, server, prompts, args.prompts, bs, out / f"distilabel-bs{bs}" / f"run{rep}")
                raw[f"distilabel_bs{bs}"].append(got)
                print(f"round {rep} distilabel input_batch_size={bs}: {got['wall_s']:.2f} s, {got['requests']} "
                      f"requests, span {got['span_s']:.2f} s, {got['avg_in_flight']:.1f} in flight, "
                      f"{got['ratings']} ratings", flush=True)
    med = {k: {"wall_s": median([r["wall_s"] for r in v]), "span_s": median([r["span_s"] for r in v]),
               "avg_in_flight": median([r["avg_in_flight"] for r in v])} for k, v in raw.items()}
    best_bs = min(sizes, key=lambda bs: med[f"distilabel_bs{bs}"]["wall_s"])
    best = med[f"distilabel_bs{best_bs}"]
    cur, ref = med.get("current"), med.get("ref")
    g = lambda d, key: d[key] if d else None  # noqa: E731
    rows = [
        ["ours: wall s", g(cur, "wall_s"), g(ref, "wall_s"), "-"],
        ["ours: request span s", g(cur, "span_s"), g(ref, "span_s"), "-"],
        ["ours: avg in flight", g(cur, "avg_in_flight"), g(ref, "avg_in_flight"), "-"],
        [f"distilabel best (bs={best_bs}): wall s", best["wall_s"], best["wall_s"], "-"],
        ["distilabel wall / ours", ratio(best["wall_s"], g(cur, "wall_s")), ratio(best["wall_s"], g(ref, "wall_s")),
         f">= {args.target}"],
    ]
    rows += [[f"  distilabel bs={bs}: wall s / span s / in flight",
              f"{med[f'distilabel_bs{bs}']['wall_s']:.2f} / {med[f'distilabel_bs{bs}']['span_s']:.2f} / "
              f"{med[f'distilabel_bs{bs}']['avg_in_flight']:.1f}", "", ""] for bs in sizes]
    revs = {t.label: t.rev for t in tlist}
    latency = (f"lognormal latency (median {args.latency_ms:.0f} ms, sigma {args.latency_sigma:g})"
               if args.latency_sigma > 0 else f"{args.latency_ms:.0f} ms/request")
    title = (f"side by side with distilabel 1.5.3: {args.prompts} prompts, pool 4, 3 completions each, "
             f"overall-rating judge, {latency}, median of {args.repeat}\n    {revs}")
    print(table(title, rows, ["", "current", "ref", "target"]))
    if cur:
        r = ratio(best["wall_s"], cur["wall_s"])
        print(f"target distilabel/ours >= {args.target}: {'met' if r and r >= args.target else 'NOT met'} ({fmt(r)})")
        walls = sorted(x["wall_s"] for x in raw["current"])
        best_walls = sorted(x["wall_s"] for x in raw[f"distilabel_bs{best_bs}"])
        pairs = zip(raw[f"distilabel_bs{best_bs}"], raw["current"], strict=False)
        per_round = ", ".join(fmt(d["wall_s"] / o["wall_s"]) for d, o in pairs)
        print(f"spread: ours {walls[0]:.2f}-{walls[-1]:.2f} s, distilabel {best_walls[0]:.2f}-{best_walls[-1]:.2f} s; "
              f"ratio per round: {per_round}")
    payload = {"benchmark": "distilabel_side", "args": vars(args), "runs": raw, "median": med,
               "best_batch_size": best_bs}
    print(f"results: {save(out, 'results', payload)}")


if __name__ == "__main__":
    main()
