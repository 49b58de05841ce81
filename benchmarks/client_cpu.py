"""Benchmark (e): client CPU per chat-completions request, each client path side by side against one local server.

Every path runs in a process of its own (``--inner PATH``) against ``benchmarks/server.py`` (in this process, so
its CPU is not counted), with ``--k`` requests in flight: a warm-up of ``--warmup`` requests (connections opened,
imports done), then ``--requests`` timed ones. The figure is the process CPU time (user + system) spent on the
timed requests / their number: what the client costs per request, steady when other work shares the cores.

Paths (``--paths``):

- ``engine``: ``OpenAIEngine.complete`` of this checkout (one request per call, as the run's worker calls it: the
  rate limiter, the request body, the reply into a ``Completion``); ``engine-ref``: the same of the reference tree
  (``--ref REV`` / ``--ref-src DIR``), e.g. the SDK path before the change;
- ``sdk-httpx``: ``openai.AsyncOpenAI().chat.completions.create`` on the SDK's default httpx transport;
- ``sdk-aiohttp``: the same on the SDK's aiohttp transport (``openai.DefaultAioHttpClient``);
- ``sdk-aiohttp-raw``: the SDK on aiohttp with less per-request work: ``client.post(..., cast_to=object)``, the
  reply's JSON without a pydantic model;
- ``aiohttp``: a bare ``aiohttp`` session posting JSON and decoding the reply (no retries, no breaker): the floor.

Target: the engine path <= 0.5 ms of client CPU per request.

    python -m benchmarks.client_cpu --ref ba06c00
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_MS = 0.5
PATHS = ["engine", "engine-ref", "sdk-httpx", "sdk-aiohttp", "sdk-aiohttp-raw", "aiohttp"]
MODEL = "gen-a"


def body(i: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Explain tides to a child, case {i}."}],
            "max_tokens": 48, "temperature": 0.7, "top_p": 1.0, "seed": i}


async def sdk_sender(path: str, base_url: str) -> tuple[Any, Any]:
    import openai

    http = openai.DefaultAioHttpClient() if path.startswith("sdk-aiohttp") else None
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=2, http_client=http)
    if path == "sdk-aiohttp-raw":
        async def send(i: int) -> Any:
            reply = await client.post("/chat/completions", body=body(i), cast_to=object)
            return reply["choices"][0]["message"]["content"]
    else:
        async def send(i: int) -> Any:
            reply = await client.chat.completions.create(**body(i))
            return reply.choices[0].message.content
    return send, client.close


async def aiohttp_sender(base_url: str) -> tuple[Any, Any]:
    import aiohttp

    session = aiohttp.ClientSession(headers={"Authorization": "Bearer sk-bench"})
    url = base_url + "/chat/completions"

    async def send(i: int) -> Any:
        async with session.post(url, data=json.dumps(body(i)).encode(),
                                headers={"Content-Type": "application/json"}) as resp:
            return json.loads(await resp.read())["choices"][0]["message"]["content"]

    return send, session.close


async def engine_sender(base_url: str) -> tuple[Any, Any]:
    from uf_experiments.core.records import Request
    from uf_experiments.engines.openai.engine import OpenAIEngine

    engine = OpenAIEngine(MODEL, base_url=base_url, max_retries=2)
    engine._ensure()  # noqa: SLF001 - the client of this loop (the first call would build it)

    async def send(i: int) -> Any:
        b = body(i)
        req = Request(MODEL, tuple(b["messages"]), b["max_tokens"], b["temperature"], b["top_p"], b["seed"])
        got: list[Any] = []
        await engine.complete([req], got.append)
        if got[0].text is None:
            raise RuntimeError(got[0].error)
        return got[0].text

    return send, engine.release


async def inner_main(path: str, base_url: str, n: int, k: int, warmup: int) -> dict[str, Any]:
    if path.startswith("engine"):
        send, close = await engine_sender(base_url)
    elif path.startswith("sdk"):
        send, close = await sdk_sender(path, base_url)
    else:
        send, close = await aiohttp_sender(base_url)
    sem = asyncio.Semaphore(k)

    async def one(i: int) -> None:
        async with sem:
            await send(i)

    try:
        await asyncio.gather(*(one(i) for i in range(warmup)))
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(warmup + i) for i in range(n)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        await close()
    return {"path": path, "requests": n, "cpu_s": round(cpu, 4), "wall_s": round(wall, 4),
            "cpu_ms_per_request": round(1000 * cpu / n, 4)}


def inner(args: argparse.Namespace) -> None:
    coro = inner_main(args.inner, args.base_url, args.requests, args.k, args.warmup)
    if args.loop == "uvloop":
        import uvloop

        print(json.dumps(uvloop.run(coro)))
    else:
        print(json.dumps(asyncio.run(coro)))


def run_path(path: str, tree_env: dict[str, str], cwd: Path, args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    script = Path(__file__).resolve()  # run as a file: the reference tree may have no benchmarks/client_cpu.py
    cmd = [sys.executable, str(script), "--inner", path, "--base-url", base_url,
           "--requests", str(args.requests), "--k", str(args.k), "--warmup", str(args.warmup), "--loop", args.loop]
    proc = subprocess.run(cmd, cwd=cwd, env=tree_env, capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise SystemExit(f"{path} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    from benchmarks.common import add_tree_args

    ap = argparse.ArgumentParser(description="client CPU per chat-completions request, per client path")
    add_tree_args(ap)
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--k", type=int, default=64, help="requests in flight")
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                    help="the event loop of the measured processes (the run's is asyncio's)")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    ap.add_argument("--base-url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:  # a measured process: nothing of benchmarks/ imported (the tree under test may differ)
        inner(args)
        return
    from benchmarks.common import fmt, median, out_dir, save, table, trees
    from benchmarks.server import LatencyServer

    out = out_dir(args, "client_cpu")
    tlist = {t.label: t for t in trees(args)}
    paths = [p for p in args.paths.split(",") if p != "engine-ref" or "ref" in tlist]
    raw: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    with LatencyServer(args.latency_ms / 1000, [MODEL]) as server:
        for rep in range(args.repeat):
            for path in paths:
                tree = tlist["ref" if path == "engine-ref" else "current"]
                got = run_path(path, tree.env({"OPENAI_API_KEY": "sk-bench"}), tree.root, args, server.base_url)
                raw[path].append(got)
                print(f"round {rep} {path}: {got['cpu_ms_per_request']:.3f} ms CPU/request "
                      f"({got['requests']} requests, {got['wall_s']:.2f} s)", flush=True)
    med = {p: median([r["cpu_ms_per_request"] for r in v]) for p, v in raw.items()}
    spread = {p: (min(r["cpu_ms_per_request"] for r in v), max(r["cpu_ms_per_request"] for r in v))
              for p, v in raw.items()}
    rows = [[p, med[p], f"{fmt(spread[p][0], 3)}-{fmt(spread[p][1], 3)}",
             fmt(med[p] / med["engine"]) if "engine" in med else "-"] for p in paths]
    revs = {label: t.rev for label, t in tlist.items()}
    title = (f"(e) client CPU per request: {args.requests} requests, {args.k} in flight, {args.latency_ms:.0f} ms "
             f"server latency, median of {args.repeat}\n    {revs}")
    print(table(title, rows, ["path", "CPU ms/request", "spread", "x engine"]))
    if "engine" in med:
        ok = med["engine"] <= TARGET_MS
        verdict = "met" if ok else "NOT met"
        print(f"target engine <= {TARGET_MS} ms CPU/request: {verdict} ({fmt(med['engine'], 3)})")
    payload = {"benchmark": "client_cpu", "args": vars(args), "runs": raw, "median": med}
    print(f"results: {save(out, 'results', payload)}")


if __name__ == "__main__":
    main()
