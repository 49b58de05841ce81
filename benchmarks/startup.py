"""Benchmark (f): start-up, our CLI against the smallest Hydra app, side by side in one invocation.

Commands, each a fresh interpreter, interleaved round by round (``--repeat``, median and spread):

- ``minimal --help``: ``python benchmarks/minimal_hydra_app.py --help`` (no config files, no groups);
- ``--help``: ``python -m uf_experiments --help``;
- ``plan=true``: ``python -m uf_experiments plan=true`` on the demo (tiny local models, built once before the
  timed rounds; the plan composes, loads the demo prompts, counts tokens and prints the table).

Both of ours run for this checkout and, with ``--ref REV`` / ``--ref-src DIR``, for a reference tree. The figures
are wall time (and CPU time, steadier when other work shares the cores) over the minimal app's ``--help``.
Targets: ``--help`` <= 1.3x, ``plan=true`` <= 1.8x.

    python -m benchmarks.startup --ref ba06c00
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import HERE, add_tree_args, fmt, median, out_dir, run_measured, save, table, trees

TARGETS = {"--help": 1.3, "plan=true": 1.8}


def main() -> None:
    ap = argparse.ArgumentParser(description="start-up against a minimal Hydra app (benchmark f)")
    add_tree_args(ap)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    out = out_dir(args, "startup")
    tlist = trees(args)
    minimal = [sys.executable, str(HERE / "benchmarks" / "minimal_hydra_app.py"), "--help"]
    jobs: list[tuple[str, list[str], Path, dict[str, str]]] = [("minimal --help", minimal, out, dict(os.environ))]
    for tree in tlist:
        env = tree.env()
        jobs.append((f"{tree.label}: --help", [sys.executable, "-m", "uf_experiments", "--help"], tree.root, env))
        plan = [sys.executable, "-m", "uf_experiments", "plan=true", f"cache.path={out / tree.label / 'cache.sqlite'}"]
        jobs.append((f"{tree.label}: plan=true", plan, tree.root, env))
    for label, cmd, cwd, env in jobs:  # a warm-up round: tiny models built, files in the page cache
        run_measured([*cmd, *run_dir(label, out, "warm")], cwd, env, out / "logs" / f"{slug(label)}-warm.log")
    raw: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in jobs}
    for rep in range(args.repeat):
        for label, cmd, cwd, env in jobs:
            proc = run_measured([*cmd, *run_dir(label, out, str(rep))], cwd, env,
                                out / "logs" / f"{slug(label)}-{rep}.log")
            if proc.returncode:
                raise SystemExit(f"{label} failed (exit {proc.returncode}); see {proc.log}")
            raw[label].append({"wall_s": round(proc.wall_s, 3), "cpu_s": round(proc.cpu_s, 3), "loadavg": proc.loadavg})
        print(f"round {rep}: " + ", ".join(f"{k} {v[-1]['wall_s']:.2f} s" for k, v in raw.items()), flush=True)
    med = {k: {m: median([r[m] for r in v]) for m in ("wall_s", "cpu_s")} for k, v in raw.items()}
    base = med["minimal --help"]
    rows = []
    for label, runs in raw.items():
        walls = [r["wall_s"] for r in runs]
        kind = label.split(": ", 1)[-1]
        rows.append([label, med[label]["wall_s"], f"{min(walls):.2f}-{max(walls):.2f}", med[label]["cpu_s"],
                     fmt(med[label]["wall_s"] / base["wall_s"]), fmt(med[label]["cpu_s"] / base["cpu_s"]),
                     f"<= {TARGETS[kind]}" if kind in TARGETS else "-"])
    revs = {t.label: t.rev for t in tlist}
    print(table(f"(f) start-up vs a minimal Hydra app's --help, median of {args.repeat}\n    {revs}", rows,
                ["command", "wall s", "spread", "CPU s", "x minimal (wall)", "x minimal (CPU)", "target"]))
    for kind, target in TARGETS.items():
        key = f"current: {kind}"
        if key in med:
            r = med[key]["wall_s"] / base["wall_s"]
            print(f"target {kind} <= {target}x: {'met' if r <= target else 'NOT met'} ({r:.2f}x)")
    print(f"results: {save(out, 'results', {'benchmark': 'startup', 'args': vars(args), 'runs': raw, 'median': med})}")


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


def run_dir(label: str, out: Path, tag: str) -> list[str]:
    """Where a plan's run dir goes (the --help commands take no override)."""
    return [f"hydra.run.dir={out / 'runs' / slug(label) / tag}"] if "plan=true" in label else []


if __name__ == "__main__":
    main()
