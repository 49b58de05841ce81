"""Benchmark (d): vLLM given a model's whole batch at once vs in batches of 2, on a CPU tiny model.

Engine level, no CLI: one ``VLLMEngine`` on a tiny random-weight model (``uf_experiments.tiny``), ``--requests``
seeded requests of ``--max-tokens`` new tokens, timed as one batch (``--whole`` requests per ``LLM.chat``) and
as chunks of ``--chunk`` (2), after a short warm-up. Works with both engine APIs: the batch one of the
pre-streaming core (``engine.generate(requests)``, chunk = ``engine.chunk_size``) and the async seam
(``uf_experiments.engines.base.run_sync(engine, requests)``, chunk = ``engine.max_batch``), detected with
``hasattr(engine, "complete")``. Each tree runs in its own process (vLLM is created under ``__main__``).
Target: whole batch >= 10x faster than batches of 2.

    VLLM_CPU_KVCACHE_SPACE=1 python -m benchmarks.vllm_batch --ref bac9a1c
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

TARGET = 10.0
LLM_KWARGS = {"dtype": "float32", "max_model_len": 1024, "enforce_eager": True, "enable_chunked_prefill": False}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside one tree's process: build the engine, warm up, time whole batch vs chunks."""
    import uf_experiments
    from uf_experiments.core.records import Request
    from uf_experiments.engines.vllm_engine import VLLMEngine
    from uf_experiments.tiny import TinySpec, build_tiny_model

    path = str(build_tiny_model(TinySpec(seed=args.tiny_seed)))
    try:
        engine = VLLMEngine(path, llm_kwargs=dict(LLM_KWARGS), chunk_size=args.whole)
    except TypeError:  # a newer constructor without chunk_size
        engine = VLLMEngine(path, llm_kwargs=dict(LLM_KWARGS), max_batch=args.whole)
    new_api = hasattr(engine, "complete")

    def run(requests: list[Request], chunk: int) -> list[Any]:
        if new_api:
            from uf_experiments.engines.base import run_sync

            engine.max_batch = chunk
            return run_sync(engine, requests)
        engine.chunk_size = chunk
        return engine.generate(requests)

    def requests(n: int, tag: str) -> list[Request]:
        topics = ["the sea", "a clock", "winter", "bread", "a library", "rain", "mountains", "a violin"]
        return [Request(model="tiny", messages=({"role": "user", "content":
                                                 f"Write a short note about {topics[i % 8]} ({tag} {i})."},),
                        max_tokens=args.max_tokens, temperature=1.0, top_p=1.0, seed=1000 + i, tag=f"{tag}{i}")
                for i in range(n)]

    run(requests(8, "warmup"), args.whole)
    reqs = requests(args.requests, "bench")
    times: dict[str, list[float]] = {"whole": [], "chunked": []}
    cpu: dict[str, list[float]] = {"whole": [], "chunked": []}  # process CPU (all threads): steadier under load
    texts: dict[str, list[Any]] = {}
    tokens: dict[str, int] = {}
    for _ in range(args.repeat):
        for mode, chunk in (("whole", args.whole), ("chunked", args.chunk)):
            t, c = time.perf_counter(), time.process_time()
            out = run(reqs, chunk)
            times[mode].append(time.perf_counter() - t)
            cpu[mode].append(time.process_time() - c)
            texts[mode] = [c.text for c in out]
            tokens[mode] = sum(c.usage.completion_tokens for c in out)
            failed = sum(c.text is None for c in out)
            if failed:
                raise RuntimeError(f"{failed} of {len(out)} requests failed in {mode} mode: {out[0].error}")
    engine.close()
    same = sum(a == b for a, b in zip(texts["whole"], texts["chunked"], strict=False))
    return {"package": uf_experiments.__file__, "api": "async complete" if new_api else "generate",
            "whole_s": statistics.median(times["whole"]), "chunked_s": statistics.median(times["chunked"]),
            "whole_cpu_s": statistics.median(cpu["whole"]), "chunked_cpu_s": statistics.median(cpu["chunked"]),
            "times": times, "cpu_times": cpu, "tokens": tokens, "identical_texts": same, "requests": len(reqs)}


def main() -> None:
    ap = argparse.ArgumentParser(description="vLLM whole batch vs batches of 2 (issue 9, benchmark d)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: run in this tree, write JSON here
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--whole", type=int, default=4096, help="requests per LLM.chat in the whole-batch mode")
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--tiny-seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds (whole, then chunked) per tree; median")
    from benchmarks.common import add_tree_args

    add_tree_args(ap)
    args = ap.parse_args()
    if args.worker:
        args.worker.write_text(json.dumps(worker(args)))
        return

    from benchmarks.common import fmt, out_dir, ratio, run_measured, save, table, trees

    out = out_dir(args, "vllm_batch")
    env_extra = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    passthrough = ["--requests", str(args.requests), "--max-tokens", str(args.max_tokens), "--whole",
                   str(args.whole), "--chunk", str(args.chunk), "--tiny-seed", str(args.tiny_seed),
                   "--repeat", str(args.repeat)]
    results: dict[str, Any] = {}
    for tree in trees(args):
        result_file = out / f"{tree.label}.json"
        cmd = [sys.executable, "-m", "benchmarks.vllm_batch", "--worker", str(result_file), *passthrough]
        proc = run_measured(cmd, tree.root, tree.env(env_extra), out / f"{tree.label}.log")
        if proc.returncode or not result_file.exists():
            raise SystemExit(f"{tree.label} failed (exit {proc.returncode}); see {proc.log}")
        got = json.loads(result_file.read_text())
        got.update(rev=tree.rev, speedup=got["chunked_s"] / got["whole_s"], process_wall_s=round(proc.wall_s, 1),
                   cpu_speedup=got["chunked_cpu_s"] / got["whole_cpu_s"])
        results[tree.label] = got
        print(f"{tree.label} ({got['api']}): whole {got['whole_s']:.2f} s, chunks of {args.chunk} "
              f"{got['chunked_s']:.2f} s, x{got['speedup']:.1f} (CPU time x{got['cpu_speedup']:.1f}), "
              f"tokens {got['tokens']}, "
              f"{got['identical_texts']}/{got['requests']} identical texts", flush=True)
    cur, ref = results.get("current"), results.get("ref")
    g = lambda d, key: d[key] if d else None  # noqa: E731
    rows = [
        ["whole batch s", g(cur, "whole_s"), g(ref, "whole_s"), ratio(g(ref, "whole_s"), g(cur, "whole_s")), "-"],
        [f"batches of {args.chunk} s", g(cur, "chunked_s"), g(ref, "chunked_s"),
         ratio(g(ref, "chunked_s"), g(cur, "chunked_s")), "-"],
        ["speed-up", g(cur, "speedup"), g(ref, "speedup"), None, f">= {TARGET}"],
        ["speed-up in CPU time", g(cur, "cpu_speedup"), g(ref, "cpu_speedup"), None, "-"],
    ]
    title = (f"(d) vLLM on a CPU tiny model: {args.requests} requests x {args.max_tokens} tokens, one batch vs "
             f"batches of {args.chunk}, median of {args.repeat}\n    current={fmt(g(cur, 'rev'))} "
             f"ref={fmt(g(ref, 'rev'))}; ratio = ref / current")
    print(table(title, rows, ["", "current", "ref", "ratio", "target"]))
    if cur:
        print(f"target speed-up >= {TARGET}: {'met' if cur['speedup'] >= TARGET else 'NOT met'}")
    print(f"results: {save(out, 'results', {'benchmark': 'vllm_batch', 'args': vars(args), 'results': results})}")


if __name__ == "__main__":
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    main()
