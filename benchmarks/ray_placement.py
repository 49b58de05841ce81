"""Benchmark (e): the demo's pool on ``execution=ray`` with 4 declared GPUs against ``execution=local``.

Both runs are our CLI on ``experiment=demo pool=tiny judge=tiny`` (four tiny vLLM-CPU models of the pool, a tiny
judge), the same seed, a fresh request cache each, ``tracking=none``; ``--repeat`` rounds alternate the two modes.
Printed side by side: wall time of the run, CPU time of the run's process, and, for the Ray run, how long two or
more pool models were busy at the same time (from ``summary.json`` ``placement``) against the sum of their busy
time. On two CPU cores the models share the cores, so side by side cannot be faster here: the figure to read is the
overlap, which is what GPUs turn into speed. No target.

    UF_EXPERIMENTS_CACHE=outputs/.test-cache .venv/bin/python -m benchmarks.ray_placement --prompts 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HERE,
    Tree,
    describe,
    machine,
    median,
    out_dir,
    read_summary,
    run_measured,
    stage_wall,
    uf_cli,
)

MODES = {
    "local": ["execution=local"],
    "ray": ["execution=ray", "execution.num_gpus=4"],
}


def overlap(placement: dict[str, Any], models: list[str]) -> tuple[float, float]:
    """(seconds two or more of ``models`` were busy at once, the sum of their busy seconds)."""
    events = sorted((t, d) for m in models for r in placement.get(m, []) for s, e in r["busy"]
                    for t, d in ((s, 1), (e, -1)))
    busy_sum = sum(e - s for m in models for r in placement.get(m, []) for s, e in r["busy"])
    together, level, last = 0.0, 0, None
    for t, d in events:
        if last is not None and level >= 2:
            together += t - last
        level, last = level + d, t
    return together, busy_sum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help="dataset.limit")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, help="output dir (default outputs/bench/ray_placement/<time>)")
    args = parser.parse_args()
    out = out_dir(args, "ray_placement")
    tree = Tree("current", HERE, describe(HERE))
    base = ["experiment=demo", "pool=tiny", "judge=tiny", f"dataset.limit={args.prompts}", "seed=3",
            "tracking=none"]
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for i in range(args.repeat):
        for mode, extra in MODES.items():
            run_dir = out / f"{mode}-{i}"
            cmd = uf_cli(tree, [*base, *extra, f"hydra.run.dir={run_dir}", f"cache.path={run_dir}.sqlite"])
            proc = run_measured(cmd, HERE, tree.env(), out / f"{mode}-{i}.log")
            if proc.returncode != 0:
                raise SystemExit(f"{mode} run {i} failed (exit {proc.returncode}): see {proc.log}")
            s = read_summary(run_dir)
            row = {"wall_s": proc.wall_s, "run_s": stage_wall(s), "cpu_s": proc.cpu_s, "loadavg": proc.loadavg}
            if "placement" in s:
                pool = [m for m in s["placement"] if m in s["generation"]["by_model"]]
                together, busy = overlap(s["placement"], pool)
                row.update(together_s=together, busy_s=busy, placement=s["placement"])
            results[mode].append(row)
            print(f"{mode} round {i}: wall {proc.wall_s:.1f} s, load {proc.loadavg:.1f}", flush=True)
    local, ray = results["local"], results["ray"]
    lw, rw = median([r["wall_s"] for r in local]), median([r["wall_s"] for r in ray])
    print(f"\n(e) demo pool, {args.prompts} prompts, median of {args.repeat}  (rev {tree.rev})")
    print(f"{'':28}{'local':>10}{'ray (4 GPUs)':>14}{'ray/local':>11}")
    print(f"{'wall time of the CLI (s)':28}{lw:>10.1f}{rw:>14.1f}{rw / lw:>11.2f}")
    lc, rc = median([r["cpu_s"] for r in local]), median([r["cpu_s"] for r in ray])
    print(f"{'CPU of the driver (s)':28}{lc:>10.1f}{rc:>14.1f}{rc / lc:>11.2f}")
    t, b = median([r["together_s"] for r in ray]), median([r["busy_s"] for r in ray])
    print(f"{'pool models busy together':28}{'0 (one at a time)':>10}  {t:.1f} s of {b:.1f} s busy")
    (out / "results.json").write_text(json.dumps({"machine": machine(), "rev": tree.rev, "prompts": args.prompts,
                                                   "results": results}, indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
